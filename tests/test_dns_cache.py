"""The transport DNS cache: TTLs on the lab clock, RFC 2308 negative caching, a restart forgets.

Unit tests drive `DnsCache` and `LabResolver` (against a real lab DNS server on loopback) with a
hand-moved clock; the scenario tests show the effect in a run: a repaired record reaches the Edge
only when its cached copy expires, or at once after Restart-Service / Stop+Start of the service.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Run, folder_rows, free_udp_port, run_text

from labsim.net.dns_server import LabDnsServer
from labsim.net.dnscache import MAX_CACHE_TTL, MAX_NEGATIVE_CACHE_TTL, DnsCache
from labsim.net.resolver import DnsNameError, DnsNoData, DnsServerFailure, LabResolver
from labsim.net.vnet import AddressBook
from labsim.topology.model import DnsRecord, DnsServer, DnsZone

T0 = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
NS, NS2 = "10.30.0.53", "10.30.0.54"
CLIENT = "10.30.0.10"
BLOCK = 198


class FakeClock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


KEY = (("10.30.0.53",), "mx.fabrikam.com", "A")


# --------------------------------------------------------------------------- DnsCache


def test_an_answer_lives_exactly_its_ttl_on_the_given_clock():
    clock = FakeClock()
    cache = DnsCache(clock.now)
    cache.put(KEY, ["203.0.113.99"], NS, 300)
    clock.advance(299.999)
    entry = cache.get(KEY)
    assert entry is not None and entry.records == ("203.0.113.99",) and entry.server == NS
    clock.advance(0.001)
    assert cache.get(KEY) is None
    assert len(cache) == 0  # the expired entry is gone, not just hidden


def test_ttls_are_bounded_like_the_windows_dns_client_and_zero_is_not_cached():
    clock = FakeClock()
    cache = DnsCache(clock.now)
    cache.put(KEY, ["192.0.2.1"], NS, 7 * 86400)
    cache.put_negative(("x",), "DnsNameError", NS, 3600)  # type: ignore[arg-type]
    cache.put((("10.30.0.53",), "zero.test", "A"), ["192.0.2.2"], NS, 0)
    assert cache.get((("10.30.0.53",), "zero.test", "A")) is None
    clock.advance(MAX_NEGATIVE_CACHE_TTL)
    assert cache.get(("x",)) is None  # type: ignore[arg-type]
    assert cache.get(KEY) is not None
    clock.advance(MAX_CACHE_TTL - MAX_NEGATIVE_CACHE_TTL)
    assert cache.get(KEY) is None


def test_flush_forgets_everything():
    clock = FakeClock()
    cache = DnsCache(clock.now)
    cache.put(KEY, ["192.0.2.1"], NS, 3600)
    cache.put_negative((("10.30.0.53",), "gone.test", "A"), "DnsNameError", NS, 900)
    cache.flush()
    assert len(cache) == 0 and cache.get(KEY) is None


# --------------------------------------------------------------------------- LabResolver + a lab server


def _zone(a: str | None, ttl: int = 3600) -> DnsServer:
    records = [DnsRecord(name="fabrikam.com", type="MX", value="mx.fabrikam.com", ttl=ttl)]
    if a is not None:
        records.append(DnsRecord(name="mx.fabrikam.com", type="A", value=a, ttl=ttl))
    return DnsServer(name="NS", ip=NS, site="internet", zones=[DnsZone(name="fabrikam.com", records=records)])


@pytest.fixture
def book() -> AddressBook:
    probe = AddressBook([NS, NS2, CLIENT], block=BLOCK)
    port = free_udp_port([real for _, real in probe.items()])
    return AddressBook([NS, NS2, CLIENT], block=BLOCK, port_offset=port - 53)


@pytest.fixture
async def server(book):
    s = LabDnsServer(_zone("203.0.113.99"), book)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def _resolver(book: AddressBook, cache: DnsCache, *servers: str) -> LabResolver:
    return LabResolver(list(servers or [NS]), book, timeout=0.25, cache=cache,
                       source_ip=book.real_ip(CLIENT))


async def test_a_changed_record_is_seen_only_after_the_cached_ttl(server, book):
    clock = FakeClock()
    cache = DnsCache(clock.now)
    r = _resolver(book, cache)
    assert await r.resolve_a("mx.fabrikam.com") == ["203.0.113.99"]
    asked = len(server.queries)
    server.update(_zone("203.0.113.25"))  # the record is fixed at the source
    clock.advance(3599)
    cached = await r.lookup("mx.fabrikam.com", "A")
    assert cached.records == ["203.0.113.99"] and cached.attempts == () and cached.elapsed_virtual == 0.0
    assert len(server.queries) == asked  # no query was sent
    clock.advance(1)
    assert await r.resolve_a("mx.fabrikam.com") == ["203.0.113.25"]
    assert len(server.queries) == asked + 1


async def test_the_ttl_is_the_records_own(server, book):
    server.update(_zone("203.0.113.99", ttl=60))
    clock = FakeClock()
    cache = DnsCache(clock.now)
    r = _resolver(book, cache)
    assert await r.resolve_host("fabrikam.com") == [("mx.fabrikam.com", ["203.0.113.99"])]
    server.update(_zone("203.0.113.25", ttl=60))
    clock.advance(59)
    assert await r.resolve_host("fabrikam.com") == [("mx.fabrikam.com", ["203.0.113.99"])]
    clock.advance(1)
    assert await r.resolve_host("fabrikam.com") == [("mx.fabrikam.com", ["203.0.113.25"])]


async def test_nxdomain_and_nodata_are_cached_for_the_negative_ttl(server, book):
    # the lab SOA says TTL 3600, MINIMUM 3600: RFC 2308 gives 3600, the client's bound 900 s
    server.update(_zone(None))
    clock = FakeClock()
    cache = DnsCache(clock.now)
    r = _resolver(book, cache)
    with pytest.raises(DnsNameError):
        await r.resolve_a("mx.fabrikam.com")
    with pytest.raises(DnsNoData):
        await r.resolve_a("fabrikam.com")
    server.update(_zone("203.0.113.25"))
    asked = len(server.queries)
    clock.advance(MAX_NEGATIVE_CACHE_TTL - 1)
    with pytest.raises(DnsNameError) as exc:
        await r.resolve_a("mx.fabrikam.com")
    assert exc.value.attempts == () and exc.value.elapsed_virtual == 0.0
    assert len(server.queries) == asked
    clock.advance(1)
    assert await r.resolve_a("mx.fabrikam.com") == ["203.0.113.25"]


async def test_failures_are_not_cached(server, book):
    clock = FakeClock()
    cache = DnsCache(clock.now)
    r = _resolver(book, cache)
    server.set_mode("servfail")
    with pytest.raises(DnsServerFailure):
        await r.resolve_a("mx.fabrikam.com")
    assert len(cache) == 0
    server.set_mode("running")
    assert await r.resolve_a("mx.fabrikam.com") == ["203.0.113.99"]


async def test_other_nameservers_do_not_share_the_answer(server, book):
    clock = FakeClock()
    cache = DnsCache(clock.now)
    assert await _resolver(book, cache, NS).resolve_a("mx.fabrikam.com") == ["203.0.113.99"]
    server.update(_zone("203.0.113.25"))
    # Set-TransportService -InternalDNSServers: a new list asks again (NS2 answers nothing: NS is next)
    assert await _resolver(book, cache, NS2, NS).resolve_a("mx.fabrikam.com") == ["203.0.113.25"]
    assert await _resolver(book, cache, NS).resolve_a("mx.fabrikam.com") == ["203.0.113.99"]


# --------------------------------------------------------------------------- in a run

BROKEN = """
[[change]]
cmdlet = "Set-LabDnsRecord"
Server = "PUBLIC-DNS"
ZoneName = "fabrikam.com"
Name = "mx.fabrikam.com"
Type = "A"
Value = "203.0.113.99"
Ttl = 3600

[[change]]
at = "+00:05:00"
cmdlet = "Set-LabDnsRecord"
Server = "PUBLIC-DNS"
ZoneName = "fabrikam.com"
Name = "mx.fabrikam.com"
Type = "A"
Value = "203.0.113.25"
Ttl = 3600

[[message]]
id = "out"
at = "+00:01:00"
from = "raghu@cloudmonkeys.xyz"
to = ["alex@fabrikam.com"]
"""


def _edge_attempts(r: Run) -> list[tuple[datetime, str]]:
    """(time, remote endpoint) of every 'attempting to connect' row of the Edge's send log."""
    return [(datetime.fromisoformat(x[0].replace("Z", "+00:00")), x[5])
            for x in folder_rows(r.out, "CMEDGE01", "Edge", "SmtpSend") if x[8] == "attempting to connect"]


def _delivered_at(r: Run, mid: str) -> datetime:
    hop = next(h for h in r.message(mid)["hops"] if h["event"] == "DELIVER")
    return datetime.fromisoformat(hop["time"].replace("Z", "+00:00"))


def _start(r: Run) -> datetime:
    return datetime.fromisoformat(r.summary["start"].replace("Z", "+00:00"))


def test_a_fixed_record_reaches_the_edge_when_its_cached_copy_expires(write_scenario, tmp_path: Path):
    r = run_text(write_scenario, tmp_path, BROKEN, "ttl", duration="03:00:00")
    start = _start(r)
    expiry = start + timedelta(minutes=1, seconds=3600)  # cached at the first attempt (+1 min)
    attempts = _edge_attempts(r)
    stale = [t for t, ep in attempts if ep == "203.0.113.99:25"]
    assert any(t > start + timedelta(minutes=5) for t in stale)  # still the old address after the fix
    assert all(t < expiry for t in stale)
    assert [ep for t, ep in attempts if t >= expiry] and \
        all(ep == "203.0.113.25:25" for t, ep in attempts if t >= expiry)
    assert r.message("out")["fate"] == "delivered" and _delivered_at(r, "out") >= expiry


@pytest.mark.parametrize("steps", [
    [("+00:30:00", "Restart-Service")],
    [("+00:29:00", "Stop-Service"), ("+00:30:00", "Start-Service")],
])
def test_restarting_the_edge_transport_forgets_the_cached_record(write_scenario, tmp_path: Path, steps):
    body = BROKEN + "".join(f"""
[[change]]
at = "{at}"
cmdlet = "{cmd}"
Name = "MSExchangeTransport"
Server = "CMEDGE01"
""" for at, cmd in steps)
    r = run_text(write_scenario, tmp_path, body, "restart", duration="03:00:00")
    start = _start(r)
    restarted = start + timedelta(minutes=30)
    attempts = _edge_attempts(r)
    assert all(ep == "203.0.113.99:25" for t, ep in attempts if t < restarted)
    assert all(ep == "203.0.113.25:25" for t, ep in attempts if t >= restarted)
    assert r.message("out")["fate"] == "delivered"
    assert restarted <= _delivered_at(r, "out") < start + timedelta(minutes=61)


def test_restarting_another_service_keeps_the_transport_cache(write_scenario, tmp_path: Path):
    body = BROKEN + """
[[change]]
at = "+00:30:00"
cmdlet = "Restart-Service"
Name = "ADAM_MSExchange"
Server = "CMEDGE01"
"""
    r = run_text(write_scenario, tmp_path, body, "other", duration="03:00:00")
    assert _delivered_at(r, "out") >= _start(r) + timedelta(minutes=61)
