"""asyncio stream helpers both SMTP ends use."""

from __future__ import annotations

import asyncio
import ssl


async def start_tls(writer: asyncio.StreamWriter, ctx: ssl.SSLContext, *, server_hostname: str | None = None) -> None:
    """`StreamWriter.start_tls`, with a CPython 3.11 race closed.

    When the peer hangs up between the end of the handshake and the return of `loop.start_tls`,
    3.11 hands back no transport (`SSLProtocol.connection_lost` clears `_app_transport` first), and
    the writer is left with None as its transport: every later write, close or garbage collection
    of it then fails with an AttributeError. Here the writer keeps its old transport, closed by then,
    and the caller gets the ConnectionResetError it handles for any peer that goes away.
    """
    plain = writer.transport
    await writer.start_tls(ctx, server_hostname=server_hostname)
    if writer.transport is None:
        writer._transport = plain
        raise ConnectionResetError("the peer closed the connection right after the TLS handshake")
