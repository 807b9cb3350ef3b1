"""The PKI keeps what it built for the rest of the process (pki.authority._built, _derive_key): a
cached certificate must be byte-identical to a fresh build, and any input that changes a certificate
must miss the cache."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from labsim.pki import authority
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
    authority._derive_key.cache_clear()
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
