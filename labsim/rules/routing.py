"""On-premises routing: recipient resolution, send connector selection, next hop and queue.

Sources: transport-behavior.md §2.1 (selection: size, enabled/visible, most specific address
space, then cost, then proximity, then the lowest name; no match -> Unreachable queue), §2.2
(DNS vs smart host), §6.1 (queue DeliveryType and NextHopDomain per type); DAG delivery groups and
Edge subscriptions per AD site: docs/scenarios.md, "Declaring your own organisation".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..topology.model import (
    AcceptedDomainType,
    DatabaseAvailabilityGroup,
    ExchangeServer,
    Organization,
    SendConnector,
)
from . import replies as R
from .routing_sites import site_costs


@dataclass(frozen=True)
class Route:
    """Where one recipient goes from a given server: a queue and how to reach the next hop."""

    recipient: str  # possibly rewritten (a remote mailbox's targetAddress)
    delivery_type: str  # Exchange's DeliveryType name
    next_hop_domain: str
    connector: SendConnector | None = None
    target_servers: tuple[str, ...] = ()  # next-hop Exchange servers (names), if internal
    smart_hosts: tuple[str, ...] = ()
    dns_domain: str | None = None  # domain to resolve MX for (DNS routing)
    error: str | None = None  # permanent failure text (NDR) or unreachable reason
    external: bool = False

    @property
    def queue_key(self) -> tuple[str, str]:
        return (self.delivery_type, self.next_hop_domain.lower())


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def address_space_match(space: str, domain: str, accepted: set[str]) -> int | None:
    """How specifically an address space matches a domain (higher is more specific), or None."""
    space = space.lower()
    if space == "--":
        return 1000 if domain in accepted else None
    if space == "*":
        return 0
    if space.startswith("*."):
        base = space[2:]
        if domain == base or domain.endswith("." + base):
            return len(base.split("."))
        return None
    return 1000 + len(space) if domain == space else None


def select_send_connector(connectors: list[SendConnector], domain: str, *, local_server: str,
                         message_size: int, accepted: set[str] | None = None,
                         edge: bool = False, sites: dict[str, str] | None = None,
                         site_cost: Callable[[str, str], float] | None = None) -> SendConnector | None:
    """Exchange's connector selection for one recipient domain. `sites` (server name, lower case ->
    AD site) ranks the hops: the local server, then a source server in the local site, then one in
    a remote site (connector-selection.md; transport-behavior.md §2.1). `site_cost` (rules.routing_sites)
    adds the IP site link cost to the nearest source server's site to the address space cost: the
    aggregate cost; a connector whose source servers no site link reaches is not used."""
    accepted = accepted or set()
    best: tuple | None = None
    chosen = None
    for sc in connectors:
        if not sc.enabled or sc.max_message_size < message_size:
            continue
        path = _path_cost(sc, local_server, sites, site_cost)
        if path == math.inf:
            continue
        for space in sc.address_spaces:
            if space.type != "SMTP":
                continue
            if space.domain == "--" and not edge:
                continue
            spec = address_space_match(space.domain, domain, accepted)
            if spec is None:
                continue
            key = (-spec, path + space.cost, _hops(sc, local_server, sites), sc.name.lower())
            if best is None or key < best:
                best, chosen = key, sc
    return chosen


def _path_cost(sc: SendConnector, local_server: str, sites: dict[str, str] | None,
               site_cost: Callable[[str, str], float] | None) -> float:
    """The IP site link cost from the local server's site to the nearest source server's site."""
    sources = [x.lower() for x in sc.source_transport_servers]
    if site_cost is None or sites is None or not sources:
        return 0.0
    here = sites.get(local_server.lower(), "")
    return min(site_cost(here, sites.get(x, here)) for x in sources)


def _hops(sc: SendConnector, local_server: str, sites: dict[str, str] | None) -> int:
    """0: the local server is a source server; 1: a source server in the local AD site; 2: only in a
    remote site (without `sites` every server counts as the local site's)."""
    sources = [x.lower() for x in sc.source_transport_servers]
    if local_server.lower() in sources:
        return 0
    if sites is None or not sources:
        return 1
    here = sites.get(local_server.lower())
    return 1 if any(sites.get(x) == here for x in sources) else 2


def server_sites(org: Organization) -> dict[str, str]:
    """Server name (lower case) -> its AD site (lower case)."""
    return {s.name.lower(): (s.site or org.ad_site).lower() for s in org.servers}


def _find_mailbox(org: Organization, address: str):
    a = address.lower()
    for mb in org.mailboxes:
        if mb.primary_smtp_address.lower() == a or a in (x.lower() for x in mb.email_addresses):
            return mb
    return None


def _find_remote_mailbox(org: Organization, address: str):
    a = address.lower()
    for rm in org.remote_mailboxes:
        if rm.primary_smtp_address.lower() == a:
            return rm
    return None


def database_server(org: Organization, database: str) -> ExchangeServer | None:
    for s in org.servers:
        if database in s.databases:
            return s
    return None


def _dag_of(org: Organization, server: ExchangeServer) -> DatabaseAvailabilityGroup | None:
    return next((d for d in org.dags if any(m.lower() == server.name.lower() for m in d.members)), None)


def _remote_dag(org: Organization, server: ExchangeServer, target: ExchangeServer) -> DatabaseAvailabilityGroup | None:
    """The destination DAG when it is not the routing server's own (queue-properties: SmtpDeliveryToMailbox
    covers the local server, the same DAG and, without DAGs, the same AD site; SmtpRelayToDag a remote
    DAG in the local or a remote site). None: deliver to the database's server directly."""
    if target.name.lower() == server.name.lower():
        return None
    there = _dag_of(org, target)
    if there is None or there is _dag_of(org, server):
        return None
    return there


def accepted_domains(org: Organization) -> dict[str, AcceptedDomainType]:
    return {d.domain_name.lower(): AcceptedDomainType(d.domain_type) for d in org.accepted_domains}


def _connector_route(org: Organization, server: ExchangeServer, recipient: str, size: int) -> Route:
    domain = domain_of(recipient)
    accepted = set(accepted_domains(org))
    is_edge = server.role == "Edge"
    sites = server_sites(org)
    sc = select_send_connector(org.send_connectors, domain, local_server=server.name, message_size=size,
                               accepted=accepted, edge=is_edge, sites=sites, site_cost=site_costs(org))
    if sc is None:
        return Route(recipient=recipient, delivery_type="Unreachable", next_hop_domain="Unreachable Domain",
                     error=R.NO_MATCHING_CONNECTOR, external=True)
    sources = [s for s in sc.source_transport_servers]
    local = any(s.lower() == server.name.lower() for s in sources)
    if not local:
        # Relay to the connector's source server(s) first (§2.1 SourceTransportServers).
        targets = tuple(sorted(sources, key=str.lower))
        edge_sources = [s for s in sources if org.server(s).role == "Edge"]
        here = sites.get(server.name.lower())
        if edge_sources and not any(sites.get(e.lower()) == here for e in edge_sources):
            # org: an Edge subscribed to a remote AD site: the message goes to that site first
            # (queues.md: SmtpRelayToRemoteActiveDirectorySite, NextHopDomain = the target site).
            site = org.server(edge_sources[0]).site or org.ad_site
            hubs = tuple(sorted(s.name for s in org.servers
                                if s.role == "Mailbox" and (s.site or org.ad_site).lower() == site.lower()))
            return Route(recipient=recipient, delivery_type="SmtpRelayToRemoteActiveDirectorySite",
                         next_hop_domain=site, connector=sc, target_servers=hubs, external=True)
        if edge_sources:
            return Route(recipient=recipient, delivery_type="SmtpRelayWithinAdSiteToEdge",
                         next_hop_domain=sc.name, connector=sc, target_servers=tuple(sorted(edge_sources)),
                         external=True)
        return Route(recipient=recipient, delivery_type="SmtpRelayToConnectorSourceServers",
                     next_hop_domain=sc.name, connector=sc, target_servers=targets, external=True)
    if sc.smart_hosts == ["--"]:
        # EdgeSync inbound: the smart host "--" stands for the Mailbox servers of the subscribed site.
        # org: an Edge subscription belongs to one AD site (New-EdgeSubscription -Site).
        site = (server.site or org.ad_site).lower()
        hubs = tuple(sorted(s.name for s in org.servers
                            if s.role == "Mailbox" and (s.site or org.ad_site).lower() == site))
        return Route(recipient=recipient, delivery_type="SmartHostConnectorDelivery",
                     next_hop_domain=sc.name, connector=sc, target_servers=hubs)
    if sc.smart_hosts:
        return Route(recipient=recipient, delivery_type="SmartHostConnectorDelivery",
                     next_hop_domain=",".join(sc.smart_hosts), connector=sc, smart_hosts=tuple(sc.smart_hosts),
                     external=True)
    spaces = [s.domain for s in sc.address_spaces if address_space_match(s.domain, domain, accepted) is not None]
    hop = domain if not spaces or spaces[0] in ("*", "--") or spaces[0].startswith("*.") else spaces[0]
    return Route(recipient=recipient, delivery_type="DnsConnectorDelivery", next_hop_domain=hop,
                 connector=sc, dns_domain=domain, external=True)


def route_recipient(org: Organization, server: ExchangeServer, recipient: str, *, size: int) -> Route:
    """Route one recipient from `server` (a Mailbox server's Transport service or an Edge)."""
    domains = accepted_domains(org)
    domain = domain_of(recipient)
    if server.role == "Edge":
        return _connector_route(org, server, recipient, size)
    mb = _find_mailbox(org, recipient)
    if mb is not None:
        target = database_server(org, mb.database)
        if target is None:
            return Route(recipient=recipient, delivery_type="Unreachable", next_hop_domain="Unreachable Domain",
                         error=f"Database {mb.database} is not mounted on any server")
        dag = _remote_dag(org, server, target)
        if dag is not None:
            # org: the database is in a DAG the routing server is not a member of: the DAG is the
            # delivery group; the queue is named after it and relays to its members' Transport service.
            return Route(recipient=mb.primary_smtp_address, delivery_type="SmtpRelayToDag",
                         next_hop_domain=dag.name, target_servers=tuple(sorted(dag.members, key=str.lower)))
        return Route(recipient=mb.primary_smtp_address, delivery_type="SmtpDeliveryToMailbox",
                     next_hop_domain=mb.database.lower(), target_servers=(target.name,))
    rm = _find_remote_mailbox(org, recipient)
    if rm is not None:
        return _connector_route(org, server, rm.remote_routing_address, size)
    dtype = domains.get(domain)
    if dtype == AcceptedDomainType.AUTHORITATIVE:
        return Route(recipient=recipient, delivery_type="", next_hop_domain="", error=R.RECIPIENT_NOT_FOUND)
    return _connector_route(org, server, recipient, size)


def is_accepted_recipient_domain(org: Organization, address: str) -> bool:
    return domain_of(address) in accepted_domains(org)

