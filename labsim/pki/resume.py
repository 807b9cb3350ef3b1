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

Offering a session without a copy: CPython 3.11's `SSLObject.session` setter (which `wrap_bio`'s
`session=` goes through) copies the session with `i2d_SSL_SESSION`/`d2i_SSL_SESSION` before
`SSL_set_session`, a workaround for an OpenSSL 1.1.0 bug; the copy re-parses the server certificate
the session holds (~220 µs, against ~7 µs for the SSLObject itself). `_DirectSessionSetter` calls
`SSL_set_session` of the very libssl `_ssl` is linked against on the new SSLObject, as a C client
offering its kept session does (OpenSSL counts the session's references; the lab's sessions are
TLS 1.2 session-id sessions, which a resumed handshake does not modify). It reaches the `SSL *` and
`SSL_SESSION *` through the layout of `_ssl`'s objects, the same one tools such as sslkeylog rely
on, and only where that layout is known: CPython 3.11 whose objects have the sizes of that layout,
checked once against a real SSLObject (`SSL_get_SSL_CTX` must name the context's `SSL_CTX`).
Anywhere else, or when a check fails, the offer goes through the setter as before.
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from collections.abc import Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

__all__ = ["CLIENT_CACHE_TIME", "ClientSessionCache", "ResumingClientContext", "server_side_cache"]

# Schannel's ClientCacheTime default (10 hours; KB 247658, "TLS registry settings").
CLIENT_CACHE_TIME = timedelta(hours=10)

_OFFER: ContextVar[ssl.SSLSession | None] = ContextVar("labsim_tls_session_offer", default=None)


class _DirectSessionSetter:
    """`SSL_set_session` on a new client SSLObject, without CPython 3.11's copy (module docstring)."""

    # CPython 3.11's Modules/_ssl.c: PySSLContext {HEAD; SSL_CTX *ctx; ...} (96 bytes),
    # PySSLSocket {HEAD; PyObject *Socket; SSL *ssl; ...} (96), PySSLSession {HEAD; SSL_SESSION
    # *session; PySSLContext *ctx} (32); HEAD is 16 bytes on a 64-bit release build.
    _SIZES = (96, 96, 32)
    _CTX_AT, _SSL_AT, _SESSION_AT, _SESSION_CTX_AT = 16, 24, 16, 24

    def __init__(self) -> None:
        self._set: Any = None
        self._checked = False

    def _load(self, ctx: ssl.SSLContext) -> bool:
        import _ssl

        sizes = (_ssl._SSLContext.__basicsize__, _ssl._SSLSocket.__basicsize__,  # type: ignore[attr-defined]
                 _ssl.SSLSession.__basicsize__)
        if (sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11)
                or ctypes.sizeof(ctypes.c_void_p) != 8 or hasattr(sys, "gettotalrefcount")
                or sizes != self._SIZES):
            return False
        try:
            lib = ctypes.CDLL(_ssl.__file__)  # its dependencies' symbols: the libssl `_ssl` uses
            get_ctx, set_session = lib.SSL_get_SSL_CTX, lib.SSL_set_session
        except (OSError, AttributeError):
            return False
        get_ctx.argtypes, get_ctx.restype = [ctypes.c_void_p], ctypes.c_void_p
        set_session.argtypes, set_session.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
        try:
            probe = ssl.SSLContext.wrap_bio(ctx, ssl.MemoryBIO(), ssl.MemoryBIO(), False, "probe.invalid")
        except (ValueError, ssl.SSLError):
            return False
        if get_ctx(self._pointer(probe._sslobj, self._SSL_AT)) != self._pointer(ctx, self._CTX_AT):  # type: ignore[attr-defined]
            return False
        self._set = set_session
        return True

    @staticmethod
    def _pointer(obj: object, offset: int) -> int | None:
        return ctypes.c_void_p.from_address(id(obj) + offset).value

    def offer(self, ctx: ssl.SSLContext, sslobj: ssl.SSLObject, session: ssl.SSLSession) -> bool:
        """Offer `session` on the new client `sslobj` of `ctx`; False: use the setter instead."""
        if not self._checked:
            self._checked = True
            self._load(ctx)
        if self._set is None or self._pointer(session, self._SESSION_CTX_AT) != id(ctx):
            return False  # a session of another context: the setter says so (ValueError)
        raw = self._pointer(sslobj._sslobj, self._SSL_AT)  # type: ignore[attr-defined]
        return bool(self._set(raw, self._pointer(session, self._SESSION_AT)))


_DIRECT = _DirectSessionSetter()


class ResumingClientContext(ssl.SSLContext):
    """A client context whose new SSLObjects offer the session `ClientSessionCache.offering` set."""

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: Any = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        if session is None and not server_side:
            offer = _OFFER.get()
            if offer is not None:
                sslobj = super().wrap_bio(incoming, outgoing, server_side, server_hostname)
                if _DIRECT.offer(self, sslobj, offer):
                    return sslobj
                sslobj.session = offer
                return sslobj
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


class _Offering:
    """`ClientSessionCache.offering`'s block (a plain context manager: one per TLS session)."""

    __slots__ = ("session", "token")

    def __init__(self, session: ssl.SSLSession | None) -> None:
        self.session = session

    def __enter__(self) -> None:
        self.token = _OFFER.set(self.session)

    def __exit__(self, *exc: object) -> None:
        _OFFER.reset(self.token)


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

    def offering(self, key: Hashable, now: datetime) -> _Offering:
        """While the block runs, a TLS client upgrade started from this task offers the kept session."""
        kept = self._live(key, now)
        return _Offering(kept.session if kept is not None else None)

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
