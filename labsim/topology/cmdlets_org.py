"""Building an organisation with cmdlets: lab verbs for what Windows and setup do (a site, a new
server), Exchange's own cmdlets for the rest (a DAG and its members). New-EdgeSubscription is the
running lab's operation (engine.service_ops); an Edge that New-LabServer adds is subscribed to its
site from the start, as in an `[organization]` table.

These change the lab's *shape*: the running lab does not grow a server, so they apply before the
lab starts (a `[[change]]` without `at`, or the `[organization]` table); on a running lab each one
is refused with that reason (`Lab.started`).
"""

from __future__ import annotations

from typing import Any

from ..errors import TopologyError
from .cmdlet_kit import _new_in, _pop_identity, _server, _set_in, _validate, cmdlet
from .defaults import edgesync_send_connectors, setup_receive_connectors
from .model import AdSite, AdSiteLink, DatabaseAvailabilityGroup, ExchangeServer, Lab

__all__ = ["SHAPE_CMDLETS"]

SHAPE_CMDLETS = frozenset({"new-labsite", "new-labserver", "new-databaseavailabilitygroup",
                           "add-databaseavailabilitygroupserver", "new-labsitelink"})


def _not_running(lab: Lab, where: str) -> None:
    if lab.started:
        raise TopologyError(where, "the lab is running and does not grow servers, sites or DAGs: make this "
                                   "a change without `at` (before the lab starts) or declare it in [organization]")


def _pop(params: dict[str, Any], name: str) -> Any:
    for k in list(params):
        if k.lower() == name.lower():
            return params.pop(k)
    return None


def _site_names(lab: Lab) -> list[str]:
    return [lab.organization.ad_site, *(s.name for s in lab.organization.sites)]


@cmdlet("New-LabSite")
def new_lab_site(lab: Lab, params: dict[str, Any]) -> str:
    """An Active Directory site (New-ADReplicationSite + its subnets): -Name [-Subnets 10.30.0.0/16]."""
    where = "New-LabSite"
    _not_running(lab, where)
    site = _validate(AdSite, params, where)
    if site.name.lower() in (s.lower() for s in _site_names(lab)):
        raise TopologyError(where, f"a site named {site.name!r} exists")
    lab.organization.sites.append(site)
    return site.name


@cmdlet("New-LabServer")
def new_lab_server(lab: Lab, params: dict[str, Any]) -> str:
    """A new Exchange 2019 server, as setup leaves it: -Name -Fqdn -Ip [-Role Mailbox|Edge] [-Site]
    [-Databases] [-AdapterDnsServers] ... (any ExchangeServer property). It gets setup's receive
    connectors; an Edge is subscribed to its site (the two EdgeSync send connectors)."""
    where = "New-LabServer"
    _not_running(lab, where)
    name, role = _pop(params, "Name"), _pop(params, "Role") or "Mailbox"
    if not isinstance(name, str) or not name:
        raise TopologyError(where, "-Name is required")
    if role not in ("Mailbox", "Edge"):
        raise TopologyError(where, f"-Role {role!r} is not Mailbox or Edge")
    connectors = [rc.model_dump(by_alias=True) for rc in setup_receive_connectors(name, str(role))]
    server = _new_in(lab.organization.servers, ExchangeServer,
                     {"Name": name, "Role": role, "ReceiveConnectors": connectors, **params}, where, "server")
    site = server.site
    if site is not None and site.lower() not in (s.lower() for s in _site_names(lab)):
        lab.organization.servers.remove(server)
        raise TopologyError(where, f"-Site {site!r} is not a site of the organisation (sites: "
                                   f"{', '.join(_site_names(lab))}; New-LabSite adds one)")
    if server.role == "Edge":
        _subscribe(lab, server)
    return server.name


def _subscribe(lab: Lab, edge: ExchangeServer) -> None:
    """The send connectors an Edge subscription to the Edge's site creates (shared by its Edges)."""
    site = next((s for s in _site_names(lab) if s.lower() == (edge.site or lab.organization.ad_site).lower()),
                lab.organization.ad_site)
    for sc in edgesync_send_connectors(site, edge.name):
        have = next((c for c in lab.organization.send_connectors if c.name.lower() == sc.name.lower()), None)
        if have is None:
            lab.organization.send_connectors.append(sc)
        elif edge.name.lower() not in (s.lower() for s in have.source_transport_servers):
            have.source_transport_servers.append(edge.name)


@cmdlet("New-DatabaseAvailabilityGroup")
def new_dag(lab: Lab, params: dict[str, Any]) -> str:
    """New-DatabaseAvailabilityGroup -Name [-WitnessServer]: a DAG without members yet.

    Add-DatabaseAvailabilityGroupServer adds them."""
    where = "New-DatabaseAvailabilityGroup"
    _not_running(lab, where)
    return str(_new_in(lab.organization.dags, DatabaseAvailabilityGroup, params, where,
                       "database availability group").name)


@cmdlet("Add-DatabaseAvailabilityGroupServer")
def add_dag_server(lab: Lab, params: dict[str, Any]) -> str:
    """Add-DatabaseAvailabilityGroupServer -Identity DAG -MailboxServer SERVER."""
    where = "Add-DatabaseAvailabilityGroupServer"
    _not_running(lab, where)
    identity = _pop_identity(params, where)
    member = _pop(params, "MailboxServer")
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: Identity, MailboxServer)")
    if member is None:
        raise TopologyError(where, "-MailboxServer is required")
    dag = next((d for d in lab.organization.dags if d.name.lower() == identity.lower()), None)
    if dag is None:
        raise TopologyError(where, f"no database availability group {identity!r}")
    server = _server(lab, str(member), where)
    dag.members.append(server.name)  # the Lab's checks (Edge, another DAG, site) follow in apply_change
    return f"{dag.name}\\{server.name}"


# -- org3: AD IP site links and their Exchange costs (rules.routing_sites) ------------------------------
@cmdlet("New-LabSiteLink")
def new_lab_site_link(lab: Lab, params: dict[str, Any]) -> str:
    """An AD IP site link (New-ADReplicationSiteLink): -Name -Sites HQ,Branch [-Cost 100]. Once the
    organisation declares a link, sites are joined only by the links it declares (without any, every
    site shares one link of cost 100, like AD's DEFAULTIPSITELINK)."""
    where = "New-LabSiteLink"
    _not_running(lab, where)
    sites = _pop(params, "Sites")
    if sites is not None:
        params["Sites"] = [sites] if isinstance(sites, str) else sites
    link = _new_in(lab.organization.site_links, AdSiteLink, params, where, "site link")
    return str(link.name)


@cmdlet("Set-AdSiteLink")
def set_ad_site_link(lab: Lab, params: dict[str, Any]) -> str:
    """Set-AdSiteLink -Identity LINK -ExchangeCost N: the cost Exchange routes by instead of the AD
    cost ($null: the AD cost again). Any time: routing reads the costs for each message."""
    where = "Set-AdSiteLink"
    unknown = [k for k in params if k.lower() not in ("identity", "exchangecost", "name")]
    if unknown:
        raise TopologyError(where, f"unknown parameter -{unknown[0]} (known: Identity, ExchangeCost, Name)")
    return str(_set_in(lab.organization.site_links, params, where, "AD site link").name)
