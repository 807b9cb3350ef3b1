"""An on-prem Exchange 2019 server at run time: Front End, Transport (Hub) or Edge, Mailbox Delivery.

It owns its listeners' policies, certificate store, session ids, queues and protocol logs, and
carries out what the rules decide: connector and certificate selection, STARTTLS and the client
certificate check (TlsDomainCapabilities), the Front End proxy to the Hub, categorisation and
routing, and sending through send connectors.
"""

from __future__ import annotations

import ssl
from datetime import timedelta
from typing import TYPE_CHECKING

from ..ids import Counter, SessionIds
from ..logs import protocol_text as T
from ..logs.protocol_log import ProtocolLog, SessionWriter, protocol_log_folder
from ..net.resolver import DnsError
from ..pki.errors import NoCredentialsError
from ..pki.store import CertStore, StoredCert, peer_chain
from ..pki.validate import certificate_names
from ..rules import replies as R
from ..rules.certselect import (
    by_fqdn,
    by_tls_certificate_name,
    name_matches,
    select_certificate,
)
from ..rules.dnschoice import transport_dns_servers
from ..rules.outbound import AttemptFailure
from ..rules.receive import ReceiveState
from ..rules.routing import (
    Route,
    domain_of,
    is_accepted_recipient_domain,
    route_recipient,
)
from ..smtp.client import ClientTls, OutboundMessage, SendSpec, Target, deliver
from ..smtp.policy import ListenerSpec
from ..topology.model import ExchangeServer, ReceiveConnector, SendConnector
from ..topology.timespec import parse_timespan
from ..transport.message import MailItem, count_received, header_value, received_header
from ..transport.queues import Queue, QueuedMessage, QueueSet
from .queueing import (
    CAP_DOMAIN_MISMATCH,
    CAP_VALIDATION_FAILED,
    INBOUND_PROXY,
    INTRA_ORG,
    MAILBOX_DELIVERY_CONNECTOR,
    QueueingParty,
    queued_reply,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..smtp.server import Envelope, ServerSession
    from .runtime import LabRuntime


class ExchangeServerRuntime(QueueingParty):
    """One on-prem Exchange server: its transport services, listeners, store and logs."""

    def __init__(self, lab: "LabRuntime", model: ExchangeServer) -> None:
        self.lab = lab
        self.model = model
        self.name = model.name
        self.host = lab.net.host(model.name)
        self.store = CertStore.for_server(lab.pki, model)
        start = lab.model.start - timedelta(days=3, hours=lab.ids_for(model.name).randint(1, 48))
        self.services = ["FrontEnd", "Hub", "MailboxDelivery"] if model.role == "Mailbox" else ["Edge"]
        self.session_ids = {svc: SessionIds(lab.seed, f"{model.name}/{svc}", start)
                            for svc in self.services + ["MailboxSubmission"]}
        self.internal_ids = Counter(lab.seed, model.name)
        self.ids = lab.ids_for(model.name + "/transport")
        self.queues = QueueSet(model.name)
        self._logs: dict[tuple[str, str], ProtocolLog] = {}
        self._server_ctx: dict[int, ssl.SSLContext] = {}
        self._reported_12014: set[str] = set()

    # --- configuration views --------------------------------------------------------------
    @property
    def transport_cfg(self):
        return self.model.transport

    def connectors_for(self, service: str) -> list[ReceiveConnector]:
        if service == "MailboxDelivery":
            return [MAILBOX_DELIVERY_CONNECTOR]
        if service == "Edge":
            return list(self.model.receive_connectors)
        role = "FrontendTransport" if service == "FrontEnd" else "HubTransport"
        return [rc for rc in self.model.receive_connectors if rc.transport_role == role]

    def listener_specs(self) -> list[ListenerSpec]:
        specs = []
        for svc in self.services:
            if not self.service_running(svc):
                continue
            ports = sorted({p for rc in self.connectors_for(svc) if rc.enabled for p in rc.ports})
            specs += [ListenerSpec(service=svc, port=p) for p in ports]
        return specs

    def service_running(self, service: str) -> bool:
        if service == "FrontEnd":
            return self.model.frontend is not None and self.model.frontend.running
        return self.model.transport.running

    def accepts_domain(self, address: str) -> bool:
        return is_accepted_recipient_domain(self.lab.model.organization, address)

    def expiry(self) -> timedelta:
        return parse_timespan(self.transport_cfg.message_expiration_timeout)

    def retry_delay(self, retry_count: int) -> timedelta:
        cfg = self.transport_cfg
        if retry_count <= cfg.transient_failure_retry_count:
            return parse_timespan(cfg.transient_failure_retry_interval)
        return parse_timespan(cfg.outbound_connection_failure_retry_interval)

    # --- logs -----------------------------------------------------------------------------
    def protocol_log(self, service: str, kind: str) -> ProtocolLog:
        key = (service, kind)
        log = self._logs.get(key)
        if log is None:
            log = ProtocolLog(self.lab.out, kind, protocol_log_folder(self.name, service, kind))  # type: ignore[arg-type]
            self._logs[key] = log
            self.lab.register_log(log)
        return log

    def receive_log(self, service: str, connector: ReceiveConnector, sid: int, *, local: str, remote: str,
                    clock) -> SessionWriter:
        return SessionWriter(self.protocol_log(service, "recv"), f"{self.name}\\{connector.name}", sid, local,
                             remote, clock, connector.protocol_logging_level == "Verbose")

    def next_session_id(self, service: str) -> int:
        return self.session_ids[service].next()

    # --- certificates ---------------------------------------------------------------------
    def cert_views(self):
        return self.lab.cert_views(self.store)

    def select_receive_certificate(self, connector: ReceiveConnector, fqdn: str) -> StoredCert | None:
        view = select_certificate(self.cert_views(), tls_certificate_name=connector.tls_certificate_name,
                                  fqdn=fqdn, now=self.lab.clock.now())
        if view is None:
            if "Tls" in connector.auth_mechanism and connector.name not in self._reported_12014:
                self._reported_12014.add(connector.name)
                name = connector.tls_certificate_name or fqdn
                self.lab.events.add(self.name, "MSExchangeFrontEndTransport" if connector.transport_role ==
                                    "FrontendTransport" and self.model.role == "Mailbox" else "MSExchangeTransport",
                                    12014, [name, connector.name, name])
            return None
        return view.key  # type: ignore[return-value]

    def internal_cert(self) -> StoredCert | None:
        name = self.model.internal_transport_certificate
        if not name:
            return None
        try:
            return self.store.get(name)
        except Exception:  # noqa: BLE001 - a missing internal certificate means none is presented
            return None

    def server_context(self, stored: StoredCert) -> ssl.SSLContext:
        ctx = self._server_ctx.get(stored.index)
        if ctx is None:
            ctx = self.store.server_context(stored, self.lab.pki.all_leaf_certs())
            self._server_ctx[stored.index] = ctx
        return ctx

    async def start_server_tls(self, session: "ServerSession") -> None:
        state: ReceiveState = session.state
        stored = session.extra.cert
        try:
            ctx = self.server_context(stored)
        except NoCredentialsError:
            session.log.info("", T.tls_negotiation_failed("NoCredentials"))
            await session.reply(R.TLS_INIT_FAILURE)
            return
        await session.reply(R.STARTTLS_GO)
        try:
            await session.writer.start_tls(ctx)
        except (ssl.SSLError, ConnectionError, OSError):
            session.log.info("", T.tls_negotiation_failed("IllegalMessage"))
            session.closed = True
            return
        session.touch()
        sslobj = session.writer.get_extra_info("ssl_object")
        state.tls = True
        state.helo = None
        state.reset_transaction()
        session.log.info(self.lab.certificate_row(stored), T.SENDING_CERTIFICATE)
        version, (cipher, _, bits) = sslobj.version(), sslobj.cipher()
        session.log.info("", T.tls_success_context("server", version, cipher, bits, 256))
        chain = peer_chain(sslobj)
        session.extra.peer_chain = chain
        session.extra.tls = {"version": version, "cipher": cipher}
        if chain:
            session.log.info(self.lab.certificate_row_x509(chain[0]), T.REMOTE_CERTIFICATE)
            state.authenticated_as_server = self.lab.is_exchange_server_cert(chain[0])

    async def check_client_certificate(self, session: "ServerSession") -> None:
        """TlsDomainCapabilities: validate the client certificate at the first EHLO after TLS."""
        state: ReceiveState = session.state
        caps = state.connector.tls_domain_capabilities
        if not caps:
            return
        chain = session.extra.peer_chain or []
        if not chain:
            session.log.info("", T.client_certificate_chain_status("EmptyCertificate"))
            session.log.info("", T.tls_domain_capabilities("None", "NoRemoteCertificate"))
            return
        result = await self.lab.validate(self.host, chain, None)
        session.touch()
        session.log.info("", T.client_certificate_chain_status(str(result.status)))
        names = certificate_names(chain[0])
        for spec in caps:
            domain, _, wanted = spec.partition(":")
            if not any(name_matches(n, domain) for n in names):
                continue
            if result.ok:
                state.capabilities = frozenset(c.strip() for c in wanted.split(","))
                session.log.info("", T.tls_domain_capabilities(wanted, "Success", domain))
            else:
                state.capability_failure = str(result.status)
                self.lab.events.add(self.name, "MSExchangeFrontEndTransport" if self.model.role == "Mailbox"
                                    else "MSExchangeTransport", 11022,
                                    [spec, state.connector.name, str(result.status), domain])
                session.log.info("", T.tls_domain_capabilities("None", CAP_VALIDATION_FAILED, domain))
            return
        session.log.info("", T.tls_domain_capabilities("None", CAP_DOMAIN_MISMATCH))

    # --- receiving ------------------------------------------------------------------------
    async def receive_message(self, session: "ServerSession", service: str, envelope: "Envelope") -> str:
        state: ReceiveState = session.state
        if count_received(envelope.data) >= state.connector.max_hop_count:
            return R.HOP_COUNT
        if service == "FrontEnd":
            return await self.frontend_proxy(session, envelope)
        item = self._accept_item(session, envelope, via_frontend="proxied" in session.context)
        secs = (session.now() - (session.data_started or session.now())).total_seconds()
        reply = queued_reply(item.message_id, item.internal_id, self.model.fqdn, len(envelope.data), secs)
        if service == "MailboxDelivery":
            for rcpt in envelope.recipients:
                path = self.lab.store.deliver(f"onprem-{self._database_of(rcpt)}", rcpt, item.data)
                self.lab.ledger.delivered(item, rcpt, "onprem", path, self.name)
            return reply
        self.submit(item)
        return reply

    def _database_of(self, address: str) -> str:
        for mb in self.lab.model.organization.mailboxes:
            if mb.primary_smtp_address.lower() == address.lower():
                return mb.database
        return "DB"

    def _accept_item(self, session: "ServerSession", envelope: "Envelope", *, via_frontend: bool) -> MailItem:
        state: ReceiveState = session.state
        now = session.now()
        proxied = session.context.get("proxied") or {}
        client_ip = proxied.get("ip", state.remote_ip)
        helo = proxied.get("helo", state.helo or state.remote_ip)
        header = received_header(helo=helo, client_ip=client_ip, by_fqdn=self.model.fqdn, by_ip=self.model.ip,
                                 tls=proxied.get("tls") or session.extra.tls, version=self.model.version,
                                 when=now, utc_offset_minutes=self.model.utc_offset_minutes,
                                 via_frontend=via_frontend)
        data = envelope.data
        message_id = header_value(data, "Message-ID")
        if not message_id:
            message_id = f"<{self.ids.guid()}@{self.model.fqdn}>"
            data = f"Message-ID: {message_id}\r\n".encode() + data
        item = MailItem(
            server=self.name, internal_id=self.internal_ids.next(), mail_from=envelope.mail_from,
            recipients=list(envelope.recipients), data=header + data, message_id=message_id,
            network_message_id=self.lab.network_message_id("onprem", message_id, self.ids, now),
            subject=header_value(data, "Subject"), arrived=now,
            directionality="Originating" if (state.authenticated_as_server or state.capabilities) else "Incoming",
            client_ip=client_ip, client_hostname=helo, receive_connector=f"{self.name}\\{state.connector.name}",
        )
        item.lab_key = self.lab.ledger.key_for(message_id)
        self.lab.ledger.received(item, self.name)
        return item

    async def frontend_proxy(self, session: "ServerSession", envelope: "Envelope") -> str:
        """The Front End's stateless proxy to a Transport service in the site (PRX errors on failure)."""
        state: ReceiveState = session.state
        session.log.info("", T.proxy_destinations_context(self.ids.guid()))
        org = self.lab.model.organization
        hubs = [s for s in org.servers if s.role == "Mailbox" and s.transport.running]
        hubs.sort(key=lambda s: (s.name != self.name, s.name))
        if not hubs:
            return R.PROXY_TEMPORARY.format(n=1)
        frontend = self.model.frontend
        assert frontend is not None
        servers = transport_dns_servers(frontend, self.model.adapter_dns_servers)
        targets: list[Target] = []
        try:
            for hub in hubs:
                for ip in await self.lab.resolve_a(self.host, servers, hub.fqdn):
                    targets.append(Target(ip, 2525, hub.fqdn))
        except DnsError as exc:
            self.lab.clock.advance(exc.elapsed_virtual)
            session.touch()
            return R.PROXY_TEMPORARY.format(n=2)
        spec = SendSpec(
            src=self.host, connector_id=INBOUND_PROXY, log=self.protocol_log("FrontEnd", "send"),
            log_enabled=frontend.intra_org_connector_protocol_logging_level == "Verbose",
            session_ids=self.session_ids["FrontEnd"], ehlo_name=self.model.fqdn, destination_domain="internalproxy",
            targets=targets, tls=ClientTls(attempt=True, store=self.store, client_cert=self.internal_cert()),
            context={"proxied": {"ip": state.remote_ip, "helo": state.helo or state.remote_ip,
                                 "tls": session.extra.tls}},
        )
        msg = OutboundMessage(key=None, mail_from=envelope.mail_from, recipients=list(envelope.recipients),
                              data=envelope.data)
        res = (await deliver(self.lab, spec, [msg]))[0]
        session.touch()
        if res.delivered and not res.rejected and not res.deferred:
            return res.reply
        if res.rejected:
            return R.PROXY_SETUP_FAILED_PERM.format(response=next(iter(res.rejected.values())))
        if res.deferred:
            return R.PROXY_SETUP_FAILED_TEMP.format(response=next(iter(res.deferred.values())))
        f = res.failure
        if f is not None and f.kind == "response" and f.response:
            return R.PROXY_SETUP_FAILED_TEMP.format(response=f.response)
        if f is not None and f.kind in ("connect_timeout", "connect_refused"):
            return R.PROXY_TEMPORARY.format(n=3)
        return R.PROXY_TEMPORARY.format(n=5)

    # --- categorising and sending -------------------------------------------------------------
    def submit(self, item: MailItem) -> None:
        org = self.lab.model.organization
        groups: dict[tuple[str, str], tuple[Route, list[str]]] = {}
        for rcpt in item.recipients:
            route = route_recipient(org, self.model, rcpt, size=item.size)
            if route.delivery_type == "" and route.error:
                self.lab.ledger.failed(item, [rcpt], route.error, self.name)
                continue
            if route.delivery_type == "Unreachable":
                item.last_error = route.error or ""
            key = route.queue_key
            if key not in groups:
                groups[key] = (route, [])
            groups[key][1].append(route.recipient)
        for key, (route, rcpts) in groups.items():
            self.enqueue(key, route.delivery_type, route.next_hop_domain, route, item, rcpts)

    def _connector_tls(self, sc: SendConnector, recipient_domain: str) -> ClientTls:
        views = self.cert_views()
        now = self.lab.clock.now()
        cert, not_found = None, False
        if sc.tls_certificate_name:
            v = by_tls_certificate_name(views, sc.tls_certificate_name, now)
            not_found = v is None
            cert = v.key if v else None
        else:
            v = by_fqdn(views, sc.fqdn or self.model.fqdn, now)
            cert = v.key if v else None
        level = sc.tls_auth_level if sc.require_tls else None
        return ClientTls(attempt=not sc.ignore_starttls, require=sc.require_tls, auth_level=level,
                         domain=sc.tls_domain or recipient_domain, store=self.store, client_cert=cert,
                         cert_not_found=not_found)

    async def send_spec(self, q: Queue, batch: list[QueuedMessage]) -> tuple[SendSpec | None, AttemptFailure | None]:
        route: Route = q.route  # type: ignore[assignment]
        org = self.lab.model.organization
        cfg = self.transport_cfg
        svc = "Edge" if self.model.role == "Edge" else "Hub"
        internal_dns = transport_dns_servers(cfg, self.model.adapter_dns_servers)
        sc = route.connector
        first_domain = domain_of(batch[0].recipients[0])
        if route.delivery_type in ("SmtpDeliveryToMailbox", "SmtpRelayWithinAdSiteToEdge",
                                   "SmtpRelayToConnectorSourceServers") or (sc is not None and sc.smart_hosts == ["--"]):
            targets = []
            for name in route.target_servers:
                target = org.server(name)
                port = 475 if route.delivery_type == "SmtpDeliveryToMailbox" else (
                    25 if target.role == "Edge" or svc == "Edge" else 2525)
                for ip in await self.lab.resolve_a(self.host, internal_dns, target.fqdn):
                    targets.append(Target(ip, port, target.fqdn))
            edge_inbound = sc is not None and sc.smart_hosts == ["--"]
            return SendSpec(
                src=self.host, connector_id=sc.name if edge_inbound and sc else INTRA_ORG,
                log=self.protocol_log(svc, "send"),
                log_enabled=(sc.protocol_logging_level == "Verbose") if edge_inbound and sc else
                cfg.intra_org_connector_protocol_logging_level == "Verbose",
                session_ids=self.session_ids[svc], ehlo_name=self.model.fqdn,
                destination_domain=route.next_hop_domain, targets=targets,
                tls=ClientTls(attempt=True, store=self.store, client_cert=self.internal_cert()),
            ), None
        assert sc is not None
        dns_servers = transport_dns_servers(cfg, self.model.adapter_dns_servers,
                                            external=sc.use_external_dns_servers_enabled)
        targets = []
        if sc.smart_hosts:
            for host in sc.smart_hosts:
                if host.startswith("[") and host.endswith("]"):
                    targets.append(Target(host[1:-1], sc.port, host))
                else:
                    for ip in await self.lab.resolve_a(self.host, dns_servers, host):
                        targets.append(Target(ip, sc.port, host))
        else:
            for host, ips in await self.lab.resolve_host(self.host, dns_servers, route.dns_domain or first_domain):
                targets += [Target(ip, sc.port, host) for ip in ips]
        return SendSpec(
            src=self.host, connector_id=sc.name, log=self.protocol_log(svc, "send"),
            log_enabled=sc.protocol_logging_level == "Verbose", session_ids=self.session_ids[svc],
            ehlo_name=sc.fqdn or self.model.fqdn, destination_domain=route.next_hop_domain, targets=targets,
            tls=self._connector_tls(sc, first_domain),
            validate=lambda chain, domain: self.lab.validate(self.host, chain, domain),
        ), None

    # --- mail from a mailbox on this server ----------------------------------------------------
    async def submit_from_mailbox(self, mail_from: str, recipients: list[str], data: bytes) -> None:
        """Mailbox Transport Submission hands the message to a Transport service over SMTP (2525)."""
        org = self.lab.model.organization
        hubs = sorted((s for s in org.servers if s.role == "Mailbox"), key=lambda s: (s.name != self.name, s.name))
        targets = []
        servers = self.model.adapter_dns_servers
        for hub in hubs:
            try:
                for ip in await self.lab.resolve_a(self.host, servers, hub.fqdn):
                    targets.append(Target(ip, 2525, hub.fqdn))
            except DnsError as exc:
                self.lab.clock.advance(exc.elapsed_virtual)
        spec = SendSpec(src=self.host, connector_id="Mailbox Transport Submission",
                        log=self.protocol_log("MailboxSubmission", "send"), log_enabled=False,
                        session_ids=self.session_ids["MailboxSubmission"], ehlo_name=self.model.fqdn,
                        destination_domain="mailboxtransportsubmissioninternalproxy", targets=targets,
                        tls=ClientTls(attempt=True, store=self.store, client_cert=self.internal_cert()))
        res = (await deliver(self.lab, spec, [OutboundMessage(None, mail_from, recipients, data)]))[0]
        if not res.delivered:
            reason = (self.last_error_text(res.failure) if res.failure else
                      next(iter({**res.rejected, **res.deferred}.values()), "not submitted"))
            self.lab.ledger.submit_failed(data, recipients, reason, self.name)


