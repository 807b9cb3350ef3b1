"""One sending attempt to one target: the I/O shell of the SMTP client (`smtp.client` drives it).

The session dials through `net.vnet`, speaks SMTP with aiosmtplib and writes the Send protocol-log
rows; what to do next comes from `smtp.client_rules` and `rules.*` (decide, then act).

Per command the shell calls aiosmtplib's `SMTPProtocol.execute_command` (the public `SMTP.protocol`)
rather than `SMTP.execute_command`, whose only extra work is closing the client after a lost
connection, a timeout or a 421: `command` does that itself, one coroutine frame less
per command. aiosmtplib's reader stays: its per-command cost is `asyncio.wait_for` (a TimerHandle
and a second future per reply, ~2.5 % of a run's CPU measured with py-spy), and the number of
event-loop passes a reply takes through it orders the lab's concurrent sessions on the virtual
clock. A reader of the lab's own would have to repeat those passes, aiosmtplib's reply parsing and
its connect and STARTTLS error translation exactly to keep every output byte; not worth that risk
for the ~2 % it could save (docs/performance.md, "cli5").

Virtual time: the client is the active party of its session. It stamps a command, advances the
clock by the one-way latency *before* yielding (so the server reads the command at t+L), and
advances again when the reply arrives. Nothing else moves the clock meanwhile, so timestamps
depend only on the sequence of steps.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import aiosmtplib
from aiosmtplib.esmtp import parse_esmtp_extensions
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX, SMTPProtocol
from cryptography.hazmat.primitives import hashes

from ..logs import protocol_text as T
from ..net.proxy import ResetLink
from ..net.vnet import ConnectionInfo, open_socket
from ..rules import verbs as V
from ..rules.ehlo import offered as ehlo_offered
from ..rules.outbound import AttemptFailure
from .client_rules import SOCKET_ERRORS, Abort, session_context, wire_lines
from .send_spec import (
    CONNECT_TIMEOUT_VIRTUAL,
    REAL_TIMEOUT,
    ClientTls,
    SendSpec,
    Target,
)

_LOST = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError)  # SMTP.execute_command closes on these
_DOMAIN_UNAVAILABLE = 421  # SMTP.execute_command closes after this reply too
_WRITE_ERRORS = (*SOCKET_ERRORS, ValueError)  # a lost connection, or a line aiosmtplib will not write


class EhloLearnt:
    """What one EHLO reply text teaches the client: the Send log's rows (`<` per wire line), the
    peer's keywords (rules.ehlo.offered) and aiosmtplib's view of its extensions
    (`parse_esmtp_extensions`, what `SMTP.last_ehlo_response`'s setter computes)."""

    __slots__ = ("rows", "peer", "extensions", "auth_methods")

    def __init__(self, code: int, message: str) -> None:
        self.rows = tuple(T.ehlo_reply_send(wire_lines(code, message)))
        self.peer = ehlo_offered(message.split("\n")[1:])
        self.extensions, self.auth_methods = parse_esmtp_extensions(message)


_LEARNT: dict[str, EhloLearnt] = {}  # reply text -> what it teaches (a peer answers the same text each time)


def learn_ehlo(code: int, message: str) -> EhloLearnt:
    """`EhloLearnt` of a 250 reply, kept per reply text (bounded: emptied when full)."""
    learnt = _LEARNT.get(message)
    if learnt is None:
        learnt = EhloLearnt(code, message)
        if len(_LEARNT) >= 256:
            _LEARNT.clear()
        _LEARNT[message] = learnt
    return learnt


async def _ehlo(smtp: aiosmtplib.SMTP) -> tuple[aiosmtplib.SMTPResponse, EhloLearnt]:
    """`SMTP.ehlo(timeout=REAL_TIMEOUT)` step for step (the same command bytes through
    `SMTP.execute_command`'s protocol call, its closes, the SMTPHeloError), with the learnt state set
    from `learn_ehlo` instead of parsing the reply again: the four attributes the
    `last_ehlo_response` setter sets (`tests/test_client_ehlo_learnt.py` holds them equal)."""
    protocol, name = smtp.protocol, smtp.local_hostname
    if protocol is None or name is None:  # not connected, or no name: aiosmtplib's own path and errors
        resp = await smtp.ehlo(timeout=REAL_TIMEOUT)
        return resp, learn_ehlo(resp.code, resp.message)
    try:
        resp = await protocol.execute_command(b"EHLO", name.encode("ascii"), timeout=REAL_TIMEOUT)
    except _LOST:
        smtp.close()
        raise
    if resp.code == _DOMAIN_UNAVAILABLE:
        smtp.close()
    if resp.code != 250:
        raise aiosmtplib.SMTPHeloError(resp.code, resp.message)
    learnt = learn_ehlo(resp.code, resp.message)
    smtp._last_ehlo_response = resp
    smtp.esmtp_extensions = dict(learnt.extensions)
    smtp.server_auth_methods = list(learnt.auth_methods)
    smtp.supports_esmtp = True
    return resp, learnt


def _blob(seed: bytes) -> str:
    return base64.b64encode(hashlib.sha256(seed).digest()).decode()


_BLOBS: dict[int, tuple[Any, str]] = {}  # id(certificate) -> (the certificate, its X-EXPS blob)


def _peer_blob(cert: Any) -> str:
    """The X-EXPS blob for a peer certificate; a resumed session hands back the very certificate
    objects of its full handshake (pki.resume), so the blob is kept per object (the entry holds the
    object, so its id cannot be another's while kept)."""
    kept = _BLOBS.get(id(cert))
    if kept is not None and kept[0] is cert:
        return kept[1]
    blob = _blob(cert.fingerprint(hashes.SHA256()))
    if len(_BLOBS) >= 256:
        _BLOBS.clear()
    _BLOBS[id(cert)] = (cert, blob)
    return blob


class _GroupReplies(SMTPProtocol):
    """aiosmtplib's protocol, able to take a pipelined group's replies.

    aiosmtplib reads one reply per command written: bytes that arrive after a reply was parsed and
    before its reader has taken it are dropped as unsolicited. While a group is read (`in_group`),
    they are kept in the buffer instead, where the next reply of the group is parsed from."""

    in_group = False

    def data_received(self, data: bytes) -> None:
        waiter = self._response_waiter
        if self.in_group and waiter is not None and waiter.done():
            self._buffer.extend(data)
            return
        super().data_received(data)


async def _read_group(protocol: SMTPProtocol, data: bytes, count: int) -> list[aiosmtplib.SMTPResponse]:
    """Write a pipelined group's commands in one piece, then read its replies in order; stops after
    a 421 (the server closes)."""
    if protocol._command_lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    if type(protocol) is SMTPProtocol:
        protocol.__class__ = _GroupReplies  # the same object and state; only the reading changes
    assert isinstance(protocol, _GroupReplies)
    replies: list[aiosmtplib.SMTPResponse] = []
    async with protocol._command_lock:
        protocol._response_pending = True
        protocol.in_group = True
        try:
            protocol.write(data)
            while len(replies) < count:
                resp = protocol._read_response_from_buffer() if replies else None
                if resp is None:
                    resp = await protocol.read_response(timeout=REAL_TIMEOUT)
                replies.append(resp)
                if resp.code == _DOMAIN_UNAVAILABLE:
                    break
        finally:
            protocol.in_group = False
    return replies


class ClientSession:
    """One attempt to one target."""

    def __init__(self, lab: Any, spec: SendSpec, target: Target, tls: ClientTls | None = None) -> None:
        self.lab = lab
        self.spec = spec
        self.target = target
        self.tls = tls or spec.tls  # a plain retry after a failed handshake uses its own copy
        self.sid = spec.session_ids.next()
        self.cursor = lab.clock.now()
        self.plan = lab.net.plan(spec.src, target.ip, target.port)
        self.log = lab.send_log(spec.log, spec.connector_id, self.sid,
                                remote=T.format_endpoint(target.ip, target.port), clock=self._now,
                                enabled=spec.log_enabled)
        self.smtp: aiosmtplib.SMTP | None = None
        self.tls_info: dict[str, Any] = {}
        self.latency = self.plan.latency
        self.peer: dict[str, list[str]] = {}  # the keywords of the peer's latest EHLO reply
        self.anonymous_tls = False
        self.proxy_seq = 0  # XPROXYFROM commands on this connection
        self.rset_due = False  # the last message was refused: the next one on this connection starts with RSET

    def _now(self):
        return self.lab.clock.now()

    def advance(self, seconds: float | None = None) -> None:
        self.lab.clock.advance(self.latency if seconds is None else seconds)

    def fail(self, kind: str, **kw: Any) -> AttemptFailure:
        return AttemptFailure(kind=kind, target_ip=self.target.ip, target_port=self.target.port,
                              target_name=self.target.name, **kw)

    async def command(self, line: str, data: bytes | None = None, *, log_as: str | None = None,
                       reply_as: str | None = None) -> aiosmtplib.SMTPResponse:
        """One command line and its reply, logged (`log_as`/`reply_as`: what the log shows instead);
        `data`: the line's bytes when the caller encoded it word by word."""
        smtp = self.smtp
        assert smtp is not None
        if data is None:
            data = line.encode()
        log = self.log
        log.sent(line if log_as is None else log_as)
        clock, latency = self.lab.clock, self.latency
        clock.advance(latency)
        try:
            protocol = smtp.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Server not connected")
            try:
                resp = await protocol.execute_command(data, timeout=REAL_TIMEOUT)
            except _LOST:
                smtp.close()
                raise
        except _WRITE_ERRORS as exc:
            raise self._lost(exc) from None
        code = resp.code
        if code == _DOMAIN_UNAVAILABLE:
            smtp.close()
        clock.advance(latency)
        if reply_as is not None and code == int(reply_as[:3]):
            log.received(reply_as)
        else:
            for wire in wire_lines(code, resp.message):
                log.received(wire)
        return resp

    def _lost(self, exc: BaseException) -> Abort:
        """The attempt's end when a command could not be sent or answered."""
        if isinstance(exc, ValueError):  # aiosmtplib will not write a line with a control character in it
            return Abort(self.fail("socket", detail=f"cannot send the command: {exc}"))
        return Abort(self.fail("socket", detail=f"{type(exc).__name__}: {exc}"))

    async def group(self, lines: list[tuple[str, bytes]]) -> list[aiosmtplib.SMTPResponse]:
        """A pipelined group (RFC 2920: MAIL FROM and the RCPT TOs): every command logged and written
        at once, then every reply read and logged; a 421 ends the group (and the connection) early,
        so fewer replies than commands come back."""
        smtp = self.smtp
        assert smtp is not None
        log = self.log
        for line, _ in lines:
            log.sent(line)
        clock, latency = self.lab.clock, self.latency
        clock.advance(latency)
        try:
            protocol = smtp.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Server not connected")
            for _, data in lines:
                if COMMAND_INJECTION_REGEX.search(data):  # what execute_command refuses to write
                    raise ValueError("Command arg contains a prohibited control character")
            try:
                replies = await _read_group(protocol, b"".join([d + b"\r\n" for _, d in lines]), len(lines))
            except _LOST:
                smtp.close()
                raise
        except _WRITE_ERRORS as exc:
            raise self._lost(exc) from None
        if replies[-1].code == _DOMAIN_UNAVAILABLE:
            smtp.close()
        clock.advance(latency)
        for resp in replies:
            for wire in wire_lines(resp.code, resp.message):
                log.received(wire)
        return replies

    async def connect(self) -> None:
        spec, lab = self.spec, self.lab
        self.log.info(T.session_permissions_data(()), T.SET_SESSION_PERMISSIONS)
        self.log.info("", T.ATTEMPTING_TO_CONNECT)
        plan = self.plan
        if plan.failure is not None:
            self.advance(CONNECT_TIMEOUT_VIRTUAL if plan.failure == "timeout" else 2 * self.latency)
            code = 10060 if plan.failure == "timeout" else 10061
            self.log.info("", T.connect_failed_context(code, spec.destination_domain, self.target.ip, self.target.port))
            raise Abort(self.fail("connect_timeout" if code == 10060 else "connect_refused"))
        src_port = lab.source_port(spec.src.name)
        real_dst = (lab.book.real_ip(plan.dial_ip), lab.book.real_port(self.target.port))
        real_src = lab.book.real_ip(plan.seen_src_ip)
        try:
            if plan.needs_proxy:  # a link rule resets the session mid-way: real bytes through a proxy
                sock, announced = await ResetLink(plan.reset_after or 0).connect(real_dst, real_src, REAL_TIMEOUT)
            else:
                sock = await open_socket(real_dst, real_src, REAL_TIMEOUT)
                announced = sock.getsockname()[:2]
        except (ConnectionRefusedError, OSError, asyncio.TimeoutError):
            self.advance(2 * self.latency)
            self.log.info("", T.connect_failed_context(10061, spec.destination_domain, self.target.ip, self.target.port))
            raise Abort(self.fail("connect_refused")) from None
        lab.registry.announce(announced, ConnectionInfo(
            src_virtual=(plan.seen_src_ip, src_port), dst_virtual=(self.target.ip, self.target.port),
            context=session_context(spec, self.sid)))
        self.log.set_local(T.format_endpoint(plan.client_local_ip, src_port))
        self.log.connect()
        if spec.connectivity is not None:
            spec.connectivity.connected(self.target.name, self.target.ip)
        self.advance()
        self.smtp = aiosmtplib.SMTP(sock=sock, local_hostname=spec.ehlo_name, start_tls=False,
                                    timeout=REAL_TIMEOUT)
        try:
            banner = await self.smtp.connect()
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                ConnectionError) as exc:
            self.advance()
            resp_code = getattr(exc, "code", None)
            if isinstance(exc, aiosmtplib.SMTPConnectResponseError) and resp_code:
                text = f"{resp_code} {exc.message}"
                self.log.received(text)
                raise Abort(self.fail("response", response=text, permanent=False)) from None
            raise Abort(self.fail("socket", detail=str(exc))) from None
        self.advance()
        for line in wire_lines(banner.code, banner.message):
            self.log.received(line)
        if spec.proxying is not None:  # InboundProxySmtpOutSession.ConnectResponseEvent
            self.log.info("", T.proxying_inbound_context(spec.proxying))

    async def ehlo(self) -> aiosmtplib.SMTPResponse:
        """EHLO as aiosmtplib's `SMTP.ehlo` sends it (its STARTTLS checks the extensions learnt here);
        what the reply teaches is worked out once per reply text (`learn_ehlo`)."""
        smtp = self.smtp
        assert smtp is not None
        self.log.sent(f"EHLO {self.spec.ehlo_name}")
        self.advance()
        try:
            resp, learnt = await _ehlo(smtp)
        except aiosmtplib.SMTPHeloError as exc:
            self.advance()
            self.log.received(f"{exc.code} {exc.message}")
            raise Abort(self.fail("response", response=f"{exc.code} {exc.message}")) from None
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise Abort(self.fail("socket", detail=str(exc))) from None
        self.advance()
        for line in learnt.rows:
            self.log.received(line)
        self.peer = dict(learnt.peer)
        return resp

    async def exchange_auth(self) -> None:
        """X-EXPS EXCHANGEAUTH SHA256 <blob>, logged without the blob; a refusal fails the attempt."""
        # [INFERRED] the blob: Kerberos-bound in Exchange; here a digest of the peer certificate (never logged)
        chain = self.tls_info.get("remote_chain") or []
        blob = _peer_blob(chain[0]) if chain else _blob(self.spec.ehlo_name.encode())
        resp = await self.command(f"{V.EXCHANGEAUTH_LOGGED}{blob}", log_as=V.EXCHANGEAUTH_LOGGED,
                                   reply_as=V.EXCHANGEAUTH_REPLY_LOGGED)
        if resp.code != 235:
            self.log.info("", V.OUTBOUND_AUTH_FAILED)
            raise Abort(self.fail("response", response=f"{resp.code} {resp.message}"))

    async def quit(self) -> None:
        try:
            await self.command("QUIT")
        except Abort:
            pass
        self.close("Local")

    def close(self, reason: str) -> None:
        if self.smtp is not None:
            self.advance(self.plan.slow_close)  # a SlowClose link rule holds the close back
            self.smtp.close()
            self.smtp = None
        self.log.disconnect(reason)
