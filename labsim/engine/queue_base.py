"""What every store-and-forward party shares: its queues' state, hooks, timers, evidence and database.

`QueueBase` holds the state (queues, the queue database, what waits for a stopped service), the
policy hooks each party overrides (retry policy, connection limits, how it sends), scheduling a
drain, failing recipients with an NDR, delay-DSN and expiry timers, the Get-Queue snapshot and the
queue database (`up`). Draining is engine.queue_drain, operations engine.queue_admin; the party
class that joins them is engine.queueing.QueueingParty.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..ids import Counter, IdSource
from ..net.resolver import DnsError
from ..rules import replies as R
from ..rules.dnsfail import dns_status, onprem_dns_outcome
from ..rules.outbound import AttemptFailure, onprem_last_error
from ..rules.retry import RetryPolicy, connection_retry_delay, delay_dsn_at, expires_at
from ..smtp.client import SendSpec
from ..transport.message import MailItem
from ..transport.persist import QueueStore
from ..transport.queues import Queue, QueuedMessage, QueueSet
from .notifications import Failure, build_dsn
from .queue_rules import (
    BATCH,
    EXPIRED,
    EXPIRED_UNREACHABLE,
    OUTBOUND_CONNECTIONS,
    PER_DOMAIN_CONNECTIONS,
    NullTracker,
    remote_of,
)

if TYPE_CHECKING:  # pragma: no cover
    from .ports import QueueLab


class QueueBase:
    """A party's queues: state, policy hooks, scheduling, timers, NDRs, evidence, the queue database."""

    # set by each party: its own model, its seeded ids and its InternalId counter (engine.notifications)
    model: Any
    ids: IdSource
    internal_ids: Counter

    def __init__(self, lab: "QueueLab", name: str, queues: QueueSet) -> None:
        self.lab = lab
        self.name = name
        self.queues = queues
        self.queue_store: QueueStore | None = None  # `up`: the queues are kept on disk (transport.persist)
        self._routing_sig: str | None = None  # the routing inputs at the first enqueue / last change
        self._overdue: list[tuple[str, MailItem]] = []  # delay/expiry due while the service was stopped
        self._dirty: dict[int, MailItem] = {}  # `up`: messages whose queued state changed since `persist`

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
        return True

    @property
    def tracker(self) -> Any:
        hub = getattr(self.lab, "tracking", None)
        return hub.for_party(self) if hub is not None else NullTracker()

    def generates_dsns(self) -> bool:
        return True

    # --- scheduling a drain (engine.queue_drain drains) ----------------------------------------------
    def schedule_drain(self, q: Queue, when: datetime) -> None:
        if q.next_drain is not None and q.next_drain <= when:
            return
        q.token += 1
        q.next_drain = when
        token = q.token
        if q.drain_entry is not None:
            self.lab.scheduler.cancel(q.drain_entry)
        q.drain_entry = self.lab.scheduler.call_at(when, f"{q.identity} drain", lambda: self._drain_if_current(q, token))

    async def drain(self, q: Queue) -> None:
        """Open the connections `q` needs now (engine.queue_drain)."""
        raise NotImplementedError

    async def _drain_if_current(self, q: Queue, token: int) -> None:
        if token != q.token:
            return  # superseded by an earlier drain (Retry-Queue, a new message)
        q.next_drain = None
        await self.drain(q)

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
        self.send_dsn("delayed", item, rcpts, Failure(qm.last_error or q.last_error, "QUEUE", *remote_of(q),
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
            host, ip = remote_of(q)
            self.fail_recipients(item, qm.recipients, Failure(status, "QUEUE", host, ip,
                                                              last_error=qm.last_error,
                                                              last_attempt=q.last_retry_time or now))
            self.snapshot(q)

    # --- the queue database (up: transport.persist) ------------------------------------------------
    def _touch(self, item: MailItem) -> None:
        """`item`'s queued state changed: it is written at the next `persist` (before any reply)."""
        if self.queue_store is not None:
            self._dirty[id(item)] = item

    def persist(self) -> None:
        """Commit every changed message to the queue folder (or remove it once it left).

        Called at the end of every queue change (`snapshot`), so a message that a receive session
        is about to acknowledge with 250 is on disk before the reply is written.
        """
        store = self.queue_store
        dirty = self._dirty
        if store is None:
            return
        counter = getattr(self, "internal_ids", None)
        if counter is not None:
            store.reserve(counter.upcoming)
        if dirty:
            self._dirty = {}
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

    def expirations(self) -> Callable[[MailItem], datetime]:
        """`expiration_of` for the messages of one moment (a queue's rows): the retry policy is
        read once, not once a message (a party that words `expiration_of` its own way keeps it)."""
        if type(self).expiration_of is not QueueBase.expiration_of:
            return self.expiration_of
        policy = self.retry_policy()
        return lambda item: expires_at(policy, item.arrived)

    def shadow_queues(self) -> list[Queue]:
        """Get-Queue's shadow redundancy queues (engine.shadow on a Mailbox server; none elsewhere)."""
        return []

    # --- overridden by each party ----------------------------------------------------------------
    async def send_spec(self, q: Queue, batch: list[QueuedMessage]) -> tuple[SendSpec | None, AttemptFailure | None]:
        raise NotImplementedError

    def outgoing_data(self, item: MailItem, q: Queue) -> bytes:
        """The message as it leaves on this hop (Exchange parties: `firewalled`)."""
        return item.data

    def last_error_text(self, failure: AttemptFailure) -> str:
        # an Exchange server words it as its build does (rules.builds); other parties as 2019
        return onprem_last_error(failure, build=getattr(self.model, "build", "2019"))

    def next_hop_lookup_failed(self, q: Queue, exc: DnsError) -> None:
        """A delivery attempt of `q` failed at its lookup (Exchange servers log it: connectivity log)."""

    def dns_failure(self, q: Queue, exc: DnsError) -> AttemptFailure:
        """The failure a next hop's failed lookup means for `q`."""
        route = getattr(q, "route", None)
        # the route's delivery type is the queue's (Validate-*Connector passes a bare stand-in queue)
        mx_routed = (getattr(route, "delivery_type", None) or q.delivery_type) == "DnsConnectorDelivery"
        status = dns_status(type(exc).__name__, qname=exc.qname,
                            domain=(getattr(route, "dns_domain", None) or q.next_hop_domain) if mx_routed else None)
        connector = getattr(route, "connector", None)
        outcome = onprem_dns_outcome(
            status, dns_connector=mx_routed,
            downgrade_dns_failures=getattr(connector, "error_policies", "Default") == "DowngradeDnsFailures")
        return AttemptFailure(kind="dns", target_ip="", target_port=25, target_name=exc.qname,
                              detail=outcome.text, permanent=outcome.permanent)
