"""An on-prem Exchange 2019 server at run time: Front End, Transport (Hub) or Edge, Mailbox Delivery.

It owns its listeners' policies, certificate store, session ids, queues and protocol logs, and
carries out what the rules decide: connector and certificate selection, STARTTLS and the client
certificate check (TlsDomainCapabilities), the Front End proxy to the Hub, categorisation and
routing, and sending through send connectors.

The class is joined from its parts: engine.onprem_receive (the receive side), engine.frontend_proxy
(the Front End's proxy sessions), engine.mailbox_submission (Mailbox Transport Submission) and
engine.queueing (the queues); here are its configuration views, logs, certificates, the
categorizer and the send side.
"""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..ids import Counter, SessionIds
from ..logs.agent_log import AgentLog
from ..logs.connectivity import ConnectivityLog
from ..logs.protocol_log import ProtocolLog, SessionWriter, protocol_log_folder
from ..pki.store import CertStore, StoredCert
from ..rules.dnschoice import transport_dns_servers
from ..rules.outbound import AttemptFailure
from ..rules.retry import RetryPolicy
from ..rules.routing import (
    Route,
    domain_of,
    is_accepted_recipient_domain,
    route_recipient,
)
from ..rules.tls_policy import (
    send_connector_plan,
    send_failure_event,
)
from ..rules.verbs import Sender
from ..smtp.client import ClientTls, Connection, SendSpec, Target
from ..smtp.policy import ListenerSpec
from ..topology.model import (
    ExchangeServer,
    Organization,
    ReceiveConnector,
    SendConnector,
    TransportServiceConfig,
)
from ..topology.timespec import parse_timespan
from ..topology.values import smart_host_ip
from ..transport.message import MailItem
from ..transport.queues import Queue, QueuedMessage, QueueSet
from ..transport.tracking import stable_guid
from .connectivity import SubmissionConnections, dns_failed, queue_trace
from .frontend_proxy import FrontEndProxy
from .mailbox_submission import MailboxSubmission
from .onprem_receive import ReceiveSide
from .queueing import (
    INTRA_ORG,
    MAILBOX_DELIVERY_CONNECTOR,
    UNLIMITED_CONNECTIONS,
    Failure,
    QueueingParty,
    firewalled,
    policy_from_transport,
)
from .services import edge_view
from .shadow import ShadowRedundancy

if TYPE_CHECKING:  # pragma: no cover
    from ..net.resolver import DnsError
    from .ports import OnPremLab


class ExchangeServerRuntime(ReceiveSide, FrontEndProxy, MailboxSubmission, ShadowRedundancy, QueueingParty):
    """One on-prem Exchange server: its transport services, listeners, store and logs."""

    def __init__(self, lab: "OnPremLab", model: ExchangeServer) -> None:
        super().__init__(lab, model.name, QueueSet(model.name))
        self.lab: OnPremLab = lab
        self.model = model
        self.host = lab.net.host(model.name)
        self.store = CertStore.for_server(lab.pki, model)
        start = lab.model.start - timedelta(days=3, hours=lab.ids_for(model.name).randint(1, 48))
        self.services = ["FrontEnd", "Hub", "MailboxDelivery"] if model.role == "Mailbox" else ["Edge"]
        self.session_ids = {svc: SessionIds(lab.seed, f"{model.name}/{svc}", start)
                            for svc in self.services + ["MailboxSubmission"]}
        self.internal_ids = Counter(lab.seed, model.name)
        self.ids = lab.ids_for(model.name + "/transport")
        self._logs: dict[tuple[str, str], ProtocolLog] = {}
        self.connectivity_logs: dict[str, ConnectivityLog] = {}  # per transport service (engine.connectivity)
        self.agent_logs: dict[str, AgentLog] = {}
        self.submission_connections = SubmissionConnections(self)  # MapiSubmission rows (engine.connectivity)
        self._server_ctx: dict[tuple[int, ...], ssl.SSLContext] = {}
        self._reported_12014: set[tuple[int, tuple[str, ...]]] = set()  # events raised `once` (raise_event)
        self._proxies: dict[int, Connection] = {}  # Front End: an inbound session's proxy to a Hub
        self._submission: tuple[Connection, datetime, Any, tuple[str, ...]] | None = None  # an open submission connection

    # --- configuration views --------------------------------------------------------------
    @property
    def transport_cfg(self) -> TransportServiceConfig:
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

    def queues_running(self) -> bool:
        return self.service_running("Hub")

    def routing_signature(self) -> str:
        org = self.lab.model.organization
        return repr([org.accepted_domains, org.send_connectors, org.mailboxes, org.remote_mailboxes,
                     [(s.name, s.role, s.databases) for s in org.servers]])

    def outgoing_data(self, item: MailItem, q: Queue) -> bytes:
        return firewalled(item, q, self.model.fqdn)

    def config_org(self) -> Organization:
        """The organisation as this server knows it: an Edge only through EdgeSync (engine.services)."""
        return edge_view(self.lab.model.organization, self.model, self.lab.service_state)

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
                                                                          "SmtpRelayToConnectorSourceServers",
                                                                          "SmtpRelayToRemoteActiveDirectorySite"):
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

    def internal_cert(self) -> StoredCert | None:
        name = self.model.internal_transport_certificate
        if not name:
            return None
        try:
            return self.store.get(name)
        except Exception:  # noqa: BLE001 - a missing internal certificate means none is presented
            return None

    # --- categorising and sending -------------------------------------------------------------
    def submit(self, item: MailItem, recipients: list[str] | None = None) -> None:
        """The categorizer: route each recipient (all, or those being resubmitted) to a queue."""
        org = self.config_org()
        groups: dict[tuple[str, str], tuple[Route, list[str]]] = {}
        self.tracker.categorized(item)
        seen: set[str] = set()
        for rcpt in item.recipients if recipients is None else recipients:
            if rcpt.lower() in seen:
                continue  # the categorizer drops a duplicate recipient: one delivery (§7) [INFERRED]
            seen.add(rcpt.lower())
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

    def next_hop_lookup_failed(self, q: Queue, exc: "DnsError") -> None:
        """A queue's next-hop lookup failed: the connectivity log's rows of that attempt."""
        dns_failed(self, q, exc)

    async def send_spec(self, q: Queue, batch: list[QueuedMessage]) -> tuple[SendSpec | None, AttemptFailure | None]:
        route: Route = q.route  # type: ignore[assignment]
        org = self.lab.model.organization
        cfg = self.transport_cfg
        svc = "Edge" if self.model.role == "Edge" else "Hub"
        internal_dns = transport_dns_servers(cfg, self.model.adapter_dns_servers)
        sc = route.connector
        first_domain = domain_of(batch[0].recipients[0])
        if route.delivery_type in ("SmtpDeliveryToMailbox", "SmtpRelayWithinAdSiteToEdge",
                                   "SmtpRelayToConnectorSourceServers", "SmtpRelayToDag",
                                   "SmtpRelayToRemoteActiveDirectorySite") or (
                                       sc is not None and sc.smart_hosts == ["--"]):
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
                # intra-organization and EdgeSync connectors authenticate as Exchange servers
                sender=Sender(exchange_server_auth=True, bridgehead=self.model.role != "Edge",
                              # the queue's NextHopConnector: the database's GUID (XSESSIONPARAMS MDBGUID=)
                              mdb_guid=stable_guid("mdb", route.next_hop_domain)
                              if route.delivery_type == "SmtpDeliveryToMailbox" else None),
            ), None
        assert sc is not None
        dns_servers = transport_dns_servers(cfg, self.model.adapter_dns_servers,
                                            external=sc.use_external_dns_servers_enabled)
        targets = []
        if sc.smart_hosts:
            for host in sc.smart_hosts:
                if smart_host_ip(host):  # `[192.0.2.1]` or a bare address: used as is
                    targets.append(Target(smart_host_ip(host) or "", sc.port, host))
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
            sender=Sender(exchange_server_auth=False, bridgehead=self.model.role != "Edge"),  # DNS/smart host: STARTTLS
        ), None
