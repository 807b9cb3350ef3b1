"""The lab's cmdlets in the shell.

Get- cmdlets build objects from the running lab's own state (its topology, queues, ledger, logs,
event collector) and carry the real cmdlet's default view (shell.views). Every cmdlet that
changes something goes through the one implementation the scenarios use: configuration changes
through `topology.changes.apply_change` (via the session, which holds changes that only take
effect at a service restart, topology.restart_rules), and operations on the running lab
(Retry-Queue, Restart-Service, ...) through `engine.operations.run_operation`. Nothing here
decides what Exchange does.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..engine import service_ops
from ..engine.operations import OPERATION_NAMES
from ..engine.queue_ops import compile_filter
from ..errors import TopologyError
from ..logs.message_tracking import read_tracking
from ..net.resolver import DnsNameError, DnsNoData, DnsServerFailure, DnsTimeout
from ..net.vnet import open_socket
from ..pki.names import dotnet_dn
from ..rules import replies as R
from ..topology import model as tm
from ..topology.changes import CMDLET_NAMES
from ..transport.queues import exchange_config_dn, message_row, recipient_info
from . import views
from .errors import ShellError
from .evaluator import Context, Spec, enumerate_value
from .objects import PSObject, cell

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.runtime import LabRuntime


class LabSession(Protocol):
    """What the cmdlets need of the shell's session (shell.session.LabSession implements it)."""

    rt: "LabRuntime"
    local: str
    domain_controller: str

    def now(self) -> datetime: ...
    def server(self, name: str) -> Any: ...
    def overlay(self, cmdlet: str, identity: str, props: dict[str, Any]) -> dict[str, Any]: ...
    def event_level(self, event_id: int) -> str: ...
    async def change(self, cmdlet: str, params: dict[str, Any]) -> None: ...
    async def operation(self, name: str, params: dict[str, Any]) -> None: ...
    async def service(self, verb: str, service: str, server: str) -> None: ...
    async def resolve(self, name: str, qtype: str, server: Any) -> list[PSObject]: ...
    async def test_connection(self, target: str, port: int, source: str) -> PSObject: ...
    async def validate_outbound(self, identity: str, recipients: list[str]) -> PSObject: ...

# Parameters of the configuration cmdlets the shell knows by model (for binding errors and tab
# completion); the other configuration cmdlets accept what their topology handler accepts.
_MODEL_OF: dict[str, type[tm.LabModel]] = {
    "Set-SendConnector": tm.SendConnector, "New-SendConnector": tm.SendConnector,
    "Set-ReceiveConnector": tm.ReceiveConnector, "New-ReceiveConnector": tm.ReceiveConnector,
    "Set-TransportService": tm.TransportServiceConfig, "Set-FrontendTransportService": tm.TransportServiceConfig,
    "Set-InboundConnector": tm.InboundConnector, "Set-OutboundConnector": tm.OutboundConnector,
    "Set-AcceptedDomain": tm.AcceptedDomain, "Set-LabLoadBalancer": tm.LoadBalancer,
}
_EXTRA = {"New-ReceiveConnector": ("Server",), "Set-TransportService": ("Identity",),
          "Set-FrontendTransportService": ("Identity",)}
_READ_ONLY = {"running", "name"}


def model_params(cmdlet: str) -> tuple[str, ...]:
    m = _MODEL_OF.get(cmdlet)
    if m is None:
        return ()
    names = [info.alias or f for f, info in m.model_fields.items() if f not in _READ_ONLY]
    lead = ["Name"] if cmdlet.startswith("New-") else ["Identity"]
    return tuple(dict.fromkeys([*lead, *_EXTRA.get(cmdlet, ()), *names]))


def is_list_param(cmdlet: str, name: str) -> bool:
    """Is `name` a multi-valued parameter of `cmdlet` (RemoteIPRanges, InternalDNSServers, ...)?"""
    m = _MODEL_OF.get(cmdlet)
    if m is None:
        return False
    for f, info in m.model_fields.items():
        if name.lower() in ((info.alias or f).lower(), f.lower()):
            return "list[" in str(info.annotation).lower()
    return False


# --- objects -------------------------------------------------------------------------------------------
def _dump(obj: Any) -> dict[str, Any]:
    data = obj.model_dump(by_alias=True, mode="json")
    return {k: v for k, v in data.items() if k != "Running"}


def queue_objects(s: LabSession, server: str | None = None) -> list[PSObject]:
    out = []
    for name, party in s.rt.servers.items():
        if server and name.lower() != server.lower():
            continue
        for q in party.queues.all() + party.shadow_queues():  # org3: + shadow redundancy's queues
            row = q.row()
            props = {"Identity": row["Identity"], "DeliveryType": row["DeliveryType"], "Status": row["Status"],
                     "MessageCount": row["MessageCount"], "Velocity": 0, "RiskLevel": "Normal", "OutboundIPPool": 0,
                     **{k: v for k, v in row.items() if k not in ("Identity",)}}
            out.append(PSObject("Microsoft.Exchange.Data.QueueViewer.ExtensibleQueueInfo", props, views.QUEUE))
    return out


def message_objects(s: LabSession, server: str | None = None, queue: str | None = None) -> list[PSObject]:
    out = []
    org = s.rt.model.organization
    # the lab's forest is named after its first accepted domain, as the shell's DomainController [INFERRED]
    config_dn = exchange_config_dn(org.name, org.accepted_domains[0].domain_name if org.accepted_domains else "")
    for name, party in s.rt.servers.items():
        if server and name.lower() != server.lower():
            continue
        for q in party.queues.all() + party.shadow_queues():  # org3: + shadow redundancy's queues
            if queue and q.identity.lower() != queue.lower():
                continue
            for qm in q.messages:
                row = message_row(q, qm, party.expiration_of(qm.item))
                # Exchange shows each recipient as a RecipientInfo (transport.queues.recipient_info)
                row["Recipients"] = [recipient_info(q, qm, r, config_dn, R.NO_MATCHING_CONNECTOR) for r in qm.recipients]
                out.append(PSObject("Microsoft.Exchange.Data.QueueViewer.ExtensibleMessageInfo", row, views.MESSAGE))
    return out


def send_connector_objects(s: LabSession) -> list[PSObject]:
    out = []
    for sc in s.rt.model.organization.send_connectors:
        d = _dump(sc)
        d["AddressSpaces"] = [str(a) for a in sc.address_spaces]
        props = {"Identity": sc.name, "Name": sc.name, "Enabled": True, **d}
        out.append(PSObject("Microsoft.Exchange.Data.Directory.SystemConfiguration.SmtpSendConnectorConfig",
                            s.overlay("Set-SendConnector", sc.name, props), views.SEND_CONNECTOR))
    return out


def receive_connector_objects(s: LabSession, server: str | None = None) -> list[PSObject]:
    out = []
    for srv in s.rt.model.organization.servers:
        if server and srv.name.lower() != server.lower():
            continue
        for rc in srv.receive_connectors:
            identity = f"{srv.name}\\{rc.name}"
            props = {"Identity": identity, "Enabled": True, "Server": srv.name, **_dump(rc)}
            out.append(PSObject("Microsoft.Exchange.Data.Directory.SystemConfiguration.ReceiveConnector",
                                s.overlay("Set-ReceiveConnector", identity, props), views.RECEIVE_CONNECTOR))
    return out


def transport_service_objects(s: LabSession, frontend: bool) -> list[PSObject]:
    out = []
    cmdlet = "Set-FrontendTransportService" if frontend else "Set-TransportService"
    for srv in s.rt.model.organization.servers:
        cfg = srv.frontend if frontend else srv.transport
        if cfg is None:
            continue
        props = {"Name": srv.name, "Identity": srv.name, **_dump(cfg)}
        kind = "FrontendTransportServer" if frontend else "TransportServer"
        out.append(PSObject(f"Microsoft.Exchange.Data.Directory.SystemConfiguration.{kind}",
                            s.overlay(cmdlet, srv.name, props)))
    return out


def certificate_objects(s: LabSession, server: str) -> list[PSObject]:
    srv = s.server(server)
    out = []
    for entry in srv.certificates:
        issued = s.rt.pki.issued(entry.certificate)
        c = issued.cert
        props = {
            "Thumbprint": issued.thumbprint, "Services": views.service_flags(entry.services),
            "Subject": dotnet_dn(c.subject), "Issuer": dotnet_dn(c.issuer),
            "CertificateDomains": list(issued.spec.sans) or [issued.spec.subject.removeprefix("CN=")],
            "HasPrivateKey": entry.has_private_key, "IsSelfSigned": issued.self_signed,
            "NotBefore": c.not_valid_before_utc, "NotAfter": c.not_valid_after_utc,
            "Status": _cert_status(s, issued, c), "FriendlyName": entry.certificate, "Identity": f"{srv.name}\\{issued.thumbprint}",
            "ServicesList": ", ".join(entry.services) or "None",
        }
        out.append(PSObject("Microsoft.Exchange.Management.SystemConfigurationTasks.ExchangeCertificate", props,
                            views.CERTIFICATE))
    return out


def _cert_status(s: "LabSession", issued: Any, c: Any) -> str:
    """Get-ExchangeCertificate's Status at the lab's time: DateInvalid outside the validity
    period, Revoked once the CA revoked it, Valid otherwise [INFERRED: the CertificateStatus names
    are Exchange's; which checks the cmdlet runs (chain trust, CRL reachability) is not modelled]."""
    now = s.now()
    if now < c.not_valid_before_utc or now > c.not_valid_after_utc:
        return "DateInvalid"
    if s.rt.pki.is_revoked(issued.name, now):
        return "Revoked"
    return "Valid"


def service_objects(s: LabSession, server: str) -> list[PSObject]:
    srv = s.server(server)
    names = service_ops.MAILBOX_SERVICES if srv.role == "Mailbox" else service_ops.EDGE_SERVICES
    out = []
    for n in names:
        running = service_ops.is_running(srv, n)
        out.append(PSObject("System.ServiceProcess.ServiceController",
                            {"Status": "Running" if running else "Stopped", "Name": n,
                             "DisplayName": views.SERVICE_DISPLAY.get(n, n), "MachineName": srv.name},
                            views.SERVICE))
    return out


def _listed(q: PSObject) -> bool:
    """Get-Queue lists the persistent queues (Poison only when not empty) and live delivery queues
    (as `labsim queue` does, cli_views._visible)."""
    name = cell(q.get("Identity")).split("\\", 1)[1]
    return bool(q.get("MessageCount")) or name != "Poison"


# --- the Get- cmdlets ------------------------------------------------------------------------------------
def _pick(objs: list[PSObject], identity: Any, what: str, prop: str = "Identity") -> list[PSObject]:
    if identity is None:
        return objs
    want = cell(identity).lower()
    hits = [o for o in objs if fnmatch.fnmatchcase(cell(o.get(prop)).lower(), want)
            or cell(o.get("Name")).lower() == want or cell(o.get(prop)).lower().endswith("\\" + want)]
    if not hits:
        raise ShellError(f"The operation couldn't be performed because object '{cell(identity)}' couldn't be found "
                         f"on '{what}'.", "NotSpecified")
    return hits


def _filter(objs: list[PSObject], text: Any, where: str) -> list[PSObject]:
    if text is None:
        return objs
    try:
        pred = compile_filter(cell(text) if not hasattr(text, "text") else text.text, where)
        return [o for o in objs if pred(o.props)]
    except TopologyError as exc:
        raise ShellError(f"{where}: {exc.problem}", "InvalidArgument") from None


def register(ctx: Context, s: LabSession) -> None:
    def spec(name: str, fn: Any, params: tuple[str, ...] = (), positional: tuple[str, ...] = (),
             switches: tuple[str, ...] = (), help: str = "", open_params: bool = False) -> None:
        ctx.register(Spec(name, fn, params, switches, positional, help, open_params=open_params))

    async def get_queue(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        identity = p.get("Identity")
        if identity is not None:  # SERVER\Queue, or a queue of the local server
            ident = cell(identity)
            objs = queue_objects(s, ident.split("\\", 1)[0] if "\\" in ident else s.local)
            return _pick(objs, ident if "\\" in ident else f"{s.local}\\{ident}", s.local)
        objs = [o for o in queue_objects(s, cell(p.get("Server") or s.local)) if _listed(o)]
        return _filter(objs, p.get("Filter"), "Get-Queue")

    async def get_message(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        queue = p.get("Queue")
        if queue is None and inp:
            queues = [cell(o.get("Identity")) for o in inp if isinstance(o, PSObject)]
            return [m for q in queues for m in message_objects(s, queue=q)]
        objs = message_objects(s, p.get("Server"), cell(queue) if queue is not None else None)
        objs = _pick(objs, p.get("Identity"), s.local)
        return _filter(objs, p.get("Filter"), "Get-Message")

    async def get_send_connector(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        return _pick(send_connector_objects(s), p.get("Identity"), s.domain_controller)

    async def get_receive_connector(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        return _pick(receive_connector_objects(s, p.get("Server")), p.get("Identity"), s.domain_controller)

    async def get_transport_service(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        return _pick(transport_service_objects(s, False), p.get("Identity"), s.domain_controller)

    async def get_frontend_service(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        return _pick(transport_service_objects(s, True), p.get("Identity"), s.domain_controller)

    async def get_certificate(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        objs = certificate_objects(s, cell(p.get("Server") or s.local))
        return _pick(objs, p.get("Thumbprint", p.get("Identity")), s.local, "Thumbprint")

    async def get_service(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        objs = service_objects(s, cell(p.get("ComputerName") or s.local))
        names = [cell(n).lower() for n in enumerate_value(p.get("Name"))] if "Name" in p else ["*"]
        hits = [o for o in objs if any(fnmatch.fnmatchcase(cell(o.get("Name")).lower(), n) for n in names)]
        missing = [n for n in names if not any(ch in n for ch in "*?") and
                   not any(cell(o.get("Name")).lower() == n for o in objs)]
        if missing:
            raise ShellError(f"Cannot find any service with service name '{missing[0]}'.", "ObjectNotFound")
        return hits

    async def get_tracking(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        s.rt.flush_logs()
        server = cell(p.get("Server") or s.local)
        rows = [r for r in read_tracking(s.rt.out) if r["Server"].lower() == server.lower()]
        rcpts = {cell(x).lower() for x in enumerate_value(p.get("Recipients"))}
        out = []
        for r in rows:
            if "Sender" in p and r["Sender"].lower() != cell(p["Sender"]).lower():
                continue
            if rcpts and not rcpts & {x.lower() for x in r["Recipients"].split(";") if x}:
                continue
            if "EventId" in p and r["EventId"].lower() != cell(p["EventId"]).lower():
                continue
            if "MessageSubject" in p and cell(p["MessageSubject"]).lower() not in r["MessageSubject"].lower():
                continue
            if "MessageId" in p and r["MessageId"].strip("<>").lower() != cell(p["MessageId"]).strip("<>").lower():
                continue
            props = dict(r)
            props["Recipients"] = [x for x in r["Recipients"].split(";") if x]
            # one status per recipient; a status's own structure ([{LED=...};{MSG=...}]) holds ';' too
            props["RecipientStatus"] = [r["RecipientStatus"]] if r["RecipientStatus"] else []
            out.append(PSObject("Microsoft.Exchange.Management.TransportLogSearchTasks.MessageTrackingEvent",
                                props, views.TRACKING))
        size = p.get("ResultSize")
        if size is not None and cell(size).lower() != "unlimited":
            out = out[:int(size)]
        return out

    async def get_exo_connectors(c: Context, p: dict[str, Any], inp: list[Any], inbound: bool) -> list[Any]:
        items = s.rt.model.tenant.inbound_connectors if inbound else s.rt.model.tenant.outbound_connectors
        kind = "TenantInboundConnector" if inbound else "TenantOutboundConnector"
        objs = [PSObject(f"Microsoft.Exchange.Data.Directory.SystemConfiguration.{kind}",
                         {"Identity": x.name, **_dump(x)}, views.CONNECTOR_EXO) for x in items]
        return _pick(objs, p.get("Identity"), "Exchange Online")

    async def get_inbound(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        return await get_exo_connectors(c, p, inp, True)

    async def get_outbound(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        return await get_exo_connectors(c, p, inp, False)

    async def get_message_trace(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        from ..engine.trace import trace_rows

        rows = trace_rows(s.rt.tracking.trace.as_json(),
                          sender=cell(p["SenderAddress"]) if "SenderAddress" in p else None,
                          recipient=cell(p["RecipientAddress"]) if "RecipientAddress" in p else None)
        return [PSObject("Microsoft.Exchange.Management.FfoReporting.MessageTrace", dict(r), views.MESSAGE_TRACE)
                for r in rows]

    async def resolve_dns(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        name = p.get("Name")
        if name is None:
            raise ShellError("Missing an argument for parameter 'Name'.", "InvalidArgument")
        return await s.resolve(cell(name), cell(p.get("Type") or "A"), p.get("Server"))

    async def test_net(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        target = p.get("ComputerName")
        if target is None:
            raise ShellError("Missing an argument for parameter 'ComputerName'.", "InvalidArgument")
        return [await s.test_connection(cell(target), int(p.get("Port") or 25), cell(p.get("Source") or s.local))]

    async def get_winevent(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        from ..engine.eventlog import message_text
        from ..logs.scm import SCM_EVENTS, SCM_SOURCE, scm_message

        log = cell(p.get("LogName") or "Application")
        if log.lower() not in ("application", "system"):
            raise ShellError(f"There is not an event log on the localhost computer that matches \"{log}\".",
                             "ObjectNotFound")
        system = log.lower() == "system"  # the Service Control Manager's events (engine.eventlog)
        server = cell(p.get("ComputerName") or s.local)
        evs = [e for e in s.rt.events.events
               if e.server.lower() == server.lower() and (e.source == SCM_SOURCE) == system]
        evs.reverse()  # newest first, as Get-WinEvent reads
        out = []
        for e in evs:
            if system:
                text, level = scm_message(e.event_id, e.insertion_strings), SCM_EVENTS[e.event_id].level
            else:
                text, level = message_text(e.event_id, e.insertion_strings, e.source), s.event_level(e.event_id)
            out.append(PSObject("System.Diagnostics.Eventing.Reader.EventLogRecord",
                                {"TimeCreated": e.time, "ProviderName": e.source, "Id": e.event_id,
                                 "LevelDisplayName": level, "Message": text,
                                 "MachineName": server}, views.WIN_EVENT))
        n = p.get("MaxEvents")
        out = out[:int(n)] if n is not None else out
        if not out:
            raise ShellError("No events were found that match the specified selection criteria.", "ObjectNotFound")
        return out

    async def validate_outbound(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        identity = p.get("Identity")
        if identity is None and inp:
            identity = inp[0].get("Identity") if isinstance(inp[0], PSObject) else inp[0]
        if identity is None:
            raise ShellError("Missing an argument for parameter 'Identity'.", "InvalidArgument")
        return [await s.validate_outbound(cell(identity), [cell(x) for x in enumerate_value(p.get("Recipients"))])]

    async def get_accepted_domain(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        objs = [PSObject("Microsoft.Exchange.Data.Directory.SystemConfiguration.AcceptedDomain",
                         {"Identity": d.name, **_dump(d)}, views.ACCEPTED_DOMAIN)
                for d in s.rt.model.organization.accepted_domains]
        return _pick(objs, p.get("Identity"), s.domain_controller)

    # --- connection filtering (Edge) and EOP's connection filter policy --------------------------------
    def _edges(p: dict[str, Any]) -> list[Any]:
        name = p.get("Server")
        edges = [x for x in s.rt.model.organization.servers if x.role == "Edge"]
        if name is not None:
            srv = s.server(cell(name))
            if srv.role != "Edge":
                raise ShellError(f"{srv.name} is not an Edge Transport server; connection filtering runs on Edge "
                                 "servers.", "InvalidOperation")
            edges = [srv]
        return edges

    async def get_block_providers(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        objs = [PSObject("Microsoft.Exchange.Data.Directory.SystemConfiguration.IPBlockListProvider",
                         {"Identity": x.name, **_dump(x), "Server": srv.name}, views.IP_BLOCK_PROVIDER)
                for srv in _edges(p) for x in srv.ip_block_list_providers]
        return _pick(objs, p.get("Identity"), s.domain_controller)

    async def get_allow_entries(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        objs = []
        for srv in _edges(p):
            for e in srv.ip_allow_list_entries:
                props = {"Identity": e.identity, "IPRange": e.ip_range, "ExpirationTime": e.expiration_time,
                         "HasExpired": e.expiration_time is not None
                         and e.expiration_time.replace(tzinfo=None) <= s.now().replace(tzinfo=None),
                         "IsMachineGenerated": False, "Comment": e.comment, "Server": srv.name}
                objs.append(PSObject("Microsoft.Exchange.Transport.Agent.ConnectionFiltering.IPAllowListEntry",
                                     props, views.IP_LIST_ENTRY))
        address = p.get("IPAddress")
        if address is not None:
            from ..rules.iprange import parse_range
            objs = [o for o in objs if cell(address) in parse_range(cell(o.get("IPRange")))]
        return objs if p.get("Identity") is None else [o for o in objs if cell(o.get("Identity")) == cell(p["Identity"])]

    async def get_allow_config(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        return [PSObject("Microsoft.Exchange.Data.Directory.SystemConfiguration.IPAllowListConfig",
                         {"Identity": "IPAllowListConfig", **_dump(srv.ip_allow_list_config), "Server": srv.name})
                for srv in _edges(p)]

    async def get_connection_filter(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        pol = s.rt.model.tenant.connection_filter_policy
        objs = [PSObject("Microsoft.Exchange.Management.SystemConfigurationTasks.HostedConnectionFilterPolicy",
                         {"Identity": pol.name, **_dump(pol), "IsDefault": True})]
        return _pick(objs, p.get("Identity"), "Exchange Online")

    spec("Get-IPBlockListProvider", get_block_providers, ("Identity", "Server"), ("Identity",),
         help="Edge: the block list providers of the Connection Filtering agent.")
    spec("Get-IPAllowListEntry", get_allow_entries, ("Identity", "IPAddress", "Server", "ResultSize"), ("Identity",),
         help="Edge: the IP Allow list.")
    spec("Get-IPAllowListConfig", get_allow_config, ("Server",), help="Edge: is the IP Allow list used.")
    spec("Get-HostedConnectionFilterPolicy", get_connection_filter, ("Identity",), ("Identity",),
         help="EXO: the connection filter policy (IP Allow and Block lists).")
    spec("Get-AcceptedDomain", get_accepted_domain, ("Identity",), ("Identity",), help="Accepted domains (on-premises).")
    spec("Validate-OutboundConnector", validate_outbound, ("Identity", "Recipients"), ("Identity",),
         help="EXO: test an outbound connector with a real test message.")
    spec("Get-Queue", get_queue, ("Identity", "Server", "Filter", "ResultSize"), ("Identity",),
         help="Queues of a transport server (local server by default).")
    spec("Get-Message", get_message, ("Identity", "Queue", "Server", "Filter", "ResultSize", "IncludeRecipientInfo"),
         ("Identity",), ("IncludeRecipientInfo",), help="Messages in queues.")
    spec("Get-SendConnector", get_send_connector, ("Identity",), ("Identity",), help="Send connectors.")
    spec("Get-ReceiveConnector", get_receive_connector, ("Identity", "Server"), ("Identity",),
         help="Receive connectors.")
    spec("Get-TransportService", get_transport_service, ("Identity",), ("Identity",),
         help="Transport service settings.")
    spec("Get-FrontendTransportService", get_frontend_service, ("Identity",), ("Identity",),
         help="Front End Transport service settings.")
    spec("Get-ExchangeCertificate", get_certificate, ("Thumbprint", "Identity", "Server"), ("Thumbprint",),
         help="Certificates in a server's store.")
    spec("Get-Service", get_service, ("Name", "ComputerName"), ("Name",), help="Windows services.")
    spec("Get-MessageTrackingLog", get_tracking, ("Server", "Sender", "Recipients", "EventId", "MessageSubject",
                                                   "MessageId", "Start", "End", "ResultSize"),
         help="Message tracking log entries.")
    spec("Get-InboundConnector", get_inbound, ("Identity",), ("Identity",), help="EXO inbound connectors.")
    spec("Get-OutboundConnector", get_outbound, ("Identity",), ("Identity",), help="EXO outbound connectors.")
    spec("Get-MessageTrace", get_message_trace, ("SenderAddress", "RecipientAddress", "StartDate", "EndDate",
                                                 "MessageId", "Status", "PageSize"), help="EXO message trace.")
    spec("Resolve-DnsName", resolve_dns, ("Name", "Type", "Server", "DnsOnly", "NoHostsFile"), ("Name", "Type"),
         ("DnsOnly", "NoHostsFile"), help="DNS lookup from the local server.")
    spec("Test-NetConnection", test_net, ("ComputerName", "Port", "Source", "InformationLevel"), ("ComputerName",),
         help="TCP test from the local server (-Source: another lab host).")
    spec("Get-WinEvent", get_winevent, ("LogName", "MaxEvents", "ComputerName", "FilterHashtable"), ("LogName",),
         help="Application and System log events.")
    _register_changes(ctx, s)


# --- changes and operations --------------------------------------------------------------------------------
_PIPE_KEYS = {"Retry-Queue": "Identity", "Suspend-Queue": "Identity", "Resume-Queue": "Identity",
              "Suspend-Message": "Identity", "Resume-Message": "Identity", "Remove-Message": "Identity"}
_SERVICE_OPS = {"stop-service", "start-service", "restart-service"}


def _register_changes(ctx: Context, s: LabSession) -> None:
    for low, name in CMDLET_NAMES.items():
        if low in ctx.commands:
            continue
        params = model_params(name)
        ctx.register(Spec(name, _change_fn(s, name), params, (), ("Identity",) if "Identity" in params else (),
                          "Changes the lab's configuration.", open_params=not params))
    for low, name in OPERATION_NAMES.items():
        if low in _SERVICE_OPS:
            continue
        ctx.register(Spec(name, _operation_fn(s, name), (), (), ("Identity",), "Acts on the running lab.",
                          open_params=True))
    for name in ("Stop-Service", "Start-Service", "Restart-Service"):
        ctx.register(Spec(name, _service_fn(s, name), ("Name", "Server", "ComputerName"), (), ("Name",),
                          "Windows service control (local server unless -Server)."))


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    from .evaluator import COMMON

    return {k: v for k, v in params.items() if k not in COMMON}


def _change_fn(s: LabSession, name: str) -> Any:
    async def fn(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        targets = [o for o in inp if isinstance(o, PSObject)] if inp else [None]
        for obj in targets:
            params = _plain(p)
            if obj is not None and "Identity" not in params:
                params["Identity"] = obj.get("Identity")
            await s.change(name, params)
        return []
    return fn


def _operation_fn(s: LabSession, name: str) -> Any:
    async def fn(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        targets = [o for o in inp if isinstance(o, PSObject)] if inp else [None]
        for obj in targets:
            params = _plain(p)
            if obj is not None and "Identity" not in params and "Filter" not in params:
                params["Identity"] = obj.get("Identity")
            await s.operation(name, params)
        return []
    return fn


def _service_fn(s: LabSession, name: str) -> Any:
    async def fn(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        server = cell(p.get("Server") or p.get("ComputerName") or s.local)
        # a piped service (Get-Service -ComputerName X | Start-Service) is acted on where it runs
        targets = [(cell(v), server) for v in enumerate_value(p.get("Name"))] or [
            (cell(o.get("Name")), cell(o.get("MachineName") or server)) for o in inp if isinstance(o, PSObject)]
        if not targets:
            raise ShellError(f"Missing an argument for parameter 'Name'. ({name})", "InvalidArgument")
        for svc, where in targets:
            await s.service(name, svc, where)
        return []
    return fn


async def tcp_probe(real_dst: tuple[str, int], real_src: str, timeout: float,
                    announce: Callable[[tuple[str, int]], None] | None = None) -> bool:
    """Connect and close at once (Test-NetConnection's TCP test). `announce` is told the socket's
    real local endpoint once it is connected, before the server claims it, so the server logs the
    probe's virtual endpoint (as the lab's SMTP clients do), not the machine's ephemeral port."""
    try:
        sock = await open_socket(real_dst, real_src, timeout)
    except OSError:
        return False
    if announce is not None:
        announce(sock.getsockname()[:2])
    sock.close()  # at once, before the server's banner: a graceful close (FIN), as the TCP test does
    return True


DNS_ERRORS = ((DnsNameError, "DNS name does not exist"), (DnsNoData, "No DNS records of the requested type"),
              (DnsServerFailure, "DNS server failure"),
              (DnsTimeout, "This operation returned because the timeout period expired"))
