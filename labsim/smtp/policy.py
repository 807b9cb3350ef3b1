"""Receive policies: what each kind of SMTP server answers (Exchange on-prem, EOP, an Internet MTA).

A policy is the thin adapter between the session shell (`smtp.server`) and the pure rules
(`labsim.rules`): it holds the session's rule state, asks the rules for each decision (the
checks before each verb: `rules.receive` and `rules.receive_verbs`) and writes the evidence
(protocol-log rows). What happens to an accepted message is the service's business
(`deliver` calls back into the transport service that owns the listener).

The services are the engine's parties (engine.onprem, engine.exo, engine.internet), which lie
above this module: a policy knows them only by the protocols below (`ExchangeService`,
`EopService`, `MtaService`), which name what it asks of them.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from ..clock import rfc2822_local
from ..logs import protocol_text as T
from ..rules import replies as R
from ..rules.receive import (
    ReceiveState,
    check_data,
    check_mail,
    check_rcpt,
    check_recipient_count,
    connection_limit_reply,
    connector_fqdn,
    ehlo_keywords,
    ehlo_reply,
    select_receive_connector,
)
from ..rules.receive_verbs import (
    anonymous_tls_refusal,
    auth_refusal,
    exchange_auth_refusal,
    helo_refusal,
    starttls_refusal,
    valid_helo_domain,
    xproxyfrom_reply,
    xsessionparams_reply,
)
from ..rules.shadow_redundancy import (
    ShadowSessionState,
    discard_reply,
    xqdiscard_count,
    xshadow_reply,
    xshadowrequest_reply,
)
from ..topology.model import (
    ExchangeServer,
    ExoTenant,
    InternetMailHost,
    ReceiveConnector,
)
from ..topology.timespec import parse_timespan
from .framing import ExchangeDataParser, PostfixDataParser

if TYPE_CHECKING:  # pragma: no cover
    from ..logs.protocol_log import SessionWriter
    from .session_api import Envelope, ReceivingSession

INVALID_DOMAIN = "501 5.5.4 Invalid domain name"
EOP_INACTIVITY_TIMEOUT = 300.0  # [INFERRED] a Mailbox receive connector's ConnectionInactivityTimeout
EOP_CONNECTION_TIMEOUT = 600.0  # [INFERRED] a Mailbox receive connector's ConnectionTimeout
EOP_MAX_RECIPIENTS = 1000  # Exchange Online's limit of recipients per message [INFERRED for inbound]
POSTFIX_SMTPD_TIMEOUT = 300.0  # smtpd_timeout default (mail_params.h DEF_SMTPD_TMOUT)
POSTFIX_RECIPIENT_LIMIT = 1000  # smtpd_recipient_limit default (DEF_SMTPD_RCPT_LIMIT)
POSTFIX_CHUNK_TOO_LARGE = "552 5.3.4 Chunk exceeds message size limit"  # smtpd.c bdat_cmd


@lru_cache(maxsize=1024)
def _ehlo_logged(lines: tuple[str, ...]) -> str:
    """The receive log's one row for an EHLO reply (`rules.receive.ehlo_reply` gives the same tuple
    for the same reply, so its text is worked out once)."""
    return T.ehlo_reply_receive(lines)


class ServiceLab(Protocol):
    """What a listener asks of the lab around its service: the clock (`.now()`, `.live`)."""

    clock: Any


class ExchangeLab(ServiceLab, Protocol):
    connections: ConnectionTable  # open sessions per receive connector (connection limits)


class ExchangeService(Protocol):
    """An on-prem transport service as its listeners see it (engine.onprem.ExchangeServerRuntime)."""

    name: str
    model: ExchangeServer

    @property
    def lab(self) -> ExchangeLab: ...

    def connectors_for(self, service: str) -> list[ReceiveConnector]: ...

    def select_receive_certificate(self, connector: ReceiveConnector, fqdn: str) -> Any: ...

    def next_session_id(self, service: str) -> int: ...

    def receive_log(self, service: str, connector: ReceiveConnector, sid: int, *, local: str, remote: str,
                    clock: Any) -> SessionWriter: ...

    def accepts_domain(self, address: str) -> bool: ...

    async def start_server_tls(self, session: ReceivingSession) -> None: ...

    async def start_anonymous_tls(self, session: ReceivingSession) -> None: ...

    def internal_cert(self) -> Any: ...

    async def check_client_certificate(self, session: ReceivingSession) -> None: ...

    async def connection_filter_reply(self, session: ReceivingSession, recipient: str, local_port: int) -> str | None: ...

    async def receive_message(self, session: ReceivingSession, service: str, envelope: Envelope) -> str: ...

    async def end_proxy(self, session: ReceivingSession) -> None: ...

    def drop_proxy(self, session: ReceivingSession) -> None: ...

    # org3: shadow redundancy (engine.shadow)
    @property
    def shadow(self) -> Any: ...

    def discard_ids(self, context: str, limit: int) -> list[str]: ...


class EopService(Protocol):
    """Exchange Online's front end as its listeners see it (engine.exo.ExoRuntime)."""

    model: ExoTenant
    frontend_fqdn: str

    @property
    def lab(self) -> ServiceLab: ...

    def open_session(self, session: ReceivingSession) -> bool: ...

    async def start_server_tls(self, session: ReceivingSession) -> None: ...

    async def check_mail(self, session: ReceivingSession, address: str) -> str: ...

    async def block_list_reply(self, session: ReceivingSession) -> str | None: ...

    async def check_rcpt(self, session: ReceivingSession, address: str) -> str: ...

    async def receive_message(self, session: ReceivingSession, envelope: Envelope) -> str: ...


class MtaService(Protocol):
    """A plain Internet mail host as its listener sees it (engine.internet.InternetHostRuntime)."""

    model: InternetMailHost

    @property
    def lab(self) -> ServiceLab: ...

    @property
    def has_tls(self) -> bool: ...

    def hosts_domain(self, address: str) -> bool: ...

    def has_mailbox(self, address: str) -> bool: ...

    def open_session(self, session: ReceivingSession) -> bool: ...

    async def start_server_tls(self, session: ReceivingSession) -> None: ...

    async def receive_message(self, session: ReceivingSession, envelope: Envelope) -> str: ...


class ReceivePolicy:
    """Common shape; concrete policies override what differs."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def clock_now(self):
        return self.runtime.clock.now()

    async def open(self, session: "ReceivingSession") -> bool:
        raise NotImplementedError

    def opened(self, session: "ReceivingSession") -> bool:
        return session.state is not None

    def closed(self, session: "ReceivingSession") -> None:
        """Session bookkeeping is the listener's (engine.runtime); nothing to do by default."""

    async def quit(self, session: "ReceivingSession") -> None:
        """The client said QUIT (before the 221): a proxying listener ends its proxy session."""

    def banner(self, session: "ReceivingSession") -> str:
        raise NotImplementedError

    def max_size(self, session: "ReceivingSession") -> int:
        return 36 * 1024 * 1024

    def max_protocol_errors(self, session: "ReceivingSession") -> int | None:
        """How many protocol errors a session may make before it is dropped (None: unlimited)."""
        return None

    # --- limits and framing (docs/smtp-limits.md) ---------------------------------------------
    @property
    def live(self) -> bool:
        """Does the lab's clock follow the wall clock (`labsim up`)?"""
        return bool(getattr(getattr(self.runtime, "clock", None), "live", False))

    def refusal(self, session: "ReceivingSession") -> str | None:
        """The reply that replaces the banner (a connection limit), or None."""
        return None

    def timeouts(self, session: "ReceivingSession") -> tuple[float | None, float | None]:
        """(inactivity, whole session) limits in seconds; None = no limit."""
        return None, None

    def timeout_reply(self, session: "ReceivingSession", kind: str) -> str:
        """What the server says when `kind` ("inactivity" or "session") ran out."""
        return R.TIMEOUT if kind == "inactivity" else R.CONNECTION_TIMED_OUT

    def recipient_limit_reply(self, session: "ReceivingSession", accepted: int) -> str | None:
        """The reply to one RCPT too many when `accepted` recipients are already in, else None."""
        return None

    def data_parser(self, session: "ReceivingSession") -> ExchangeDataParser | PostfixDataParser:
        """Where this receiver's DATA ends (smtp.framing)."""
        return ExchangeDataParser()

    def max_header_size(self, session: "ReceivingSession") -> int | None:
        return None

    def header_too_large(self, session: "ReceivingSession", size: int, limit: int) -> None:
        """Evidence for a header over MaxHeaderSize (the reply itself is the shell's)."""

    def content_reply(self, session: "ReceivingSession", *, bare_lf: bool) -> str | None:
        """A refusal of complete message content (e.g. bare LF), or None to go on delivering."""
        return None

    def bdat_malformed_reply(self, session: "ReceivingSession", *, overflow: bool) -> str:
        """The reply to a BDAT command whose arguments do not parse (`overflow`: digits that are too
        many for a number); the session ends after it. Exchange's ValidateChunkSizeArg: up to 20
        digits that overflow a long are MessageTooLarge, anything else InvalidArguments."""
        return R.TOO_LARGE if overflow else R.INVALID_ARGS

    def bdat_refusal(self, session: "ReceivingSession", accumulated: int, count: int) -> str | None:
        """The reply that refuses a BDAT chunk of `count` bytes before it is read, after which the
        session ends; None to read the chunk.

        Exchange (BdatSmtpCommandParser): a count that overflows a long, or a message that would grow
        past Int32.MaxValue, is MessageTooLarge at once, and a failed BDAT parse disconnects the
        client (BdatSmtpInCommand.Parse); a smaller chunk over MaxMessageSize is read and dropped
        (DataBdatCommandBase) and refused after its last byte (docs/smtp-limits.md §4)."""
        total = accumulated + count
        if total > 2**31 - 1:
            if session.log is not None:
                session.log.info("", f"NextTotalChunkSize: {total} > Int32.MaxValue: {2**31 - 1}")
            return R.TOO_LARGE
        return None

    def bdat_too_large_reply(self, session: "ReceivingSession") -> str:
        """The reply after a BDAT chunk that took the message over the size limit was read."""
        return R.TOO_LARGE

    def bare_lf_command_reply(self, session: "ReceivingSession") -> str | None:
        """The reply that ends a session whose command line ended in a bare LF, or None to accept it."""
        return None

    def abort_transaction(self, session: "ReceivingSession") -> None:
        """A refused message ends the mail transaction (AbortMailTransaction)."""
        st = session.state
        if st is not None and hasattr(st, "mail_from"):
            st.mail_from = None
            st.recipients = []

    async def auth(self, session: "ReceivingSession", arg: str) -> None:
        await session.reply(R.UNRECOGNIZED_AUTH)

    # Exchange's own verbs between Exchange servers: unknown to any other receiver.
    async def anonymous_tls(self, session: "ReceivingSession", arg: str) -> None:
        await session.reply(R.UNRECOGNIZED)

    async def exchange_auth(self, session: "ReceivingSession", arg: str) -> None:
        await session.reply(R.UNRECOGNIZED)

    async def xproxyfrom(self, session: "ReceivingSession", arg: str) -> str:
        return R.UNRECOGNIZED

    async def xsessionparams(self, session: "ReceivingSession", arg: str) -> str:
        return R.UNRECOGNIZED

    async def help(self, session: "ReceivingSession", arg: str) -> None:
        await session.reply(R.UNRECOGNIZED)  # what a receiver without HELP says (EOP's own answer is not known)

    # org3: shadow redundancy's verbs, Exchange's Transport service only
    async def xshadowrequest(self, session: "ReceivingSession", arg: str) -> str:
        return R.UNRECOGNIZED

    async def xshadow(self, session: "ReceivingSession", arg: str) -> str:
        return R.UNRECOGNIZED

    async def xqdiscard(self, session: "ReceivingSession", arg: str) -> str | list[str]:
        return R.UNRECOGNIZED

    async def ehlo(self, session: "ReceivingSession", arg: str, *, extended: bool) -> None:
        raise NotImplementedError

    async def starttls(self, session: "ReceivingSession", arg: str = "") -> None:
        raise NotImplementedError

    async def mail(self, session: "ReceivingSession", address: str, params: dict[str, str], size: int | None) -> str:
        raise NotImplementedError

    async def rcpt(self, session: "ReceivingSession", address: str) -> str:
        raise NotImplementedError

    def data_start(self, session: "ReceivingSession") -> str:
        raise NotImplementedError

    async def deliver(self, session: "ReceivingSession", envelope: "Envelope") -> str:
        raise NotImplementedError


@dataclass
class ListenerSpec:
    """Which connectors a listening socket serves: one transport service, one virtual port."""

    service: str  # "FrontEnd" | "Hub" | "Edge" | "MailboxDelivery"
    port: int


class ExchangeReceivePolicy(ReceivePolicy):
    """An on-prem Exchange 2019 transport service (Front End, Transport/Hub, Edge, Mailbox Delivery)."""

    def __init__(self, server: ExchangeService, listener: ListenerSpec) -> None:
        super().__init__(server.lab)
        self.server = server
        self.listener = listener

    async def open(self, session: "ReceivingSession") -> bool:
        srv = self.server
        remote_ip, remote_port = session.context["remote"]
        connector = select_receive_connector(srv.connectors_for(self.listener.service), local_ip=srv.model.ip,
                                             local_port=self.listener.port, remote_ip=remote_ip)
        if connector is None:
            return False
        fqdn = connector_fqdn(connector, srv.model.fqdn)
        cert = srv.select_receive_certificate(connector, fqdn)
        state = ReceiveState(connector=connector, fqdn=fqdn, remote_ip=remote_ip,
                             starttls_available=cert is not None, is_edge=srv.model.role == "Edge",
                             role=self.listener.service,  # type: ignore[arg-type]
                             internal_certificate=srv.internal_cert() is not None)
        state_ext = ExchangeSessionExtra(cert=cert)
        table: ConnectionTable = srv.lab.connections
        key = (srv.name, connector.name)
        total, from_source = table.add(key, remote_ip)
        state_ext.counted = key
        state_ext.refusal = connection_limit_reply(connector, total=total, from_source=from_source)
        session.state = state
        session.extra = state_ext
        sid = srv.next_session_id(self.listener.service)
        session.session_id = sid
        session.log = srv.receive_log(self.listener.service, connector, sid,
                                      local=T.format_endpoint(srv.model.ip, self.listener.port),
                                      remote=T.format_endpoint(remote_ip, remote_port), clock=session.now)
        return True

    def closed(self, session: "ReceivingSession") -> None:
        extra = session.extra
        if isinstance(extra, ExchangeSessionExtra) and extra.counted is not None:
            self.server.lab.connections.remove(extra.counted, session.state.remote_ip)
            extra.counted = None
        if self.listener.service == "FrontEnd":
            self.server.drop_proxy(session)

    async def quit(self, session: "ReceivingSession") -> None:
        if self.listener.service == "FrontEnd":
            await self.server.end_proxy(session)

    def refusal(self, session: "ReceivingSession") -> str | None:
        return session.extra.refusal

    def timeouts(self, session: "ReceivingSession") -> tuple[float | None, float | None]:
        rc = session.state.connector  # asked at every read: the seconds are kept per pair of texts
        return _connector_timeouts(rc.connection_inactivity_timeout, rc.connection_timeout)

    def recipient_limit_reply(self, session: "ReceivingSession", accepted: int) -> str | None:
        return check_recipient_count(session.state.connector, accepted)

    def max_header_size(self, session: "ReceivingSession") -> int | None:
        state: ReceiveState = session.state
        return None if "BypassMessageSizeLimit" in state.rights else state.connector.max_header_size

    def header_too_large(self, session: "ReceivingSession", size: int, limit: int) -> None:
        # BaseDataSmtpCommand: LogInformation(Verbose, null, "AccumulatedMessageSize: {0} > MaxHeaderSize: {1}")
        session.log.info("", f"AccumulatedMessageSize: {size} > MaxHeaderSize: {T.byte_quantified_size(limit)}")

    def abort_transaction(self, session: "ReceivingSession") -> None:
        session.state.reset_transaction()

    def banner(self, session: "ReceivingSession") -> str:
        state: ReceiveState = session.state
        if state.connector.banner:
            return state.connector.banner
        return R.BANNER.format(fqdn=state.fqdn, date=rfc2822_local(session.now(), self.server.model.utc_offset_minutes))

    def max_size(self, session: "ReceivingSession") -> int:
        return session.state.connector.max_message_size

    def max_protocol_errors(self, session: "ReceivingSession") -> int | None:
        state: ReceiveState | None = session.state
        return state.connector.max_protocol_errors if state is not None else None

    async def ehlo(self, session: "ReceivingSession", arg: str, *, extended: bool) -> None:
        state: ReceiveState = session.state
        refused = helo_refusal(arg, extended=extended)
        if refused is not None:
            await session.reply(refused)
            return
        first_after_tls = state.tls and state.helo is None
        state.helo = arg
        state.esmtp = extended
        state.reset_transaction()
        session.envelope.__init__()  # type: ignore[misc]
        if first_after_tls:
            await self.server.check_client_certificate(session)
        if not extended:
            await session.reply(f"250 {R.HELLO.format(fqdn=state.fqdn, ip=state.remote_ip)}")
            return
        lines = ehlo_reply(state)
        await session.reply(list(lines), log_as=_ehlo_logged(lines))

    async def starttls(self, session: "ReceivingSession", arg: str = "") -> None:
        refused = starttls_refusal(session.state, arg)
        if refused is not None:
            await session.reply(refused)
            return
        await self.server.start_server_tls(session)

    async def anonymous_tls(self, session: "ReceivingSession", arg: str) -> None:
        refused = anonymous_tls_refusal(session.state, arg)
        if refused is not None:
            await session.reply(refused)
            return
        await self.server.start_anonymous_tls(session)

    async def exchange_auth(self, session: "ReceivingSession", arg: str) -> None:
        # The reply's blob is never logged: `235 <authentication response>` [V-code XExpsSmtpInCommand].
        state: ReceiveState = session.state
        words = arg.split()
        refused = exchange_auth_refusal(state, words)
        if refused is not None:
            await session.reply(refused)
            return
        session.log.info(T.session_permissions_data(state.rights), T.SET_SESSION_PERMISSIONS)
        # [INFERRED] the server's half of the exchange: any blob will do, it never reaches a log
        await session.reply(_server_auth_reply(words[2]), log_as="235 <authentication response>")

    async def xproxyfrom(self, session: "ReceivingSession", arg: str) -> str:
        state: ReceiveState = session.state
        reply, proxy_from = xproxyfrom_reply(state, arg)
        if proxy_from is not None:
            state.proxy_from = proxy_from
        return reply

    async def help(self, session: "ReceivingSession", arg: str) -> None:
        # Exchange answers HELP whatever the session's state (HelpSmtpCommand); the receive log
        # flattens a multi-line reply without enhanced code into one row, as it does EHLO's [INFERRED]
        await session.reply(R.HELP, log_as=T.ehlo_reply_receive(R.HELP))

    async def xsessionparams(self, session: "ReceivingSession", arg: str) -> str:
        state: ReceiveState = session.state
        reply, mdb = xsessionparams_reply(state, arg)
        if mdb is not None:
            state.session_mdb = mdb
        return reply

    # --- org3: shadow redundancy (rules.shadow_redundancy decides, engine.shadow keeps the copies) ---
    def _shadow_session(self, session: "ReceivingSession") -> "ShadowSessionState | None":
        """The session's shadow state; None outside the Transport service (only it shadows)."""
        extra = session.extra
        if self.listener.service != "Hub" or not isinstance(extra, ExchangeSessionExtra):
            return None
        if extra.shadow is None:
            extra.shadow = ShadowSessionState()
        return extra.shadow

    def _shadow_gate(self, session: "ReceivingSession") -> "tuple[ReceiveState, ShadowSessionState] | str":
        """What the three shadow verbs check first: a greeting, then a Transport service."""
        state: ReceiveState = session.state
        shadow = self._shadow_session(session)
        if state.helo is None:
            return R.SEND_HELLO_FIRST
        if shadow is None:
            return R.UNRECOGNIZED
        return state, shadow

    async def xshadowrequest(self, session: "ReceivingSession", arg: str) -> str:
        gate = self._shadow_gate(session)
        if isinstance(gate, str):
            return gate
        state, shadow = gate
        if state.mail_from is not None:
            return R.SENDER_ALREADY
        return xshadowrequest_reply(shadow, arg, offered="XSHADOWREQUEST" in ehlo_keywords(state),
                                    authorized="SMTPAcceptXShadow" in state.rights, own_name=self.server.model.fqdn)

    async def xshadow(self, session: "ReceivingSession", arg: str) -> str:
        gate = self._shadow_gate(session)
        if isinstance(gate, str):
            return gate
        state, shadow = gate
        return xshadow_reply(shadow, arg, offered="XSHADOWREQUEST" in ehlo_keywords(state),
                             authorized="SMTPAcceptXShadow" in state.rights,
                             database_id=self.server.shadow.database_id)

    async def xqdiscard(self, session: "ReceivingSession", arg: str) -> str | list[str]:
        gate = self._shadow_gate(session)
        if isinstance(gate, str):
            return gate
        state, shadow = gate
        count = xqdiscard_count(shadow, arg, offered="XSHADOWREQUEST" in ehlo_keywords(state))
        if isinstance(count, str):
            return count
        return discard_reply(self.server.discard_ids(shadow.shadowed_by or "", count))

    async def mail(self, session: "ReceivingSession", address: str, params: dict[str, str], size: int | None) -> str:
        state: ReceiveState = session.state
        reply = check_mail(state, size)
        if reply.startswith("250"):
            state.mail_from = address
            session.log.info(T.receiving_message_data(session.session_id, session.started, session.messages + 1),
                             T.RECEIVING_MESSAGE)
        return reply

    async def rcpt(self, session: "ReceivingSession", address: str) -> str:
        state: ReceiveState = session.state
        reply = check_rcpt(state, address, accepted=self.server.accepts_domain(address))
        if reply.startswith("250") and self.server.model.ip_block_list_providers:
            reply = await self.server.connection_filter_reply(session, address, self.listener.port) or reply
        if reply.startswith("250"):
            state.recipients.append(address)
        return reply

    def data_start(self, session: "ReceivingSession") -> str:
        return check_data(session.state)

    async def deliver(self, session: "ReceivingSession", envelope: "Envelope") -> str:
        state: ReceiveState = session.state
        state.reset_transaction()
        return await self.server.receive_message(session, self.listener.service, envelope)

    async def auth(self, session: "ReceivingSession", arg: str) -> None:
        mech = arg.split()[0].upper() if arg else ""
        refused = auth_refusal(session.state, mech)
        if refused is not None:
            reply, info = refused
            if info is not None:
                session.log.info("", info)
            await session.reply(reply)
            return
        if mech == "LOGIN":
            await session.reply("334 " + base64.b64encode(b"Username:").decode(), log_as="334 <authentication response>")
            user = await session.read_line()
            if user is None:
                return
            await session.reply("334 " + base64.b64encode(b"Password:").decode(), log_as="334 <authentication response>")
            if await session.read_line() is None:
                return
            session.log.info("", "Inbound AUTH LOGIN failed because of LogonDenied")
        await session.reply("535 5.7.3 Authentication unsuccessful")


@lru_cache(maxsize=256)  # a peer sends the same blob on every session (client_session._peer_blob)
def _server_auth_reply(blob: str) -> str:
    return "235 " + base64.b64encode(hashlib.sha256(blob.encode()).digest()).decode()


@lru_cache(maxsize=64)
def _connector_timeouts(inactivity: str, total: str) -> tuple[float, float]:
    """(ConnectionInactivityTimeout, ConnectionTimeout) in seconds, as ReceiveConnector's properties
    give them (topology.model: `inactivity_seconds`, `connection_timeout_seconds`)."""
    return parse_timespan(inactivity).total_seconds(), parse_timespan(total).total_seconds()


_POSTFIX_NEUTER = set(" <>()\\\";@")  # smtpd.c NEUTER_CHARACTERS


def postfix_helo_name(arg: str) -> str:
    """The HELO name as Postfix keeps it: printable() masks what is not printable ASCII or valid UTF-8
    (a byte that is not UTF-8 arrives as a lone surrogate) with '?', then neuter() masks " <>()\\";@"."""
    return "".join("?" if (not c.isprintable() or "\ud800" <= c <= "\udfff" or c in _POSTFIX_NEUTER) else c
                   for c in arg)


@dataclass
class ExchangeSessionExtra:
    cert: Any  # the StoredCert the connector presents, or None
    peer_chain: list | None = None
    tls: dict | None = None  # version and cipher once STARTTLS succeeded (None: the session stayed in the clear)
    refusal: str | None = None  # a connection limit's 421, said instead of the banner
    counted: tuple[str, str] | None = None  # the (server, connector) whose connection table holds this session
    shadow: Any = None  # org3: rules.shadow_redundancy.ShadowSessionState (XSHADOWREQUEST / XSHADOW)


class ConnectionTable:
    """Open inbound sessions per receive connector and per remote address (SmtpReceiveConnectorStub's
    ClientIPTable); the runtime owns one for the whole lab."""

    def __init__(self) -> None:
        self._total: dict[tuple[str, str], int] = {}
        self._by_ip: dict[tuple[tuple[str, str], str], int] = {}

    def add(self, key: tuple[str, str], ip: str) -> tuple[int, int]:
        """Count a new session; returns (sessions on the connector, sessions from `ip`), both with it."""
        self._total[key] = self._total.get(key, 0) + 1
        self._by_ip[(key, ip)] = self._by_ip.get((key, ip), 0) + 1
        return self._total[key], self._by_ip[(key, ip)]

    def remove(self, key: tuple[str, str], ip: str) -> None:
        _decrement(self._total, key)
        _decrement(self._by_ip, (key, ip))


def _decrement(table: dict[Any, int], key: Any) -> None:
    left = table.get(key, 0) - 1
    if left > 0:
        table[key] = left
    else:
        table.pop(key, None)


class EopReceivePolicy(ReceivePolicy):
    """The Exchange Online Protection front end (`*.mail.protection.outlook.com`)."""

    def __init__(self, exo: EopService, *, front: str = "mx") -> None:
        super().__init__(exo.lab)
        self.exo = exo
        self.front = front  # "mx" (*.mail.protection.outlook.com) | "submission" (smtp.office365.com)

    @property
    def fqdn(self) -> str:
        return self.exo.model.submission_host if self.front == "submission" else self.exo.frontend_fqdn

    async def open(self, session: "ReceivingSession") -> bool:
        return self.exo.open_session(session)

    def banner(self, session: "ReceivingSession") -> str:
        return R.EXO_BANNER.format(fqdn=self.fqdn,
                                   date=rfc2822_local(session.now(), 0), session=f"{session.session_id:016X}")

    def max_size(self, session: "ReceivingSession") -> int:
        return 157286400

    def timeouts(self, session: "ReceivingSession") -> tuple[float | None, float | None]:
        # [INFERRED] EOP runs Exchange's transport: a Mailbox server's receive connector defaults.
        return EOP_INACTIVITY_TIMEOUT, EOP_CONNECTION_TIMEOUT

    def recipient_limit_reply(self, session: "ReceivingSession", accepted: int) -> str | None:
        # Exchange Online's recipient limit per message (1000) with Exchange's TooManyRecipients [INFERRED].
        return R.TOO_MANY_RECIPIENTS if accepted >= EOP_MAX_RECIPIENTS else None

    async def ehlo(self, session: "ReceivingSession", arg: str, *, extended: bool) -> None:
        # EOP runs Exchange's transport: HeloSmtpCommandParser refuses a domain that is neither a
        # host name nor an address literal (501 5.5.4 Invalid domain name) [INFERRED for EOP], and
        # a good EHLO/HELO starts over (no transaction in progress).
        st = session.state
        if not arg or not valid_helo_domain(arg):
            await session.reply(INVALID_DOMAIN)
            return
        st.helo = arg
        self.abort_transaction(session)
        session.envelope.__init__()  # type: ignore[misc]
        hello = f"{self.fqdn} Hello [{st.remote_ip}]"
        if not extended:
            await session.reply(f"250 {hello}")
            return
        kw = [hello, "SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES"]
        if not st.tls:
            kw.append("STARTTLS")
        kw += ["8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"]
        await session.reply([f"250-{k}" for k in kw[:-1]] + [f"250 {kw[-1]}"])

    async def starttls(self, session: "ReceivingSession", arg: str = "") -> None:
        if session.state.helo is None:
            await session.reply(R.SEND_HELLO_FIRST)
            return
        if session.state.tls:
            await session.reply(R.ONE_STARTTLS)
            return
        await self.exo.start_server_tls(session)

    async def mail(self, session: "ReceivingSession", address: str, params: dict[str, str], size: int | None) -> str:
        st = session.state
        if st.helo is None:
            return R.SEND_HELLO_FIRST
        if st.mail_from is not None:
            return R.SENDER_ALREADY
        if size is not None and size > 157286400:
            return R.TOO_LARGE
        return await self.exo.check_mail(session, address)

    async def rcpt(self, session: "ReceivingSession", address: str) -> str:
        if session.state.mail_from is None:
            return R.NEED_MAIL
        if self.front == "mx":  # IP reputation is a direct-to-MX matter (Spamhaus PBL's own policy)
            blocked = await self.exo.block_list_reply(session)
            if blocked:
                return blocked
        return await self.exo.check_rcpt(session, address)

    def data_start(self, session: "ReceivingSession") -> str:
        st = session.state
        if st.mail_from is None:
            return R.NEED_MAIL
        if not st.recipients:
            return R.NEED_RCPT
        return R.START_DATA

    async def deliver(self, session: "ReceivingSession", envelope: "Envelope") -> str:
        return await self.exo.receive_message(session, envelope)


class MtaReceivePolicy(ReceivePolicy):
    """A plain Internet MTA (Postfix-like replies) hosting its own domains."""

    def __init__(self, host: MtaService) -> None:
        super().__init__(host.lab)
        self.host = host

    async def open(self, session: "ReceivingSession") -> bool:
        return self.host.open_session(session)

    def banner(self, session: "ReceivingSession") -> str:
        return f"220 {self.host.model.fqdn} ESMTP Postfix"

    def max_size(self, session: "ReceivingSession") -> int:
        return 10240000

    # A hardened Postfix >= 3.9 (docs/smtp-limits.md §1): smtpd_forbid_bare_newline = reject with
    # the default smtpd_forbid_bare_newline_reject_code 550; smtpd_timeout 300s;
    # smtpd_recipient_limit 1000. Texts from Postfix's smtpd.c.
    def data_parser(self, session: "ReceivingSession") -> PostfixDataParser:
        return PostfixDataParser()

    def content_reply(self, session: "ReceivingSession", *, bare_lf: bool) -> str | None:
        return f"550 5.5.2 {self.host.model.fqdn} Error: bare <LF> received" if bare_lf else None

    def bare_lf_command_reply(self, session: "ReceivingSession") -> str | None:
        return f"550 5.5.2 {self.host.model.fqdn} Error: bare <LF> received"

    # smtpd.c bdat_cmd/skip_bdat: a chunk over message_size_limit is refused with this text; when it
    # is over 1.5 times the limit Postfix does not read it at all: it answers at once and shuts the
    # input down (the next read is a lost connection).
    def bdat_malformed_reply(self, session: "ReceivingSession", *, overflow: bool) -> str:
        return "521 5.5.4 Syntax: BDAT count [LAST]"  # and Postfix hangs up

    def bdat_refusal(self, session: "ReceivingSession", accumulated: int, count: int) -> str | None:
        limit = self.max_size(session)
        if accumulated / 1.5 > limit - count / 1.5:
            return POSTFIX_CHUNK_TOO_LARGE
        return None

    def bdat_too_large_reply(self, session: "ReceivingSession") -> str:
        return POSTFIX_CHUNK_TOO_LARGE

    def timeouts(self, session: "ReceivingSession") -> tuple[float | None, float | None]:
        return POSTFIX_SMTPD_TIMEOUT, None

    def timeout_reply(self, session: "ReceivingSession", kind: str) -> str:
        return f"421 4.4.2 {self.host.model.fqdn} Error: timeout exceeded"

    def recipient_limit_reply(self, session: "ReceivingSession", accepted: int) -> str | None:
        return "452 4.5.3 Error: too many recipients" if accepted >= POSTFIX_RECIPIENT_LIMIT else None

    async def ehlo(self, session: "ReceivingSession", arg: str, *, extended: bool) -> None:
        st = session.state
        if not arg:
            await session.reply("501 Syntax: EHLO hostname" if extended else "501 Syntax: HELO hostname")
            return
        # smtpd.c helo_cmd/ehlo_cmd: the transaction is reset and the name kept as
        # printable(name, "?") then neuter(name, NEUTER_CHARACTERS, "?") (postfix_helo_name).
        self.abort_transaction(session)
        session.envelope.__init__()  # type: ignore[misc]
        st.helo = postfix_helo_name(arg)
        if not extended:
            await session.reply(f"250 {self.host.model.fqdn}")
            return
        kw = [self.host.model.fqdn, "PIPELINING", "SIZE 10240000", "VRFY", "ETRN"]
        if not st.tls and self.host.has_tls:
            kw.append("STARTTLS")
        kw += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"]
        await session.reply([f"250-{k}" for k in kw[:-1]] + [f"250 {kw[-1]}"])

    async def starttls(self, session: "ReceivingSession", arg: str = "") -> None:
        if session.state.tls or not self.host.has_tls:
            await session.reply("502 5.5.1 Error: command not implemented")
            return
        await self.host.start_server_tls(session)

    async def mail(self, session: "ReceivingSession", address: str, params: dict[str, str], size: int | None) -> str:
        st = session.state
        if st.helo is None:
            return "503 5.5.1 Error: send HELO/EHLO first"
        if size is not None and size > 10240000:
            return "552 5.3.4 Message size exceeds fixed limit"
        st.mail_from = address
        return "250 2.1.0 Ok"

    async def rcpt(self, session: "ReceivingSession", address: str) -> str:
        st = session.state
        if st.mail_from is None:
            return "503 5.5.1 Error: need MAIL command"
        if not self.host.hosts_domain(address):
            return f"454 4.7.1 <{address}>: Relay access denied"
        if not self.host.has_mailbox(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table"
        st.recipients.append(address)
        return "250 2.1.5 Ok"

    def data_start(self, session: "ReceivingSession") -> str:
        st = session.state
        if st.mail_from is None:
            return "503 5.5.1 Error: need MAIL command"
        if not st.recipients:
            return "554 5.5.1 Error: no valid recipients"
        return "354 End data with <CR><LF>.<CR><LF>"

    async def deliver(self, session: "ReceivingSession", envelope: "Envelope") -> str:
        session.state.mail_from = None
        session.state.recipients = []
        return await self.host.receive_message(session, envelope)
