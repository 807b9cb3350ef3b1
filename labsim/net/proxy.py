"""Real TCP proxies on loopback: link toxics that need real bytes, and load balancers.

Theory of operation
-------------------
Most link rules are decisions (`rules.network.NetView.plan`): a refused or dropped connection
never sends a packet, latency and bandwidth only move the virtual clock. Two things need bytes to
really flow through a middle box:

* `ResetLink` - a mid-session reset (toxiproxy's `reset_peer`/`limit_data`). The upstream socket
  is opened first (so a refused server is refused to the caller, as without the proxy), then the
  client gets a socket to a one-shot listener and the proxy pumps. Client->server bytes are
  counted; the first chunk that would pass `reset_after` is not forwarded and both sides get an
  RST (SO_LINGER 0). The reset happens when the client sends, i.e. after the server has answered
  everything it received, so the rows both sides log do not depend on the event loop.
* `LoadBalancerProxy` - a VIP in front of Exchange servers (seed 003). It accepts on the VIP's
  (and NATed public addresses') real loopback address, claims the client's announcement, picks
  backends round robin (`rules.network.backend_order`, failing over on a refused connect) and
  connects from its own address, announcing itself as the peer: the backend's receive connector
  selection sees the VIP (or SNAT address), exactly the seed's fault.

Every socket goes through `net.vnet` (guard_real / open_socket / start_tcp_server).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from .vnet import ConnectionInfo, open_socket, start_tcp_server

__all__ = ["ResetLink", "LoadBalancerProxy", "hard_close"]

CHUNK = 65536
CLAIM_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0


def hard_close(writer: asyncio.StreamWriter | None) -> None:
    """Close with an RST (SO_LINGER on, timeout 0), the way a reset link or a crashed peer does."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: list[int] | None,
                on_exceeded: Any = None) -> None:
    """Copy until EOF; with a budget, the chunk that would exceed it triggers `on_exceeded`."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                if writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()
                return
            if budget is not None:
                if len(data) > budget[0]:
                    on_exceeded()
                    return
                budget[0] -= len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        on_exceeded() if on_exceeded is not None else hard_close(writer)


async def _splice(a_reader: asyncio.StreamReader, a_writer: asyncio.StreamWriter, b_reader: asyncio.StreamReader,
                  b_writer: asyncio.StreamWriter, *, reset_after: int | None = None) -> None:
    """Pump both ways (a = client side, b = server side); close both when both directions end."""
    budget = [reset_after] if reset_after is not None else None

    def reset_both() -> None:
        hard_close(a_writer)
        hard_close(b_writer)

    up = asyncio.ensure_future(_pipe(a_reader, b_writer, budget, reset_both))
    down = asyncio.ensure_future(_pipe(b_reader, a_writer, None, reset_both))
    try:
        await asyncio.gather(up, down)
    finally:
        for w in (a_writer, b_writer):
            if not w.is_closing():
                w.close()


class ResetLink:
    """One proxied client connection that resets both sides after `reset_after` client bytes."""

    def __init__(self, reset_after: int) -> None:
        self.reset_after = reset_after
        self.task: asyncio.Task[None] | None = None

    async def connect(self, real_dst: tuple[str, int], real_src_ip: str,
                      timeout: float = CONNECT_TIMEOUT) -> tuple[socket.socket, tuple[str, int]]:
        """(the client's socket, the upstream socket's local address = what the server sees as peer)."""
        upstream = await open_socket(real_dst, real_src_ip, timeout)  # refused/timeout propagate as-is
        up_local = upstream.getsockname()[:2]
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.get_running_loop().create_future()

        async def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not accepted.done():
                accepted.set_result((reader, writer))
            else:  # pragma: no cover - the listener is one-shot
                writer.close()

        listener = await start_tcp_server(on_accept, real_src_ip, 0)
        try:
            addr = listener.sockets[0].getsockname()[:2]
            client = await open_socket(addr, real_src_ip, timeout)
            c_reader, c_writer = await asyncio.wait_for(accepted, timeout)
        except BaseException:
            upstream.close()
            raise
        finally:
            listener.close()
        u_reader, u_writer = await asyncio.open_connection(sock=upstream)
        self.task = asyncio.ensure_future(_splice(c_reader, c_writer, u_reader, u_writer,
                                                  reset_after=self.reset_after))
        return client, up_local


class LoadBalancerProxy:
    """A load balancer VIP of the topology, served on loopback. `lab` is the LabRuntime (duck-typed:
    model, net, book, registry, source_port)."""

    def __init__(self, lab: Any, name: str) -> None:
        self.lab = lab
        self.name = name
        self.sessions = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, real_ip: str, real_port: int, virtual_port: int) -> asyncio.AbstractServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await self._handle(reader, writer, virtual_port)

        return await start_tcp_server(handle, real_ip, real_port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        from ..rules.network import backend_order

        lab = self.lab
        peer = writer.get_extra_info("peername")[:2]
        info = await lab.registry.claim(peer, CLAIM_TIMEOUT)
        lb = lab.net.load_balancer(self.name)
        if info is None or lb is None:
            hard_close(writer)
            return
        order = backend_order(lb, self.sessions)
        self.sessions += 1
        if lb.preserve_client_ip:
            src_vip, src_port = info.src_virtual
        else:
            src_vip, src_port = lb.snat_ip or lb.vip, lab.source_port(lb.name)
        for name in order:
            server = next((s for s in lab.model.organization.servers if s.name.lower() == name.lower()), None)
            if server is None:
                continue
            dst = (lab.book.real_ip(server.ip), lab.book.real_port(port))
            try:
                sock = await open_socket(dst, lab.book.real_ip(src_vip), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                continue  # backend down: the balancer tries the next one
            lab.registry.announce(sock.getsockname()[:2], ConnectionInfo(
                src_virtual=(src_vip, src_port), dst_virtual=(server.ip, port),
                context={**info.context, "load_balancer": lb.name}))
            u_reader, u_writer = await asyncio.open_connection(sock=sock)
            await _splice(reader, writer, u_reader, u_writer)
            return
        hard_close(writer)  # no backend: the client's connection is reset


async def bind_load_balancers(lab: Any) -> list[tuple[asyncio.AbstractServer, tuple[str, str, str, int, str]]]:
    """Listen on every load balancer's VIP and on the public addresses forwarded to it.

    Returns (server, listen-table row) pairs; the proxies (and their round-robin counters) live on
    as long as the lab, across rebinds."""
    proxies: dict[str, LoadBalancerProxy] = lab.lb_proxies  # owned by the runtime, kept across rebinds
    out = []
    for lb in lab.model.network.load_balancers:
        proxy = proxies.setdefault(lb.name.lower(), LoadBalancerProxy(lab, lb.name))
        publics = [r.public_ip for r in lab.model.network.nat if r.server.lower() == lb.name.lower()]
        for port in lb.ports:
            for vip in [lb.vip] + [p for p in publics]:
                real_ip, real_port = lab.book.real_ip(vip), lab.book.real_port(port)
                server = await proxy.listen(real_ip, real_port, port)
                out.append((server, (lb.name, f"{vip}:{port}", real_ip, real_port, "TCP load balancer VIP")))
    return out
