"""Store-and-forward behaviour every queueing party shares: queues, batches, retries, expiry, DSNs.

Theory of operation. A party (an on-prem transport service, EXO, an Internet host) categorises a
message into queues (`enqueue`). A queue is drained by a scheduler action: one client session to
the next hop carries up to 20 messages (SmtpMaxMessagesPerConnection). What happens next is
Exchange's (`rules.retry`, transport-behavior.md §6.3):

- the connection fails -> the queue goes to Retry; the next attempt follows the glitch /
  transient / outbound-connection-failure ladder; every message keeps the queue's LastError;
- the connection works but a message is deferred (4xx) -> that message waits MessageRetryInterval;
- a message is rejected (5xx) -> its recipients fail, with an NDR to the sender;
- a message still queued DelayNotificationTimeout after it arrived -> one delay DSN;
- a message still queued MessageExpirationTimeout after it arrived -> it fails with
  `550 4.4.7 QUEUE.Expired; message expired` and its sender gets an NDR.

Delay and expiry are scheduler actions of their own at the exact virtual times, so a two-day
outage costs a few hundred cheap actions, never a real wait. Every state change is reported to the
party's tracker (message tracking rows on-prem, message trace events in EXO) and, for the
scenario's own messages, to the ledger; queue snapshots are kept for `labsim queue --at`.

Parties supply `send_spec` (how to reach the next hop), `submit` (categorisation), the wording of
their errors and their retry policy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..clock import iso_ms
from ..net.resolver import DnsError
from ..rules import replies as R
from ..rules.outbound import AttemptFailure, onprem_last_error
from ..rules.retry import RetryPolicy, connection_retry_delay, delay_dsn_at, expires_at
from ..smtp.client import Connection, MessageResult, OutboundMessage, SendSpec
from ..topology.model import ReceiveConnector
from ..transport import headers as H
from ..transport.message import MailItem
from ..transport.persist import QueueStore, SavedMessage
from ..transport.queues import Queue, QueuedMessage, QueueSet

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import LabRuntime


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


# EXO: connector delivery is retried for 48 hours (MFI; transport-behavior.md §6.3); the intervals
# are not published [INFERRED: 5 min three times, then every 15 min; no delay DSN modelled].
EXO_RETRY_POLICY = RetryPolicy(transient_count=3, transient_interval=timedelta(minutes=5),
                               outbound_interval=timedelta(minutes=15), message_retry_interval=timedelta(minutes=15),
                               delay_notification=None, expiration=timedelta(hours=48), glitch_count=0)


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


@dataclass
class _Outbound:
    """One open connection of a queue and the virtual time at which it is free for its next message."""

    conn: Connection
    spec: SendSpec
    cursor: datetime
    entry: Any = None


@dataclass
class Failure:
    """Why some recipients of a message failed, for the FAIL row, the ledger and the NDR."""

    status: str  # the SMTP response ("550 4.4.7 QUEUE.Expired; message expired")
    source: str  # tracking source: SMTP, QUEUE, ROUTING, ADMIN
    remote_host: str = ""  # the remote server that answered (NDR "Remote Server" / Remote-MTA)
    remote_ip: str = ""
    last_error: str = ""  # the queue's LastError before an expiry (shown in the NDR)
    last_attempt: datetime | None = None


class NullTracker:
    """What a party without message tracking (an Internet host) reports to: nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class QueueingParty:
    """What every store-and-forward party shares: queues, retries, expiry, notifications."""

    lab: "LabRuntime"
    name: str
    queues: QueueSet
    queue_store: QueueStore | None = None  # `up`: the queues are kept on disk (transport.persist)

    # --- policy hooks (overridden per party) ---------------------------------------------------
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(delay_notification=None, expiration=self.expiry())

    def retry_delay(self, retry_count: int) -> timedelta:  # kept for parties that override it
        return connection_retry_delay(self.retry_policy(), retry_count)

    def expiry(self) -> timedelta:
        return timedelta(days=2)

    def messages_per_connection(self, q: Queue) -> int:
        """SmtpMaxMessagesPerConnection of what sends `q`'s messages [INFERRED default elsewhere]."""
        return BATCH

    def max_connections_per_queue(self, q: Queue) -> int:
        """MaxPerDomainOutboundConnections [INFERRED: Exchange's default for parties without it]."""
        return PER_DOMAIN_CONNECTIONS

    def max_outbound_connections(self) -> int:
        return OUTBOUND_CONNECTIONS

    def queues_running(self) -> bool:
        """False while the transport service is stopped: queues keep their mail, nothing moves."""
        running = getattr(self, "service_running", None)
        return bool(running("Hub")) if running is not None else True

    @property
    def tracker(self) -> Any:
        hub = getattr(self.lab, "tracking", None)
        return hub.for_party(self) if hub is not None else NullTracker()

    def generates_dsns(self) -> bool:
        return True

    # --- entering queues -------------------------------------------------------------------------
    def enqueue(self, key: tuple[str, str], delivery_type: str, next_hop: str, route: Any,
                item: MailItem, recipients: list[str], *, source: str = "") -> Queue:
        now = self.lab.clock.now()
        if "_routing_sig" not in self.__dict__:  # setdefault would build the signature (a repr) every time
            self.__dict__["_routing_sig"] = self.routing_signature()
        q = self.queues.for_route(key, delivery_type, next_hop, route)
        q.created = q.created or now
        q.last_activity = now
        qm = QueuedMessage(item=item, recipients=list(recipients), queued_at=now,
                           source=source or _message_source(item))
        q.messages.append(qm)
        self._touch(item)
        if q.delivery_type == "Unreachable" or q.suspended or not self.queues_running():
            self._arm_timers(item)  # it will wait: Exchange's delay and expiry clocks run
        if q.delivery_type == "Unreachable":
            qm.last_error = item.last_error or getattr(route, "error", "") or R.NO_MATCHING_CONNECTOR
            qm.status = "Ready"
            q.last_error = qm.last_error
            q.status = "Ready"
        elif q.status == "Retry" and q.next_retry_time is not None and q.next_retry_time > now:
            qm.status = "Retry"
            qm.last_error = q.last_error
            self._arm_timers(item)
            self.schedule_drain(q, q.next_retry_time)
        else:
            self.schedule_drain(q, now)
        self.snapshot(q)
        return q

    def schedule_drain(self, q: Queue, when: datetime) -> None:
        if q.next_drain is not None and q.next_drain <= when:
            return
        q.token += 1
        q.next_drain = when
        token = q.token
        if q.drain_entry is not None:
            self.lab.scheduler.cancel(q.drain_entry)
        q.drain_entry = self.lab.scheduler.call_at(when, f"{q.identity} drain", lambda: self._drain_if_current(q, token))

    async def _drain_if_current(self, q: Queue, token: int) -> None:
        if token != q.token:
            return  # superseded by an earlier drain (Retry-Queue, a new message)
        q.next_drain = None
        await self.drain(q)

    # --- draining --------------------------------------------------------------------------------
    def _eligible(self, q: Queue, now: datetime) -> list[QueuedMessage]:
        return [qm for qm in q.messages if not qm.suspended
                and (qm.next_retry_time is None or qm.next_retry_time <= now)]

    async def drain(self, q: Queue) -> None:
        """Open the connections this queue needs now; each then carries messages until it is done.

        A connection carries up to SmtpMaxMessagesPerConnection messages, taking the next one as
        soon as the previous one is done, including messages that entered the queue meanwhile; a
        queue holding more than its open connections will carry gets more connections, up to
        MaxPerDomainOutboundConnections (and MaxOutboundConnections for the whole server). See
        docs/queues-tracking-ndr.md, "Connections".
        """
        if q.suspended or q.delivery_type == "Unreachable" or q.name in ("Poison", "Submission"):
            return
        if not self.queues_running():
            for qm in q.messages:
                self._arm_timers(qm.item)
            return  # resumed by `kick()` when the service starts again
        now = self.lab.clock.now()
        if q.status == "Retry" and q.next_retry_time is not None and q.next_retry_time > now:
            # a drain asked for while connections were still open (a kick, a new message), but one
            # of them failed meanwhile: the queue waits for its retry
            self.schedule_drain(q, q.next_retry_time)
            return
        backlog = self._eligible(q, now)
        conns = self._connections(q)
        if not backlog:
            if not conns:
                self._settle_idle(q)
            return
        wanted = connections_wanted(len(backlog), [c.conn.carried for c in conns],
                                    self.messages_per_connection(q), self.max_connections_per_queue(q),
                                    self.max_outbound_connections() - self._open_connection_count())
        ends = []
        for _ in range(wanted):
            self.lab.clock.rewind(now)  # parallel connections each start at the drain's time
            opened = await self._open_connection(q)
            ends.append(self.lab.clock.now())
            if not opened:
                break
        for end in ends:
            self.lab.clock.set(end)

    def _connections(self, q: Queue) -> list["_Outbound"]:
        return q.connections

    def _open_connection_count(self) -> int:
        return sum(len(self._connections(q)) for q in self.queues.all())

    def _next_message(self, q: Queue, at: datetime) -> QueuedMessage | None:
        """The next message a connection takes: the first eligible one that had arrived by `at`."""
        return next((qm for qm in self._eligible(q, at) if (qm.queued_at or at) <= at), None)

    async def _open_connection(self, q: Queue) -> bool:
        """A new connection of `q` with its first message; False when it could not be set up."""
        qm = self._next_message(q, self.lab.clock.now())
        if qm is None:
            return False
        q.status = "Active"
        qm.status = "Active"
        try:
            spec, failure = await self.send_spec(q, [qm])
        except DnsError as exc:
            self.lab.clock.advance(exc.elapsed_virtual)
            spec, failure = None, self.dns_failure(q, exc)
        if spec is None:
            self._connection_failed(q, [qm], failure)
            return False
        out = _Outbound(Connection(self.lab, spec), spec, self.lab.clock.now())
        self._connections(q).append(out)
        return await self._carry(q, out, qm)

    async def _carry(self, q: Queue, out: "_Outbound", qm: QueuedMessage) -> bool:
        """Send `qm` over `out`; then the connection waits for its next message (`_resume`)."""
        qm.status = "Active"
        msg = OutboundMessage(key=qm, mail_from=qm.item.mail_from, recipients=qm.recipients,
                              data=self.outgoing_data(qm.item, q))
        res = await out.conn.send(msg)
        self._after_session(q, [qm], [res], out.spec)
        if not out.conn.is_open:  # no target could be reached: the queue went to Retry
            self._drop(q, out)
            return False
        out.cursor = self.lab.clock.now()
        self.lab.hold_open(1, out.conn.client)
        out.entry = self.lab.scheduler.call_at(out.cursor, f"{q.identity} connection",
                                               lambda: self._resume(q, out))
        return True

    async def _resume(self, q: Queue, out: "_Outbound") -> None:
        """The connection is free again: take the next message, or QUIT when there is none."""
        self.lab.hold_open(-1, out.conn.client)
        before = self.lab.clock.now()
        self.lab.clock.rewind(out.cursor)
        try:
            done = (q.suspended or not self.queues_running() or q.status == "Retry"
                    or out not in self._connections(q)
                    or out.conn.carried >= self.messages_per_connection(q))
            qm = None if done else self._next_message(q, out.cursor)
            if qm is None:
                self._drop(q, out)
                await out.conn.close()
                self._settle_idle(q)
                self._wake_waiting_queues()
            else:
                await self._carry(q, out, qm)
        finally:
            self.lab.clock.set(before)

    def _wake_waiting_queues(self) -> None:
        """A connection closed: queues that found no room under MaxOutboundConnections try again."""
        if self._open_connection_count() + 1 < self.max_outbound_connections():
            return
        now = self.lab.clock.now()
        for other in self.queues.all():
            if (not other.suspended and other.status != "Retry" and not self._connections(other)
                    and other.delivery_type != "Unreachable" and self._eligible(other, now)):
                self.schedule_drain(other, now)

    def _drop(self, q: Queue, out: "_Outbound") -> None:
        conns = self._connections(q)
        if out in conns:
            conns.remove(out)

    def _after_session(self, q: Queue, batch: list[QueuedMessage], results: list[MessageResult],
                       spec: SendSpec) -> None:
        now = self.lab.clock.now()
        unconnected: list[QueuedMessage] = []
        failure: AttemptFailure | None = None
        for qm, res in zip(batch, results):
            self._touch(qm.item)
            if res.remote_host:
                q.last_target_host, q.last_target_ip = res.remote_host, res.remote_ip
            if res.delivered:
                self.lab.ledger.sent(qm.item, res.delivered, self.name, res.remote_host)
                self.tracker.send(qm.item, res.delivered, q, res, spec)
            for rcpt, text in res.rejected.items():
                self.fail_recipients(qm.item, [rcpt], Failure(text, "SMTP", res.remote_host or "",
                                                             res.remote_ip, last_attempt=now))
            done = set(res.delivered) | set(res.rejected)
            left = [r for r in qm.recipients if r not in done]
            if not left:
                q.messages.remove(qm)
                self._release(qm.item)
                continue
            qm.recipients = left
            if res.failure is not None and not res.deferred:
                unconnected.append(qm)
                failure = res.failure
                continue
            # Connected, but this message was deferred: it waits MessageRetryInterval on its own.
            qm.status = "Retry"
            qm.retry_count += 1
            reply = next(iter(res.deferred.values()), "")
            if reply:
                # A 4xx from the next hop, worded as this party words a remote failure.
                qm.last_error = self.last_error_text(AttemptFailure(
                    kind="response", target_ip=res.remote_ip, target_port=25, target_name=res.remote_host,
                    response=reply))
            qm.item.last_error = qm.last_error
            qm.next_retry_time = now + self.retry_policy().message_retry_interval
            self._defer(q, qm)
        q.last_activity = now
        if unconnected:
            self._connection_failed(q, unconnected, failure)
            return
        q.connection_failures = 0
        q.status = "Active" if self._connections(q) else "Ready"
        q.last_error = ""
        q.next_retry_time = None
        self._settle_idle(q)

    def _settle_idle(self, q: Queue) -> None:
        """After a message or a connection: more connections if the backlog needs them, or wake
        for the next message retry."""
        now = self.lab.clock.now()
        for qm in q.messages:
            if qm.status == "Active":
                qm.status = "Ready"
        conns = self._connections(q)
        if q.status == "Active" and not conns:
            q.status = "Ready"
        if q.status == "Retry":  # a connection failed meanwhile: the queue waits for its retry
            self.snapshot(q)
            return
        eligible = self._eligible(q, now)
        spare = sum(self.messages_per_connection(q) - c.conn.carried for c in conns)
        if eligible and len(eligible) > spare:
            self.schedule_drain(q, now)
        elif not eligible:
            waits = [qm.next_retry_time for qm in q.messages if qm.next_retry_time is not None and not qm.suspended]
            if waits:
                self.schedule_drain(q, min(waits))
        self.snapshot(q)

    def _connection_failed(self, q: Queue, batch: list[QueuedMessage], failure: AttemptFailure | None) -> None:
        now = self.lab.clock.now()
        text = self.last_error_text(failure) if failure is not None else (batch[0].last_error if batch else "")
        q.connection_failures += 1
        q.retry_count += 1
        q.status = "Retry"
        q.last_error = text
        q.first_retry_time = q.first_retry_time or now
        q.last_retry_time = now
        q.next_retry_time = now + connection_retry_delay(self.retry_policy(), q.connection_failures)
        q.last_activity = now
        if failure is not None:
            name = failure.target_name
            q.last_target_host = failure.target_ip if name.startswith("[") else name
            q.last_target_ip = failure.target_ip
        for qm in q.messages:
            if qm.suspended or (qm.next_retry_time is not None and qm.next_retry_time > now and qm not in batch):
                continue
            self._touch(qm.item)
            qm.status = "Retry"
            qm.last_error = text
            qm.item.last_error = text
            qm.next_retry_time = None
            if qm in batch:
                qm.retry_count += 1
            self._defer(q, qm)
        self.schedule_drain(q, q.next_retry_time)
        self.snapshot(q)

    def _defer(self, q: Queue, qm: QueuedMessage) -> None:
        """A DEFER row when a message first waits, and again when its reason changes [INFERRED]."""
        if qm.deferred and qm.last_deferred_error == qm.last_error:
            return
        qm.deferred = True
        qm.last_deferred_error = qm.last_error
        self._arm_timers(qm.item)
        self.tracker.defer(qm.item, qm.recipients, qm.last_error, q)

    # --- failing, notifying ----------------------------------------------------------------------
    def fail_recipients(self, item: MailItem, recipients: list[str], failure: Failure) -> None:
        """Recipients that will never be delivered: ledger, FAIL row, and an NDR to the sender."""
        if not recipients:
            return
        self.lab.ledger.failed(item, recipients, failure.status, self.name)
        dsn = self.make_dsn("failed", item, recipients, failure) if self.generates_dsns() else None
        self.tracker.fail(item, recipients, failure, dsn.message_id if dsn is not None else "")
        if dsn is not None:
            self.tracker.dsn(dsn, item, recipients, "failed")
            self.submit_generated(dsn)

    def make_dsn(self, action: str, item: MailItem, recipients: list[str], failure: Failure) -> MailItem | None:
        from .notifications import build_dsn

        return build_dsn(self, action, item, recipients, failure) if item.mail_from else None

    def send_dsn(self, action: str, item: MailItem, recipients: list[str], failure: Failure) -> None:
        """Generate a DSN (NDR or delay notice) and put it into this party's own mail flow."""
        dsn = self.make_dsn(action, item, recipients, failure)
        if dsn is None:
            return
        self.tracker.dsn(dsn, item, recipients, action)
        self.submit_generated(dsn)

    def submit_generated(self, dsn: MailItem) -> None:
        submit = getattr(self, "submit", None)
        if submit is not None:
            submit(dsn)

    # --- timers ----------------------------------------------------------------------------------
    def _arm_timers(self, item: MailItem) -> None:
        """Delay-DSN and expiry actions for a message that waits here (cancelled once it leaves)."""
        if self.name in item.timers_armed:
            return
        policy = self.retry_policy()
        entries = []
        delay_at = delay_dsn_at(policy, item.arrived)
        if delay_at is not None and not item.delay_notified:
            entries.append(self.lab.scheduler.call_at(delay_at, f"{self.name} delay DSN {item.internal_id}",
                                                      lambda: self._delay_due(item)))
        entries.append(self.lab.scheduler.call_at(expires_at(policy, item.arrived),
                                                  f"{self.name} expire {item.internal_id}",
                                                  lambda: self._expiry_due(item)))
        item.timers_armed[self.name] = entries

    def _release(self, item: MailItem) -> None:
        """`item` left this server's queues: its timers are moot."""
        self._touch(item)
        if self.queued_copies(item):
            return
        for entry in item.timers_armed.pop(self.name, []):
            self.lab.scheduler.cancel(entry)

    def queued_copies(self, item: MailItem) -> list[tuple[Queue, QueuedMessage]]:
        return [(q, qm) for q in self.queues.all() for qm in q.messages if qm.item is item]

    async def _delay_due(self, item: MailItem) -> None:
        copies = [(q, qm) for q, qm in self.queued_copies(item) if q.name != "Poison"]
        if not copies:
            return
        if not self.queues_running():
            self._overdue.append(("delay", item))
            return
        if not item.mail_from:
            return
        rcpts = [r for _, qm in copies for r in qm.recipients]
        item.delay_notified = True
        q, qm = copies[0]
        self.send_dsn("delayed", item, rcpts, Failure(qm.last_error or q.last_error, "QUEUE", *_remote_of(q),
                                                      last_error=qm.last_error, last_attempt=q.last_retry_time))

    async def _expiry_due(self, item: MailItem) -> None:
        copies = [(q, qm) for q, qm in self.queued_copies(item) if q.name != "Poison"]
        if not copies:
            return
        if not self.queues_running():
            self._overdue.append(("expire", item))
            return
        now = self.lab.clock.now()
        for q, qm in copies:
            q.messages.remove(qm)
            self._release(item)
            if q.delivery_type == "Unreachable":
                status = EXPIRED_UNREACHABLE.format(reason=qm.last_error or R.NO_MATCHING_CONNECTOR)
            else:
                status = EXPIRED
            host, ip = _remote_of(q)
            self.fail_recipients(item, qm.recipients, Failure(status, "QUEUE", host, ip,
                                                              last_error=qm.last_error,
                                                              last_attempt=q.last_retry_time or now))
            self.snapshot(q)

    @property
    def _overdue(self) -> list[tuple[str, MailItem]]:
        pending = self.__dict__.get("_overdue_items")
        if pending is None:
            pending = self.__dict__["_overdue_items"] = []
        return pending

    # --- configuration changes --------------------------------------------------------------------
    def routing_signature(self) -> str:
        """What the categorizer's decisions depend on; a change is a routing-table update."""
        model = self.lab.model
        if self.name == "EXO":
            t = model.tenant
            parts: list[Any] = [t.accepted_domains, t.mailboxes, t.mail_users, t.outbound_connectors]
        elif self.name in self.lab.servers:
            org = model.organization
            parts = [org.accepted_domains, org.send_connectors, org.mailboxes, org.remote_mailboxes,
                     [(s.name, s.role, s.databases) for s in org.servers]]
        else:
            return ""
        return repr(parts)

    def config_changed(self) -> None:
        """After a configuration change: resubmit Unreachable if routing changed (unless suspended).

        "The Unreachable queue ... Until you manually resume this queue, messages are no longer
        automatically resubmitted to the categorizer when configuration updates are detected"
        (queue-procedures.md, Suspend queues). The lab's routing table updates at once [INFERRED:
        Exchange recalculates on the AD change notification, usually within minutes].
        """
        sig = self.routing_signature()
        previous = self.__dict__.get("_routing_sig")
        self.__dict__["_routing_sig"] = sig
        if previous is not None and sig != previous and self.queues_running():
            unreachable = self.queues.special["Unreachable"]
            if unreachable.messages and not unreachable.suspended:
                self.resubmit(unreachable, reason="config")
        self.kick()

    # --- operations (Retry-Queue, Suspend-Queue, ... in engine.queue_ops) -----------------------
    def kick(self) -> None:
        """The service (re)started or the world changed: deliver what waits, settle what is overdue."""
        if not self.queues_running():
            return
        overdue, self.__dict__["_overdue_items"] = list(self._overdue), []
        for kind, item in overdue:
            action = self._delay_due if kind == "delay" else self._expiry_due
            self.lab.scheduler.call_at(self.lab.clock.now(), f"{self.name} overdue {kind}", functools.partial(action, item))
        for q in self.queues.all():
            if q.messages and not q.suspended and q.delivery_type != "Unreachable" and q.name not in ("Poison",):
                when = q.next_retry_time if q.status == "Retry" and q.next_retry_time else self.lab.clock.now()
                self.schedule_drain(q, max(when, self.lab.clock.now()))

    def retry_now(self, q: Queue) -> None:
        """Retry-Queue: an immediate connection attempt for a queue in Retry (else no effect)."""
        if q.status == "Retry" and not q.suspended:
            q.next_retry_time = self.lab.clock.now()  # the retry timer resets: the retry is due now
            self.schedule_drain(q, q.next_retry_time)

    def resubmit(self, q: Queue, *, reason: str = "admin") -> int:
        """Retry-Queue -Resubmit / a routing change: back to the categorizer with today's topology.

        Suspended messages stay (queue-procedures.md, "Resubmit queues").
        """
        moving = [qm for qm in q.messages if not qm.suspended]
        for qm in moving:
            q.messages.remove(qm)
        self.snapshot(q)
        for qm in moving:
            self.tracker.resubmit(qm.item, qm.recipients, q, reason)
            qm.item.last_error = ""
            self.categorize(qm.item, qm.recipients)
            self._release(qm.item)
        self.persist()
        return len(moving)

    def categorize(self, item: MailItem, recipients: list[str]) -> None:
        """Route `recipients` of `item` again (the categorizer, as on first submission)."""
        submit = getattr(self, "submit", None)
        if submit is None:
            raise NotImplementedError(f"{self.name} cannot resubmit")
        submit(item, list(recipients))

    def suspend_queue(self, q: Queue) -> None:
        q.suspended = True
        for qm in q.messages:
            self._touch(qm.item)
            self._arm_timers(qm.item)
        self.snapshot(q)

    def resume_queue(self, q: Queue) -> None:
        q.suspended = False
        if q.delivery_type != "Unreachable" and q.messages:
            when = q.next_retry_time if q.status == "Retry" and q.next_retry_time else self.lab.clock.now()
            self.schedule_drain(q, max(when, self.lab.clock.now()))
        self.snapshot(q)

    def suspend_message(self, q: Queue, qm: QueuedMessage) -> None:
        qm.suspended = True
        self._touch(qm.item)
        self._arm_timers(qm.item)
        self.snapshot(q)

    def resume_message(self, q: Queue, qm: QueuedMessage) -> None:
        qm.suspended = False
        self._touch(qm.item)
        if q.name == "Poison":
            q.messages.remove(qm)
            self.categorize(qm.item, qm.recipients)
            self._release(qm.item)
        elif not q.suspended and q.delivery_type != "Unreachable":
            when = q.next_retry_time if q.status == "Retry" and q.next_retry_time else self.lab.clock.now()
            self.schedule_drain(q, max(when, self.lab.clock.now()))
        self.snapshot(q)

    def remove_message(self, q: Queue, qm: QueuedMessage, *, with_ndr: bool) -> None:
        """Remove-Message: gone, with an NDR (`550 4.3.2 QUEUE.Admin`) or silently."""
        q.messages.remove(qm)
        self._release(qm.item)
        self.snapshot(q)
        failure = Failure(DELETED_BY_ADMIN, "ADMIN", *_remote_of(q), last_error=qm.last_error,
                          last_attempt=q.last_retry_time)
        self.lab.ledger.failed(qm.item, qm.recipients, failure.status, self.name)
        dsn = self.make_dsn("failed", qm.item, qm.recipients, failure) if with_ndr and self.generates_dsns() else None
        self.tracker.fail(qm.item, qm.recipients, failure, dsn.message_id if dsn is not None else "")
        if dsn is not None:
            self.tracker.dsn(dsn, qm.item, qm.recipients, "failed")
            self.submit_generated(dsn)

    # --- the queue database (up: transport.persist) ------------------------------------------------
    def _touch(self, item: MailItem) -> None:
        """`item`'s queued state changed: it is written at the next `persist` (before any reply)."""
        if self.queue_store is not None:
            self.__dict__.setdefault("_dirty", {})[id(item)] = item

    def persist(self) -> None:
        """Commit every changed message to the queue folder (or remove it once it left).

        Called at the end of every queue change (`snapshot`), so a message that a receive session
        is about to acknowledge with 250 is on disk before the reply is written.
        """
        store = self.queue_store
        dirty: dict[int, MailItem] = self.__dict__.get("_dirty") or {}
        if store is None:
            return
        counter = getattr(self, "internal_ids", None)
        if counter is not None:
            store.reserve(counter.upcoming)
        if dirty:
            self.__dict__["_dirty"] = {}
            copies: dict[int, list[tuple[Queue, QueuedMessage]]] = {key: [] for key in dirty}
            for q in self.queues.all():
                for qm in q.messages:
                    found = copies.get(id(qm.item))
                    if found is not None:
                        found.append((q, qm))
            for key, item in dirty.items():
                if copies[key]:
                    store.save(item, copies[key], self.queues)
                else:
                    store.drop(item)

    def requeue(self, item: MailItem, recipients: list[str]) -> None:
        """Route a message read back from the queue database (the categorizer, as on submission)."""
        self.categorize(item, recipients)

    def restore(self, saved: list[SavedMessage]) -> int:
        """Service start: take up the messages of the queue database again, with their ids, their
        arrival time (so their delay-DSN and expiry times), retry counts, own retry times, LastError
        and Suspended. The categorizer routes them into delivery queues created afresh, which
        connect at once (transport.persist). Returns the number of messages taken up."""
        top = 0
        for s in saved:
            item = s.item
            top = max(top, item.internal_id)
            for copy in s.copies:
                if copy.queue == ["special", "Poison"]:
                    poison = self.queues.special["Poison"]
                    poison.messages.append(QueuedMessage(item=item, recipients=list(copy.recipients),
                                                         queued_at=copy.queued_at, **copy.state))
                    self._touch(item)
                    continue
                before = {id(qm) for _, qm in self.queued_copies(item)}
                self.requeue(item, list(copy.recipients))
                for _, qm in self.queued_copies(item):
                    if id(qm) in before:
                        continue
                    for name, value in copy.state.items():
                        setattr(qm, name, value)
                    if qm.status == "Active":
                        qm.status = "Ready"  # the attempt in progress at shutdown did not finish
                    qm.next_retry_time = copy.next_retry_time
                    qm.queued_at = copy.queued_at or qm.queued_at
                    self._touch(item)
            if self.queued_copies(item):
                self._arm_timers(item)  # Exchange's delay and expiry clocks run from the first arrival
        counter = getattr(self, "internal_ids", None)
        if counter is not None:
            counter.continue_after(max(top, self.queue_store.reserved_mark() - 1 if self.queue_store else 0))
        self.persist()
        return len(saved)

    # --- evidence --------------------------------------------------------------------------------
    def snapshot(self, q: Queue) -> None:
        """Record the queue's Get-Queue row at this virtual time (for `labsim queue --at`)."""
        if not q.messages and q.status != "Active":
            # An emptied queue has nothing to retry [INFERRED]; it idles out after QueueMaxIdleTime.
            q.status, q.last_error, q.next_retry_time, q.connection_failures = "Ready", "", None, 0
            entry, q.drain_entry = q.drain_entry, None
            if entry is not None:
                self.lab.scheduler.cancel(entry)
                q.next_drain = None
        hub = getattr(self.lab, "tracking", None)
        if hub is not None:
            hub.queue_snapshot(self, q)
        self.persist()

    def expiration_of(self, item: MailItem) -> datetime:
        return expires_at(self.retry_policy(), item.arrived)

    # --- overridden by each party ----------------------------------------------------------------
    async def send_spec(self, q: Queue, batch: list[QueuedMessage]) -> tuple[SendSpec | None, AttemptFailure | None]:
        raise NotImplementedError

    def outgoing_data(self, item: MailItem, q: Queue) -> bytes:
        """The message as it leaves on this hop: the send-side header firewall (transport.headers)."""
        if self.name != "EXO" and self.name not in self.lab.servers:
            return item.data
        route = q.route
        external = q.delivery_type in ("DnsConnectorDelivery", "SmartHostConnectorDelivery") and \
            bool(getattr(route, "external", True))
        connector = getattr(route, "connector", None)
        server = getattr(getattr(self, "model", None), "fqdn", None) or self.lab.model.tenant.frontend_host
        return H.on_send(item.data, external=external, server=server,
                         cloud_services_mail=bool(getattr(connector, "cloud_services_mail_enabled", False)))

    def last_error_text(self, failure: AttemptFailure) -> str:
        return onprem_last_error(failure)

    def dns_failure(self, q: Queue, exc: DnsError) -> AttemptFailure:
        return AttemptFailure(kind="dns", target_ip="", target_port=25, target_name=exc.qname,
                              detail=R.DNS_QUERY_FAILED.format(error=exc.code) if exc.transient else exc.smtp)


def _message_source(item: MailItem) -> str:
    if item.dsn_kind:
        return "DSN"
    if item.receive_connector:
        return "SMTP:" + item.receive_connector.split("\\", 1)[-1]
    return "FromLocal"


def _remote_of(q: Queue) -> tuple[str, str]:
    """The host a queue last tried (for the NDR's Remote Server line), as far as the queue knows."""
    return q.last_target_host, q.last_target_ip


def describe_time(when: datetime | None) -> str:
    return iso_ms(when) if when is not None else ""
