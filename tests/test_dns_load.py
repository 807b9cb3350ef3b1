"""A loaded machine never decides a DNS outcome: only a server the world keeps silent (drop mode)
times out; one that answers is waited for, however late its answer comes in real time.

Two users rely on it: a corpus is byte-identical for `--jobs 1` and `--jobs 2` even when the
machine is busy, and a trainer's run shows the same evidence on a slow laptop as on a fast one.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import free_udp_port

from labsim.net.dns_server import FORWARD_TIMEOUT, DnsMode, LabDnsServer
from labsim.net.resolver import DnsTimeout, LabResolver
from labsim.net.vnet import AddressBook
from labsim.topology.defaults import default_lab

BLOCK = 198
DC01, PUBLIC, CMHYBD01 = "192.168.1.11", "8.8.8.8", "192.168.1.13"
SHORT = 0.2   # the resolver's real wait for a silent server in these tests
LATE = 0.6    # a slow machine: every answer of the public server leaves this late (> SHORT, > FORWARD_TIMEOUT)


@pytest.fixture
def book() -> AddressBook:
    ips = [DC01, PUBLIC, CMHYBD01]
    probe = AddressBook(ips, block=BLOCK)
    port = free_udp_port([real for _, real in probe.items()])
    return AddressBook(ips, block=BLOCK, port_offset=port - 53)


@pytest.fixture
async def servers(book):
    models = {s.ip: s for s in default_lab().dns_servers if s.ip in (DC01, PUBLIC)}
    lab: dict[str, LabDnsServer] = {}

    def silent(vip: str) -> bool:
        return vip in lab and lab[vip].mode is DnsMode.DROP

    for ip, m in models.items():
        lab[ip] = LabDnsServer(m, book, silent=silent)
    slow = lab[PUBLIC]
    send = slow._send

    def late_send(*args):  # the answer is right, the machine is slow
        asyncio.get_running_loop().call_later(LATE, send, *args)

    slow._send = late_send  # type: ignore[method-assign]
    for s in lab.values():
        await s.start()
    try:
        yield lab, silent
    finally:
        for s in lab.values():
            await s.stop()


def _resolver(book, silent, *servers) -> LabResolver:
    return LabResolver(list(servers), book, timeout=SHORT, source_ip=book.real_ip(CMHYBD01), silent=silent)


async def test_a_late_answer_is_still_the_answer(servers, book):
    _, silent = servers
    assert LATE > SHORT and LATE > FORWARD_TIMEOUT
    assert await _resolver(book, silent, PUBLIC).resolve_a("mx.fabrikam.com") == ["203.0.113.25"]


async def test_a_forwarded_late_answer_is_still_the_answer(servers, book):
    _, silent = servers  # DC01 forwards foreign names to the public server, which answers late
    assert await _resolver(book, silent, DC01).resolve_a("mx.fabrikam.com") == ["203.0.113.25"]


async def test_only_a_server_in_drop_mode_times_out(servers, book):
    lab, silent = servers
    lab[PUBLIC].set_mode("drop")
    with pytest.raises(DnsTimeout):
        await _resolver(book, silent, PUBLIC).resolve_a("mx.fabrikam.com")
