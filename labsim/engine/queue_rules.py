"""The plain data and pure decisions of store-and-forward (engine.queueing uses them).

Exchange's defaults and texts for queues, how many connections a queue opens for its backlog, the
retry policy of a transport service from its settings, the 250 reply of a queued message, and the
header firewall a message passes as it leaves. Nothing here schedules, sends or writes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..clock import iso_ms
from ..rules import replies as R
from ..rules.retry import RetryPolicy
from ..smtp.client import Connection, MessageResult, SendSpec
from ..topology.model import ReceiveConnector
from ..transport import headers as H
from ..transport.message import MailItem
from ..transport.queues import Queue

BATCH = 20  # SmtpMaxMessagesPerConnection's default (Set-SendConnector)
PER_DOMAIN_CONNECTIONS = 20  # MaxPerDomainOutboundConnections' default (Set-TransportService)
OUTBOUND_CONNECTIONS = 1000  # MaxOutboundConnections' default (Set-TransportService)
UNLIMITED_CONNECTIONS = 2**31 - 1  # a connection limit set to "unlimited"
EXPIRED = "550 4.4.7 QUEUE.Expired; message expired"
# AckReason.UnreachableMessageExpired / MessageDeletedByAdmin (decompiled Microsoft.Exchange.Transport,
# see docs/queues-tracking-ndr.md §NDR texts).
EXPIRED_UNREACHABLE = "550 4.4.7 QUEUE.Expired; message expired in unreachable destination queue. Reason: {reason}"
DELETED_BY_ADMIN = "550 4.3.2 QUEUE.Admin; message deleted by administrative action"
MAILBOX_DELIVERY_CONNECTOR = ReceiveConnector(
    name="Mailbox Delivery", transport_role="HubTransport", bindings=["0.0.0.0:475"],
    auth_mechanism=["Tls", "ExchangeServer"], permission_groups=["ExchangeServers"])
INTRA_ORG = "Intra-Organization SMTP Send Connector"
INBOUND_PROXY = "Inbound Proxy Internal Send Connector"
CAP_VALIDATION_FAILED = "CertificateValidationFailure"  # [INFERRED] Status of a failed capability check
CAP_DOMAIN_MISMATCH = "DomainMismatch"  # [INFERRED] no capability domain matches the certificate


# EXO: connector delivery is retried for 24 hours: "Office 365 will retry delivery for 24 hours.
# After 24 hours, the queued message will expire" (Microsoft Learn, mail flow intelligence in
# Office 365, 4.4.312/4.4.315/4.4.316/4.4.318; docs/transport-fidelity.md §2.2). The intervals are
# not published [INFERRED: 5 min three times, then every 15 min; no delay DSN modelled].
EXO_RETRY_POLICY = RetryPolicy(transient_count=3, transient_interval=timedelta(minutes=5),
                               outbound_interval=timedelta(minutes=15), message_retry_interval=timedelta(minutes=15),
                               delay_notification=None, expiration=timedelta(hours=24), glitch_count=0)


def policy_from_transport(cfg: Any) -> RetryPolicy:
    """The retry policy of an on-prem transport service from its Set-TransportService settings."""
    return _retry_policy(cfg.transient_failure_retry_count, cfg.transient_failure_retry_interval,
                         cfg.outbound_connection_failure_retry_interval, cfg.message_retry_interval,
                         cfg.delay_notification_timeout, cfg.message_expiration_timeout)


@functools.lru_cache(maxsize=64)  # read per queued message and queue row; RetryPolicy is frozen
def _retry_policy(count: int, transient: str, outbound: str, message: str, delay: str, expiration: str) -> RetryPolicy:
    from ..topology.timespec import parse_timespan

    return RetryPolicy(transient_count=count, transient_interval=parse_timespan(transient),
                       outbound_interval=parse_timespan(outbound), message_retry_interval=parse_timespan(message),
                       delay_notification=parse_timespan(delay), expiration=parse_timespan(expiration))


def queued_reply(message_id: str, internal_id: int, hostname: str, size: int, secs: float) -> str:
    secs = max(secs, 0.001)
    return R.QUEUED.format(message_id=message_id, internal_id=internal_id, hostname=hostname, size=size,
                           secs=f"{secs:.3f}", rate=f"{size / 1024 / secs:.3f}")


def connections_wanted(backlog: int, carried: list[int], per_connection: int, per_queue: int,
                       server_room: int) -> int:
    """How many new connections a queue opens for `backlog` eligible messages.

    `carried`: what each open connection has carried so far. The open connections take up to
    `per_connection` messages each; what they cannot carry gets new connections of
    `per_connection` messages, up to `per_queue` connections for the queue and `server_room` more
    for the server. A queue without a connection always gets one (if the server has room).
    """
    spare = sum(max(per_connection - n, 0) for n in carried)
    if carried and backlog <= spare:
        return 0
    need = -(-(backlog - spare) // per_connection) if carried else -(-backlog // per_connection)
    return max(0, min(need, per_queue - len(carried), server_room))


DONE, UNCONNECTED, DEFERRED = "done", "unconnected", "deferred"


def message_outcome(recipients: list[str], res: MessageResult) -> tuple[list[str], str]:
    """What one message's result on a connection means for its queue: the recipients still left,
    and whether the message is DONE (every recipient delivered or rejected), waits for the queue's
    connection retry (UNCONNECTED: no server took it) or waits MessageRetryInterval on its own
    (DEFERRED: a server answered 4xx)."""
    settled = set(res.delivered) | set(res.rejected)
    left = [r for r in recipients if r not in settled]
    if not left:
        return left, DONE
    if res.failure is not None and not res.deferred:
        return left, UNCONNECTED
    return left, DEFERRED


def next_drain_at(eligible: int, spare: int, retry_times: list[datetime], now: datetime) -> datetime | None:
    """When a queue whose connection just finished a message drains next: now if its open
    connections cannot carry the `eligible` backlog (`spare` more messages); at the earliest
    message retry when nothing is eligible; else not at all (the open connections take it)."""
    if eligible and eligible > spare:
        return now
    if not eligible and retry_times:
        return min(retry_times)
    return None


@dataclass
class Outbound:
    """One open connection of a queue and the virtual time at which it is free for its next message."""

    conn: Connection
    spec: SendSpec
    cursor: datetime
    entry: Any = None


class NullTracker:
    """What a party without message tracking (an Internet host) reports to: nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def firewalled(item: MailItem, q: Queue, server: str) -> bytes:
    """The message as it leaves an Exchange server on this hop: the send-side header firewall
    (transport.headers); `server` is the FQDN that stamps it."""
    route = q.route
    external = q.delivery_type in ("DnsConnectorDelivery", "SmartHostConnectorDelivery") and \
        bool(getattr(route, "external", True))
    connector = getattr(route, "connector", None)
    return H.on_send(item.data, external=external, server=server,
                     cloud_services_mail=bool(getattr(connector, "cloud_services_mail_enabled", False)))


def message_source(item: MailItem) -> str:
    if item.dsn_kind:
        return "DSN"
    if item.receive_connector:
        return "SMTP:" + item.receive_connector.split("\\", 1)[-1]
    return "FromLocal"


def remote_of(q: Queue) -> tuple[str, str]:
    """The host a queue last tried (for the NDR's Remote Server line), as far as the queue knows."""
    return q.last_target_host, q.last_target_ip


def describe_time(when: datetime | None) -> str:
    return iso_ms(when) if when is not None else ""
