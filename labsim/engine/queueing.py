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
their errors and their retry policy. The parts, each a class of its own:

- engine.queue_rules: Exchange's defaults and texts, and the pure decisions (connections wanted,
  the retry policy of a transport service, the 250 queued reply, the send-side header firewall);
- engine.queue_base.QueueBase: state, hooks, timers (delay DSN, expiry), NDRs, snapshots, the
  queue database;
- engine.queue_drain.QueueDrain: connections and what each carries;
- engine.queue_admin.QueueAdmin: queue cmdlets, configuration changes, restore at start;
- here, `QueueingParty`: entering a queue, and the class each party derives from.
"""

from __future__ import annotations

from typing import Any

from ..rules import replies as R
from ..transport.message import MailItem
from ..transport.queues import Queue, QueuedMessage
from .notifications import Failure
from .queue_admin import QueueAdmin
from .queue_drain import QueueDrain
from .queue_rules import (
    EXO_RETRY_POLICY,
    INBOUND_PROXY,
    INTRA_ORG,
    MAILBOX_DELIVERY_CONNECTOR,
    UNLIMITED_CONNECTIONS,
    NullTracker,
    connections_wanted,
    firewalled,
    message_source,
    policy_from_transport,
    queued_reply,
)

__all__ = ["QueueingParty", "Failure", "NullTracker", "EXO_RETRY_POLICY", "INBOUND_PROXY", "INTRA_ORG",
           "MAILBOX_DELIVERY_CONNECTOR", "UNLIMITED_CONNECTIONS", "connections_wanted", "firewalled",
           "policy_from_transport", "queued_reply"]


class QueueingParty(QueueAdmin, QueueDrain):
    """What every store-and-forward party shares: queues, retries, expiry, notifications."""

    def enqueue(self, key: tuple[str, str], delivery_type: str, next_hop: str, route: Any,
                item: MailItem, recipients: list[str], *, source: str = "") -> Queue:
        now = self.lab.clock.now()
        if self._routing_sig is None:
            self._routing_sig = self.routing_signature()
        q = self.queues.for_route(key, delivery_type, next_hop, route)
        q.created = q.created or now
        q.last_activity = now
        qm = QueuedMessage(item=item, recipients=list(recipients), queued_at=now,
                           source=source or message_source(item))
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
