"""Receive-side rules: connector selection, session permissions, EHLO, acceptance of MAIL and RCPT.

Sources: transport-behavior.md §1 (selection: bindings, then the most specific RemoteIPRanges;
permission groups and their rights), §4.2 (reply texts), §8 (EHLO keyword order), and the real
protocol-log samples (log-formats.md §2.3).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from functools import lru_cache

from ..topology.model import ReceiveConnector
from . import replies as R
from .ehlo import EhloInputs, Role
from .ehlo import ehlo_keywords as _ehlo_keywords
from .iprange import best_match_size

# What each permission group grants (transport-behavior.md §1.2, "Permission groups -> rights").
_EXCHANGE_SERVER_RIGHTS = frozenset({
    "SMTPSubmit", "SMTPAcceptAnyRecipient", "SMTPAcceptAuthenticationFlag", "SMTPAcceptAnySender",
    "SMTPAcceptAuthoritativeDomainSender", "BypassAntiSpam", "BypassMessageSizeLimit",
    "SMTPAcceptEXCH50", "AcceptRoutingHeaders", "AcceptForestHeaders", "AcceptOrganizationHeaders",
    "SendRoutingHeaders", "SendForestHeaders", "SendOrganizationHeaders", "SendAs",
    "SMTPSendXShadow", "SMTPAcceptXShadow", "SMTPAcceptXProxyFrom", "SMTPAcceptXSessionParams",
    "SMTPAcceptXMessageContextADRecipientCache", "SMTPAcceptXMessageContextExtendedProperties",
    "SMTPAcceptXMessageContextFastIndex", "SMTPAcceptXAttr", "SMTPAcceptXSysProbe",
})
GROUP_RIGHTS: dict[str, frozenset[str]] = {
    "AnonymousUsers": frozenset({"SMTPSubmit", "SMTPAcceptAnySender", "SMTPAcceptAuthoritativeDomainSender",
                                 "AcceptRoutingHeaders"}),
    "Partners": frozenset({"SMTPSubmit", "AcceptRoutingHeaders"}),
    "ExchangeUsers": frozenset({"SMTPSubmit", "SMTPAcceptAnyRecipient", "BypassAntiSpam", "AcceptRoutingHeaders"}),
    "ExchangeServers": _EXCHANGE_SERVER_RIGHTS,
    "ExchangeLegacyServers": _EXCHANGE_SERVER_RIGHTS,
    "Custom": frozenset(),
}


def _binding_matches(binding: str, local_ip: str, local_port: int) -> int | None:
    """0 for a wildcard match, 1 for an exact IP match, None for no match."""
    ip, port = binding.rsplit(":", 1)
    if int(port) != local_port:
        return None
    ip = ip.strip("[]")
    if ip in ("0.0.0.0", "::"):
        return 0
    try:
        return 1 if ipaddress.ip_address(ip) == ipaddress.ip_address(local_ip) else None
    except ValueError:
        return None


def select_receive_connector(connectors: list[ReceiveConnector], *, local_ip: str, local_port: int,
                             remote_ip: str) -> ReceiveConnector | None:
    """The connector that takes a session: matching binding, then the most specific remote range.

    Documented example: ranges 0.0.0.0-255.255.255.255, 192.168.1.0/24 and 192.168.1.75 on one
    port send 192.168.1.75 to the /32 connector and 192.168.1.100 to the /24 one.
    """
    best: tuple[int, int, str] | None = None
    chosen: ReceiveConnector | None = None
    for rc in connectors:
        if not rc.enabled:
            continue
        exact = _best_binding(tuple(rc.bindings), local_ip, local_port)
        if exact is None:
            continue
        size = _best_range(tuple(rc.remote_ip_ranges), remote_ip)
        if size is None:
            continue
        key = (-exact, size, rc.name.lower())
        if best is None or key < best:
            best, chosen = key, rc
    return chosen


# Every session selects its connector: the answers for one connector's bindings and ranges are
# pure functions of their texts and the addresses, kept per combination (a changed connector is a
# new key).
@lru_cache(maxsize=1024)
def _best_binding(bindings: tuple[str, ...], local_ip: str, local_port: int) -> int | None:
    return max((m for b in bindings if (m := _binding_matches(b, local_ip, local_port)) is not None), default=None)


@lru_cache(maxsize=1024)
def _best_range(ranges: tuple[str, ...], remote_ip: str) -> int | None:
    return best_match_size(list(ranges), remote_ip)


@dataclass
class ReceiveState:
    """What a receive session knows; the shell updates it, the rules read it."""

    connector: ReceiveConnector
    fqdn: str
    remote_ip: str
    starttls_available: bool
    is_edge: bool = False
    role: Role | None = None  # the listening service (None: from the connector's TransportRole)
    internal_certificate: bool = True  # the internal transport certificate loads: X-ANONYMOUSTLS possible
    anonymous_tls: bool = False  # secured by X-ANONYMOUSTLS rather than STARTTLS
    proxy_from: dict[str, str] | None = None  # the last XPROXYFROM's SID/IP/PORT/DOMAIN/SEQNUM (Front End proxy)
    session_mdb: str | None = None  # the XSESSIONPARAMS MDBGUID of this session (Mailbox Transport Delivery)
    helo: str | None = None
    esmtp: bool = False
    tls: bool = False
    authenticated_as_server: bool = False
    capabilities: frozenset[str] = frozenset()
    capability_failure: str | None = None  # a ChainValidityStatus when TlsDomainCapabilities failed
    mail_from: str | None = None
    recipients: list[str] = field(default_factory=list)
    errors: int = 0

    @property
    def rights(self) -> frozenset[str]:
        caps = self.capabilities
        return _rights(tuple(self.connector.permission_groups), self.tls, self.authenticated_as_server,
                       "AcceptCloudServicesMail" in caps or "AcceptOorgProtocol" in caps)

    def reset_transaction(self) -> None:
        self.mail_from = None
        self.recipients = []


@lru_cache(maxsize=256)
def _rights(groups: tuple[str, ...], tls: bool, server: bool, cloud: bool) -> frozenset[str]:
    """A session's rights from its connector's permission groups and what the session proved
    (`ReceiveState.rights`; asked at every MAIL, RCPT and BDAT, so kept per combination)."""
    rights: set[str] = set()
    if "AnonymousUsers" in groups:
        rights |= GROUP_RIGHTS["AnonymousUsers"]
    if "Partners" in groups and tls:
        rights |= GROUP_RIGHTS["Partners"]
    if server:
        for g in ("ExchangeServers", "ExchangeLegacyServers"):
            if g in groups:
                rights |= GROUP_RIGHTS[g]
    if cloud:
        # Mail from the tenant is internal to the organisation: it may relay and carries
        # organisation headers (transport-behavior.md §1.3, §7.3).
        rights |= {"SMTPSubmit", "SMTPAcceptAnyRecipient", "SMTPAcceptAnySender",
                   "SMTPAcceptAuthoritativeDomainSender", "AcceptOrganizationHeaders", "BypassAntiSpam"}
    return frozenset(rights)


EhloKey = tuple[Role, tuple[str, ...], int, bool, bool, bool, bool, frozenset[str]]


def _ehlo_key(state: ReceiveState) -> EhloKey:
    """Everything the EHLO keywords are a function of (rules.ehlo.EhloInputs), read afresh from the
    session and its connector each time: a timeline step that changes the connector changes the key."""
    rc = state.connector
    role: Role = state.role or ("Edge" if state.is_edge else
                                "Hub" if rc.transport_role == "HubTransport" else "FrontEnd")
    return (role, tuple(rc.auth_mechanism), rc.max_message_size, state.starttls_available,
            state.internal_certificate, state.tls, state.anonymous_tls, state.capabilities)


@lru_cache(maxsize=256)
def _keywords(key: EhloKey) -> tuple[str, ...]:
    role, auth, max_size, certificate, internal, secure, anonymous, capabilities = key
    return tuple(_ehlo_keywords(EhloInputs(
        role=role, auth=frozenset(str(m) for m in auth), max_message_size=max_size,
        certificate=certificate, internal_certificate=internal, secure=secure, anonymous_tls=anonymous,
        capabilities=capabilities)))


def ehlo_keywords(state: ReceiveState) -> list[str]:
    """Exchange 2019's EHLO keywords for this session (rules.ehlo; docs/transport-fidelity.md §1.1).
    A pure function of `_ehlo_key`, so each combination is worked out once (every session asks for
    it at EHLO and again at X-ANONYMOUSTLS, X-EXPS, XPROXYFROM ...)."""
    return list(_keywords(_ehlo_key(state)))


@lru_cache(maxsize=1024)
def _reply(fqdn: str, ip: str, keywords: tuple[str, ...]) -> tuple[str, ...]:
    lines = [R.HELLO.format(fqdn=fqdn, ip=ip), *keywords]
    return tuple([f"250-{ln}" for ln in lines[:-1]] + [f"250 {lines[-1]}"])


def ehlo_reply(state: ReceiveState) -> tuple[str, ...]:
    """The multi-line 250 reply as sent on the wire (`250-...` lines, last one `250 ...`); the same
    tuple object for the same inputs (the caller may key its own memo of the log text on it)."""
    return _reply(state.fqdn, state.remote_ip, _keywords(_ehlo_key(state)))


def ehlo_reply_lines(state: ReceiveState) -> list[str]:
    """`ehlo_reply` as a list."""
    return list(ehlo_reply(state))


def check_mail(state: ReceiveState, size: int | None) -> str:
    """Reply to MAIL FROM (the address itself has been parsed by the shell)."""
    if state.helo is None:
        return R.SEND_HELLO_FIRST
    if state.connector.require_tls and not state.tls:
        return R.STARTTLS_REQUIRED
    if state.mail_from is not None:
        return R.SENDER_ALREADY
    if state.capability_failure is not None:
        # The capability the connector promises could not be confirmed (event 11022): the
        # submission is refused instead (transport-behavior.md §1.3).
        return R.CERT_VALIDATION_FAILURE
    if "SMTPSubmit" not in state.rights:
        return R.NOT_AUTHENTICATED
    if size is not None and size > state.connector.max_message_size and "BypassMessageSizeLimit" not in state.rights:
        return R.TOO_LARGE
    return R.SENDER_OK


def check_rcpt(state: ReceiveState, recipient: str, *, accepted: bool) -> str:
    """Reply to RCPT TO: relay is allowed only with SMTPAcceptAnyRecipient."""
    if state.mail_from is None:
        return R.NEED_MAIL
    if not accepted and "SMTPAcceptAnyRecipient" not in state.rights:
        return R.RELAY_DENIED
    return R.RECIPIENT_OK


def check_data(state: ReceiveState) -> str:
    if state.mail_from is None:
        return R.NEED_MAIL
    if not state.recipients:
        return R.NEED_RCPT
    return R.START_DATA


def connector_fqdn(rc: ReceiveConnector, server_fqdn: str) -> str:
    return rc.fqdn or server_fqdn


def connection_limit_reply(rc: ReceiveConnector, *, total: int, from_source: int) -> str | None:
    """The 421 a new session gets instead of the banner when the connector is full, else None.

    `total` and `from_source` count the connector's open sessions including the new one.
    Exchange's SmtpReceiveConnectorStub.CheckIfConnectionThresholdsExceeded: over
    MaxInboundConnection -> TooManyConnections; over MaxInboundConnectionPerSource, or (when the
    percentage is below 100 and MaxInboundConnection is not unlimited) more connections from this
    source than ceil((MaxInboundConnection - total) * percentage / 100) -> TooManyConnectionsPerSource.
    The server-wide check comes first (SmtpInSession.Start).
    """
    limit = rc.max_inbound_connection
    if limit is not None and total > limit:
        return R.TOO_MANY_CONNECTIONS
    per_source = rc.max_inbound_connection_per_source
    if per_source is not None and from_source > per_source:
        return R.TOO_MANY_CONNECTIONS_PER_SOURCE
    pct = rc.max_inbound_connection_percentage_per_source
    if pct < 100 and limit is not None and from_source > math.ceil((limit - total) * pct / 100):
        return R.TOO_MANY_CONNECTIONS_PER_SOURCE
    return None


def check_recipient_count(rc: ReceiveConnector, accepted: int) -> str | None:
    """RCPT beyond MaxRecipientsPerMessage: `452 4.5.3 Too many recipients` (ParseResult.TooManyRecipients,
    ParsingStatus.Error, so it does not count as a protocol error)."""
    return R.TOO_MANY_RECIPIENTS if accepted >= rc.max_recipients_per_message else None
