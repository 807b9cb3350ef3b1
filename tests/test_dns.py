"""Lab DNS over real UDP on 127.199.0.x: LabDnsServer (authoritative, forwarding, faults) and LabResolver."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from conftest import free_udp_port
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.errors import NetworkGuardError, TopologyError
from labsim.net.dns_server import LabDnsServer
from labsim.net.resolver import (
    EXCHANGE_DNS_ERRORS,
    VIRTUAL_TIMEOUTS,
    DnsNameError,
    DnsNoData,
    DnsServerFailure,
    DnsTimeout,
    LabResolver,
    normalize_name,
    sort_addresses,
    sort_mx,
)
from labsim.net.vnet import AddressBook
from labsim.topology.defaults import default_lab
from labsim.topology.model import DnsRecord, DnsServer, DnsZone

BLOCK = 199
DC01, PUBLIC, CMHYBD01 = "192.168.1.11", "8.8.8.8", "192.168.1.13"
CORP = "10.20.0.53"      # an internal-only server (corp.local, no forwarders)
SPARE = "10.20.0.54"     # a server the fault tests break
SPARE2 = "10.20.0.55"
LAB_IPS = [DC01, PUBLIC, CMHYBD01, CORP, SPARE, SPARE2]
FAST = 0.25  # real seconds per attempt in tests


@pytest.fixture
def book() -> AddressBook:
    probe = AddressBook(LAB_IPS, block=BLOCK)
    port = free_udp_port([real for _, real in probe.items()])
    return AddressBook(LAB_IPS, block=BLOCK, port_offset=port - 53)


def _corp_model() -> DnsServer:
    return DnsServer(name="CORP-DNS", ip=CORP, site="onprem", zones=[DnsZone(name="corp.local", records=[
        DnsRecord(name="host.corp.local", type="A", value="10.20.0.10"),
        DnsRecord(name="alias.corp.local", type="CNAME", value="mx.fabrikam.com"),
    ])])


def _spare_model(ip: str = SPARE, **kw) -> DnsServer:
    zones = [DnsZone(name="example.test", records=[
        DnsRecord(name="example.test", type="MX", value="mx-b.example.test", preference=20),
        DnsRecord(name="example.test", type="MX", value="MX-C.example.test.", preference=10),
        DnsRecord(name="example.test", type="MX", value="mx-a.example.test", preference=10),
        DnsRecord(name="example.test", type="MX", value="ghost.example.test", preference=5),
        DnsRecord(name="mx-a.example.test", type="A", value="192.0.2.9"),
        DnsRecord(name="mx-a.example.test", type="A", value="192.0.2.10"),
        DnsRecord(name="mx-a.example.test", type="A", value="192.0.2.1"),
        DnsRecord(name="mx-b.example.test", type="A", value="192.0.2.20"),
        DnsRecord(name="mx-c.example.test", type="A", value="192.0.2.30"),
        DnsRecord(name="www", type="CNAME", value="web.example.test"),
        DnsRecord(name="web.example.test", type="A", value="192.0.2.80"),
        DnsRecord(name="web.example.test", type="A", value="192.0.2.8"),
        DnsRecord(name="deep.ent.example.test", type="A", value="192.0.2.44"),
        DnsRecord(name="dangling.example.test", type="CNAME", value="missing.example.test"),
        DnsRecord(name="@", type="TXT", value="v=spf1 -all"),
    ]), DnsZone(name="implicit.test", records=[
        DnsRecord(name="implicit.test", type="A", value="192.0.2.77"),
    ]), DnsZone(name="sub.example.test", records=[
        DnsRecord(name="host.sub.example.test", type="A", value="192.0.2.55"),
    ])]
    return DnsServer(name="SPARE-DNS", ip=ip, site="internet", zones=zones, **kw)


@pytest.fixture
async def lab(book):
    models = {s.ip: s for s in default_lab().dns_servers}
    models[CORP] = _corp_model()
    models[SPARE] = _spare_model()
    models[SPARE2] = _spare_model(SPARE2)
    servers = {ip: LabDnsServer(m, book) for ip, m in models.items()}
    for s in servers.values():
        await s.start()
    try:
        yield servers
    finally:
        for s in servers.values():
            await s.stop()


def resolver(book, *servers, **kw) -> LabResolver:
    kw.setdefault("timeout", FAST)
    return LabResolver(list(servers), book, **kw)


async def raw(book, server_ip: str, name: str, qtype: str) -> dns.message.Message:
    q = dns.message.make_query(name, qtype)
    return await dns.asyncquery.udp(q, book.real_ip(server_ip), timeout=1, port=book.real_port(53),
                                    source=book.real_ip(CMHYBD01))


# --------------------------------------------------------------------------- answers


async def test_a_mx_txt_from_the_public_server(lab, book):
    r = resolver(book, PUBLIC)
    assert await r.resolve_a("MAIL.cloudmonkeys.xyz.") == ["27.7.57.241"]
    assert await r.resolve_mx("cloudmonkeys.xyz") == [(10, "smtp.cloudmonkeys.xyz")]
    assert (await r.resolve_txt("cloudmonkeys.xyz"))[0].startswith("v=spf1 ip4:27.7.57.241")
    assert lab[PUBLIC].listening and lab[PUBLIC].address[0].startswith("127.199.")


async def test_split_brain(lab, book):
    assert await resolver(book, DC01).resolve_a("mail.cloudmonkeys.xyz") == ["192.168.1.13"]
    assert await resolver(book, PUBLIC).resolve_a("mail.cloudmonkeys.xyz") == ["27.7.57.241"]
    # The internal MX is the internal host; the Internet's is the Edge's public name.
    assert await resolver(book, DC01).resolve_host("cloudmonkeys.xyz") == [("mail.cloudmonkeys.xyz", ["192.168.1.13"])]
    assert await resolver(book, PUBLIC).resolve_host("cloudmonkeys.xyz") == [("smtp.cloudmonkeys.xyz", ["27.7.57.242"])]


async def test_authoritative_answer_is_sorted_with_aa(lab, book):
    m = await raw(book, SPARE, "Mx-A.Example.Test", "A")
    assert m.flags & dns.flags.AA and m.rcode() == dns.rcode.NOERROR
    assert [r.address for r in m.answer[0]] == ["192.0.2.1", "192.0.2.9", "192.0.2.10"]
    mx = await raw(book, SPARE, "example.test", "MX")
    assert [(r.preference, r.exchange.to_text()) for r in mx.answer[0]] == [
        (5, "ghost.example.test."), (10, "mx-a.example.test."), (10, "mx-c.example.test."),
        (20, "mx-b.example.test.")]


async def test_cname_followed_inside_the_servers_data(lab, book):
    m = await raw(book, SPARE, "www.example.test", "A")
    assert [dns.rdatatype.to_text(rs.rdtype) for rs in m.answer] == ["CNAME", "A"]
    assert [r.address for r in m.answer[1]] == ["192.0.2.8", "192.0.2.80"]
    assert await resolver(book, SPARE).resolve_a("www.example.test") == ["192.0.2.8", "192.0.2.80"]
    assert await resolver(book, SPARE).lookup("www.example.test", "CNAME") is not None
    # A CNAME to a name the server does not hold: RFC 6604 NXDOMAIN for the end of the chain.
    dangling = await raw(book, SPARE, "dangling.example.test", "A")
    assert dangling.rcode() == dns.rcode.NXDOMAIN and dangling.answer[0].rdtype == dns.rdatatype.CNAME


async def test_cname_leaving_the_zone_is_chased_by_the_resolver(lab, book):
    # CORP-DNS only returns the CNAME; the resolver asks again for mx.fabrikam.com, CORP refuses
    # (no forwarders), PUBLIC answers.
    m = await raw(book, CORP, "alias.corp.local", "A")
    assert len(m.answer) == 1 and m.answer[0].rdtype == dns.rdatatype.CNAME
    ans = await resolver(book, CORP, PUBLIC).lookup("alias.corp.local", "A")
    assert ans.records == ["203.0.113.25"] and ans.server == PUBLIC
    assert [a.outcome for a in ans.attempts] == ["NOERROR", "REFUSED", "NOERROR"]


async def test_nxdomain_vs_nodata(lab, book):
    m = await raw(book, DC01, "nope.cloudmonkeys.xyz", "A")
    assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.AA
    soa = m.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "cloudmonkeys.xyz."
    assert next(iter(soa)).mname.to_text() == "dc01.cloudmonkeys.xyz." and next(iter(soa)).serial == 1
    with pytest.raises(DnsNameError) as e:
        await resolver(book, DC01).resolve_a("nope.cloudmonkeys.xyz")
    assert e.value.code == "NonExistentDomain" and not e.value.transient
    assert "SMTPSEND.DNS.NonExistentDomain" in e.value.smtp
    assert (e.value.qname, e.value.qtype) == ("nope.cloudmonkeys.xyz", "A")

    nodata = await raw(book, DC01, "mail.cloudmonkeys.xyz", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    with pytest.raises(DnsNoData):
        await resolver(book, DC01).resolve_mx("mail.cloudmonkeys.xyz")
    # An empty non-terminal exists (RFC 8020): NODATA, not NXDOMAIN.
    with pytest.raises(DnsNoData):
        await resolver(book, SPARE).resolve_a("ent.example.test")
    with pytest.raises(DnsNameError):
        await resolver(book, SPARE).resolve_a("x.deep.ent.example.test")


async def test_most_specific_zone_wins(lab, book):
    m = await raw(book, SPARE, "nothing.sub.example.test", "A")
    assert m.rcode() == dns.rcode.NXDOMAIN and m.authority[0].name.to_text() == "sub.example.test."
    assert await resolver(book, SPARE).resolve_a("host.sub.example.test") == ["192.0.2.55"]


async def test_internal_server_forwards_foreign_names(lab, book):
    r = resolver(book, DC01, source_ip=book.real_ip(CMHYBD01))
    eop = "cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com"
    assert await r.resolve_host("cloudfield.mail.onmicrosoft.com") == [(eop, ["52.101.194.15"])]
    with pytest.raises(DnsNameError):  # the public server's NXDOMAIN comes back through DC01
        await r.resolve_a("nope.fabrikam.com")
    assert ("cloudfield.mail.onmicrosoft.com", "MX", "NOERROR", CMHYBD01) in lab[DC01].queries
    # The public server saw the DC (its own address) as the client, not the Exchange server.
    assert ("cloudfield.mail.onmicrosoft.com", "MX", "NOERROR", DC01) in lab[PUBLIC].queries
    m = await raw(book, DC01, "mx.fabrikam.com", "A")
    assert m.flags & dns.flags.RA and not m.flags & dns.flags.AA


async def test_forwarder_failover_and_servfail(lab, book):
    dc = lab[DC01]
    dc.update(dc.model.model_copy(update={"forwarders": [SPARE, PUBLIC]}))
    lab[SPARE].set_mode("drop")
    assert await resolver(book, DC01, timeout=1).resolve_a("mx.fabrikam.com") == ["203.0.113.25"]
    lab[PUBLIC].set_mode("stopped")
    with pytest.raises(DnsServerFailure) as e:
        await resolver(book, DC01, timeout=1).resolve_a("mx.fabrikam.com")
    assert e.value.code == "ErrorRetry" and e.value.transient and "451 4.4.0" in e.value.smtp
    # Internal names still work: the DC is authoritative for them.
    assert await resolver(book, DC01).resolve_a("cmedge01.cloudmonkeys.xyz") == ["192.168.1.25"]


async def test_forwarding_loop_ends_in_servfail(lab, book):
    lab[SPARE].update(_spare_model(forwarders=[SPARE2]))
    lab[SPARE2].update(_spare_model(SPARE2, forwarders=[SPARE]))
    # The loop is cut by the servers (SERVFAIL), not by the resolver's patience: a timeout would
    # raise DnsTimeout, which is not a DnsServerFailure. (No wall-clock bound: CI may be busy.)
    with pytest.raises(DnsServerFailure):
        await resolver(book, SPARE, timeout=5).resolve_a("mx.fabrikam.com")
    # The loop unwinds: nothing is left in flight (polled; CI may be busy). On a loaded machine a
    # forward may wait up to FORWARD_ANSWER_TIMEOUT (10 s) before its SERVFAIL comes back, so the
    # window is three times that; a passing run leaves as soon as the tasks are gone.
    for _ in range(600):
        if not lab[SPARE]._tasks and not lab[SPARE2]._tasks:
            break
        await asyncio.sleep(0.05)
    assert not lab[SPARE]._tasks and not lab[SPARE2]._tasks


async def test_refused_without_forwarders_and_next_server(lab, book):
    m = await raw(book, CORP, "mx.fabrikam.com", "A")
    assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.RA
    ans = await resolver(book, PUBLIC, CORP).lookup("host.corp.local", "A")
    assert ans.records == ["10.20.0.10"] and ans.server == CORP and ans.elapsed_virtual == 0
    assert [a.outcome for a in ans.attempts] == ["REFUSED", "NOERROR"]
    with pytest.raises(DnsServerFailure) as e:
        await resolver(book, CORP, SPARE).resolve_a("mx.fabrikam.com")
    assert [a.outcome for a in e.value.attempts] == ["REFUSED", "REFUSED"]


async def test_nxdomain_stops_the_walk(lab, book):
    # Seed 001 Error 7: a public server listed before the DC answers NXDOMAIN for the internal
    # name (it holds the public cloudmonkeys.xyz zone), and the DC is never asked.
    with pytest.raises(DnsNameError) as e:
        await resolver(book, PUBLIC, DC01).resolve_a("cmhybd01.cloudmonkeys.xyz")
    assert [a.server for a in e.value.attempts] == [PUBLIC]


async def test_stopped_server_fails_fast_and_resolver_moves_on(lab, book):
    assert lab[SPARE].set_mode("stopped") is None
    assert not lab[SPARE].listening
    t0 = time.monotonic()
    with pytest.raises(DnsTimeout) as e:
        await resolver(book, SPARE, timeout=2).resolve_a("web.example.test")
    assert time.monotonic() - t0 < 1.0  # ICMP port unreachable on a connected socket, no 2 s wait
    assert e.value.code == "Timeout" and e.value.elapsed_virtual == VIRTUAL_TIMEOUTS[0]
    assert [a.outcome for a in e.value.attempts] == ["unreachable"]
    ans = await resolver(book, SPARE, SPARE2).lookup("web.example.test", "A")
    assert ans.server == SPARE2 and ans.elapsed_virtual == VIRTUAL_TIMEOUTS[0]
    await lab[SPARE].set_mode("running")
    assert await resolver(book, SPARE).resolve_a("web.example.test") == ["192.0.2.8", "192.0.2.80"]


async def test_dropping_servers_time_out_with_virtual_time(lab, book):
    lab[SPARE].set_mode("drop")
    lab[SPARE2].set_mode("drop")
    t0 = time.monotonic()
    with pytest.raises(DnsTimeout) as e:
        await resolver(book, SPARE, SPARE2, timeout=0.15).resolve_a("web.example.test")
    assert 0.3 <= time.monotonic() - t0 < 1.0
    assert e.value.elapsed_virtual == VIRTUAL_TIMEOUTS[0] + VIRTUAL_TIMEOUTS[1]
    assert ("web.example.test", "A", None, "127.0.0.1") in lab[SPARE].queries


async def test_servfail_mode(lab, book):
    lab[SPARE].set_mode("servfail")
    with pytest.raises(DnsServerFailure):
        await resolver(book, SPARE).resolve_a("web.example.test")
    assert lab[SPARE].queries[-1].rcode == "SERVFAIL"
    ans = await resolver(book, SPARE, SPARE2).lookup("web.example.test", "A")
    assert ans.server == SPARE2 and ans.elapsed_virtual == 0


async def test_attempts_repeat_the_server_list(lab, book):
    lab[SPARE].set_mode("stopped")
    with pytest.raises(DnsTimeout) as e:
        await resolver(book, SPARE, attempts=3).resolve_a("web.example.test")
    assert e.value.elapsed_virtual == sum(VIRTUAL_TIMEOUTS[:3])


async def test_update_changes_answers_at_run_time(lab, book):
    dc = lab[DC01]
    zone = dc.model.zones[0]
    new_zone = zone.model_copy(update={"records": [r for r in zone.records if r.name != "mail.cloudmonkeys.xyz"]
                                       + [DnsRecord(name="mail", type="A", value="192.168.1.14")]})
    dc.update(dc.model.model_copy(update={"zones": [new_zone]}))
    assert await resolver(book, DC01).resolve_a("mail.cloudmonkeys.xyz") == ["192.168.1.14"]
    m = await raw(book, DC01, "gone.cloudmonkeys.xyz", "A")
    assert next(iter(m.authority[0])).serial == 2
    with pytest.raises(TopologyError):
        dc.update(dc.model.model_copy(update={"ip": "192.168.1.99"}))


async def test_resolve_host_order_implicit_mx_and_failures(lab, book):
    r = resolver(book, SPARE)
    # ghost (pref 5) has no A record and is skipped; equal preferences sort by host.
    assert await r.resolve_host("example.test") == [
        ("mx-a.example.test", ["192.0.2.1", "192.0.2.9", "192.0.2.10"]),
        ("mx-c.example.test", ["192.0.2.30"]),
        ("mx-b.example.test", ["192.0.2.20"]),
    ]
    assert await r.resolve_host("Implicit.Test.") == [("implicit.test", ["192.0.2.77"])]
    with pytest.raises(DnsNameError):
        await r.resolve_host("nowhere.example.test")
    with pytest.raises(DnsNoData):
        await r.resolve_host("sub.example.test")  # zone apex: no MX, no A


async def test_resolve_host_prefers_a_transient_error(lab, book):
    srv = lab[SPARE]
    srv.update(DnsServer(name="SPARE-DNS", ip=SPARE, site="internet", zones=[DnsZone(name="t.test", records=[
        DnsRecord(name="t.test", type="MX", value="a.t.test", preference=10),
        DnsRecord(name="t.test", type="MX", value="b.elsewhere.test", preference=20),
    ])]))
    with pytest.raises(DnsServerFailure) as e:  # a.t.test NXDOMAIN, b.elsewhere.test REFUSED
        await resolver(book, SPARE).resolve_host("t.test")
    assert e.value.qname == "b.elsewhere.test"


async def test_every_socket_stays_in_loopback(lab, book, monkeypatch):
    used: list[tuple[str, object]] = []
    orig = {name: getattr(socket.socket, name) for name in ("bind", "connect", "sendto")}

    def spy(name):
        def wrapper(self, *args):
            addr = args[-1]
            if isinstance(addr, tuple):
                used.append((name, addr))
            return orig[name](self, *args)
        return wrapper

    for name in orig:
        monkeypatch.setattr(socket.socket, name, spy(name))
    src = book.real_ip(CMHYBD01)
    await resolver(book, DC01, source_ip=src).resolve_host("fabrikam.com")  # forwarded
    await resolver(book, CORP, PUBLIC, source_ip=src).resolve_a("alias.corp.local")
    lab[SPARE].set_mode("stopped")
    with contextlib.suppress(DnsTimeout):
        await resolver(book, SPARE, source_ip=src).resolve_a("x.example.test")
    await lab[SPARE].set_mode("running")
    assert used
    assert all(ipaddress.ip_address(a[0]) in ipaddress.ip_network("127.0.0.0/8") for _, a in used), used
    assert ("bind", (src, 0)) in used
    assert ("bind", (book.real_ip(DC01), 0)) in used  # the forwarder query leaves from the DC
    assert ("connect", (book.real_ip(PUBLIC), book.real_port(53))) in used


# --------------------------------------------------------------------------- guards and validation


def test_guard_rejects_non_loopback_source(book):
    with pytest.raises(NetworkGuardError):
        LabResolver([PUBLIC], book, source_ip="10.0.0.1")


async def test_unknown_nameserver_is_never_dialled(lab, book):
    with pytest.raises(DnsTimeout):
        await resolver(book, "203.0.113.200").resolve_a("mx.fabrikam.com")
    dc = lab[DC01]
    dc.update(dc.model.model_copy(update={"forwarders": ["203.0.113.200"]}))
    assert (await raw(book, DC01, "mx.fabrikam.com", "A")).rcode() == dns.rcode.SERVFAIL


async def test_garbage_datagram_gets_formerr_and_server_survives(lab, book):
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind((book.real_ip(CMHYBD01), 0))
    try:
        s.connect(lab[PUBLIC].address)
        await loop.sock_sendall(s, b"\x12\x34\x01\x00" + b"\xff" * 20)
        reply = await asyncio.wait_for(loop.sock_recv(s, 512), 1)
    finally:
        s.close()
    assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR
    assert await resolver(book, PUBLIC).resolve_a("mx.fabrikam.com") == ["203.0.113.25"]


def test_zone_validation(book):
    bad_cname = DnsServer(name="X", ip=SPARE, site="internet", zones=[DnsZone(name="x.test", records=[
        DnsRecord(name="a.x.test", type="CNAME", value="b.x.test"),
        DnsRecord(name="a.x.test", type="A", value="192.0.2.1")])])
    with pytest.raises(TopologyError, match="CNAME"):
        LabDnsServer(bad_cname, book)
    outside = DnsServer(name="X", ip=SPARE, site="internet", zones=[DnsZone(name="x.test", records=[
        DnsRecord(name="a.y.test", type="A", value="192.0.2.1")])])
    with pytest.raises(TopologyError, match="not inside zone"):
        LabDnsServer(outside, book)
    bad_a = DnsServer(name="X", ip=SPARE, site="internet", zones=[DnsZone(name="x.test", records=[
        DnsRecord(name="a.x.test", type="A", value="mail.x.test")])])
    with pytest.raises(TopologyError):
        LabDnsServer(bad_a, book)


def test_exchange_error_table_covers_every_error():
    assert set(EXCHANGE_DNS_ERRORS) == {"DnsNameError", "DnsNoData", "DnsServerFailure", "DnsTimeout"}
    assert DnsTimeout("a", "A").code == "Timeout" and DnsServerFailure("a", "A").code == "ErrorRetry"


# --------------------------------------------------------------------------- properties

_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_host = st.lists(_label, min_size=1, max_size=4).map(".".join)


@settings(max_examples=60, deadline=None)
@given(host=_host, dot=st.booleans())
def test_normalize_name(host, dot):
    n = normalize_name(host + ("." if dot else ""))
    assert n == host.lower() and normalize_name(n) == n


@settings(max_examples=60, deadline=None)
@given(mx=st.lists(st.tuples(st.integers(0, 65535), _host), max_size=8), seed=st.randoms())
def test_sort_mx_is_order_independent(mx, seed):
    shuffled = list(mx)
    seed.shuffle(shuffled)
    out = sort_mx(shuffled)
    assert out == sort_mx(mx) == sorted(set(out))
    assert all(h == h.lower() and not h.endswith(".") for _, h in out)


@settings(max_examples=60, deadline=None)
@given(addrs=st.lists(st.ip_addresses(v=4).map(str), max_size=10))
def test_sort_addresses_numeric(addrs):
    out = sort_addresses(addrs)
    assert [int(ipaddress.ip_address(a)) for a in out] == sorted({int(ipaddress.ip_address(a)) for a in addrs})
