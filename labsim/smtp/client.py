"""The SMTP client: one sending connection over the virtual network, logged like Exchange.

The caller (a transport service) decides everything beforehand in a `SendSpec`: targets in
failover order, EHLO name, TLS policy, the client certificate, how to validate the server's
chain. `Connection` walks the targets (`client_rules.TargetWalk`) and carries messages over one
`client_session.ClientSession` at a time; the session dials through `net.vnet` (so the guard sees
every connection), speaks SMTP with aiosmtplib, writes the Send protocol-log rows, and returns one
result per message. The layout: `send_spec` (the data in and out), `client_rules` (decisions
without I/O), `client_session` and `client_tls` (the I/O shell), this module (the connection).
"""

from __future__ import annotations

from typing import Any

from ..rules import verbs as V
from ..rules.outbound import AttemptFailure
from .client_message import send_message
from .client_rules import (
    TLS_FAILURE_EVENTS,
    Abort,
    Ready,
    TargetWalk,
    close_action,
    exchange_auth_next,
    ready_step,
    wire_lines,
)
from .client_session import ClientSession
from .client_tls import TlsStep
from .send_spec import (
    BANDWIDTH,
    CONNECT_TIMEOUT_VIRTUAL,
    REAL_TIMEOUT,
    ClientTls,
    MessageResult,
    OutboundMessage,
    SendSpec,
    Target,
)

__all__ = ["BANDWIDTH", "CONNECT_TIMEOUT_VIRTUAL", "REAL_TIMEOUT", "ClientSession", "ClientTls", "Connection",
           "MessageResult", "OutboundMessage", "SendSpec", "Target", "deliver", "wire_lines"]


class Connection:
    """One sending session that carries messages one after another, failing over along `spec.targets`.

    Exchange sends the next message of a connection with a new MAIL FROM right after the 250 of the
    previous DATA (no RSET; KB 202765 shows the same sequence for the Internet Mail Service); the
    caller decides how many (SmtpMaxMessagesPerConnection) and when the connection ends (`close`).
    A connection that fails while sending goes on to the next target for the messages still to go;
    with opportunistic TLS, when every host failed the TLS handshake, the hosts are tried again
    without STARTTLS (rules.tls_policy.fallback_after; transport-behavior.md §2.3).
    """

    def __init__(self, lab: Any, spec: SendSpec) -> None:
        self.lab = lab
        self.spec = spec
        self.session: ClientSession | None = None
        self.last: AttemptFailure | None = None  # why the latest attempt failed
        self.carried = 0  # messages sent over this connection (delivered, deferred or rejected)
        self._walk = TargetWalk(spec.targets, spec.tls)

    @property
    def is_open(self) -> bool:
        return self.session is not None

    @property
    def client(self) -> tuple[str, int] | None:
        """(host, session id) as announced to the server (for the lab's bookkeeping)."""
        return (self.spec.src.name, self.session.sid) if self.session is not None else None

    async def open(self) -> bool:
        """Connect to the first target that completes EHLO and the TLS step; False if none does."""
        walk = self._walk
        while self.session is None and not walk.exhausted:
            attempt = walk.next(self.last)
            if attempt is None:
                break
            i, target, tls = attempt
            session = ClientSession(self.lab, self.spec, target, tls)
            trace = self.spec.connectivity
            if trace is not None:
                trace.session_started(session.sid, target.name, self.last.kind if self.last else None)
            try:
                await session.connect()
                if walk.is_fallback(tls) and i == 0:
                    session.log.info("", STARTTLS_FALLBACK)
                await _ready(session)
            except Abort as abort:
                if trace is not None and session.smtp is None:
                    trace.connect_failed(target.name, target.ip, target.port, abort.failure.kind)
                await self._failed(session, abort.failure)
                continue
            except BaseException:  # anything else (a bug, a cancellation): never leave the session open
                if session.smtp is not None:
                    session.close("Local")
                raise
            self.session = session
        if walk.exhausted and self.spec.connectivity is not None:
            self.spec.connectivity.stop()
        return self.session is not None

    async def _failed(self, session: ClientSession, failure: AttemptFailure) -> None:
        self.last = failure
        await _abandon(session, failure)
        if self.spec.on_tls_failure_event and failure.kind in TLS_FAILURE_EVENTS:
            self.spec.on_tls_failure_event(failure)

    async def send(self, msg: OutboundMessage) -> MessageResult:
        """Send one message (opening the connection, or failing over, as needed)."""
        while True:
            res = MessageResult(key=msg.key)
            if not await self.open():
                res.failure = self.last
                return res
            session = self.session
            assert session is not None
            res.remote_ip, res.remote_host, res.session_id = session.target.ip, session.target.name, session.sid
            res.tls = dict(session.tls_info)
            try:
                await send_message(session, msg, res)
            except Abort as abort:
                self.session = None
                await self._failed(session, abort.failure)
                continue
            except BaseException:  # never leave the session open behind an unexpected error
                self.session = None
                session.close("Local")
                raise
            self.carried += 1
            if self.spec.connectivity is not None and res.delivered:
                self.spec.connectivity.delivered(len(msg.data))
            return res

    def abort(self) -> None:
        """Close without QUIT (the session this connection served is gone)."""
        session, self.session = self.session, None
        if session is not None:
            session.close("Local")
        if self.spec.connectivity is not None:
            self.spec.connectivity.stop()

    async def close(self) -> None:
        """QUIT and close (the queue has nothing more for this connection, or it carried enough)."""
        session, self.session = self.session, None
        if session is not None:
            await session.quit()
        if self.spec.connectivity is not None:
            self.spec.connectivity.stop()


async def deliver(lab: Any, spec: SendSpec, messages: list[OutboundMessage]) -> list[MessageResult]:
    """Deliver `messages` over one connection (see `Connection`), then QUIT."""
    conn = Connection(lab, spec)
    results = [await conn.send(m) for m in messages]
    await conn.close()
    return results


# [V-code] transport-behavior.md §2.3: logged when the hosts are retried in the clear.
STARTTLS_FALLBACK = "STARTTLS negotiation failed. No more hosts to connect to. Retrying without STARTTLS"
# [UNVERIFIED] log-formats.md §2.3: a RequireTLS connector facing a host that offers no STARTTLS.
TLS_REQUIRED_NOT_OFFERED = "Connector is configured to send mail only over TLS connections and remote doesn't support TLS"


async def _ready(session: ClientSession) -> None:
    """EHLO, then the security step the rules decide (X-ANONYMOUSTLS and X-EXPS between Exchange servers,
    the TLS policy's STARTTLS otherwise; EHLO again after TLS); raises Abort on failure."""
    await session.ehlo()
    step = ready_step(session.spec.sender, session.peer, session.tls)
    if step == Ready.ANONYMOUS_TLS:
        await TlsStep(session, "X-ANONYMOUSTLS").run()
        await session.ehlo()
        if exchange_auth_next(session.spec.sender, session.peer, session.anonymous_tls):
            await session.exchange_auth()
            params = V.xsessionparams_command(session.spec.sender, session.peer)
            if params is not None:  # a Hub delivering to a database (rules.verbs)
                resp = await session.command(params)
                if resp.code != 250:
                    raise Abort(session.fail("response", response=f"{resp.code} {resp.message}"))
    elif step == Ready.FAIL_CERT_NOT_FOUND:
        raise Abort(session.fail("tls_cert_not_found"))
    elif step == Ready.FAIL_TLS_REQUIRED:
        session.log.info("", TLS_REQUIRED_NOT_OFFERED)
        raise Abort(session.fail("tls_required"))
    elif step == Ready.STARTTLS:
        await TlsStep(session, "STARTTLS").run()
        await session.ehlo()


async def _abandon(session: ClientSession, last: AttemptFailure) -> None:
    """Close a failed attempt the way Exchange does (client_rules.close_action)."""
    action = close_action(session.smtp is not None, session.log.next_sequence, last.kind)
    if action is None:
        return
    if action == "quit":
        try:
            await session.quit()
        except Exception:  # noqa: BLE001 - the session is being abandoned anyway
            session.close("Local")
        return
    session.close(action)
