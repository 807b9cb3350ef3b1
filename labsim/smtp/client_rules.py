"""The sending side's decisions that need no I/O: which step comes next, how a reply is filed and
logged, which host and TLS pass to try, how a failed attempt is closed.

Theory of operation
-------------------
`smtp.client_session.ClientSession` (the I/O shell) asks these functions what to do and then does
it (httpcore's decide-then-act); `smtp.client.Connection` walks the targets with `TargetWalk`.
Exchange's own rules (the security step, the TLS plan, the MAIL parameters) live in `rules.verbs`
and `rules.tls_policy`; this module only joins them to the session's state. Nothing here awaits,
so each decision is testable directly (tests/test_smtp_client_rules.py).
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from typing import Any

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings

from ..rules import verbs as V
from ..rules.outbound import AttemptFailure
from ..rules.tls_policy import Step, after_ehlo, fallback_after
from .send_spec import ClientTls, MessageResult, Target

# what ends an attempt as a lost connection ("socket"): the peer hung up, a read timed out, a reset
SOCKET_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError)


class Abort(Exception):
    """The attempt failed; `failure` says how (the shell closes the session per `close_action`)."""

    def __init__(self, failure: AttemptFailure) -> None:
        self.failure = failure


def wire_lines(code: int, message: str) -> list[str]:
    """The wire lines of a reply (`250-a`, `250 b`) from aiosmtplib's (code, message)."""
    if "\n" not in message:  # one line: the common case
        return [f"{code} {message}".rstrip()]
    parts = message.split("\n")
    return [f"{code}-{p}" for p in parts[:-1]] + [f"{code} {parts[-1]}".rstrip()]


def crlf_body(data: bytes) -> bytes:
    """The message as it goes on the wire: every line ending CRLF, ending in CRLF. The same bytes as
    aiosmtplib's `normalize_message_line_endings`, whose regex pass is skipped when the lab's own
    message (CRLF already: transport.store) needs none: three C-speed counts decide."""
    n = data.count(b"\r\n")
    if data.count(b"\n") != n or data.count(b"\r") != n:
        data = normalize_message_line_endings(data)
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def refuse(result: MessageResult, code: int, text: str, recipients: list[str]) -> None:
    """File a refusal of `recipients`: permanent (5xx) as rejected, anything else as deferred."""
    target = result.rejected if code >= 500 else result.deferred
    for r in recipients:
        target[r] = text


# --- the security step after EHLO -------------------------------------------------------------------

class Ready(StrEnum):
    """What the session does after its first EHLO reply."""

    ANONYMOUS_TLS = "X-ANONYMOUSTLS"  # then EHLO, then perhaps X-EXPS (`exchange_auth_next`)
    STARTTLS = "STARTTLS"  # then EHLO
    PLAIN = "plain"  # in the clear, as the TLS plan allows
    FAIL_CERT_NOT_FOUND = "tls_cert_not_found"
    FAIL_TLS_REQUIRED = "tls_required"


_FROM_STEP = {Step.STARTTLS: Ready.STARTTLS, Step.PLAIN: Ready.PLAIN,
              Step.FAIL_CERT_NOT_FOUND: Ready.FAIL_CERT_NOT_FOUND, Step.FAIL_TLS_REQUIRED: Ready.FAIL_TLS_REQUIRED}


def ready_step(sender: V.Sender, peer: dict[str, list[str]], tls: ClientTls) -> Ready:
    """X-ANONYMOUSTLS between Exchange servers (rules.verbs.security_step), the TLS policy's step
    otherwise (rules.tls_policy.after_ehlo)."""
    if V.security_step(sender, peer, secure=False, anonymous_tls=False) == V.Security.ANONYMOUS_TLS \
            and tls.attempt:
        return Ready.ANONYMOUS_TLS
    return _FROM_STEP[after_ehlo(tls.plan(), "STARTTLS" in peer)]


def exchange_auth_next(sender: V.Sender, peer: dict[str, list[str]], anonymous_tls: bool) -> bool:
    """After X-ANONYMOUSTLS and the second EHLO: X-EXPS EXCHANGEAUTH?"""
    return V.security_step(sender, peer, secure=True, anonymous_tls=anonymous_tls) == V.Security.EXCHANGE_AUTH


# --- closing a failed attempt -------------------------------------------------------------------------

QUIT_AFTER = frozenset({"tls_required", "cert_validation", "response"})  # the peer still talks sense


def close_action(connected: bool, rows_logged: int, kind: str) -> str | None:
    """How a failed attempt ends, as Exchange ends it: None (nothing was opened or logged beyond the
    first rows), "quit" (QUIT while the peer still talks sense), or the disconnect reason: "Remote"
    when the peer (or a link) dropped the session, "Local" when we gave up on it."""
    if not connected and rows_logged <= 2:
        return None
    if connected and kind in QUIT_AFTER:
        return "quit"
    return "Remote" if not connected or kind == "socket" else "Local"


TLS_FAILURE_EVENTS = frozenset({"tls_no_credentials", "tls_required", "cert_validation"})


# --- which host, with which TLS carrier ----------------------------------------------------------------

class TargetWalk:
    """The failover order of one connection: every target with the connector's TLS carrier, then, with
    opportunistic TLS and when the last attempt failed its handshake, every target again without
    STARTTLS (rules.tls_policy.fallback_after; transport-behavior.md §2.3)."""

    def __init__(self, targets: list[Target], tls: ClientTls) -> None:
        self.targets = targets
        self.first = tls
        self._passes: list[ClientTls] = [tls]
        self.tls: ClientTls | None = None  # the carrier of the current pass
        self._next = 0
        self.exhausted = False

    def next(self, last: AttemptFailure | None) -> tuple[int, Target, ClientTls] | None:
        """(index, target, TLS carrier) of the next attempt, or None when no host is left."""
        while not self.exhausted:
            if self.tls is None or self._next >= len(self.targets):
                if self.tls is self.first and last is not None and fallback_after(self.tls.plan(), last.kind):
                    self._passes.append(replace(self.tls, attempt=False, fallback=False))
                if not self._passes:
                    self.exhausted = True
                    break
                self.tls, self._next = self._passes.pop(0), 0
                continue
            i = self._next
            self._next += 1
            return i, self.targets[i], self.tls
        return None

    def is_fallback(self, tls: ClientTls) -> bool:
        """A pass in the clear after every host failed the handshake."""
        return tls is not self.first


def session_context(spec: Any, sid: int) -> dict[str, Any]:
    """What the server is told out of band about the client of this session (vnet)."""
    return {"client_host": spec.src.name, "client_session": sid, **spec.context}
