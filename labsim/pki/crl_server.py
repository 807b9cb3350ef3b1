"""The lab's CRL distribution point over real HTTP, and the fetcher that talks to it.

`crl.labsim-pki.net` is a real aiohttp server on a loopback address, serving each CA's CRL as
published at the lab's *virtual* time. Revocation faults are modes of that server, not flags:
"down" is simply nothing listening (the client gets ECONNREFUSED at once, like a host that
refuses), "hang" accepts the TCP connection and never answers (the client times out, like a
black-holed server). Exchange then reports RevocationOffline because the fetch really failed.
"stale" serves a CRL whose NextUpdate has passed (a CA that stopped publishing).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

import aiohttp
from aiohttp import web

from ..net.vnet import guard_real
from .authority import LabPki
from .errors import CrlUnavailable, PkiError

__all__ = ["CrlServer", "CrlMode", "http_get"]

CrlMode = Literal["up", "down", "hang", "stale"]
_MODES = ("up", "down", "hang", "stale")
_PATH = re.compile(r"^/(?P<ca>[A-Za-z0-9._-]+)\.crl$")


class CrlServer:
    """Serves `GET /<ca>.crl` (application/pkix-crl) from a LabPki at `now()`; mode up/down/hang."""

    def __init__(self, pki: LabPki, now: Callable[[], datetime], *, mode: CrlMode = "up",
                 host: str | None = None) -> None:
        if mode not in _MODES:
            raise ValueError(f"CRL server mode must be one of {_MODES}, not {mode!r}")
        self.pki = pki
        self.now = now
        self.host = host  # a CA's own CDP (CaSpec.cdp) serves only its CAs; None = the shared CDP
        self.mode: CrlMode = mode
        self.real_ip: str | None = None
        self.real_port: int | None = None
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._hang_server: asyncio.AbstractServer | None = None
        self._hung: set[asyncio.StreamWriter] = set()
        self._release = asyncio.Event()

    @property
    def running(self) -> bool:
        return self.real_ip is not None

    async def start(self, real_ip: str, real_port: int) -> int:
        """Bind (through the network guard) and serve in the current mode; returns the real port."""
        guard_real(real_ip)
        if self.running:
            raise PkiError("CRL server already started")
        self.real_ip, self.real_port = real_ip, real_port
        await self._open()
        return self.real_port

    async def stop(self) -> None:
        await self._close()
        self.real_ip = None

    async def set_mode(self, mode: CrlMode) -> None:
        """Switch behaviour; the listening port (once chosen) stays the same."""
        if mode not in _MODES:
            raise ValueError(f"CRL server mode must be one of {_MODES}, not {mode!r}")
        if mode == self.mode:
            return
        if self.running:
            await self._close()
        self.mode = mode
        if self.running:
            await self._open()

    # -- listeners ---------------------------------------------------------------------------

    async def _open(self) -> None:
        assert self.real_ip is not None and self.real_port is not None
        if self.mode in ("up", "stale"):
            app = web.Application()
            app.router.add_get("/{name}", self._handle)
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, self.real_ip, self.real_port, reuse_address=True)
            await site.start()
            self._runner = runner
            self.real_port = runner.addresses[0][1]
        elif self.mode == "hang":
            self._release = asyncio.Event()
            self._hang_server = await asyncio.start_server(
                self._hang, host=self.real_ip, port=self.real_port, reuse_address=True)
            self.real_port = self._hang_server.sockets[0].getsockname()[1]
        # "down": nothing listens, so connections are refused by the kernel.

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._hang_server is not None:
            self._hang_server.close()
            self._release.set()
            for writer in list(self._hung):
                writer.close()
            await self._hang_server.wait_closed()
            self._hang_server = None

    async def _hang(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._hung.add(writer)
        try:
            await self._release.wait()
        finally:
            self._hung.discard(writer)
            writer.close()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        match = _PATH.match(request.path)
        if match is None:
            return web.Response(status=404, text="not found\n")
        ca = match["ca"]
        served = {c.name for c in self.pki.lab.certificate_authorities
                  if self.host is None or (c.cdp or "").lower() == self.host.lower()}
        if ca not in served:
            return web.Response(status=404, text="not found\n")
        when = self.now()
        if self.mode == "stale":
            # The CA stopped publishing: the last CRL on the server expired a day ago.
            when -= self.pki.crl_validity + timedelta(days=1)
        return web.Response(body=self.pki.crl_der(ca, when), content_type="application/pkix-crl")


async def http_get(real_ip: str, real_port: int, host: str, path: str, timeout: float) -> bytes:
    """GET `path` from a lab HTTP server at a real loopback address, with `Host: <host>`.

    Raises CrlUnavailable with a short reason ("connection refused", "timed out", "HTTP 404").
    """
    guard_real(real_ip)
    url = f"http://{real_ip}:{real_port}{path}"
    shown = f"http://{host}{path}"
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False,
            connector=aiohttp.TCPConnector(force_close=True, use_dns_cache=False),
        ) as session:
            async with session.get(url, headers={"Host": host}, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise CrlUnavailable(shown, f"HTTP {resp.status}")
                return await resp.read()
    except CrlUnavailable:
        raise
    except asyncio.TimeoutError:
        raise CrlUnavailable(shown, "timed out") from None
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        raise CrlUnavailable(shown, "connection refused" if refused else f"cannot connect ({exc.os_error})") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise CrlUnavailable(shown, f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
