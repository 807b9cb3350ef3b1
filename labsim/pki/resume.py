"""TLS session resumption the way Schannel does it (docs/performance.md, "TLS session resumption").

Schannel keeps a client-side cache (per credential and target) and a server-side cache; an entry
lives `ClientCacheTime` / `ServerCacheTime`, 10 hours by default. A sender that reconnects to a
receiver it completed a handshake with in the last ten hours offers the cached session, and the
receiver that still holds it resumes (an abbreviated handshake: no certificates, no key exchange).

The lab does the same with OpenSSL:
- a server context keeps sessions in its own session-id cache (`server_side_cache`: tickets off, so
  the cached session is the server's own copy, which still holds the client's certificate chain);
- a client offers the session it keeps for (its certificate, the target) through `offering()`:
  asyncio builds the SSLObject of a STARTTLS upgrade in a callback scheduled from the task that
  asked for it, which runs in that task's context, so a context variable reaches
  `ResumingClientContext.wrap_bio` without touching asyncio's or aiosmtplib's code.

A resumed client session does not see the server's certificates again (OpenSSL keeps the leaf
only), so the cache keeps the chain the full handshake saw with the session, as Schannel keeps the
server's certificate context with its cache entry. The entry's age is counted on the lab's virtual
clock; a new full handshake to the same target replaces it.

Whether a session resumed changes no log row: Exchange writes the same TLS rows for both
([INFERRED], docs/performance.md), and the lab's rows never depend on it.
"""

from __future__ import annotations

import ssl
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

__all__ = ["CLIENT_CACHE_TIME", "ClientSessionCache", "ResumingClientContext", "server_side_cache"]

# Schannel's ClientCacheTime default (10 hours; KB 247658, "TLS registry settings").
CLIENT_CACHE_TIME = timedelta(hours=10)

_OFFER: ContextVar[ssl.SSLSession | None] = ContextVar("labsim_tls_session_offer", default=None)


class ResumingClientContext(ssl.SSLContext):
    """A client context whose new SSLObjects offer the session `ClientSessionCache.offering` set."""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: Any = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        if session is None and not server_side:
            session = _OFFER.get()
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def server_side_cache(ctx: ssl.SSLContext) -> None:
    """Resume by session id from the context's own cache (OpenSSL's default server cache), not by
    ticket: a session rebuilt from a ticket would no longer hold the client's chain."""
    ctx.options |= ssl.OP_NO_TICKET


@dataclass
class _Kept:
    session: ssl.SSLSession
    chain: list[x509.Certificate]  # the server's chain, as the full handshake saw it
    since: datetime  # virtual time of the full handshake


class ClientSessionCache:
    """One machine's client-side session cache (Schannel's, keyed by credential and target).

    A session belongs to the context that made it (OpenSSL refuses another's): a key names the
    client certificate, and the cache lives beside the contexts of the store that owns it."""

    def __init__(self, lifetime: timedelta = CLIENT_CACHE_TIME) -> None:
        self.lifetime = lifetime
        self._kept: dict[Hashable, _Kept] = {}

    def _live(self, key: Hashable, now: datetime) -> _Kept | None:
        kept = self._kept.get(key)
        if kept is not None and now - kept.since >= self.lifetime:
            del self._kept[key]
            return None
        return kept

    @contextmanager
    def offering(self, key: Hashable, now: datetime) -> Iterator[None]:
        """While the block runs, a TLS client upgrade started from this task offers the kept session."""
        kept = self._live(key, now)
        token = _OFFER.set(kept.session if kept is not None else None)
        try:
            yield
        finally:
            _OFFER.reset(token)

    def resumed_chain(self, key: Hashable, sslobj: ssl.SSLObject) -> list[x509.Certificate] | None:
        """The server's chain kept from the full handshake, when this session resumed it."""
        kept = self._kept.get(key)
        if kept is not None and sslobj.session_reused:
            return list(kept.chain)
        return None

    def keep(self, key: Hashable, sslobj: ssl.SSLObject, chain: list[x509.Certificate], now: datetime) -> None:
        """After a full handshake: keep its session for the next connection to the same target."""
        session = sslobj.session
        if session is not None and session.id:
            self._kept[key] = _Kept(session, list(chain), now)

    def forget(self, key: Hashable) -> None:
        """A failed handshake drops the entry (Schannel purges a session that failed)."""
        self._kept.pop(key, None)

    def __len__(self) -> int:
        return len(self._kept)
