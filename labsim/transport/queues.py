"""Queues of one transport server, with Exchange's identities and fields (transport-behavior.md §6).

Delivery queues are created on demand per next hop (`<SERVER>\\<n>`, numbered in creation order);
the persistent queues are `Submission`, `Unreachable` and `Poison`. A message in a queue is known
by `<SERVER>\\<queue>\\<n>` where n is the server's InternalId of the message (the number the 250
2.6.0 reply and the tracking log's internal-message-id show), so one id ties Get-Message to the
protocol and tracking logs.

This module is data: what a queue and a queued message *are*. What happens to them (retries,
expiry, the operations an admin runs) lives in `engine.queueing` and `engine.queue_ops`; the
decisions (when to retry next) in `rules.retry`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clock import iso_ms, us_time
from .message import MailItem

PERSISTENT = ("Submission", "Unreachable", "Poison")
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
# The DeliveryTypes whose next hop is outside the organisation (queues.md, NextHopCategory).
EXTERNAL_TYPES = frozenset({"DnsConnectorDelivery", "SmartHostConnectorDelivery", "NonSmtpGatewayDelivery",
                            "DeliveryAgent", "Unreachable"})


@dataclass
class QueuedMessage:
    """One message (for some of its recipients) in one queue: what Get-Message shows."""

    item: MailItem
    recipients: list[str]
    status: str = "Ready"  # Active, Ready, Retry, Suspended (message-properties.md)
    last_error: str = ""
    retry_count: int = 0
    suspended: bool = False
    next_retry_time: datetime | None = None  # a message-level retry (MessageRetryInterval)
    queued_at: datetime | None = None
    source: str = ""  # MessageSourceName: SMTP:<connector>, FromLocal, DSN
    deferred: bool = False  # a DEFER row has been written for the current error
    last_deferred_error: str = ""
    send_started: datetime | None = None  # when the current send of it began (latency SMS / QD*)

    @property
    def number(self) -> int:
        return self.item.internal_id

    @property
    def eligible_status(self) -> str:
        return "Suspended" if self.suspended else self.status


@dataclass
class Queue:
    identity: str
    delivery_type: str
    next_hop_domain: str
    route: object = None  # the rules.routing.Route (or EXO route) that created it
    messages: list[QueuedMessage] = field(default_factory=list)
    status: str = "Ready"
    last_error: str = ""
    retry_count: int = 0
    connection_failures: int = 0  # consecutive failed connection attempts (glitch/transient/outbound)
    first_retry_time: datetime | None = None
    last_retry_time: datetime | None = None
    next_retry_time: datetime | None = None
    suspended: bool = False
    next_hop_connector: str = ZERO_GUID
    tls_domain: str = ""
    created: datetime | None = None
    last_activity: datetime | None = None
    last_target_host: str = ""  # the host of the last attempt (NDR Remote Server, trace FQDN/IP)
    last_target_ip: str = ""
    # scheduling bookkeeping (not shown)
    next_drain: datetime | None = None
    token: int = 0
    draining: bool = False
    drain_entry: Any = None  # the scheduler's entry of the next drain (cancelled when superseded)
    connections: list = field(default_factory=list)  # the queue's open outbound connections (engine.queueing)

    @property
    def message_count(self) -> int:
        return len(self.messages)

    @property
    def shown_last_error(self) -> str:
        """Get-Queue's LastError: after a failed attempt Exchange 2013+ prints the structured form
        `[{LRT=<last retry>};{LED=<error>};{FQDN=<host>};{IP=<address>}]` (a real Exchange 2013
        Get-Queue output on Microsoft Q&A 234456); the Unreachable queue shows its reason as is."""
        if not self.last_error or self.last_retry_time is None or self.delivery_type == "Unreachable":
            return self.last_error
        return (f"[{{LRT={us_time(self.last_retry_time)}}};{{LED={self.last_error}}};"
                f"{{FQDN={self.last_target_host}}};{{IP={self.last_target_ip}}}]")

    @property
    def name(self) -> str:
        return self.identity.split("\\", 1)[1]

    @property
    def shown_status(self) -> str:
        return "Suspended" if self.suspended else self.status

    @property
    def next_hop_category(self) -> str:
        return "External" if self.delivery_type in EXTERNAL_TYPES else "Internal"

    def find(self, number: int) -> QueuedMessage | None:
        return next((qm for qm in self.messages if qm.number == number), None)

    def row(self) -> dict[str, Any]:
        """The Get-Queue view (the properties an admin reads first, in Exchange's names)."""
        return {
            "Identity": self.identity, "DeliveryType": self.delivery_type, "Status": self.shown_status,
            "MessageCount": self.message_count, "NextHopDomain": self.next_hop_domain,
            "NextHopCategory": self.next_hop_category, "NextHopConnector": self.next_hop_connector,
            "TlsDomain": self.tls_domain, "LastError": self.shown_last_error, "RetryCount": self.retry_count,
            "FirstRetryTime": _t(self.first_retry_time), "LastRetryTime": _t(self.last_retry_time),
            "NextRetryTime": _t(self.next_retry_time),
        }


def _t(when: datetime | None) -> str:
    return iso_ms(when) if when is not None else ""


def message_row(q: Queue, qm: QueuedMessage, expiration: datetime | None) -> dict[str, Any]:
    """The Get-Message view of one queued message."""
    item = qm.item
    return {
        "Identity": f"{q.identity}\\{qm.number}", "Queue": q.identity, "FromAddress": item.mail_from,
        "Recipients": list(qm.recipients), "Status": qm.eligible_status, "Size": item.size,
        "Subject": item.subject, "InternetMessageId": item.message_id,
        "DateReceived": _t(item.arrived), "ExpirationTime": _t(expiration),
        "LastError": qm.last_error, "RetryCount": qm.retry_count, "SourceIP": item.client_ip,
        "MessageSourceName": qm.source, "Directionality": item.directionality,
    }


def admin_view(messages: list[QueuedMessage]) -> list[tuple[Any, ...]]:
    """What an admin reads in each message's Get-Message row: its number (the Identity in its
    queue), Recipients, Status and LastError (logs.queue_history writes a line when these change)."""
    # (no call a message: the queue history reads every queued message at every change of its
    # queue; the status is `QueuedMessage.eligible_status`, the number `.number`)
    return [(qm.item.internal_id, tuple(qm.recipients), "Suspended" if qm.suspended else qm.status, qm.last_error)
            for qm in messages]


EXPIRATION = 5  # where message_row_inputs puts the ExpirationTime


def message_row_inputs(messages: list[QueuedMessage], view: list[tuple[Any, ...]],
                       expiration: Callable[[MailItem], datetime | None]) -> list[tuple[Any, ...]]:
    """Everything `message_row` reads of each message (its queue's identity aside), one tuple a
    message: two equal tuples give equal rows, so a row built before can stand for the message's
    row now. `view`: the messages' `admin_view` (each tuple starts with its entry);
    `expiration`: the message's ExpirationTime (the party's `expirations()`)."""
    return [(seen, item.mail_from, item.size, item.subject, item.message_id, expiration(item), item.arrived,
             qm.retry_count, item.client_ip, qm.source, item.directionality)
            for qm, seen in zip(messages, view) for item in (qm.item,)]


def connector_guid(name: str) -> str:
    """A stable GUID for a connector (NextHopConnector): the lab's objects have no AD GUIDs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "labsim:connector:" + name.lower()))


class QueueSet:
    """All queues of one server."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._next = 1
        self.by_key: dict[tuple[str, str], Queue] = {}
        self.special = {name: Queue(identity=f"{server}\\{name}", delivery_type=dtype, next_hop_domain=hop)
                        for name, dtype, hop in (("Submission", "Undefined", "Submission"),
                                                 ("Unreachable", "Unreachable", "Unreachable Domain"),
                                                 ("Poison", "Undefined", "Poison Message"))}

    def for_route(self, key: tuple[str, str], delivery_type: str, next_hop: str, route: object) -> Queue:
        if delivery_type == "Unreachable":
            return self.special["Unreachable"]
        q = self.by_key.get(key)
        if q is None:
            q = Queue(identity=f"{self.server}\\{self._next}", delivery_type=delivery_type,
                      next_hop_domain=next_hop, route=route)
            connector = getattr(route, "connector", None)
            if connector is not None and delivery_type in ("SmartHostConnectorDelivery", "DnsConnectorDelivery",
                                                           "SmtpRelayToConnectorSourceServers",
                                                           "SmtpRelayWithinAdSiteToEdge"):
                q.next_hop_connector = connector_guid(connector.name)
                q.tls_domain = getattr(connector, "tls_domain", None) or ""
            self._next += 1
            self.by_key[key] = q
        else:
            q.route = route  # the newest routing decision (a changed connector) drives the next attempt
        return q

    def all(self) -> list[Queue]:
        return list(self.by_key.values()) + list(self.special.values())

    def get(self, name: str) -> Queue | None:
        """A queue by its name after `SERVER\\`: a number, a persistent name, or a NextHopDomain."""
        low = name.lower()
        for q in self.all():
            if q.name.lower() == low:
                return q
        for q in self.by_key.values():
            if q.next_hop_domain.lower() == low:
                return q
        return None


# --- Get-Message Recipients: Exchange's RecipientInfo ------------------------------------------------
# `RecipientInfo.ToString()` is "{address};{status};{type};{lastError};{lastErrorCode};{finalDestination};
# {outboundIPPool}" [V-code Microsoft.Exchange.Data/QueueViewer/RecipientInfo.cs]; PowerShell shows the
# array in braces: {chris@contoso.com;2;2;A matching connector cannot be found to route the external
# recipient;16;<No Matching Connector>;0} [V-doc message-properties.md]. Status: RecipientStatus
# (1 Complete, 2 Ready, 3 Retry, 4 Locked); type: MailRecipientType (2 External, 3 Mailbox);
# lastErrorCode: UnreachableReason flags (16 NoMatchingConnector), whose text replaces lastError;
# finalDestination: the routing destination's StringIdentity - the AD distinguished name of the send
# connector or mailbox database, `<No Matching Connector>` when none matched [V-code
# ConnectorRoutingDestination / MailboxDatabaseDestination / NoMatchingConnectorDestination].
RECIPIENT_STATUS = {"Ready": 2, "Active": 2, "Retry": 3, "Suspended": 2}
NO_MATCHING_CONNECTOR_CODE = 16
NO_MATCHING_CONNECTOR_DESTINATION = "<No Matching Connector>"
# AD containers of every Exchange 2007+ organisation [V-code AdministrativeGroup.DefaultName,
# RoutingGroup.DefaultName, ConnectorsContainer / DatabasesContainer.DefaultName]
ADMIN_GROUP = "CN=Exchange Administrative Group (FYDIBOHF23SPDLT),CN=Administrative Groups"
ROUTING_GROUP = "CN=Exchange Routing Group (DWBGZMFD01QNBJR),CN=Routing Groups"


def exchange_config_dn(organization: str, forest: str) -> str:
    """`CN=<org>,CN=Microsoft Exchange,CN=Services,CN=Configuration,DC=…` of the lab's forest."""
    dcs = ",".join(f"DC={p}" for p in forest.split(".") if p)
    return f"CN={organization},CN=Microsoft Exchange,CN=Services,CN=Configuration,{dcs}"


def final_destination(q: Queue, config_dn: str) -> str:
    """The routing destination of the queue's recipients, as RecipientInfo.FinalDestination."""
    if q.delivery_type == "Unreachable":
        return NO_MATCHING_CONNECTOR_DESTINATION
    if q.delivery_type == "SmtpDeliveryToMailbox":
        return f"CN={q.next_hop_domain},CN=Databases,{ADMIN_GROUP},{config_dn}"
    connector = getattr(getattr(q, "route", None), "connector", None)
    name = getattr(connector, "name", None)
    return f"CN={name},CN=Connections,{ROUTING_GROUP},{ADMIN_GROUP},{config_dn}" if name else ""


def recipient_info(q: Queue, qm: QueuedMessage, address: str, config_dn: str, no_matching_connector: str) -> str:
    """One entry of Get-Message's Recipients (RecipientInfo.ToString())."""
    if q.delivery_type == "Unreachable" and qm.last_error in ("", no_matching_connector):
        # the reason's text stands in for lastError (RecipientInfo.LastError with lastErrorCode set)
        return (f"{address};{RECIPIENT_STATUS['Ready']};2;{no_matching_connector};{NO_MATCHING_CONNECTOR_CODE};"
                f"{NO_MATCHING_CONNECTOR_DESTINATION};0")
    status = RECIPIENT_STATUS.get(qm.status, 2)
    rtype = 3 if q.delivery_type == "SmtpDeliveryToMailbox" else 2
    # MailRecipient.GetLastErrorDetails(): `new LastError(null, null, null, SmtpResponse).ToString()`,
    # the recipient's last SMTP response in LastError's structure without time, FQDN or IP [V-code
    # LastError.ToString: LRT, LED, FQDN, IP - Get-Queue's form above]; none before an attempt [INFERRED]
    error = f"[{{LRT=}};{{LED={qm.last_error}}};{{FQDN=}};{{IP=}}]" if qm.last_error else ""
    return f"{address};{status};{rtype};{error};0;{final_destination(q, config_dn)};0"
