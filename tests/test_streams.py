"""net.streams.start_tls: a peer that hangs up right after the TLS handshake (CPython 3.11 then
returns no transport from loop.start_tls) is a ConnectionResetError, and the writer stays usable
for close() and garbage collection."""

from __future__ import annotations

import asyncio
import gc
import ssl
import sys
from typing import Any

import pytest

from labsim.net.streams import start_tls


class _Plain(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _upgrade_the_peer_left_at_once(plain: _Plain) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    writer = asyncio.StreamWriter(plain, asyncio.StreamReaderProtocol(asyncio.StreamReader()), None, loop)

    async def lost_at_once(ctx: ssl.SSLContext, *, server_hostname: str | None = None) -> None:
        plain.closed = True
        writer._transport = None  # what StreamWriter.start_tls stores when loop.start_tls returned None

    writer.start_tls = lost_at_once  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        await start_tls(writer, ssl.create_default_context())
    return writer


async def test_a_handshake_the_peer_left_at_once_is_a_reset_and_the_writer_keeps_its_old_transport() -> None:
    plain = _Plain()
    writer = await _upgrade_the_peer_left_at_once(plain)
    assert writer.transport is plain
    writer.close()  # no AttributeError
    unraisable: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        writer = None  # type: ignore[assignment]  # StreamWriter.__del__ reads the transport: not None
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert not unraisable


async def test_a_handshake_that_holds_leaves_the_new_transport_in_place() -> None:
    loop = asyncio.get_running_loop()
    plain, tls = _Plain(), _Plain()
    writer = asyncio.StreamWriter(plain, asyncio.StreamReaderProtocol(asyncio.StreamReader()), None, loop)

    async def upgraded(ctx: ssl.SSLContext, *, server_hostname: str | None = None) -> None:
        writer._transport = tls

    writer.start_tls = upgraded  # type: ignore[method-assign]
    await start_tls(writer, ssl.create_default_context())
    assert writer.transport is tls
    tls.closed = True
