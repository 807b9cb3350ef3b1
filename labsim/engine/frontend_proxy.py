"""The Front End Transport service's proxy to a Transport service in the site (PRX errors on failure).

One proxy session per inbound session: it is set up for the inbound session's first message and
carries each following message of that session in turn, until the client says QUIT; see
docs/queues-tracking-ndr.md, "Connections".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ids import IdSource, SessionIds
from ..logs import protocol_text as T
from ..logs.protocol_log import ProtocolLog
from ..net.resolver import DnsError
from ..pki.store import CertStore, StoredCert
from ..rules import replies as R
from ..rules.dnschoice import transport_dns_servers
from ..rules.dnsfail import dns_status, onprem_dns_outcome
from ..rules.outbound import onprem_last_error
from ..rules.receive import ReceiveState
from ..rules.routing_frontend import frontend_hubs
from ..rules.routing_sites import site_costs
from ..rules.verbs import ProxyFrom, Sender
from ..smtp.client import ClientTls, Connection, OutboundMessage, SendSpec, Target
from ..topology.model import (
    ExchangeServer,
)
from .connectivity import proxy_trace
from .queueing import (
    INBOUND_PROXY,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..rules.network import HostInfo
    from ..smtp.session_api import Envelope, ReceivingSession
    from .ports import OnPremLab


class FrontEndProxy:
    """The Front End's proxy sessions, one per inbound session."""

    # the server's (engine.onprem.ExchangeServerRuntime.__init__)
    lab: OnPremLab
    name: str
    model: ExchangeServer
    host: HostInfo
    store: CertStore
    session_ids: dict[str, SessionIds]
    ids: IdSource
    _proxies: dict[int, Connection]  # an inbound session's proxy to a Hub, by id(session)

    if TYPE_CHECKING:  # provided by the other parts of ExchangeServerRuntime (engine.onprem)
        def protocol_log(self, service: str, kind: str) -> ProtocolLog: ...

        def internal_cert(self) -> StoredCert | None: ...

    async def frontend_proxy(self, session: "ReceivingSession", envelope: "Envelope") -> str:
        """The Front End's proxy to a Transport service in the site (PRX errors on failure).

        One proxy session per inbound session: it is set up for the inbound session's first
        message and carries each following message of that session in turn, until the client
        says QUIT (`end_proxy`); see docs/queues-tracking-ndr.md, "Connections".
        """
        session.log.info("", T.proxy_destinations_context(self.ids.guid()))
        proxy = self._take_proxy(session)
        if proxy is None:
            proxy, error = await self._new_proxy(session, list(envelope.recipients))
            if proxy is None:
                return error
        state: ReceiveState = session.state
        remote_ip, remote_port = session.context["remote"]
        # the proxy passes on what the client declared: BODY=, and AUTH=<> only if the client said so
        msg = OutboundMessage(key=None, mail_from=envelope.mail_from, recipients=list(envelope.recipients),
                              data=envelope.data, body=envelope.mail_params.get("BODY"),
                              auth_as="Anonymous" if envelope.mail_params.get("AUTH") == "<>" else "",
                              proxy_from=ProxyFrom(session.session_id, remote_ip, remote_port, state.helo),
                              chunked=envelope.chunked)  # the proxy passes DATA on as DATA
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
        if f is not None:  # the proxy connection was acked Retry with the failover text
            session.log.info("", R.PROXY_ACKED.format(status="Retry", response=onprem_last_error(f, build=self.model.build)))
        if f is not None and f.kind in ("connect_timeout", "connect_refused"):
            return R.PROXY_TEMPORARY.format(n=3)
        return R.PROXY_TEMPORARY.format(n=5)

    def _take_proxy(self, session: "ReceivingSession") -> Connection | None:
        proxy = self._proxies.pop(id(session), None)
        if proxy is not None:
            self.lab.hold_open(-1, proxy.client)
        return proxy

    async def _new_proxy(self, session: "ReceivingSession", recipients: list[str]) -> tuple[Connection | None, str]:
        """A proxy connection to the Transport services of the recipients' delivery group (then the
        local site's, for fail-over: rules.routing_frontend), or the PRX reply why there is none."""
        state: ReceiveState = session.state
        org = self.lab.model.organization
        # the FE learns that a Transport service is down by trying it (a stopped one refuses:
        # PRX3), not from its configuration
        names = frontend_hubs(org, self.model, recipients,
                              pick=lambda n: self.lab.ids_for(f"{self.name}/frontend-routing").randint(0, n - 1),
                              distance=site_costs(org))
        hubs = [org.server(n) for n in names]
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
            # the proxy's next hop is a server, not an MX-routed domain: every DNS failure retries
            # (SmtpOutConnection.NextHopResolutionFailed); the Front End logs the ack, then PRX2
            outcome = onprem_dns_outcome(dns_status(type(exc).__name__, qname=exc.qname), dns_connector=False)
            session.log.info("", R.PROXY_ACKED.format(status="Retry", response=outcome.text))
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
            sender=Sender(exchange_server_auth=True),  # Inbound Proxy Internal Send Connector: ExchangeServer
            connectivity=proxy_trace(self, session.session_id, targets),  # FrontEnd/Connectivity
            proxying=session.session_id,
        )
        return Connection(self.lab, spec), ""

    async def end_proxy(self, session: "ReceivingSession") -> None:
        """The inbound session said QUIT: its proxy session to the Transport service ends too."""
        proxy = self._take_proxy(session)
        if proxy is not None:
            await proxy.close()
            session.touch()

    def drop_proxy(self, session: "ReceivingSession") -> None:
        """The inbound session ended without QUIT: its proxy connection is closed at once."""
        proxy = self._take_proxy(session)
        if proxy is not None:
            proxy.abort()
