"""The SMTP client shell: one sending session over the virtual network, logged like Exchange.

The caller (a transport service) decides everything beforehand in a `SendSpec`: targets in
failover order, EHLO name, TLS policy, the client certificate, how to validate the server's
chain. This module dials through `net.vnet` (so the guard sees every connection), speaks SMTP
with aiosmtplib, writes the Send protocol-log rows, and returns one result per message.

Virtual time: the client is the active party of its session. It stamps a command, advances the
clock by the one-way latency *before* yielding (so the server reads the command at t+L), and
advances again when the reply arrives. Nothing else moves the clock meanwhile, so timestamps
depend only on the sequence of steps.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from cryptography.hazmat.primitives import hashes

from ..logs import protocol_text as T
from ..net.proxy import ResetLink
from ..net.vnet import ConnectionInfo, open_socket
from ..pki.errors import NoCredentialsError
from ..pki.store import peer_chain
from ..rules import verbs as V
from ..rules.ehlo import offered as ehlo_offered
from ..rules.outbound import AttemptFailure
from ..rules.shadow_redundancy import MAX_DISCARD_IDS as SHADOW_MAX_DISCARD_IDS
from ..rules.tls_policy import (
    Step,
    TlsPlan,
    after_ehlo,
    fallback_after,
    needs_validation,
    server_certificate_ok,
    validation_domain,
)

CONNECT_TIMEOUT_VIRTUAL = 21.0  # Windows: SYN retransmissions give up after ~21 s (WSAETIMEDOUT)
REAL_TIMEOUT = 10.0  # a real-time safety net on loopback; never reached in a healthy lab
BANDWIDTH = {"lan": 100e6 / 8, "wan": 50e6 / 8}  # bytes per second, for DATA transfer time


@dataclass
class Target:
    ip: str  # virtual address to dial
    port: int
    name: str  # the host name it came from (smart host, MX), for logs and errors


@dataclass
class ClientTls:
    attempt: bool = True  # send STARTTLS when offered
    require: bool = False
    auth_level: str | None = None  # None/EncryptionOnly: no checks; CertificateValidation; DomainValidation
    domain: str | None = None  # for DomainValidation
    store: Any = None  # the sending machine's pki CertStore (builds the TLS context)
    client_cert: Any = None  # a pki StoredCert of that store to present, or None
    cert_not_found: bool = False  # TlsCertificateName names a certificate that is not in the store
    sni: str | None = None
    fallback: bool = True  # opportunistic TLS: after a failed handshake, retry without STARTTLS

    @classmethod
    def from_plan(cls, plan: TlsPlan, store: Any) -> "ClientTls":
        """The session's carrier of a rules.tls_policy plan (the plan decides, this shell acts)."""
        return cls(attempt=plan.attempt, require=plan.require, auth_level=plan.auth_level, domain=plan.domain,
                   store=store, client_cert=plan.client_cert, cert_not_found=plan.cert_not_found, sni=plan.sni,
                   fallback=plan.fallback)

    def plan(self) -> TlsPlan:
        return TlsPlan(attempt=self.attempt, require=self.require, auth_level=self.auth_level, domain=self.domain,
                       client_cert=self.client_cert, cert_not_found=self.cert_not_found, fallback=self.fallback,
                       sni=self.sni)


@dataclass
class OutboundMessage:
    key: Any  # the caller's handle
    mail_from: str
    recipients: list[str]
    data: bytes
    body: str | None = None  # BODY= the client declared (the Front End passes it on); None: from the bytes
    auth_as: str | None = None  # the item's AuthAs (Anonymous -> AUTH=<>); None: the message's own AuthAs header
    proxy_from: V.ProxyFrom | None = None  # the Front End's client, said with XPROXYFROM before MAIL
    # org3 (shadow redundancy, engine.shadow): `XSHADOWREQUEST <args>` after RSET before MAIL (a shadow
    # copy), or a heartbeat (`XSHADOW <context>` + `XQDISCARD 50`, no message) when `heartbeat` is set
    shadow_request: str | None = None
    heartbeat: str | None = None


@dataclass
class MessageResult:
    key: Any
    delivered: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # permanent, per recipient
    deferred: dict[str, str] = field(default_factory=dict)  # transient, per recipient
    reply: str = ""  # the final 250 (or the failure reply)
    failure: AttemptFailure | None = None
    remote_ip: str = ""
    remote_host: str = ""
    session_id: int = 0
    tls: dict[str, Any] = field(default_factory=dict)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # the peer's reply to each accepted RCPT


@dataclass
class SendSpec:
    src: Any  # rules.network.HostInfo
    connector_id: str
    log: Any  # logs.ProtocolLog or None
    log_enabled: bool
    session_ids: Any  # ids.SessionIds
    ehlo_name: str
    destination_domain: str
    targets: list[Target]
    tls: ClientTls
    validate: Callable[[list, str | None], Awaitable[Any]] | None = None  # chain, domain -> ValidationResult
    sender: V.Sender = V.PLAIN_MTA  # what kind of client speaks (rules.verbs): Exchange's verbs or a plain MTA's
    on_tls_failure_event: Callable[[AttemptFailure], None] | None = None
    context: dict[str, Any] = field(default_factory=dict)  # told to the server out of band (vnet)
    connectivity: Any = None  # logs.connectivity.ConnectionTrace: the connectivity log of this connection


def wire_lines(code: int, message: str) -> list[str]:
    parts = message.split("\n") if message else [""]
    return [f"{code}-{p}" for p in parts[:-1]] + [f"{code} {parts[-1]}".rstrip()]


class _Abort(Exception):
    def __init__(self, failure: AttemptFailure) -> None:
        self.failure = failure


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

    def _now(self):
        return self.lab.clock.now()

    def _advance(self, seconds: float | None = None) -> None:
        self.lab.clock.advance(self.latency if seconds is None else seconds)

    def _fail(self, kind: str, **kw: Any) -> AttemptFailure:
        return AttemptFailure(kind=kind, target_ip=self.target.ip, target_port=self.target.port,
                              target_name=self.target.name, **kw)

    async def _command(self, *args: bytes, log_as: str | None = None,
                       reply_as: str | None = None) -> aiosmtplib.SMTPResponse:
        assert self.smtp is not None
        self.log.sent(log_as if log_as is not None else b" ".join(args).decode("utf-8", "surrogateescape"))
        self._advance()
        try:
            resp = await self.smtp.execute_command(*args, timeout=REAL_TIMEOUT)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError) as exc:
            raise _Abort(self._fail("socket", detail=f"{type(exc).__name__}: {exc}")) from None
        except ValueError as exc:  # aiosmtplib will not write a line with a control character in it
            raise _Abort(self._fail("socket", detail=f"cannot send the command: {exc}")) from None
        self._advance()
        if reply_as is not None and resp.code == int(reply_as[:3]):
            self.log.received(reply_as)
            return resp
        for line in wire_lines(resp.code, resp.message):
            self.log.received(line)
        return resp

    async def connect(self) -> None:
        spec, lab = self.spec, self.lab
        self.log.info(T.session_permissions_data(()), T.SET_SESSION_PERMISSIONS)
        self.log.info("", T.ATTEMPTING_TO_CONNECT)
        plan = self.plan
        if plan.failure is not None:
            self._advance(CONNECT_TIMEOUT_VIRTUAL if plan.failure == "timeout" else 2 * self.latency)
            code = 10060 if plan.failure == "timeout" else 10061
            self.log.info("", T.connect_failed_context(code, spec.destination_domain, self.target.ip, self.target.port))
            raise _Abort(self._fail("connect_timeout" if code == 10060 else "connect_refused"))
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
            self._advance(2 * self.latency)
            self.log.info("", T.connect_failed_context(10061, spec.destination_domain, self.target.ip, self.target.port))
            raise _Abort(self._fail("connect_refused")) from None
        lab.registry.announce(announced, ConnectionInfo(
            src_virtual=(plan.seen_src_ip, src_port), dst_virtual=(self.target.ip, self.target.port),
            context={"client_host": spec.src.name, "client_session": self.sid, **spec.context}))
        self.log.set_local(T.format_endpoint(plan.client_local_ip, src_port))
        self.log.connect()
        if spec.connectivity is not None:
            spec.connectivity.connected(self.target.name, self.target.ip)
        self._advance()
        self.smtp = aiosmtplib.SMTP(sock=sock, local_hostname=spec.ehlo_name, start_tls=False,
                                    timeout=REAL_TIMEOUT)
        try:
            banner = await self.smtp.connect()
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                ConnectionError) as exc:
            self._advance()
            resp_code = getattr(exc, "code", None)
            if isinstance(exc, aiosmtplib.SMTPConnectResponseError) and resp_code:
                text = f"{resp_code} {exc.message}"
                self.log.received(text)
                raise _Abort(self._fail("response", response=text, permanent=False)) from None
            raise _Abort(self._fail("socket", detail=str(exc))) from None
        self._advance()
        for line in wire_lines(banner.code, banner.message):
            self.log.received(line)

    async def ehlo(self) -> aiosmtplib.SMTPResponse:
        assert self.smtp is not None
        self.log.sent(f"EHLO {self.spec.ehlo_name}")
        self._advance()
        try:
            resp = await self.smtp.ehlo(hostname=self.spec.ehlo_name, timeout=REAL_TIMEOUT)
        except aiosmtplib.SMTPHeloError as exc:
            self._advance()
            self.log.received(f"{exc.code} {exc.message}")
            raise _Abort(self._fail("response", response=f"{exc.code} {exc.message}")) from None
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _Abort(self._fail("socket", detail=str(exc))) from None
        self._advance()
        for line in T.ehlo_reply_send(wire_lines(resp.code, resp.message)):
            self.log.received(line)
        self.peer = ehlo_offered(resp.message.split("\n")[1:])
        return resp

    async def starttls(self, verb: str = "STARTTLS") -> None:
        """STARTTLS (or Exchange's X-ANONYMOUSTLS) with the client certificate; then classify the
        server's chain if policy says so."""
        assert self.smtp is not None
        tls = self.tls
        stored = tls.client_cert
        ctx_error: NoCredentialsError | None = None
        ctx: ssl.SSLContext | None = None
        try:
            ctx = tls.store.client_context(stored)
        except NoCredentialsError as exc:
            ctx_error = exc
        if ctx is None:
            # The certificate's private key cannot be loaded: STARTTLS goes out, then the handshake
            # cannot start (seeds 002/004: NoCredentials; KB 4051498: UnknownCredentials).
            status = ctx_error.status if ctx_error is not None else "NoCredentials"
            resp = await self._command(verb.encode())
            if resp.code == 220 and stored is not None:
                for data, context in self.lab.certificate_rows(stored, self.spec.src):
                    self.log.info(data, context)
            self.log.info("", T.tls_negotiation_failed(status))
            raise _Abort(self._fail("tls_no_credentials", status=status, detail=str(ctx_error)))
        self.log.sent(verb)
        self._advance()
        # Schannel's client cache: offer the session of the last full handshake with this target
        # (pki.resume); the log rows are the same either way.
        cache = tls.store.sessions
        resume_key = (-1 if stored is None else stored.index, self.target.ip, self.target.port, tls.sni)
        try:
            with cache.offering(resume_key, self._now()):
                if verb == "STARTTLS":
                    resp = await self.smtp.starttls(tls_context=ctx, server_hostname=tls.sni, timeout=REAL_TIMEOUT)
                else:
                    resp = await _tls_by_verb(self.smtp, verb, ctx, tls.sni)
        except aiosmtplib.SMTPResponseException as exc:
            self._advance()
            self.log.received(f"{exc.code} {exc.message}")
            raise _Abort(self._fail("response", response=f"{exc.code} {exc.message}")) from None
        except (aiosmtplib.SMTPException, ssl.SSLError, ConnectionError) as exc:
            cache.forget(resume_key)
            self._advance()
            self.log.info("", T.tls_negotiation_failed("IllegalMessage"))
            raise _Abort(self._fail("tls_failed", status="IllegalMessage", detail=str(exc))) from None
        self._advance()
        self.log.received(f"{resp.code} {resp.message}")
        self._advance(2 * self.latency)  # the handshake: two round trips
        assert self.smtp.transport is not None  # STARTTLS just succeeded on this connection
        sslobj = self.smtp.transport.get_extra_info("ssl_object")
        if stored is not None:
            for data, context in self.lab.certificate_rows(stored, self.spec.src):
                self.log.info(data, context)
        version, (cipher, _, bits) = sslobj.version(), sslobj.cipher()
        self.log.info("", T.tls_success_context("client", version, cipher, bits, 256))
        self.anonymous_tls = verb == "X-ANONYMOUSTLS"
        chain = cache.resumed_chain(resume_key, sslobj)
        if chain is None:
            chain = peer_chain(sslobj)
            cache.keep(resume_key, sslobj, chain, self._now())
        self.tls_info = {"version": version, "cipher": cipher, "remote_chain": chain}
        if chain:
            for data, context in self.lab.peer_certificate_rows(chain[0], self.spec.src):
                self.log.info(data, context)
        plan = tls.plan()
        if needs_validation(plan) and self.spec.validate is not None:
            domain = validation_domain(plan)
            result = await self.spec.validate(chain, domain)
            status = str(result.status)
            self.tls_info["status"] = status
            if not server_certificate_ok(plan, status):
                self.log.info("", T.outbound_tls_auth_failed(str(tls.auth_level), status))
                leaf = chain[0] if chain else None
                raise _Abort(self._fail(
                    "cert_validation", status=status, detail=result.detail, expected=domain,
                    presented=self.lab.certificate_subject(leaf) if leaf is not None else None,
                    thumbprint=self.lab.certificate_thumbprint(leaf) if leaf is not None else None))

    async def exchange_auth(self) -> None:
        """X-EXPS EXCHANGEAUTH SHA256 <blob>, logged without the blob; a refusal fails the attempt."""
        # [INFERRED] the blob: Kerberos-bound in Exchange; here a digest of the peer certificate (never logged)
        chain = self.tls_info.get("remote_chain") or []
        seed = chain[0].fingerprint(hashes.SHA256()) if chain else self.spec.ehlo_name.encode()
        blob = base64.b64encode(hashlib.sha256(seed).digest()).decode()
        resp = await self._command(f"{V.EXCHANGEAUTH_LOGGED}{blob}".encode(), log_as=V.EXCHANGEAUTH_LOGGED,
                                   reply_as=V.EXCHANGEAUTH_REPLY_LOGGED)
        if resp.code != 235:
            self.log.info("", V.OUTBOUND_AUTH_FAILED)
            raise _Abort(self._fail("response", response=f"{resp.code} {resp.message}"))

    async def send(self, msg: OutboundMessage, result: MessageResult) -> None:
        sender = self.spec.sender
        if (msg.shadow_request is not None or msg.heartbeat is not None) and not await self._shadow_verbs(msg, result):
            return
        if msg.proxy_from is not None and "XPROXYFROM" in self.peer:
            self.proxy_seq += 1
            resp = await self._command(V.xproxyfrom_command(msg.proxy_from, self.proxy_seq).encode())
            if resp.code != 250:
                text = f"{resp.code} {resp.message}"
                (result.rejected if resp.code >= 500 else result.deferred).update({r: text for r in msg.recipients})
                result.reply = text
                return
        peer = self.peer
        auth_as = msg.auth_as
        if auth_as is None and sender.exchange and ("AUTH" in peer or "X-EXPS" in peer):
            auth_as = V.header_of(msg.data, V.AUTH_AS_HEADER)  # the item's AuthAs, stamped when it was received
        oorg = V.header_of(msg.data, V.ORIGINATOR_ORG_HEADER) if "XOORG" in peer else None
        params = [p.encode() for p in V.mail_from_params(
            sender, peer, size=len(msg.data), auth_as=auth_as, body=V.body_type(msg.data, msg.body),
            oorg=oorg, smtputf8=V.needs_smtputf8(msg.mail_from, msg.recipients))]
        resp = await self._command(b"MAIL", f"FROM:<{msg.mail_from}>".encode(), *params)
        if resp.code != 250:
            text = f"{resp.code} {resp.message}"
            (result.rejected if resp.code >= 500 else result.deferred).update({r: text for r in msg.recipients})
            result.reply = text
            await self._command(b"RSET")
            return
        accepted = []
        for rcpt in msg.recipients:
            r = await self._command(b"RCPT", f"TO:<{rcpt}>".encode())
            if r.code in (250, 251):
                accepted.append(rcpt)
                result.rcpt_replies[rcpt] = f"{r.code} {r.message}"
            else:
                (result.rejected if r.code >= 500 else result.deferred)[rcpt] = f"{r.code} {r.message}"
        if not accepted:
            await self._command(b"RSET")
            return
        if V.uses_bdat(sender, self.peer):
            await self._bdat(msg, accepted, result)
            return
        resp = await self._command(b"DATA")
        if resp.code != 354:
            text = f"{resp.code} {resp.message}"
            (result.rejected if resp.code >= 500 else result.deferred).update({r: text for r in accepted})
            return
        body = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(msg.data))
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        await self._content(body + b".\r\n", len(body), accepted, result)

    async def _shadow_verbs(self, msg: OutboundMessage, result: MessageResult) -> bool:
        """Shadow redundancy's verbs (RsetShadowSmtpCommand, XShadowRequestSmtpCommand, XShadowSmtpCommand,
        XQDiscardSmtpCommand); False when no message follows (a heartbeat, or a refusal)."""
        if msg.heartbeat is not None:
            resp = await self._command(f"XSHADOW {msg.heartbeat}".encode())
            if resp.code == 250:
                resp = await self._command(f"XQDISCARD {SHADOW_MAX_DISCARD_IDS}".encode())
            result.reply = "\r\n".join(wire_lines(resp.code, resp.message))
            return False
        if "XSHADOWREQUEST" not in self.peer:  # the peer does not take shadow copies: fail over
            result.deferred.update({r: "XSHADOWREQUEST not offered" for r in msg.recipients})
            return False
        await self._command(b"RSET")
        resp = await self._command(f"XSHADOWREQUEST {msg.shadow_request}".encode())
        if resp.code != 250:
            result.deferred.update({r: f"{resp.code} {resp.message}" for r in msg.recipients})
            return False
        return True

    async def _bdat(self, msg: OutboundMessage, accepted: list[str], result: MessageResult) -> None:
        """The whole message as one `BDAT <n> LAST` chunk (no dot-stuffing), then its reply."""
        body = normalize_message_line_endings(msg.data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        command = V.bdat_command(len(body))
        self.log.sent(command)
        await self._content(command.encode() + b"\r\n" + body, len(body), accepted, result)

    async def _content(self, wire: bytes, size: int, accepted: list[str], result: MessageResult) -> None:
        """Send a message's content (DATA's dot-terminated body or a BDAT chunk with its command),
        taking the modelled transfer time of `size` bytes, then record the final reply."""
        assert self.smtp is not None and self.smtp.protocol is not None
        rate = self.plan.bandwidth or BANDWIDTH["lan" if self.latency < 0.002 else "wan"]
        self._advance(self.latency + size / rate)
        try:
            self.smtp.protocol.write(wire)
            final = await self.smtp.protocol.read_response(timeout=REAL_TIMEOUT)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError) as exc:
            raise _Abort(self._fail("socket", detail=str(exc))) from None
        self._advance()
        text = f"{final.code} {final.message}"
        self.log.received(text)
        if final.code == 250:
            result.delivered = accepted
        else:
            (result.rejected if final.code >= 500 else result.deferred).update({r: text for r in accepted})
        result.reply = text

    async def quit(self) -> None:
        try:
            await self._command(b"QUIT")
        except _Abort:
            pass
        self._close("Local")

    def _close(self, reason: str) -> None:
        if self.smtp is not None:
            self._advance(self.plan.slow_close)  # a SlowClose link rule holds the close back
            self.smtp.close()
            self.smtp = None
        self.log.disconnect(reason)


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
        self._passes: list[ClientTls] = [spec.tls]
        self._tls: ClientTls | None = None
        self._next_target = 0
        self._exhausted = False

    @property
    def is_open(self) -> bool:
        return self.session is not None

    @property
    def client(self) -> tuple[str, int] | None:
        """(host, session id) as announced to the server (for the lab's bookkeeping)."""
        return (self.spec.src.name, self.session.sid) if self.session is not None else None

    async def open(self) -> bool:
        """Connect to the first target that completes EHLO and the TLS step; False if none does."""
        while self.session is None and not self._exhausted:
            if self._tls is None or self._next_target >= len(self.spec.targets):
                if self._tls is self.spec.tls and self.last is not None and fallback_after(self._tls.plan(),
                                                                                             self.last.kind):
                    self._passes.append(replace(self._tls, attempt=False, fallback=False))
                if not self._passes:
                    self._exhausted = True
                    break
                self._tls, self._next_target = self._passes.pop(0), 0
                continue
            i, target = self._next_target, self.spec.targets[self._next_target]
            self._next_target += 1
            session = ClientSession(self.lab, self.spec, target, self._tls)
            trace = self.spec.connectivity
            if trace is not None:
                trace.session_started(session.sid, target.name, self.last.kind if self.last else None)
            try:
                await session.connect()
                if self._tls is not self.spec.tls and i == 0:
                    session.log.info("", STARTTLS_FALLBACK)
                await _ready(session)
            except _Abort as abort:
                if trace is not None and session.smtp is None:
                    trace.connect_failed(target.name, target.ip, target.port, abort.failure.kind)
                await self._failed(session, abort.failure)
                continue
            except BaseException:  # anything else (a bug, a cancellation): never leave the session open
                if session.smtp is not None:
                    session._close("Local")
                raise
            self.session = session
        if self._exhausted and self.spec.connectivity is not None:
            self.spec.connectivity.stop()
        return self.session is not None

    async def _failed(self, session: ClientSession, failure: AttemptFailure) -> None:
        self.last = failure
        await _abandon(session, failure)
        if self.spec.on_tls_failure_event and failure.kind in ("tls_no_credentials", "tls_required",
                                                               "cert_validation"):
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
                await session.send(msg, res)
            except _Abort as abort:
                self.session = None
                await self._failed(session, abort.failure)
                continue
            except BaseException:  # never leave the session open behind an unexpected error
                self.session = None
                session._close("Local")
                raise
            self.carried += 1
            if self.spec.connectivity is not None and res.delivered:
                self.spec.connectivity.delivered(len(msg.data))
            return res

    def abort(self) -> None:
        """Close without QUIT (the session this connection served is gone)."""
        session, self.session = self.session, None
        if session is not None:
            session._close("Local")
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


async def _tls_by_verb(smtp: aiosmtplib.SMTP, verb: str, ctx: ssl.SSLContext,
                       sni: str | None) -> aiosmtplib.SMTPResponse:
    """TLS started by a verb other than STARTTLS (Exchange's X-ANONYMOUSTLS): the verb, its 220, then
    the same in-place upgrade aiosmtplib's starttls does (SMTPProtocol.start_tls, which only knows
    STARTTLS)."""
    protocol = smtp.protocol
    assert protocol is not None and protocol.transport is not None
    resp = await protocol.execute_command(verb.encode(), timeout=REAL_TIMEOUT)
    if resp.code != 220:
        raise aiosmtplib.SMTPResponseException(resp.code, resp.message)
    loop = asyncio.get_running_loop()
    try:
        transport = await loop.start_tls(protocol.transport, protocol, ctx,  # type: ignore[arg-type]
                                         server_side=False, server_hostname=sni, ssl_handshake_timeout=REAL_TIMEOUT)
    except (asyncio.TimeoutError, ConnectionError) as exc:
        raise aiosmtplib.SMTPServerDisconnected(f"TLS upgrade failed: {exc}") from exc
    protocol.transport = transport
    protocol._over_ssl = True  # what SMTPProtocol.start_tls records after its upgrade
    smtp.transport = transport
    smtp._reset_server_state()  # RFC 3207 4.2: forget the extensions learnt in the clear
    return resp


async def _ready(session: ClientSession) -> None:
    """EHLO, then the security step the rules decide (X-ANONYMOUSTLS and X-EXPS between Exchange servers,
    the TLS policy's STARTTLS otherwise; EHLO again after TLS); raises _Abort on failure."""
    await session.ehlo()
    sender = session.spec.sender
    if V.security_step(sender, session.peer, secure=False, anonymous_tls=False) == V.Security.ANONYMOUS_TLS \
            and session.tls.attempt:
        await session.starttls("X-ANONYMOUSTLS")
        await session.ehlo()
        if V.security_step(sender, session.peer, secure=True,
                           anonymous_tls=session.anonymous_tls) == V.Security.EXCHANGE_AUTH:
            await session.exchange_auth()
            params = V.xsessionparams_command(sender, session.peer)
            if params is not None:  # a Hub delivering to a database (rules.verbs)
                resp = await session._command(params.encode())
                if resp.code != 250:
                    raise _Abort(session._fail("response", response=f"{resp.code} {resp.message}"))
        return
    offered = "STARTTLS" in session.peer
    step = after_ehlo(session.tls.plan(), offered)
    if step == Step.FAIL_CERT_NOT_FOUND:
        raise _Abort(session._fail("tls_cert_not_found"))
    if step == Step.FAIL_TLS_REQUIRED:
        session.log.info("", TLS_REQUIRED_NOT_OFFERED)
        raise _Abort(session._fail("tls_required"))
    if step == Step.STARTTLS:
        await session.starttls()
        await session.ehlo()


async def _abandon(session: ClientSession, last: AttemptFailure) -> None:
    """Close a failed attempt the way Exchange does: QUIT when the peer is still talking sense."""
    if session.smtp is None and session.log.next_sequence <= 2:
        return
    if session.smtp is not None and last.kind in ("tls_required", "cert_validation", "response"):
        try:
            await session.quit()
        except Exception:  # noqa: BLE001 - the session is being abandoned anyway
            session._close("Local")
        return
    # the peer (or a link) dropped the session: Remote; we gave up on it: Local
    session._close("Remote" if session.smtp is None or last.kind == "socket" else "Local")
