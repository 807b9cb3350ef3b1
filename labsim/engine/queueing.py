"""Store-and-forward behaviour every queueing party shares: queues, batches, retries, expiry.

A queue is drained by a scheduler action: one client session to the next hop carries up to 20
messages (SmtpMaxMessagesPerConnection); what is not delivered stays with its LastError and the
queue is retried later (transport-behavior.md §6.3). Parties supply `send_spec` (how to reach the
next hop) and the wording of their errors.
"""


from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..net.resolver import DnsError
from ..rules import replies as R
from ..rules.outbound import AttemptFailure, onprem_last_error
from ..smtp.client import OutboundMessage, SendSpec, deliver
from ..topology.model import ReceiveConnector
from ..transport.message import MailItem
from ..transport.queues import Queue, QueuedMessage, QueueSet

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import LabRuntime


BATCH = 20  # SmtpMaxMessagesPerConnection
EXPIRED = "550 4.4.7 QUEUE.Expired; message expired"
MAILBOX_DELIVERY_CONNECTOR = ReceiveConnector(
    name="Mailbox Delivery", transport_role="HubTransport", bindings=["0.0.0.0:475"],
    auth_mechanism=["Tls", "ExchangeServer"], permission_groups=["ExchangeServers"])
INTRA_ORG = "Intra-Organization SMTP Send Connector"
INBOUND_PROXY = "Inbound Proxy Internal Send Connector"
CAP_VALIDATION_FAILED = "CertificateValidationFailure"  # [INFERRED] Status of a failed capability check
CAP_DOMAIN_MISMATCH = "DomainMismatch"  # [INFERRED] no capability domain matches the certificate


def queued_reply(message_id: str, internal_id: int, hostname: str, size: int, secs: float) -> str:
    secs = max(secs, 0.001)
    return R.QUEUED.format(message_id=message_id, internal_id=internal_id, hostname=hostname, size=size,
                           secs=f"{secs:.3f}", rate=f"{size / 1024 / secs:.3f}")


class QueueingParty:
    """What every store-and-forward party shares: queues, retries, expiry."""

    lab: "LabRuntime"
    name: str
    queues: QueueSet

    def retry_delay(self, retry_count: int) -> timedelta:
        return timedelta(minutes=10)

    def expiry(self) -> timedelta:
        return timedelta(days=2)

    def enqueue(self, key: tuple[str, str], delivery_type: str, next_hop: str, route: Any,
                item: MailItem, recipients: list[str]) -> Queue:
        q = self.queues.for_route(key, delivery_type, next_hop, route)
        q.messages.append(QueuedMessage(item=item, recipients=list(recipients)))
        if q.delivery_type != "Unreachable":
            self.schedule_drain(q, self.lab.clock.now())
        else:
            q.last_error = item.last_error
            q.status = "Ready"
        return q

    def schedule_drain(self, q: Queue, when: datetime) -> None:
        if q.scheduled:
            return
        q.scheduled = True
        self.lab.scheduler.call_at(when, f"{q.identity} drain", lambda: self.drain(q))

    async def drain(self, q: Queue) -> None:
        q.scheduled = False
        now = self.lab.clock.now()
        for qm in list(q.messages):
            if now - qm.item.arrived >= self.expiry():
                q.messages.remove(qm)
                self.lab.ledger.failed(qm.item, qm.recipients, EXPIRED, self.name)
        batch = [qm for qm in q.messages if qm.status != "Suspended"][:BATCH]
        if not batch:
            q.status = "Ready"
            return
        q.status = "Active"
        try:
            spec, failure = await self.send_spec(q, batch)
        except DnsError as exc:
            self.lab.clock.advance(exc.elapsed_virtual)
            spec, failure = None, self.dns_failure(q, exc)
        if spec is None:
            self._retry(q, batch, failure)
            return
        messages = [OutboundMessage(key=qm, mail_from=qm.item.mail_from, recipients=qm.recipients,
                                    data=self.outgoing_data(qm.item, q)) for qm in batch]
        results = await deliver(self.lab, spec, messages)
        retry = []
        for qm, res in zip(batch, results):
            if res.delivered:
                self.lab.ledger.sent(qm.item, res.delivered, self.name, res.remote_host)
            for rcpt, text in res.rejected.items():
                self.lab.ledger.failed(qm.item, [rcpt], text, self.name)
            left = [r for r in qm.recipients if r not in res.delivered and r not in res.rejected]
            if not left:
                q.messages.remove(qm)
                continue
            qm.recipients = left
            qm.last_error = (self.last_error_text(res.failure) if res.failure is not None
                             else next(iter(res.deferred.values()), ""))
            retry.append(qm)
        if retry:
            self._retry(q, retry, None)
        else:
            q.status = "Ready"
            q.last_error = ""
            q.retry_count = 0
            if q.messages:
                self.schedule_drain(q, self.lab.clock.now())

    def _retry(self, q: Queue, batch: list[QueuedMessage], failure: AttemptFailure | None) -> None:
        now = self.lab.clock.now()
        for qm in batch:
            if failure is not None:
                qm.last_error = self.last_error_text(failure)
            qm.retry_count += 1
            qm.status = "Retry"
            qm.item.last_error = qm.last_error
        q.status = "Retry"
        q.last_error = batch[0].last_error if batch else q.last_error
        q.retry_count += 1
        q.first_retry_time = q.first_retry_time or now
        q.last_retry_time = now
        q.next_retry_time = now + self.retry_delay(q.retry_count)
        for qm in batch:
            qm.status = "Ready"
        self.schedule_drain(q, q.next_retry_time)

    # overridden by each party
    async def send_spec(self, q: Queue, batch: list[QueuedMessage]) -> tuple[SendSpec | None, AttemptFailure | None]:
        raise NotImplementedError

    def outgoing_data(self, item: MailItem, q: Queue) -> bytes:
        return item.data

    def last_error_text(self, failure: AttemptFailure) -> str:
        return onprem_last_error(failure)

    def dns_failure(self, q: Queue, exc: DnsError) -> AttemptFailure:
        return AttemptFailure(kind="dns", target_ip="", target_port=25, target_name=exc.qname,
                              detail=R.DNS_QUERY_FAILED.format(error=exc.code) if exc.transient else exc.smtp)


