"""Exchange Online at run time: the EOP front end that receives, tenant attribution and routing,
and outbound delivery through the tenant's connectors (or MX).
"""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from ..clock import iso_ms
from ..ids import Counter, SessionIds
from ..net.resolver import DnsError
from ..net.streams import start_tls
from ..pki.store import CertStore, peer_chain
from ..pki.validate import certificate_names
from ..rules import replies as R
from ..rules.dnsfail import dns_status, exo_dns_outcome
from ..rules.exo import ExoRoute, attribute, recipient_accepted, route_exo
from ..rules.outbound import AttemptFailure, exo_last_error, onprem_last_error
from ..rules.retry import RetryPolicy
from ..rules.routing import domain_of
from ..rules.tls_policy import (
    exo_certificate_attributes,
    exo_connector_plan,
    exo_mx_plan,
)
from ..rules.verbs import Sender
from ..smtp.client import ClientTls, SendSpec, Target
from ..topology.values import smart_host_ip
from ..transport import headers as H
from ..transport.message import MailItem, count_received, header_value, received_header
from ..transport.queues import Queue, QueuedMessage, QueueSet
from .queueing import EXO_RETRY_POLICY, Failure, QueueingParty, firewalled, queued_reply
from .reputation import eop_block_list_reply
from .session_state import SessionExtra, SimpleState

if TYPE_CHECKING:  # pragma: no cover
    from ..smtp.session_api import Envelope, ReceivingSession
    from .ports import ExoLab


class ExoRuntime(QueueingParty):
    """Exchange Online: the EOP front end that receives, the tenant's routing, and its outbound sending."""

    def __init__(self, lab: "ExoLab") -> None:
        super().__init__(lab, "EXO", QueueSet("EXO"))
        self.lab: ExoLab = lab
        self.model = lab.model.tenant
        self.host_in = lab.net.host("EXO")
        self.host_out = lab.net.host("EXO-OUT")
        self.frontend_fqdn = self.model.frontend_host
        from ..topology.model import StoreEntry
        self.store = CertStore(lab.pki, [StoreEntry(certificate=self.model.certificate)], owner="EXO")
        self.cert = self.store.entries[0]
        self.session_ids = SessionIds(lab.seed, "EXO", lab.model.start - timedelta(hours=5))
        self.internal_ids = Counter(lab.seed, "EXO")
        self.ids = lab.ids_for("EXO")
        self._ctx: ssl.SSLContext | None = None
        self._ctx_leaves: tuple[int, ...] = ()

    def expiry(self) -> timedelta:
        return EXO_RETRY_POLICY.expiration  # 24 hours (MFI; rules.retry)

    def dns_failure(self, q: Queue, exc: DnsError) -> AttemptFailure:
        """EXO's words for a failed next-hop lookup (rules.dnsfail.exo_dns_outcome)."""
        route = cast(ExoRoute, q.route)
        domain = domain_of(route.recipient)
        connector = q.delivery_type == "SmartHostConnectorDelivery"
        status = dns_status(type(exc).__name__, qname=exc.qname, domain=None if connector else domain)
        outcome = exo_dns_outcome(status, connector=connector,
                                  domain=domain, server=self.frontend_fqdn)
        return AttemptFailure(kind="dns", target_ip="", target_port=25, target_name=exc.qname,
                              detail=outcome.text, permanent=outcome.permanent)

    def retry_policy(self) -> RetryPolicy:
        return EXO_RETRY_POLICY

    def routing_signature(self) -> str:
        t = self.model
        return repr([t.accepted_domains, t.mailboxes, t.mail_users, t.outbound_connectors])

    def outgoing_data(self, item: MailItem, q: Queue) -> bytes:
        return firewalled(item, q, self.lab.model.tenant.frontend_host)

    def last_error_text(self, failure: AttemptFailure) -> str:
        if self.model.platform == "FOPE":  # the 2010-era service ran Exchange transport (seed 003)
            return onprem_last_error(failure, exchange2010=True)
        return exo_last_error(failure)

    def open_session(self, session: "ReceivingSession") -> bool:
        remote_ip, _ = session.context["remote"]
        session.session_id = self.session_ids.next()
        session.state = SimpleState(remote_ip=remote_ip)
        session.extra = SessionExtra()
        return True

    async def start_server_tls(self, session: "ReceivingSession") -> None:
        # The context trusts the lab's leaf certificates as they were when it was built: a certificate
        # created at run time (a reissue) needs a new one, or its handshake fails (IllegalMessage).
        leaves = self.lab.pki.all_leaf_certs()
        key = tuple(c.serial_number for c in leaves)
        if self._ctx is None or key != self._ctx_leaves:
            self._ctx, self._ctx_leaves = self.store.server_context(self.cert, leaves), key
        await session.reply(R.STARTTLS_GO)
        try:
            await start_tls(session.writer, self._ctx)
        except (ssl.SSLError, ConnectionError, OSError):
            session.closed = True
            return
        # The TLS rows are stamped from the session's own cursor (its STARTTLS read), not the
        # shared clock: resumed or full, the handshake's rows do not depend on when another
        # session moved the clock (docs/performance.md, "TLS session resumption").
        sslobj = session.writer.get_extra_info("ssl_object")
        st = session.state
        st.tls, st.helo = True, None
        st.mail_from, st.recipients = None, []
        session.extra.peer_chain = peer_chain(sslobj)
        session.extra.tls = {"version": sslobj.version(), "cipher": sslobj.cipher()[0]}

    async def check_mail(self, session: "ReceivingSession", address: str) -> str:
        st = session.state
        chain = session.extra.peer_chain or []
        names, valid = [], False
        if chain:
            result = await self.lab.validate(self.host_in, chain, None)
            session.touch()
            valid = exo_certificate_attributes(str(result.status))  # rules.tls_policy
            names = certificate_names(chain[0])
        st.attribution = attribute(self.model, cert_names=names, cert_valid=valid, source_ip=st.remote_ip,
                                   mail_from_domain=domain_of(address) if address else "")
        st.mail_from = address
        return R.SENDER_OK

    async def block_list_reply(self, session: "ReceivingSession") -> str | None:
        """EOP's built-in IP block lists, checked at RCPT for mail sent straight to the MX."""
        return await eop_block_list_reply(self, session)

    async def check_rcpt(self, session: "ReceivingSession", address: str) -> str:
        st = session.state
        if recipient_accepted(self.model, address) or (st.attribution and st.attribution.directionality == "Originating"):
            st.recipients.append(address)
            return R.RECIPIENT_OK
        return R.EXO_RELAY_DENIED.format(host=self.frontend_fqdn)

    async def receive_message(self, session: "ReceivingSession", envelope: "Envelope") -> str:
        st = session.state
        st.mail_from, st.recipients = None, []
        now = session.now()
        if count_received(envelope.data) >= self.model.max_hop_count:  # a loop, seen from EXO
            return R.EXO_HOP_COUNT.format(stamp=f"{self.frontend_fqdn} {iso_ms(now)} {session.session_id:016X}")
        header = received_header(helo=st.helo or st.remote_ip, client_ip=st.remote_ip, by_fqdn=self.frontend_fqdn,
                                 by_ip=self.model.inbound_ip, tls=session.extra.tls, version="15.20.8769.12",
                                 when=now, utc_offset_minutes=0)
        att = st.attribution
        data, stamp = H.on_receive(envelope.data, H.exo_trust(att), auth_source=self.frontend_fqdn,
                                   default_directionality=att.directionality if att else "Incoming",
                                   originator_org=self._originator_org())
        item = self._new_item(envelope.mail_from, envelope.recipients, header + data, now,
                              directionality=stamp.directionality, client_ip=st.remote_ip, helo=st.helo or "")
        self.submit(item)
        secs = (session.now() - (session.data_started or now)).total_seconds()
        return queued_reply(item.message_id, item.internal_id, self.frontend_fqdn, len(envelope.data), secs)

    def _new_item(self, mail_from: str, recipients: list[str], data: bytes, now: datetime, *,
                  directionality: str, client_ip: str = "", helo: str = "") -> MailItem:
        message_id = header_value(data, "Message-ID") or f"<{self.ids.guid()}@{self.frontend_fqdn}>"
        item = MailItem(server="EXO", internal_id=self.internal_ids.next(), mail_from=mail_from,
                        recipients=list(recipients), data=data, message_id=message_id,
                        network_message_id=self.lab.network_message_id("exo", message_id, self.ids, now),
                        subject=header_value(data, "Subject"), arrived=now, directionality=directionality,
                        client_ip=client_ip, client_hostname=helo)
        item.lab_key = self.lab.ledger.key_for(message_id)
        self.lab.ledger.received(item, "EXO")
        self.tracker.received(item, None, "EXO")
        return item

    def submit(self, item: MailItem, recipients: list[str] | None = None) -> None:
        """EXO's categorizer: a tenant mailbox, an outbound connector, or MX (all, or a resubmission)."""
        groups: dict[tuple[str, str], tuple[Any, str, list[str]]] = {}
        self.tracker.categorized(item)
        for rcpt in item.recipients if recipients is None else recipients:
            route = route_exo(self.model, rcpt)
            if route.kind == "mailbox":
                path = self.lab.store.deliver("exo", route.recipient, item.data)
                self.lab.ledger.delivered(item, route.recipient, "exo", path, "EXO")
                self.tracker.deliver(item, route.recipient, path)
                continue
            if route.kind == "reject":
                self.fail_recipients(item, [rcpt], Failure(route.error or "", "ROUTING"))
                continue
            if route.kind == "connector":
                assert route.connector is not None  # route_exo sets it for kind "connector"
                key = ("SmartHostConnectorDelivery", route.connector.name.lower())
                hop = ",".join(route.connector.smart_hosts) if not route.connector.use_mx_record else domain_of(route.recipient)
            else:
                key = ("DnsConnectorDelivery", domain_of(route.recipient))
                hop = domain_of(route.recipient)
            if key not in groups:
                groups[key] = (route, hop, [])
            groups[key][2].append(route.recipient)
        for key, (route, hop, rcpts) in groups.items():
            self.enqueue(key, key[0], hop, route, item, rcpts)

    async def submit_from_mailbox(self, mail_from: str, recipients: list[str], data: bytes) -> None:
        now = self.lab.clock.now()
        data, _ = H.on_receive(data, H.Trust(exchange_server=True), auth_source=self.frontend_fqdn,
                               default_directionality="Originating", originator_org=self._originator_org())
        self.submit(self._new_item(mail_from, recipients, data, now, directionality="Originating"))

    def _originator_org(self) -> str:
        default = next((d for d in self.model.accepted_domains if d.default), None)
        return default.domain_name if default else self.model.initial_domain

    async def send_spec(self, q: Queue, batch: list[QueuedMessage]) -> tuple[SendSpec | None, AttemptFailure | None]:
        route = cast(ExoRoute, q.route)  # EXO queues are created from route_exo (submit)
        servers = self.model.dns_servers
        targets: list[Target] = []
        tls = ClientTls.from_plan(exo_mx_plan(self.cert), self.store)
        conn = getattr(route, "connector", None)
        if conn is not None and not conn.use_mx_record:
            for host in conn.smart_hosts:
                literal = smart_host_ip(host)  # an IP smart host is used as is, never looked up
                for ip in [literal] if literal else await self.lab.resolve_a(self.host_out, servers, host):
                    targets.append(Target(ip, 25, host))
            tls = ClientTls.from_plan(exo_connector_plan(conn, self.cert), self.store)
        else:
            for host, ips in await self.lab.resolve_host(self.host_out, servers, domain_of(route.recipient)):
                targets += [Target(ip, 25, host) for ip in ips]
        return SendSpec(src=self.host_out, connector_id=conn.name if conn else "", log=None, log_enabled=False,
                        session_ids=self.session_ids, ehlo_name=self.model.outbound_helo,
                        destination_domain=q.next_hop_domain, targets=targets, tls=tls,
                        validate=lambda chain, domain: self.lab.validate(self.host_out, chain, domain),
                        sender=Sender()), None  # Exchange Online's SmtpOut: BDAT, BODY=, STARTTLS
