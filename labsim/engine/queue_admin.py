"""What an admin and the configuration do to a party's queues, and taking them up again at start.

Retry-Queue (-Resubmit), Suspend/Resume-Queue, Suspend/Resume/Remove-Message (the cmdlets are
engine.queue_ops), a routing-table update after a configuration change (`config_changed`), a
service start (`kick`), and `restore`: the queue database read back when `labsim up` starts.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..transport.message import MailItem
from ..transport.persist import SavedMessage
from ..transport.queues import Queue, QueuedMessage
from .notifications import Failure
from .queue_rules import (
    DELETED_BY_ADMIN,
    remote_of,
)

if TYPE_CHECKING:  # pragma: no cover
    pass
from .queue_base import QueueBase


class QueueAdmin(QueueBase):
    """Queue operations, configuration changes and the queue database at start."""

    def routing_signature(self) -> str:
        """What the categorizer's decisions depend on; a change is a routing-table update
        (a party without a categorizer of its own: nothing)."""
        return ""

    def config_changed(self) -> None:
        """After a configuration change: resubmit Unreachable if routing changed (unless suspended).

        "The Unreachable queue ... Until you manually resume this queue, messages are no longer
        automatically resubmitted to the categorizer when configuration updates are detected"
        (queue-procedures.md, Suspend queues). The lab's routing table updates at once [INFERRED:
        Exchange recalculates on the AD change notification, usually within minutes].
        """
        sig = self.routing_signature()
        previous, self._routing_sig = self._routing_sig, sig
        if previous is not None and sig != previous and self.queues_running():
            unreachable = self.queues.special["Unreachable"]
            if unreachable.messages and not unreachable.suspended:
                self.resubmit(unreachable, reason="config")
        self.kick()

    def kick(self) -> None:
        """The service (re)started or the world changed: deliver what waits, settle what is overdue."""
        if not self.queues_running():
            return
        overdue, self._overdue = list(self._overdue), []
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
        failure = Failure(DELETED_BY_ADMIN, "ADMIN", *remote_of(q), last_error=qm.last_error,
                          last_attempt=q.last_retry_time)
        self.lab.ledger.failed(qm.item, qm.recipients, failure.status, self.name)
        dsn = self.make_dsn("failed", qm.item, qm.recipients, failure) if with_ndr and self.generates_dsns() else None
        self.tracker.fail(qm.item, qm.recipients, failure, dsn.message_id if dsn is not None else "")
        if dsn is not None:
            self.tracker.dsn(dsn, qm.item, qm.recipients, "failed")
            self.submit_generated(dsn)

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
