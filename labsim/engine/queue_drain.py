"""Draining a queue: the connections it opens, the messages each carries, and what follows.

Theory of operation (docs/queues-tracking-ndr.md, "Connections"). A drain (a scheduler action,
`QueueBase.schedule_drain`) opens as many connections as the backlog needs (`queue_rules.
connections_wanted`); each carries one message at a time and, when it is free again at its virtual
cursor (`_resume`, a scheduler action of its own), takes the next eligible message or QUITs. After
every message `_after_session` applies Exchange's outcome: delivered, rejected (NDR), deferred
(MessageRetryInterval) or unconnected (the queue goes to Retry, `_connection_failed`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..net.resolver import DnsError
from ..rules.outbound import AttemptFailure
from ..rules.retry import connection_retry_delay
from ..smtp.client import Connection, MessageResult, OutboundMessage, SendSpec
from ..transport.queues import Queue, QueuedMessage
from .notifications import Failure
from .queue_rules import (
    DONE,
    UNCONNECTED,
    Outbound,
    connections_wanted,
    message_outcome,
    next_drain_at,
)

if TYPE_CHECKING:  # pragma: no cover
    pass
from .queue_base import QueueBase


class QueueDrain(QueueBase):
    """Sending what a queue holds: connections, messages per connection, outcomes."""

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

    def _connections(self, q: Queue) -> list[Outbound]:
        return q.connections

    def _open_connection_count(self) -> int:
        return sum(len(self._connections(q)) for q in self.queues.all())

    def _next_message(self, q: Queue, at: datetime) -> QueuedMessage | None:
        """The next message a connection takes: the first eligible one that had arrived by `at`."""
        # `_eligible(q, at)`'s test, stopping at the first (not the whole queue a message)
        for qm in q.messages:
            if (not qm.suspended and (qm.next_retry_time is None or qm.next_retry_time <= at)
                    and (qm.queued_at or at) <= at):
                return qm
        return None

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
            self.next_hop_lookup_failed(q, exc)
        if spec is None:
            if failure is not None and failure.permanent:
                self._next_hop_failed(q, failure)
            else:
                self._connection_failed(q, [qm], failure)
            return False
        out = Outbound(Connection(self.lab, spec), spec, self.lab.clock.now())
        self._connections(q).append(out)
        return await self._carry(q, out, qm)

    async def _carry(self, q: Queue, out: Outbound, qm: QueuedMessage) -> bool:
        """Send `qm` over `out`; then the connection waits for its next message (`_resume`)."""
        qm.status = "Active"
        qm.send_started = self.lab.clock.now()
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

    async def _resume(self, q: Queue, out: Outbound) -> None:
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

    def _drop(self, q: Queue, out: Outbound) -> None:
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
                self.tracker.send(qm.item, res.delivered, q, res, spec, qm=qm)
            for rcpt, text in res.rejected.items():
                self.fail_recipients(qm.item, [rcpt], Failure(text, "SMTP", res.remote_host or "",
                                                             res.remote_ip, last_attempt=now))
            left, outcome = message_outcome(qm.recipients, res)
            if outcome == DONE:
                q.messages.remove(qm)
                self._release(qm.item)
                continue
            qm.recipients = left
            if outcome == UNCONNECTED:
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
        spare = self.messages_per_connection(q) * len(conns) - sum(c.conn.carried for c in conns)
        waits = [qm.next_retry_time for qm in q.messages if qm.next_retry_time is not None and not qm.suspended]
        when = next_drain_at(len(eligible), spare, waits, now)
        if when is not None:
            self.schedule_drain(q, when)
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

    def _next_hop_failed(self, q: Queue, failure: AttemptFailure) -> None:
        """The next hop failed for good (a nonexistent domain on an MX delivery): every message the
        queue holds for it is failed with an NDR at once, not retried (rules.dnsfail)."""
        now = self.lab.clock.now()
        q.last_activity = now
        for qm in [m for m in q.messages if not m.suspended]:
            q.messages.remove(qm)
            self._release(qm.item)
            self.fail_recipients(qm.item, list(qm.recipients), Failure(failure.detail, "SMTP", last_attempt=now))
        self._settle_idle(q)

    def _defer(self, q: Queue, qm: QueuedMessage) -> None:
        """A DEFER row when a message first waits, and again when its reason changes [INFERRED]."""
        if qm.deferred and qm.last_deferred_error == qm.last_error:
            return
        qm.deferred = True
        qm.last_deferred_error = qm.last_error
        self._arm_timers(qm.item)
        self.tracker.defer(qm.item, qm.recipients, qm.last_error, q)
