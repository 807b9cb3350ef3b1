"""Request a client certificate and accept whatever the client sends, as Exchange does.

Why this exists
---------------
Exchange's receive side asks for a client certificate, completes the TLS handshake with whatever
certificate the client presents (from any CA, or expired, or self-signed) and only afterwards
classifies the chain (`Client certificate chain validation status: 'UntrustedRoot'`, the
TlsDomainCapabilities row). Python's ssl module cannot do that: with `CERT_OPTIONAL` OpenSSL
verifies the presented chain itself and aborts the handshake on any error (a certificate from a CA
the lab does not know ended in `IllegalMessage` and a dropped connection), and the stdlib offers no
verify callback (shared/reference/stack-notes.md §2, "Limitation").

OpenSSL's own answer is a verify callback that returns 1 (`SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER,
cb)`: "the verification process is continued" whatever `preverify_ok` was; OpenSSL man page
SSL_CTX_set_verify(3), the "accept any" example). This module installs exactly that callback on
the `SSL_CTX` behind an `ssl.SSLContext`, through the libssl the `_ssl` module itself is linked
against. The pointer is read from the context object and checked against what the context
reports (verify mode and options) before anything is written; if they do not agree (another
Python build), nothing is changed and `accept_any_client_certificate` returns False, leaving the
old behaviour (only lab certificates accepted) in place.

Python's ssl module keeps a callback set this way: `SSLObject`s created from the context inherit
it (`SSL_new` copies `verify_callback`), and `_ssl` itself only calls `SSL_CTX_set_verify` when
`verify_mode` is assigned, so the callback must be installed after the last such assignment.
"""

from __future__ import annotations

import ctypes
import ssl
import sys
from typing import Any

_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept(preverify_ok: int, store_ctx: int | None) -> int:
    return 1  # continue the handshake; the lab classifies the chain itself afterwards


_CALLBACK = _VERIFY_CB(_accept)  # kept for the life of the process: OpenSSL holds the pointer
_SSL_VERIFY_PEER = 0x01


def _libssl() -> Any:
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # resolves through _ssl's own libssl, never another copy
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
        lib.SSL_CTX_set_verify.restype = None
        return lib
    except (OSError, AttributeError, ImportError):
        return None


_LIB = _libssl()


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int | None:
    """The `SSL_CTX *` right after the object header of CPython's PySSLContext, if it checks out."""
    if _LIB is None or sys.implementation.name != "cpython":
        return None
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr:
        return None
    if _LIB.SSL_CTX_get_verify_mode(ptr) != int(ctx.verify_mode) or _LIB.SSL_CTX_get_options(ptr) != int(ctx.options):
        return None
    return int(ptr)


def accept_any_client_certificate(ctx: ssl.SSLContext) -> bool:
    """Make a server context request a client certificate and accept any (True when done).

    Verification errors no longer stop the handshake; `getpeercert(binary_form=True)` and the
    unverified chain still give what the client sent.
    """
    if ctx.verify_mode == ssl.CERT_NONE:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ptr = _ssl_ctx_pointer(ctx)
    if ptr is None:
        return False
    _LIB.SSL_CTX_set_verify(ptr, _SSL_VERIFY_PEER, _CALLBACK)
    return True
