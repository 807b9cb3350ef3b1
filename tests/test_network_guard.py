"""No socket of the lab ever leaves 127.0.0.0/8, and no virtual address is ever dialled or bound.

The run test wraps the socket methods that take an address (connect, connect_ex, bind, sendto) on
`socket.socket` - asyncio's `sock_connect`, `start_server`, `create_connection` and datagram
endpoints all go through them - and records every address while hybrid-baseline runs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim.engine.driver import run_loaded
from labsim.errors import NetworkGuardError
from labsim.net.vnet import (
    AddressBook,
    guard_real,
    open_socket,
    start_tcp_server,
    start_udp_endpoint,
)
from labsim.rules.network import all_virtual_ips
from labsim.scenario.loader import load_scenario
from labsim.topology.defaults import default_lab

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("connect", "connect_ex", "bind"):
            original = getattr(socket.socket, name)
            monkeypatch.setattr(socket.socket, name, self._wrap(name, original, lambda args: args[0]))
        original_sendto = socket.socket.sendto
        monkeypatch.setattr(socket.socket, "sendto", self._wrap("sendto", original_sendto, lambda args: args[-1]))

    def _wrap(self, name, original, address_of):
        def wrapper(sock, *args):
            self.calls.append((name, address_of(args)))
            return original(sock, *args)
        return wrapper

    def inet(self) -> list[tuple[str, str, int]]:
        """(call, host, port) of every IP-family call (AF_UNIX paths are not network addresses)."""
        return [(name, addr[0], addr[1]) for name, addr in self.calls if isinstance(addr, tuple)]


@pytest.mark.integration
def test_hybrid_baseline_uses_only_real_loopback_addresses(monkeypatch, tmp_path):
    loaded = load_scenario("hybrid-baseline")
    virtual = set(all_virtual_ips(loaded.lab))
    assert {"192.168.1.13", "40.93.131.26", "52.101.194.15", "8.8.8.8"} <= virtual
    rec = Recorder()
    rec.install(monkeypatch)
    result = asyncio.run(run_loaded(loaded, out=tmp_path / "out"))
    monkeypatch.undo()
    assert result.ok
    calls = rec.inet()
    kinds = {name for name, _, _ in calls}
    assert {"bind", "connect"} <= kinds and len(calls) > 20  # the recorder did see the lab's traffic
    for name, host, port in calls:
        addr = ipaddress.ip_address(host)  # a host name here would be a DNS lookup outside the lab
        assert addr.version == 4 and addr in LOOPBACK, (name, host, port)
        assert host not in virtual, (name, host, port)


# --- the guard itself ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ip", ["127.0.0.1", "127.77.0.2", "127.255.255.254"])
def test_guard_allows_loopback(ip):
    assert guard_real(ip) == ip


@pytest.mark.parametrize("ip", ["192.168.1.13", "40.93.131.26", "8.8.8.8", "0.0.0.0", "128.0.0.1", "::1",
                                "::ffff:127.0.0.1", "localhost", "", "127.0.0.1:25"])
def test_guard_refuses_everything_else(ip):
    with pytest.raises(NetworkGuardError):
        guard_real(ip)


@given(st.integers(0, 2**32 - 1))
def test_guard_accepts_exactly_127_slash_8(n):
    ip = str(ipaddress.IPv4Address(n))
    if ipaddress.IPv4Address(n) in LOOPBACK:
        assert guard_real(ip) == ip
    else:
        with pytest.raises(NetworkGuardError):
            guard_real(ip)


def test_address_book_maps_every_virtual_address_to_its_own_loopback_address():
    lab = default_lab()
    book = AddressBook(all_virtual_ips(lab), block=77)
    reals = {vip: book.real_ip(vip) for vip in all_virtual_ips(lab)}
    assert len(set(reals.values())) == len(reals)
    for vip, real in reals.items():
        assert ipaddress.ip_address(real) in ipaddress.ip_network("127.77.0.0/16")
        assert book.virtual_ip(real) == vip and book.knows(vip)
    assert book.virtual_ip("127.77.200.200") is None
    # The mapping depends on the set of addresses only, not on their order.
    assert AddressBook(reversed(all_virtual_ips(lab)), block=77).items() == book.items()


def test_address_book_ports():
    book = AddressBook(["192.168.1.13"], port_offset=10000)
    assert [book.real_port(p) for p in (25, 53, 80, 465, 587, 717, 2525)] == \
        [10025, 10053, 10080, 10465, 10587, 10717, 2525]


def test_virtual_loopback_address_is_refused():
    with pytest.raises(NetworkGuardError, match="127.0.0.5"):
        AddressBook(["192.168.1.13", "127.0.0.5"])


def test_unknown_virtual_address_is_refused():
    book = AddressBook(["192.168.1.13"])
    with pytest.raises(NetworkGuardError, match="198.51.100.1 is not an address of this lab"):
        book.real_ip("198.51.100.1")
    assert not book.knows("198.51.100.1")


@pytest.mark.parametrize("block", [0, 255])
def test_block_must_be_inside_127(block):
    with pytest.raises(ValueError):
        AddressBook(["192.168.1.13"], block=block)


async def test_guarded_helpers_refuse_before_touching_a_socket(monkeypatch):
    rec = Recorder()
    rec.install(monkeypatch)
    with pytest.raises(NetworkGuardError):
        await open_socket(("52.101.194.15", 25), "127.0.0.1", 1.0)
    with pytest.raises(NetworkGuardError):
        await open_socket(("127.0.0.1", 25), "192.168.1.13", 1.0)
    with pytest.raises(NetworkGuardError):
        await start_tcp_server(lambda r, w: None, "0.0.0.0", 10025)
    with pytest.raises(NetworkGuardError):
        await start_udp_endpoint(asyncio.DatagramProtocol, "192.168.1.11", 10053)
    assert rec.inet() == []
