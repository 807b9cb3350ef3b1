"""An on-prem Exchange 2019 server at run time: Front End, Transport (Hub) or Edge, Mailbox Delivery.

It owns its listeners' policies, certificate store, session ids, queues and protocol logs, and
carries out what the rules decide: connector and certificate selection, STARTTLS and the client
certificate check (TlsDomainCapabilities), the Front End proxy to the Hub, categorisation and
routing, and sending through send connectors.
"""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..ids import Counter, SessionIds
from ..logs import protocol_text as T
from ..logs.protocol_log import ProtocolLog, SessionWriter, protocol_log_folder
from ..net.resolver import DnsError
from ..pki.errors import NoCredentialsError
from ..pki.store import CertStore, StoredCert, peer_chain
from ..pki.validate import certificate_names
from ..rules import replies as R
from ..rules.certselect import expired_candidates, expiring_soon, select_certificate
from ..rules.dnschoice import transport_dns_servers
from ..rules.outbound import AttemptFailure
from ..rules.receive import ReceiveState
from ..rules.retry import RetryPolicy
from ..rules.routing import (
    Route,
    domain_of,
    is_accepted_recipient_domain,
    route_recipient,
)
from ..rules.tls_policy import (
    capability_outcome,
    event_source,
    receive_certificate_events,
    send_connector_plan,
    send_failure_event,
)
from ..smtp.client import ClientTls, Connection, OutboundMessage, SendSpec, Target
from ..smtp.policy import ListenerSpec
from ..topology.model import (
    ExchangeServer,
    Organization,
    ReceiveConnector,
    SendConnector,
)
from ..topology.timespec import parse_timespan
from ..transport import headers as H
from ..transport.message import MailItem, count_received, header_value, received_header
from ..transport.queues import Queue, QueuedMessage, QueueSet
from .connectivity import queue_trace
from .queueing import (
    INBOUND_PROXY,
    INTRA_ORG,
    MAILBOX_DELIVERY_CONNECTOR,
    UNLIMITED_CONNECTIONS,
    Failure,
    QueueingParty,
    policy_from_transport,
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
        self._proxies: dict[int, Connection] = {}  # Front End: an inbound session's proxy to a Hub
        self._submission: tuple[Connection, datetime, Any] | None = None  # an open submission connection

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
        if service == "MailboxDelivery" and "MSExchangeDelivery" in self.model.stopped_services:
            return False  # Stop-Service MSExchangeDelivery (engine.service_ops)
        return self.model.transport.running

    def config_org(self) -> Organization:
        """The organisation as this server knows it: an Edge only through EdgeSync (service_ops)."""
        from .service_ops import edge_view
        return edge_view(self)

    def accepts_domain(self, address: str) -> bool:
        return is_accepted_recipient_domain(self.config_org(), address)

    def expiry(self) -> timedelta:
        return parse_timespan(self.transport_cfg.message_expiration_timeout)

    def retry_policy(self) -> RetryPolicy:
        return policy_from_transport(self.transport_cfg)

    def messages_per_connection(self, q: Queue) -> int:
        """The send connector's SmtpMaxMessagesPerConnection; the transport service's
        IntraOrgConnectorSmtpMaxMessagesPerConnection for the implicit intra-organization connector."""
        route = q.route
        sc = getattr(route, "connector", None)
        if sc is not None and getattr(route, "delivery_type", "") not in ("SmtpDeliveryToMailbox",
                                                                          "SmtpRelayWithinAdSiteToEdge",
                                                                          "SmtpRelayToConnectorSourceServers"):
            return int(sc.smtp_max_messages_per_connection)
        return self.transport_cfg.intra_org_connector_smtp_max_messages_per_connection

    def max_connections_per_queue(self, q: Queue) -> int:
        limit = self.transport_cfg.max_per_domain_outbound_connections
        return UNLIMITED_CONNECTIONS if limit is None else limit

    def max_outbound_connections(self) -> int:
        limit = self.transport_cfg.max_outbound_connections
        return UNLIMITED_CONNECTIONS if limit is None else limit

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
        """The STARTTLS certificate of a receive connector (rules.certselect), with the events
        Exchange raises about it (12014 none, 12016 expired, 12018 expires soon), once each."""
        views, now = self.cert_views(), self.lab.clock.now()
        view = select_certificate(views, tls_certificate_name=connector.tls_certificate_name, fqdn=fqdn, now=now)
        if "Tls" in connector.auth_mechanism:
            expired = [] if view is not None else expired_candidates(
                views, tls_certificate_name=connector.tls_certificate_name, fqdn=fqdn, now=now)
            service = "FrontEnd" if connector.transport_role == "FrontendTransport" else "Hub"
            for ev in receive_certificate_events(
                    connector=connector.name, tls_certificate_name=connector.tls_certificate_name, fqdn=fqdn,
                    selected=view, expired=expired, hours_left=expiring_soon(view, now) if view else None):
                self.raise_event(service, ev.event_id, list(ev.strings), once=True)
        return view.key if view is not None else None  # type: ignore[return-value]

    def raise_event(self, service: str, event_id: int, strings: list[str], *, once: bool = False) -> None:
        """Write an Application event as this server's transport service (`once`: not again while
        the same condition holds with the same strings)."""
        key = (event_id, tuple(strings))
        if once:
            if key in self._reported_12014:
                return
            self._reported_12014.add(key)  # type: ignore[arg-type]
        self.lab.events.add(self.name, event_source(self.model.role, service), event_id, strings)

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
        except NoCredentialsError as exc:  # the key is missing, or the transport may not read it
            session.log.info("", T.tls_negotiation_failed(exc.status))
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
        outcome = capability_outcome(list(caps), certificate_names(chain[0]), str(result.status))
        state.capabilities = outcome.granted
        if outcome.failed_spec is not None:
            # The capability could not be confirmed: event 11022, and the submission is refused
            # at MAIL FROM with 454 4.7.5 (rules.receive.check_mail).
            state.capability_failure = outcome.failure_status
            service = "FrontEnd" if state.connector.transport_role == "FrontendTransport" else "Hub"
            self.raise_event(service, 11022, [outcome.failed_spec, state.connector.name,
                                              str(outcome.failure_status), str(outcome.log_domain)])
        session.log.info("", T.tls_domain_capabilities(outcome.log_capabilities, outcome.log_status,
                                                       outcome.log_domain))

    # --- receiving ------------------------------------------------------------------------
    async def receive_message(self, session: "ServerSession", service: str, envelope: "Envelope") -> str:
        state: ReceiveState = session.state
        if count_received(envelope.data) >= state.connector.max_hop_count:
            return R.HOP_COUNT
        if service == "FrontEnd":
            return await self.frontend_proxy(session, envelope)
        item = self._accept_item(session, envelope, via_frontend="proxied" in session.context)
        self.tracker.received(item, session, service)
        secs = (session.now() - (session.data_started or session.now())).total_seconds()
        reply = queued_reply(item.message_id, item.internal_id, self.model.fqdn, len(envelope.data), secs)
        if service == "MailboxDelivery":
            for rcpt in envelope.recipients:
                path = self.lab.store.deliver(f"onprem-{self._database_of(rcpt)}", rcpt, item.data)
                self.lab.ledger.delivered(item, rcpt, "onprem", path, self.name)
                self.tracker.deliver(item, rcpt, path, session)
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
        trust = H.trust_of(proxied.get("auth") or {"exchange_server": state.authenticated_as_server,
                                                     "capabilities": state.capabilities})
        data, stamp = H.on_receive(data, trust, auth_source=self.model.fqdn,
                                   default_directionality="Originating" if trust.exchange_server or
                                   trust.cross_premises else "Incoming")
        item = MailItem(
            server=self.name, internal_id=self.internal_ids.next(), mail_from=envelope.mail_from,
            recipients=list(envelope.recipients), data=header + data, message_id=message_id,
            network_message_id=self.lab.network_message_id("onprem", message_id, self.ids, now),
            subject=header_value(data, "Subject"), arrived=now,
            directionality=stamp.directionality,
            client_ip=client_ip, client_hostname=helo, receive_connector=f"{self.name}\\{state.connector.name}",
        )
        item.lab_key = self.lab.ledger.key_for(message_id)
        self.lab.ledger.received(item, self.name)
        return item

    async def frontend_proxy(self, session: "ServerSession", envelope: "Envelope") -> str:
        """The Front End's proxy to a Transport service in the site (PRX errors on failure).

        One proxy session per inbound session: it is set up for the inbound session's first
        message and carries each following message of that session in turn, until the client
        says QUIT (`end_proxy`); see docs/queues-tracking-ndr.md, "Connections".
        """
        session.log.info("", T.proxy_destinations_context(self.ids.guid()))
        proxy = self._take_proxy(session)
        if proxy is None:
            proxy, error = await self._new_proxy(session)
            if proxy is None:
                return error
        msg = OutboundMessage(key=None, mail_from=envelope.mail_from, recipients=list(envelope.recipients),
                              data=envelope.data)
        res = await proxy.send(msg)
        session.touch()
        if proxy.is_open:
            self._proxies[id(session)] = proxy
            self.lab.hold_open(1, proxy.client)  # it waits with the inbound session for the next message
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

    def _take_proxy(self, session: "ServerSession") -> Connection | None:
        proxy = self._proxies.pop(id(session), None)
        if proxy is not None:
            self.lab.hold_open(-1, proxy.client)
        return proxy

    async def _new_proxy(self, session: "ServerSession") -> tuple[Connection | None, str]:
        """A proxy connection to the site's Transport services, or the PRX reply why there is none."""
        state: ReceiveState = session.state
        org = self.lab.model.organization
        # every Mailbox server of the site is a destination: the FE learns that one is down by
        # trying it (a stopped Transport service refuses: PRX3), not from its configuration
        hubs = [s for s in org.servers if s.role == "Mailbox"]
        hubs.sort(key=lambda s: (s.name != self.name, s.name))
        if not hubs:
            return None, R.PROXY_TEMPORARY.format(n=1)
        frontend = self.model.frontend
        assert frontend is not None
        servers = transport_dns_servers(frontend, self.model.adapter_dns_servers)
        targets: list[Target] = []
        try:
            for hub in hubs:
                for ip in await self.lab.resolve_a(self.host, servers, hub.fqdn,
                                                   service="MSExchangeFrontEndTransport"):
                    targets.append(Target(ip, 2525, hub.fqdn))
        except DnsError as exc:
            self.lab.clock.advance(exc.elapsed_virtual)
            session.touch()
            return None, R.PROXY_TEMPORARY.format(n=2)
        spec = SendSpec(
            src=self.host, connector_id=INBOUND_PROXY, log=self.protocol_log("FrontEnd", "send"),
            log_enabled=frontend.intra_org_connector_protocol_logging_level == "Verbose",
            session_ids=self.session_ids["FrontEnd"], ehlo_name=self.model.fqdn, destination_domain="internalproxy",
            targets=targets, tls=ClientTls(attempt=True, store=self.store, client_cert=self.internal_cert()),
            context={"proxied": {"ip": state.remote_ip, "helo": state.helo or state.remote_ip,
                                 "tls": session.extra.tls,
                                 "auth": {"exchange_server": state.authenticated_as_server,
                                          "capabilities": sorted(state.capabilities)}}},
        )
        return Connection(self.lab, spec), ""

    async def end_proxy(self, session: "ServerSession") -> None:
        """The inbound session said QUIT: its proxy session to the Transport service ends too."""
        proxy = self._take_proxy(session)
        if proxy is not None:
            await proxy.close()
            session.touch()

    def drop_proxy(self, session: "ServerSession") -> None:
        """The inbound session ended without QUIT: its proxy connection is closed at once."""
        proxy = self._take_proxy(session)
        if proxy is not None:
            proxy.abort()

    # --- categorising and sending -------------------------------------------------------------
    def submit(self, item: MailItem, recipients: list[str] | None = None) -> None:
        """The categorizer: route each recipient (all, or those being resubmitted) to a queue."""
        org = self.config_org()
        groups: dict[tuple[str, str], tuple[Route, list[str]]] = {}
        self.tracker.categorized(item)
        for rcpt in item.recipients if recipients is None else recipients:
            route = route_recipient(org, self.model, rcpt, size=item.size)
            if route.delivery_type == "" and route.error:
                self.fail_recipients(item, [rcpt], Failure(route.error, "ROUTING"))
                continue
            if route.delivery_type == "Unreachable":
                item.last_error = route.error or ""
            key = route.queue_key
            if key not in groups:
                groups[key] = (route, [])
            groups[key][1].append(route.recipient)
            if route.recipient.lower() != rcpt.lower():
                item.original_recipients[route.recipient] = item.original_recipients.get(rcpt, rcpt)
        for key, (route, rcpts) in groups.items():
            self.enqueue(key, route.delivery_type, route.next_hop_domain, route, item, rcpts)

    def _connector_tls(self, sc: SendConnector, recipient_domain: str) -> ClientTls:
        plan = send_connector_plan(sc, self.cert_views(), server_fqdn=self.model.fqdn,
                                   recipient_domain=recipient_domain, now=self.lab.clock.now())
        return ClientTls.from_plan(plan, self.store)

    def _send_tls_event(self, sc: SendConnector, service: str, domain: str, failure: AttemptFailure) -> None:
        """2015 / 2022 for a send connector's TLS failure (rules.tls_policy.send_failure_event)."""
        ev = send_failure_event(failure.kind, connector=sc.name, domain=domain,
                                remote=failure.target_name or failure.target_ip, status=failure.status,
                                auth_level=sc.tls_auth_level)
        if ev is not None:
            self.raise_event(service, ev.event_id, list(ev.strings))

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
                connectivity=queue_trace(self, svc, q, targets),
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
            on_tls_failure_event=lambda f: self._send_tls_event(sc, svc, route.next_hop_domain, f),
            connectivity=queue_trace(self, svc, q, targets),
        ), None

    # --- mail from a mailbox on this server ----------------------------------------------------
    async def submit_from_mailbox(self, mail_from: str, recipients: list[str], data: bytes) -> None:
        """Mailbox Transport Submission hands the message to a Transport service over SMTP (2525).

        A submission connection that is still open (it has just carried the previous message and
        its QUIT is not due yet) takes the next message, up to the intra-organization
        SmtpMaxMessagesPerConnection [INFERRED: the same limit as the intra-organization connector].
        """
        from . import service_ops
        if not service_ops.submission_available(self):  # MSExchangeSubmission stopped: stays in the Outbox
            service_ops.hold_in_outbox(self, mail_from, recipients, data, header_value(data, "Message-ID"),
                                       "MSExchangeSubmission is not running")
            return
        conn = self._take_submission()
        if conn is not None and conn.carried >= self.transport_cfg.intra_org_connector_smtp_max_messages_per_connection:
            await conn.close()
            conn = None
        if conn is None:
            conn = Connection(self.lab, await self._submission_spec())
        sub = self.tracker.mailbox_submission(mail_from, recipients, data, header_value(data, "Message-ID"),
                                              header_value(data, "Subject"))
        res = await conn.send(OutboundMessage(None, mail_from, recipients, data))
        if conn.is_open:
            self._park_submission(conn)
        if res.delivered:
            self.tracker.submitted(sub, res.remote_host, res.remote_ip)
        elif not res.rejected:
            # no Transport service took it (stopped, unreachable, not resolvable, 4xx): it waits in
            # the Outbox for the next submission attempt (engine.service_ops)
            service_ops.hold_in_outbox(self, mail_from, recipients, data, header_value(data, "Message-ID"),
                                       self.last_error_text(res.failure) if res.failure else
                                       next(iter(res.deferred.values()), "no Transport service could be reached"))
        else:
            reason = (self.last_error_text(res.failure) if res.failure else
                      next(iter({**res.rejected, **res.deferred}.values()), "not submitted"))
            self.tracker.submit_failed(sub, reason)
            self.lab.ledger.submit_failed(data, recipients, reason, self.name)

    async def _submission_spec(self) -> SendSpec:
        org = self.lab.model.organization
        hubs = sorted((s for s in org.servers if s.role == "Mailbox"), key=lambda s: (s.name != self.name, s.name))
        targets = []
        servers = self.model.adapter_dns_servers
        for hub in hubs:
            try:
                for ip in await self.lab.resolve_a(self.host, servers, hub.fqdn, service="MSExchangeSubmission"):
                    targets.append(Target(ip, 2525, hub.fqdn))
            except DnsError as exc:
                self.lab.clock.advance(exc.elapsed_virtual)
        return SendSpec(src=self.host, connector_id="Mailbox Transport Submission",
                        log=self.protocol_log("MailboxSubmission", "send"), log_enabled=False,
                        session_ids=self.session_ids["MailboxSubmission"], ehlo_name=self.model.fqdn,
                        destination_domain="mailboxtransportsubmissioninternalproxy", targets=targets,
                        tls=ClientTls(attempt=True, store=self.store, client_cert=self.internal_cert()))

    def _park_submission(self, conn: Connection) -> None:
        """The submission connection waits for the next message; it QUITs at its cursor if none came."""
        cursor = self.lab.clock.now()
        self.lab.hold_open(1, conn.client)
        entry = self.lab.scheduler.call_at(cursor, f"{self.name} submission connection", self._end_submission)
        self._submission = (conn, cursor, entry)

    def _take_submission(self) -> Connection | None:
        parked, self._submission = self._submission, None
        if parked is None:
            return None
        conn, _, entry = parked
        self.lab.scheduler.cancel(entry)
        self.lab.hold_open(-1, conn.client)
        return conn

    async def _end_submission(self) -> None:
        parked = self._submission
        if parked is None:
            return
        cursor = parked[1]
        conn = self._take_submission()
        assert conn is not None
        before = self.lab.clock.now()
        self.lab.clock.rewind(cursor)
        try:
            await conn.close()
        finally:
            self.lab.clock.set(before)
