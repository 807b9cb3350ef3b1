"""A plain Internet mail host (Postfix-like) at run time: its own domains and mailboxes, MX sending."""

from __future__ import annotations

import ssl
from datetime import timedelta
from typing import TYPE_CHECKING

from ..ids import Counter, SessionIds
from ..net.streams import start_tls
from ..pki.store import CertStore
from ..rules.outbound import AttemptFailure
from ..rules.routing import domain_of
from ..smtp.client import ClientTls, SendSpec, Target
from ..topology.model import InternetMailHost
from ..transport.message import MailItem, header_value
from ..transport.queues import Queue, QueuedMessage, QueueSet
from .queueing import QueueingParty
from .session_state import SessionExtra, SimpleState

if TYPE_CHECKING:  # pragma: no cover
    from ..smtp.session_api import Envelope, ReceivingSession
    from .ports import InternetLab


class InternetHostRuntime(QueueingParty):
    """A plain Internet mail host: accepts mail for its domains, sends its users' mail by MX."""

    def __init__(self, lab: "InternetLab", model: InternetMailHost) -> None:
        super().__init__(lab, model.name, QueueSet(model.name))
        self.lab: InternetLab = lab
        self.model = model
        self.host = lab.net.host(model.name)
        self.session_ids = SessionIds(lab.seed, model.name, lab.model.start - timedelta(days=1))
        self.ids = lab.ids_for(model.name)
        self.internal_ids = Counter(lab.seed, model.name, 10**5, 10**6)
        from ..topology.model import StoreEntry
        self.store = CertStore(lab.pki, [StoreEntry(certificate=model.certificate)] if model.certificate else [],
                               owner=model.name)
        self._ctx: ssl.SSLContext | None = None
        self._ctx_leaves: tuple[int, ...] = ()

    @property
    def has_tls(self) -> bool:
        return bool(self.store.entries)

    def expiry(self) -> timedelta:
        return timedelta(days=5)  # Postfix maximal_queue_lifetime

    def generates_dsns(self) -> bool:
        return False  # the lab models no bounces from Internet hosts

    def hosts_domain(self, address: str) -> bool:
        return domain_of(address) in {d.lower() for d in self.model.domains}

    def has_mailbox(self, address: str) -> bool:
        return address.lower() in {m.lower() for m in self.model.mailboxes}

    def open_session(self, session: "ReceivingSession") -> bool:
        session.session_id = self.session_ids.next()
        session.state = SimpleState(remote_ip=session.context["remote"][0])
        session.extra = SessionExtra()
        return True

    async def start_server_tls(self, session: "ReceivingSession") -> None:
        leaves = self.lab.pki.all_leaf_certs()  # rebuilt when a certificate is added at run time
        key = tuple(c.serial_number for c in leaves)
        if self._ctx is None or key != self._ctx_leaves:
            self._ctx, self._ctx_leaves = self.store.server_context(self.store.entries[0], leaves), key
        await session.reply("220 2.0.0 Ready to start TLS")
        try:
            await start_tls(session.writer, self._ctx)
        except (ssl.SSLError, ConnectionError, OSError):
            session.closed = True
            return
        # The TLS rows are stamped from the session's own cursor (its STARTTLS read), not the
        # shared clock: resumed or full, the handshake's rows do not depend on when another
        # session moved the clock (docs/performance.md, "TLS session resumption").
        sslobj = session.writer.get_extra_info("ssl_object")
        session.state.tls, session.state.helo = True, None
        session.extra.tls = {"version": sslobj.version(), "cipher": sslobj.cipher()[0]}

    async def receive_message(self, session: "ReceivingSession", envelope: "Envelope") -> str:
        now = session.now()
        qid = f"{self.ids.randint(0x10000000, 0xFFFFFFFF):X}{self.ids.randint(0x1, 0xF):X}"
        st = session.state
        tls = session.extra.tls
        with_part = "ESMTPS" if tls else "ESMTP"
        from ..clock import rfc2822_local
        header = (f"Received: from {st.helo} ({st.helo} [{st.remote_ip}])\r\n\tby {self.model.fqdn} (Postfix) "
                  f"with {with_part} id {qid}\r\n\tfor <{envelope.recipients[0]}>; {rfc2822_local(now, 0)}\r\n").encode()
        data = header + envelope.data
        message_id = header_value(data, "Message-ID")
        item = MailItem(server=self.name, internal_id=0, mail_from=envelope.mail_from,
                        recipients=list(envelope.recipients), data=data, message_id=message_id,
                        network_message_id="", subject=header_value(data, "Subject"), arrived=now)
        item.lab_key = self.lab.ledger.key_for(message_id)
        for rcpt in envelope.recipients:
            path = self.lab.store.deliver(f"internet-{self.model.name.lower()}", rcpt, data)
            self.lab.ledger.delivered(item, rcpt, "internet", path, self.name)
        return f"250 2.0.0 Ok: queued as {qid}"

    async def submit_from_mailbox(self, mail_from: str, recipients: list[str], data: bytes) -> None:
        now = self.lab.clock.now()
        item = MailItem(server=self.name, internal_id=self.internal_ids.next(), mail_from=mail_from,
                        recipients=list(recipients), data=data, message_id=header_value(data, "Message-ID"),
                        network_message_id="", subject=header_value(data, "Subject"), arrived=now)
        item.lab_key = self.lab.ledger.key_for(item.message_id)
        self.lab.ledger.received(item, self.name)
        self.requeue(item, list(recipients))

    def requeue(self, item: MailItem, recipients: list[str]) -> None:
        """One queue per recipient domain, delivered by MX (also for mail read back from the spool)."""
        by_domain: dict[str, list[str]] = {}
        for r in recipients:
            by_domain.setdefault(domain_of(r), []).append(r)
        for dom, rcpts in by_domain.items():
            self.enqueue(("DnsConnectorDelivery", dom), "DnsConnectorDelivery", dom, dom, item, rcpts)

    async def send_spec(self, q: Queue, batch: list[QueuedMessage]) -> tuple[SendSpec | None, AttemptFailure | None]:
        targets = []
        for host, ips in await self.lab.resolve_host(self.host, self.model.dns_servers, q.next_hop_domain):
            targets += [Target(ip, 25, host) for ip in ips]
        return SendSpec(src=self.host, connector_id="", log=None, log_enabled=False, session_ids=self.session_ids,
                        ehlo_name=self.model.fqdn, destination_domain=q.next_hop_domain, targets=targets,
                        tls=ClientTls(attempt=True, store=self.store)), None


