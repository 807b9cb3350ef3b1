"""What a run builds from pure inputs is kept for the rest of the process, for the next run of
`labsim run A B ...`: the PKI's keys and certificates (pki.authority._built, pki.keys.derive_key) and the
DNS servers' compiled zones (net.dns_server._compiled). A cached object must be identical to a fresh
build, any input that changes it must miss the cache, and what fails to build is never kept."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from labsim.errors import TopologyError
from labsim.net import dns_server
from labsim.pki import authority, keys
from labsim.pki.authority import LabPki, key_pem
from labsim.topology.defaults import default_lab
from labsim.topology.model import Lab

DER = serialization.Encoding.DER


def everything(pki: LabPki) -> list[bytes]:
    """Every CA and leaf certificate and every key, as bytes."""
    return ([c.public_bytes(DER) for c in pki.all_ca_certs()] +
            [b for i in pki.all_issued() for b in (i.cert.public_bytes(DER), key_pem(i.key))])


def fresh(lab: Lab, seed: int) -> list[bytes]:
    authority._built.clear()
    keys.derive_key.cache_clear()
    return everything(LabPki(lab, seed))


@pytest.fixture
def lab() -> Lab:
    return default_lab()


def test_a_cached_pki_is_byte_identical_to_a_fresh_build(lab):
    built = fresh(lab, 7)
    again = LabPki(lab.model_copy(deep=True), 7)  # another run of the same lab in the same process
    assert everything(again) == built
    assert len(authority._built) == len(lab.certificate_authorities) + len(lab.certificates)  # all hits


def test_seed_start_and_spec_changes_miss_the_cache(lab):
    base = fresh(lab, 7)
    assert everything(LabPki(lab, 8)) != base
    later = lab.model_copy(deep=True)
    later.start = later.start.replace(year=later.start.year + 1)
    assert everything(LabPki(later, 7)) == fresh(later, 7) != base
    renewed = lab.model_copy(deep=True)
    renewed.certificates[0].not_after = "+10d"
    cached = everything(LabPki(renewed, 7))
    assert cached == fresh(renewed, 7)
    assert cached[len(lab.certificate_authorities)] != base[len(lab.certificate_authorities)]


def test_a_changed_root_is_rebuilt_and_matches_a_fresh_build(lab):
    base = fresh(lab, 7)
    moved = lab.model_copy(deep=True)
    root = next(c for c in moved.certificate_authorities if c.parent is None)
    root.subject = "CN=Another Root, O=Lab"
    assert everything(LabPki(moved, 7)) == fresh(moved, 7) != base


def answers(server) -> list[tuple[str, str, list[str]]]:  # noqa: ANN001 - a topology DnsServer
    """Every compiled zone's origin, SOA and records, as text."""
    return [(z.origin.to_text(), z.soa.to_text(), sorted(rs.to_text() for node in z.nodes.values()
                                                          for rs in node.values()))
            for z in dns_server._compile(server, 3)]


def test_a_cached_zone_is_the_same_as_a_fresh_compile_and_a_changed_one_misses(lab):
    server = next(s for s in lab.dns_servers if s.zones)
    dns_server._compiled.clear()
    first = answers(server)
    assert answers(server.model_copy(deep=True)) == first
    kept = len(dns_server._compiled)
    changed = server.model_copy(deep=True)
    changed.zones[0].records[0].ttl += 1
    assert answers(changed) != first
    assert len(dns_server._compiled) == kept + 1


def test_a_zone_that_does_not_compile_is_never_kept(lab):
    server = next(s for s in lab.dns_servers if s.zones).model_copy(deep=True)
    record = next(r for r in server.zones[0].records if r.type == "A")
    record.value = "not-an-address"
    dns_server._compiled.clear()
    for _ in range(2):
        with pytest.raises(TopologyError):
            dns_server._compile(server, 1)
    assert all(key[0] != server.zones[0].model_dump_json() for key in dns_server._compiled)
