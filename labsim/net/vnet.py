"""The virtual network: virtual addresses in logs and rules, real 127.x.y.z sockets underneath.

Theory of operation
-------------------
Every host of the lab has one or more *virtual* IPv4 addresses (40.93.131.26, 192.168.1.13, ...).
Those are what Exchange's rules see (RemoteIPRanges, NAT, DNS answers) and what the logs print.
The `AddressBook` gives each virtual address its own *real* loopback address in one /16 of
127.0.0.0/8, and maps privileged virtual ports (25, 587, 717, 475, 53, 80) to unprivileged real
ones, so labsim runs as an ordinary user.

`guard_real()` is the one place that decides whether a socket address may be used: every bind,
connect and datagram of the lab passes through it, and anything outside 127.0.0.0/8 (or a
virtual address mistakenly used as a real one) raises `NetworkGuardError`.

A client announces each connection in the `ConnectionRegistry` right after its socket connects
and before it reads a byte; the server claims the entry by the peer's real address when the
session starts. That hands the server the client's virtual endpoint (ports are virtual too, drawn
from seeded generators, so logs do not depend on the kernel's ephemeral ports) and the causal
context of the session.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import tempfile
from dataclasses import dataclass, field
from typing import Any, Awaitable, Iterable, TypeVar

from ..errors import NetworkGuardError

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
DEFAULT_BLOCK = 77
DEFAULT_PORT_OFFSET = 10000
T = TypeVar("T")


class BlockClaim:
    """This process's hold on a loopback block (127.<block>.x.y) while a lab uses it: an flock on a
    per-user file, so two labs on one machine never share a block. Binding alone only guards the
    start: a lab that rebinds a service mid-run (Stop-/Start-Service) would find its ports taken
    by another lab that started on the same block meanwhile. `fd` None: no lock could be kept
    (no fcntl, no writable temporary folder), and binding decides as before."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (labsim's own, reused)
            self.fd = None


def claim_block(block: int) -> BlockClaim | None:
    """Claim `block` for this lab; None when another lab (any process of this user) holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system
        return BlockClaim(None)
    folder = os.path.join(tempfile.gettempdir(), f"labsim-blocks-{os.getuid()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(folder, f"{block}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return BlockClaim(None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return BlockClaim(fd)


_ALLOWED: set[str] = set()  # addresses guard_real let through (a pure check: the same answer again)


def guard_real(ip: str) -> str:
    """Allow only real loopback addresses; the single enforcement point for the whole lab."""
    if type(ip) is str and ip in _ALLOWED:  # every connect checks two addresses of the lab's few
        return ip
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise NetworkGuardError(f"{ip!r} is not an IP address; the lab only uses 127.0.0.0/8") from None
    if addr.version != 4 or addr not in LOOPBACK:
        raise NetworkGuardError(f"refusing to use {ip}: labsim never leaves 127.0.0.0/8")
    if type(ip) is str and len(_ALLOWED) < 65536:
        _ALLOWED.add(ip)
    return ip


class AddressBook:
    """Virtual IPv4 <-> real loopback address, and virtual port -> real port."""

    def __init__(self, virtual_ips: Iterable[str], *, block: int = DEFAULT_BLOCK,
                 port_offset: int = DEFAULT_PORT_OFFSET) -> None:
        if not 1 <= block <= 254:
            raise ValueError("the loopback block must be 1..254 (127.<block>.x.y)")
        self.block = block
        self.port_offset = port_offset
        self._to_real: dict[str, str] = {}
        self._to_virtual: dict[str, str] = {}
        for i, vip in enumerate(sorted(set(virtual_ips), key=lambda s: ipaddress.IPv4Address(s))):
            if ipaddress.IPv4Address(vip) in LOOPBACK:
                raise NetworkGuardError(f"virtual address {vip} lies in 127.0.0.0/8; pick a non-loopback one")
            real = f"127.{block}.{i // 250}.{i % 250 + 2}"
            self._to_real[vip] = real
            self._to_virtual[real] = vip

    def real_ip(self, virtual_ip: str) -> str:
        try:
            return self._to_real[virtual_ip]
        except KeyError:
            raise NetworkGuardError(f"{virtual_ip} is not an address of this lab") from None

    def virtual_ip(self, real_ip: str) -> str | None:
        return self._to_virtual.get(real_ip)

    def knows(self, virtual_ip: str) -> bool:
        return virtual_ip in self._to_real

    def real_port(self, virtual_port: int) -> int:
        return virtual_port + self.port_offset if virtual_port < 1024 else virtual_port

    def items(self) -> list[tuple[str, str]]:
        return sorted(self._to_real.items(), key=lambda kv: ipaddress.IPv4Address(kv[0]))


@dataclass
class ConnectionInfo:
    """What a client tells the server about a connection it opened (never sent on the wire)."""

    src_virtual: tuple[str, int]
    dst_virtual: tuple[str, int]
    context: dict[str, Any] = field(default_factory=dict)


class ConnectionRegistry:
    """Client announces, server claims: the out-of-band half of the virtual network."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], ConnectionInfo] = {}
        self._waiters: dict[tuple[str, int], asyncio.Future[ConnectionInfo]] = {}

    def announce(self, real_src: tuple[str, int], info: ConnectionInfo) -> None:
        waiter = self._waiters.pop(real_src, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(info)
        else:
            self._entries[real_src] = info

    async def claim(self, real_peer: tuple[str, int], timeout: float) -> ConnectionInfo | None:
        """The server's side: the announced info for this peer, or None for a stranger (swaks)."""
        info = self._entries.pop(real_peer, None)
        if info is not None:
            return info
        fut: asyncio.Future[ConnectionInfo] = asyncio.get_running_loop().create_future()
        self._waiters[real_peer] = fut
        try:
            async with asyncio.timeout(timeout):
                info = await fut
            # `asyncio.wait_for(fut, timeout)` as it was, without its waiter future: the session
            # goes on one loop turn after the announcement, as it did (wait_for_turns).
            await asyncio.sleep(0)
            return info
        except asyncio.TimeoutError:
            return None
        finally:
            self._waiters.pop(real_peer, None)


async def wait_for_turns(awaitable: Awaitable[T], timeout: float) -> T:
    """`asyncio.wait_for(awaitable, timeout)` for a coroutine, without its task and waiter future.

    wait_for runs a coroutine as a task of its own: the task starts one loop turn later, and its
    caller goes on two turns after it finished (the task's done callback releases a waiter future,
    whose callback wakes the caller). Which session runs before which, and so the lab's virtual
    timestamps and ids, depends on those turns; this keeps them, one `sleep(0)` each, and checks
    the deadline with `asyncio.timeout` in the caller's own task. On a timeout it raises
    `TimeoutError` as wait_for does (the turns of that path are not kept: nothing deterministic
    follows a wall-clock timeout). A failure (a refused connection) reaches the caller two turns
    after it happened, as through wait_for's task."""
    await asyncio.sleep(0)
    try:
        async with asyncio.timeout(timeout):
            result = await awaitable
    except Exception:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        raise
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return result


async def wait_set_turns(event: asyncio.Event, timeout: float) -> None:
    """`wait_for_turns(event.wait(), timeout)`; an event already set when the wait would look at it
    needs no deadline (Event.wait returns at once), so none is armed."""
    await asyncio.sleep(0)
    if not event.is_set():
        async with asyncio.timeout(timeout):
            await event.wait()
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def open_socket(real_dst: tuple[str, int], real_src_ip: str, timeout: float) -> socket.socket:
    """Connect a TCP socket from `real_src_ip` to `real_dst`, both checked by the guard."""
    guard_real(real_dst[0])
    guard_real(real_src_ip)
    loop = asyncio.get_running_loop()
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on a transport's socket only when its proto says
    # TCP, and with Nagle on a client's two small writes in a row (a resumed TLS handshake's Finished,
    # then EHLO) wait for the peer's delayed ACK (~40 ms of wall time each).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((real_src_ip, 0))
        await wait_for_turns(loop.sock_connect(sock, real_dst), timeout)
        return sock
    except BaseException:
        sock.close()
        raise


async def start_tcp_server(handler: Any, real_ip: str, real_port: int, *, backlog: int = 100) -> asyncio.Server:
    """asyncio.start_server, guarded; `handler(reader, writer)` as for start_server."""
    guard_real(real_ip)
    return await asyncio.start_server(handler, host=real_ip, port=real_port, reuse_address=True, backlog=backlog)


async def start_udp_endpoint(factory: Any, real_ip: str, real_port: int) -> tuple[Any, Any]:
    guard_real(real_ip)
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(factory, local_addr=(real_ip, real_port))
