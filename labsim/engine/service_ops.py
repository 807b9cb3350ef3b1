"""Windows services and the Edge subscription at run time: Stop/Start/Restart-Service, EdgeSync.

Seed 001 errors 1-3 are about services, not configuration: mail that never leaves the mailbox
(MSExchangeSubmission stopped: Get-Queue shows Submission empty, the message waits in the
mailbox's Outbox), and an Edge whose AD LDS copy of the organisation is stale or empty because
EdgeSync cannot reach it (ADAM_MSExchange stopped, LDAP unavailable) or the subscription is gone.

A stopped service is simply not there: `MSExchangeTransport`/`MSExchangeFrontEndTransport`/
`MSExchangeDelivery` close their listeners (the runtime rebinds from `listener_specs`), so peers
get a real ECONNREFUSED and word it as Exchange does (441 4.4.1 ... 10061, 450 4.4.316 ...).
Queues of a stopped transport service keep their mail (mail.que survives) and are drained again
when it starts. State lives in the topology (`transport.running`, `frontend.running`,
`stopped_services`), so the summary and later steps see it.

Operations (timeline steps, `at` required):
    Stop-Service / Start-Service / Restart-Service  -Name <service> -Server <server>
    Remove-EdgeSubscription -Identity <edge>         (run on the organisation side)
    New-EdgeSubscription -Server <edge> [-Site ...]  (subscribe again; EdgeSync connectors return)
    Start-EdgeSynchronization [-Server <mailbox>]    (push the organisation's config to the Edges)
    Test-EdgeSynchronization                          (records SyncStatus per Edge in the summary)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..clock import iso_ms
from ..errors import TopologyError
from ..logs.scm import (
    SCM_SOURCE,
    SERVICE_DISPLAY_NAMES,
    failure_strings,
    state_change_strings,
)
from ..rules.services import start_plan
from ..topology.model import ExchangeServer, Organization, SendConnector
from .op_registry import OPERATION_CHECKS, operation
from .services import (
    EDGE_SERVICES,
    EDGESYNC_LDAP_UNAVAILABLE,
    MAILBOX_SERVICES,
    EdgeState,
    edges_of,
    is_running,
)

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import LabRuntime


# --- service names ----------------------------------------------------------------------------------
def _server(rt: Any, name: Any, where: str) -> ExchangeServer:
    """The Exchange server `name` of a runtime (rt.model) or of a topology (a Lab)."""
    model = getattr(rt, "model", rt)
    if name is None:
        raise TopologyError(where, "-Server is required (the Exchange server the service runs on)")
    try:
        return model.organization.server(str(name))
    except KeyError:
        names = ", ".join(s.name for s in model.organization.servers)
        raise TopologyError(where, f"no server {name!r} (servers: {names})") from None


def _service_name(server: ExchangeServer, name: Any, where: str) -> str:
    known = MAILBOX_SERVICES if server.role == "Mailbox" else EDGE_SERVICES
    for k in known:
        if str(name or "").lower() == k.lower():
            return k
    raise TopologyError(where, f"-Name {name!r}: no such Exchange service on {server.name} "
                               f"(services: {', '.join(known)})")


def _set_running(server: ExchangeServer, service: str, running: bool) -> None:
    if service == "MSExchangeTransport":
        server.transport.running = running
    elif service == "MSExchangeFrontEndTransport":
        if server.frontend is not None:
            server.frontend.running = running
    elif running:
        server.stopped_services = [s for s in server.stopped_services if s != service]
    elif service not in server.stopped_services:
        server.stopped_services = [*server.stopped_services, service]


def _pop(params: dict[str, Any], *names: str) -> Any:
    for k in list(params):
        if k.lower() in {n.lower() for n in names}:
            return params.pop(k)
    return None


def _no_more(params: dict[str, Any], where: str, known: str) -> None:
    params.pop("at", None)
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: {known})")


# --- Stop / Start / Restart -------------------------------------------------------------------------
async def _change_service(rt: "LabRuntime", params: dict[str, Any], where: str, *, stop: bool, start: bool) -> str:
    server = _server(rt, _pop(params, "Server", "ComputerName"), where)
    service = _service_name(server, _pop(params, "Name", "Identity", "ServiceName"), where)
    _no_more(params, where, "Name, Server")
    if stop:
        _scm_state_change(rt, server, service, "stopped")
        _set_running(server, service, False)
        rt.routing_logs.stopped(server.name, service, rt.clock.now())  # its routing tables go with it
        rt.flush_dns_cache(server.name, service)  # a new process starts with an empty DNS cache
        if service in ("ADAM_MSExchange", "MSExchangeEdgeSync"):
            _edgesync_broken(rt, EDGESYNC_LDAP_UNAVAILABLE)
    await rt.reconfigure()  # listeners follow the services (closed ports refuse connections)
    if start:
        started = _start(rt, server, service)
        await rt.reconfigure()
        if {"ADAM_MSExchange", "MSExchangeEdgeSync"} & set(started):
            sync_edges(rt)
        if "MSExchangeTransport" in started:
            _resume_queues(rt, server.name)
        if {"MSExchangeSubmission", "MSExchangeTransport"} & set(started):
            await rt.service_state.outbox.flush()
        if service not in started and not is_running(server, service):
            display = SERVICE_DISPLAY_NAMES.get(service, service)
            return f"Failed to start service '{display} ({service})'."  # Start-Service's error
    return f"{server.name}\\{service}"


def _start(rt: "LabRuntime", server: ExchangeServer, service: str) -> list[str]:
    """The SCM starts the service's stopped dependencies, then the service (7036 each); a service
    the world keeps from running ends with its exit code (7023) and its dependents are not started
    (7001) - rules.services. Returns the services that started."""
    names = MAILBOX_SERVICES if server.role == "Mailbox" else EDGE_SERVICES
    running = {n for n in names if is_running(server, n)}
    if service in running:
        return [service]  # already running: no state change, no event (the follow-ups still run)
    plan = start_plan(server, service, running)
    for name in plan.started:
        _scm_state_change(rt, server, name, "running")
        _set_running(server, name, True)
    for event_id, raw in plan.events:
        rt.events.add(server.name, SCM_SOURCE, event_id, failure_strings(event_id, raw))
    return plan.started


def _scm_state_change(rt: "LabRuntime", server: ExchangeServer, service: str, state: str) -> None:
    """System log event 7036 when the service really changes state (logs.scm)."""
    if is_running(server, service) != (state == "running"):
        rt.events.add(server.name, SCM_SOURCE, 7036, state_change_strings(service, state))


def _check_service(where: str) -> Any:
    def check(lab: Any, params: dict[str, Any]) -> None:
        server = _server(lab, _pop(params, "Server", "ComputerName"), where)
        _service_name(server, _pop(params, "Name", "Identity", "ServiceName"), where)
        _no_more(params, where, "Name, Server")
    return check


def _check_edge(where: str, *names: str, known: str) -> Any:
    def check(lab: Any, params: dict[str, Any]) -> None:
        edge = _server(lab, _pop(params, *names), where)
        if edge.role != "Edge":
            raise TopologyError(where, f"{edge.name} is not an Edge Transport server")
        for k in list(params):
            if k.lower() in ("confirm", "site", "filedata", "filename", "force", "createinternetsendconnector",
                             "createinboundsendconnector"):
                params.pop(k)
        _no_more(params, where, known)
    return check


for _name in ("Stop-Service", "Start-Service", "Restart-Service"):
    OPERATION_CHECKS[_name.lower()] = _check_service(_name)
OPERATION_CHECKS["remove-edgesubscription"] = _check_edge("Remove-EdgeSubscription", "Identity", "Server",
                                                          known="Identity, Confirm")
OPERATION_CHECKS["new-edgesubscription"] = _check_edge("New-EdgeSubscription", "Server", "Identity", "EdgeServer",
                                                       known="Server, Site, FileData")


@operation("Stop-Service")
async def stop_service(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Stop-Service NAME -Server X: its listeners close, its queues wait."""
    return await _change_service(rt, params, "Stop-Service", stop=True, start=False)


@operation("Start-Service")
async def start_service(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Start-Service NAME -Server X (MSExchangeTransport, MSExchangeFrontEndTransport, MSExchangeSubmission, ...)."""
    return await _change_service(rt, params, "Start-Service", stop=False, start=True)


@operation("Restart-Service")
async def restart_service(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Restart-Service NAME -Server X: stop then start a transport service."""
    return await _change_service(rt, params, "Restart-Service", stop=True, start=True)


def _resume_queues(rt: "LabRuntime", server_name: str) -> None:
    """Queues kept their mail while the service was stopped (engine.queueing); send it now."""
    party = rt.servers.get(server_name)
    if party is not None:
        party.kick()


# --- EdgeSync -------------------------------------------------------------------------------------------
def _edges(rt: "LabRuntime") -> list[ExchangeServer]:
    return edges_of(rt.model.organization)


def _edge_state(rt: "LabRuntime", name: str) -> EdgeState:
    return rt.service_state.edge(name)


def _sync_possible(rt: "LabRuntime", edge: ExchangeServer) -> str:
    """'' when EdgeSync can push to this Edge now, else why not (Test-EdgeSynchronization's words)."""
    if not _edge_state(rt, edge.name).subscribed:
        return "The Edge Transport server isn't subscribed."
    if not is_running(edge, "ADAM_MSExchange"):
        return EDGESYNC_LDAP_UNAVAILABLE
    if not any(is_running(s, "MSExchangeEdgeSync") for s in rt.model.organization.servers if s.role == "Mailbox"):
        return "The Microsoft Exchange EdgeSync service isn't running."
    return ""


def _edgesync_broken(rt: "LabRuntime", why: str) -> None:
    for edge in _edges(rt):
        es = _edge_state(rt, edge.name)
        if es.subscribed and es.snapshot is None and _sync_possible(rt, edge):
            es.snapshot = rt.model.organization.model_copy(deep=True)  # what AD LDS holds from now on
            es.failure = _sync_possible(rt, edge)


def sync_edges(rt: "LabRuntime") -> None:
    """Start-EdgeSynchronization / the EdgeSync service's next cycle: bring reachable Edges up to date."""
    for edge in _edges(rt):
        es = _edge_state(rt, edge.name)
        why = _sync_possible(rt, edge)
        if why:
            es.failure = why
            continue
        es.snapshot, es.failure, es.last_sync = None, "", rt.clock.now()


def _edgesync_connector_names(org: Organization, site: str) -> tuple[str, str]:
    return f"EdgeSync - {site} to Internet", f"EdgeSync - Inbound to {site}"


@operation("Remove-EdgeSubscription")
async def remove_edge_subscription(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Organisation side: the subscription and its EdgeSync send connectors leave AD [INFERRED: the
    connectors the subscription created go with it]; the Edge's AD LDS data is no longer updated."""
    where = "Remove-EdgeSubscription"
    edge = _server(rt, _pop(params, "Identity", "Server"), where)
    _pop(params, "Confirm")
    _no_more(params, where, "Identity, Confirm")
    if edge.role != "Edge":
        raise TopologyError(where, f"{edge.name} is not an Edge Transport server")
    es = _edge_state(rt, edge.name)
    if not es.subscribed:
        raise TopologyError(where, f"{edge.name} has no Edge subscription")
    org = rt.model.organization
    es.subscribed, es.snapshot = False, None
    org.send_connectors = [sc for sc in org.send_connectors
                           if not (sc.name.startswith("EdgeSync - ") and
                                   any(s.lower() == edge.name.lower() for s in sc.source_transport_servers))]
    await rt.reconfigure()
    return edge.name


@operation("New-EdgeSubscription")
async def new_edge_subscription(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Subscribe an Edge to the site again (the FileData/Site dance of seed 001's fix, in one step):
    the EdgeSync connectors are created and the first synchronization runs."""
    where = "New-EdgeSubscription"
    edge = _server(rt, _pop(params, "Server", "Identity", "EdgeServer"), where)
    site = str(_pop(params, "Site") or rt.model.organization.ad_site)
    for noise in ("FileData", "FileName", "Force", "CreateInternetSendConnector", "CreateInboundSendConnector"):
        _pop(params, noise)
    _no_more(params, where, "Server, Site, FileData")
    if edge.role != "Edge":
        raise TopologyError(where, f"{edge.name} is not an Edge Transport server")
    org = rt.model.organization
    to_internet, inbound = _edgesync_connector_names(org, site)
    have = {sc.name.lower() for sc in org.send_connectors}
    if to_internet.lower() not in have:
        org.send_connectors.append(SendConnector(name=to_internet, address_spaces=["smtp:*;100"],
                                                 dns_routing_enabled=True, source_transport_servers=[edge.name]))
    if inbound.lower() not in have:
        org.send_connectors.append(SendConnector(name=inbound, address_spaces=["smtp:--;100"], smart_hosts=["--"],
                                                 source_transport_servers=[edge.name]))
    es = _edge_state(rt, edge.name)
    es.subscribed, es.snapshot = True, None
    sync_edges(rt)
    if _sync_possible(rt, edge):  # subscribed, but nothing could be replicated yet: AD LDS is empty
        es.snapshot = org.model_copy(update={"accepted_domains": [], "send_connectors": [], "mailboxes": [],
                                             "remote_mailboxes": []})
    await rt.reconfigure()
    return edge.name


@operation("Start-EdgeSynchronization")
async def start_edge_synchronization(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Start-EdgeSynchronization: replicate the organisation's configuration to subscribed Edges now."""
    where = "Start-EdgeSynchronization"
    for k in ("Server", "TargetServer", "ForceFullSync", "ForceUpdateCookie"):
        _pop(params, k)
    _no_more(params, where, "Server, TargetServer, ForceFullSync")
    sync_edges(rt)
    return ", ".join(e.name for e in _edges(rt))


@operation("Test-EdgeSynchronization")
async def test_edge_synchronization(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Record each Edge's SyncStatus as the cmdlet reports it (summary.json `services.edge_sync_tests`)."""
    for k in ("FullCompareMode", "ExcludeRecipientTest", "MaxReportSize"):
        _pop(params, k)
    _no_more(params, "Test-EdgeSynchronization", "FullCompareMode, ExcludeRecipientTest")
    for edge in _edges(rt):
        why = _sync_possible(rt, edge)
        es = _edge_state(rt, edge.name)
        stale = es.snapshot is not None and es.snapshot != rt.model.organization
        rt.service_state.tests.append({
            "time": iso_ms(rt.clock.now()), "Name": edge.name,
            "SyncStatus": "Failed" if why else ("InSync" if not stale else "NotSynchronized"),
            "FailureDetail": (f"EdgeSync service cannot connect to this subscription because of error '{why}'"
                              if why == EDGESYNC_LDAP_UNAVAILABLE else why),
            "CredentialRecords": 0 if why else 1,
        })
    return "ok"
