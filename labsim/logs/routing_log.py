"""Routing table log: `{prefix}RoutingConfig#{n}@{when}.xml`, the routing topology a transport
process loaded, as Exchange's `RoutingTableLogger` writes it (docs/transport-logs.md §5).

Theory of operation. Every Exchange transport process (Transport = Hub, Front End Transport,
Mailbox Transport Submission and Delivery, Edge Transport) loads its routing tables from Active
Directory (ADAM on an Edge) at start, again a few seconds after AD notifies it of a routing change,
and every ConfigReloadInterval (12 h); each load is written to a new XML file [V-RT:
RoutingTablesLoader, RoutingTableLogger, RoutingTableLogFileManager, decompiled 15.00.1497]. This
module is the pure half: the lab's topology (the same data rules.routing decides by) in, the file's
name and bytes out. engine.routing_tables decides when a process writes one.

Format [V-RT]: `XmlTextWriter(file, Encoding.UTF8)` (so a UTF-8 BOM), `Formatting.Indented` (two
spaces, CRLF, `<X />` for an empty element, no newline after the last tag); elements as
`RoutingTableLogger.Write*` and `RoutingTopology.LogData` / `EdgeRoutingTopology.LogData` write them.
Values: `Guid` in the "D" form, `bool` as True/False, `TimeSpan` as `[d.]hh:mm:ss`, `WhenCreated` a
`DateTime?`'s ToString() in the service's culture ([INFERRED] en-US), ServerRoles the ServerRole
flags enum's ToString().
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from ..rules.routing_sites import DEFAULT_SITE_LINK_COST
from ..topology.model import ExchangeServer, Organization, SendConnector
from ..transport.queues import (
    ADMIN_GROUP,
    ROUTING_GROUP,
    connector_guid,
    exchange_config_dn,
)
from ..transport.tracking import stable_guid
from .protocol_text import byte_quantified_size

__all__ = [
    "PROCESS_ROLES",
    "ROUTING_SETTINGS",
    "RoutingProcess",
    "merge_routing_logs",
    "routing_config_xml",
    "routing_log_folder",
    "routing_log_name",
    "routing_processes",
    "routing_signature",
]

SCHEMA_VERSION = "15.00.0610.000"  # RoutingTableLogger.SchemaVersion [V-RT]
# ProcessTransportRole -> (file prefix, folder under TransportRoles\Logs) [V-RT GetProcessRolePrefix; LEARN-TL]
PROCESS_ROLES = {"Hub": ("H", "Hub"), "FrontEnd": ("F", "FrontEnd"), "MailboxSubmission": ("MS", "Mailbox"),
                 "MailboxDelivery": ("MD", "Mailbox"), "Edge": ("", "Edge")}
# The Windows service that hosts each process (engine.services names)
PROCESS_SERVICES = {"Hub": "MSExchangeTransport", "FrontEnd": "MSExchangeFrontEndTransport",
                    "MailboxSubmission": "MSExchangeSubmission", "MailboxDelivery": "MSExchangeDelivery",
                    "Edge": "MSExchangeTransport"}
# TransportAppConfig.RoutingConfig defaults, in WriteAppConfigSettings' order [V-RT]; with no
# OutboundFrontendServers configured the last element is OutboundProxyRoutingXVersionEnabled.
ROUTING_SETTINGS = (("ConfigReloadInterval", "12:00:00"), ("DeferredReloadTimeout", "00:00:05"),
                    ("MaxDeferredNotifications", "20"), ("MinConfigReloadInterval", "00:05:00"),
                    ("PFReplicaAgeThreshold", "2.00:00:00"), ("DestinationRoutingToRemoteSitesEnabled", "True"),
                    ("DagRoutingEnabled", "True"), ("RoutingToNonActiveServersEnabled", "False"),
                    ("SmtpDeliveryToMailboxEnabled", "True"), ("ProxyRoutingMaxTotalHubCount", "10"),
                    ("ProxyRoutingMaxRemoteSiteHubCount", "4"), ("OutboundProxyRoutingXVersionEnabled", "True"))
CONFIG_RELOAD_INTERVAL = timedelta(hours=12)
DEFERRED_RELOAD = timedelta(seconds=5)
MIN_CONFIG_RELOAD_INTERVAL = timedelta(minutes=5)
# ServerRole flags (Microsoft.Exchange.Data.Directory.SystemConfiguration.ServerRole) as Enum.ToString()
# prints them. A Mailbox server of 2013/2016 holds 16439 = Cafe|Mailbox|ClientAccess|UnifiedMessaging|
# HubTransport|FrontendTransport (msexchangeteam.in); 2019 has no Unified Messaging role, so 16423
# [INFERRED]. An Edge server: Edge (64).
SERVER_ROLES = {"Mailbox": "Cafe, Mailbox, ClientAccess, HubTransport, FrontendTransport", "Edge": "Edge"}
ROUTING_GROUP_NAME = "Exchange Routing Group (DWBGZMFD01QNBJR)"
AD_OBJECTS_AGE = timedelta(days=30)  # [INFERRED] the lab's AD objects were created 30 days before its start
_NL = "\r\n"


@dataclass(frozen=True)
class RoutingProcess:
    """One transport process that keeps routing tables: a server and its ProcessTransportRole."""

    server: str
    role: str  # a PROCESS_ROLES key

    @property
    def service(self) -> str:
        return PROCESS_SERVICES[self.role]


def routing_processes(org: Organization) -> list[RoutingProcess]:
    """Every process of the organisation that writes a routing table log, in the servers' order."""
    out: list[RoutingProcess] = []
    for s in org.servers:
        if s.role == "Edge":
            out.append(RoutingProcess(s.name, "Edge"))
            continue
        out.append(RoutingProcess(s.name, "Hub"))
        if s.frontend is not None:
            out.append(RoutingProcess(s.name, "FrontEnd"))
        out += [RoutingProcess(s.name, "MailboxSubmission"), RoutingProcess(s.name, "MailboxDelivery")]
    return out


def routing_log_folder(process: RoutingProcess) -> Path:
    """`<SERVER>/TransportRoles/Logs/<Hub|FrontEnd|Mailbox|Edge>/Routing` [LEARN-TL]."""
    return Path(process.server, "TransportRoles", "Logs", PROCESS_ROLES[process.role][1], "Routing")


def routing_log_name(role: str, number: int, loaded: datetime) -> str:
    """`{prefix}RoutingConfig#{n mod 256}@{load time}.xml`: the time is
    `DateTime.ToString(InvariantCulture)` (MM/dd/yyyy HH:mm:ss) with `:` and `/` made `_` [V-RT]."""
    when = loaded.strftime("%m/%d/%Y %H:%M:%S").replace(":", "_").replace("/", "_")
    return f"{PROCESS_ROLES[role][0]}RoutingConfig#{number % 256}@{when}.xml"


def _us_datetime(when: datetime) -> str:
    """`DateTime.ToString()` in en-US: `1/5/2026 6:00:00 AM`."""
    hour = when.hour % 12 or 12
    return f"{when.month}/{when.day}/{when.year} {hour}:{when.minute:02d}:{when.second:02d} " + (
        "AM" if when.hour < 12 else "PM")


class _Writer:
    """The few XmlTextWriter calls RoutingTableLogger makes, Formatting.Indented."""

    def __init__(self) -> None:
        self.lines = ['<?xml version="1.0" encoding="utf-8"?>']
        self.depth = 0

    def start(self, name: str) -> None:
        self.lines.append(f"{'  ' * self.depth}<{name}>")
        self.depth += 1

    def end(self, name: str) -> None:
        self.depth -= 1
        opened = f"{'  ' * self.depth}<{name}>"
        if self.lines[-1] == opened:  # no content: XmlTextWriter closes it as `<X />`
            self.lines[-1] = f"{'  ' * self.depth}<{name} />"
        else:
            self.lines.append(f"{'  ' * self.depth}</{name}>")

    def element(self, name: str, value: str) -> None:
        pad = "  " * self.depth
        self.lines.append(f"{pad}<{name}>{escape(value)}</{name}>" if value else f"{pad}<{name} />")

    def reference(self, name: str, ref_name: str, guid: str) -> None:
        self.start(name)
        self.element("Name", ref_name)
        self.element("ObjectGuid", guid)
        self.end(name)

    def text(self) -> str:
        return _NL.join(self.lines)


class _Directory:
    """The AD objects of the lab's organisation, named as Exchange names them."""

    def __init__(self, org: Organization, created: datetime) -> None:
        self.org = org
        forest = org.accepted_domains[0].domain_name if org.accepted_domains else ""
        self.config_dn = exchange_config_dn(org.name, forest)
        self.sites_dn = "CN=Sites," + self.config_dn.split(",CN=Services,", 1)[1]
        self.when = _us_datetime(created)

    def common(self, w: _Writer, name: str, guid: str, dn: str) -> None:
        """WriteCommonADObjectProperties: Name, ObjectGuid, DN, WhenCreated."""
        w.element("Name", name)
        w.element("ObjectGuid", guid)
        w.element("DN", dn)
        w.element("WhenCreated", self.when)

    def site_of(self, server: ExchangeServer) -> str:
        return server.site or self.org.ad_site

    def server(self, w: _Writer, s: ExchangeServer) -> None:
        """WriteTopologyServer / WriteServer."""
        w.start("Server")
        self.common(w, s.name, server_guid(s.name), f"CN={s.name},CN=Servers,{ADMIN_GROUP},{self.config_dn}")
        w.element("MajorVersion", str(int(s.version.split(".")[0])))
        w.element("FQDN", s.fqdn)
        w.element("LegacyDN", f"/o={self.org.name}/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)"
                              f"/cn=Configuration/cn=Servers/cn={s.name}")
        edge = s.role == "Edge"
        w.element("ServerRoles", SERVER_ROLES["Edge" if edge else "Mailbox"])
        site = self.site_of(s)
        w.reference("ADSiteId", site, stable_guid("adsite", site))
        dag = next((d for d in self.org.dags if any(m.lower() == s.name.lower() for m in d.members)), None)
        if dag is not None:
            w.reference("DagId", dag.name, stable_guid("dag", dag.name))
        if not edge:  # FrontendTransport and HubTransport flags: both components Active (no maintenance)
            w.element("FrontendComponentActive", "True")
            w.element("HubComponentActive", "True")
        w.end("Server")

    def send_connector(self, w: _Writer, sc: SendConnector) -> None:
        """WriteSendConnector (an SmtpSendConnectorConfig)."""
        w.start("SendConnector")
        self.common(w, sc.name, connector_guid(sc.name),
                    f"CN={sc.name},CN=Connections,{ROUTING_GROUP},{ADMIN_GROUP},{self.config_dn}")
        w.element("MaxMessageSize", byte_quantified_size(sc.max_message_size))
        w.reference("SourceRoutingGroupId", ROUTING_GROUP_NAME, stable_guid("routinggroup", ROUTING_GROUP_NAME))
        w.start("SourceServers")
        for name in sc.source_transport_servers:
            w.reference("SourceServerId", name, server_guid(name))
        w.end("SourceServers")
        if sc.source_transport_servers:  # HomeMTA: the first source server's MTA [INFERRED]
            w.reference("HomeMtaServerId", sc.source_transport_servers[0], server_guid(sc.source_transport_servers[0]))
        w.element("ConnectorType", "SmtpSendConnectorConfig")
        w.element("Enabled", str(sc.enabled))
        w.element("IsScopedConnector", "False")
        w.start("AddressSpaces")
        for space in sc.address_spaces:
            w.element("AddressSpace", str(space))
        w.end("AddressSpaces")
        dns = not sc.smart_hosts  # the lab routes by the smart hosts whenever there are any (rules.routing)
        w.element("DnsRoutingEnabled", str(dns))
        if not dns:
            w.element("SmartHosts", ",".join(f"[{h}]" if h[:1].isdigit() else h for h in sc.smart_hosts))
        w.end("SendConnector")


def server_guid(name: str) -> str:
    return stable_guid("server", name)


def _site_links(org: Organization) -> list[tuple[str, list[str], int, int | None]]:
    """(name, sites, ADCost, ExchangeCost): the declared links, else DEFAULTIPSITELINK (rules.routing_sites)."""
    if org.site_links:
        return [(link.name, list(link.sites), link.cost, link.exchange_cost) for link in org.site_links]
    return [("DEFAULTIPSITELINK", [org.ad_site, *(s.name for s in org.sites)], DEFAULT_SITE_LINK_COST, None)]


def _hub_topology(w: _Writer, d: _Directory, org: Organization, local: ExchangeServer) -> None:
    """RoutingTopology.LogData."""
    w.start("RoutingTopology")
    w.start("ExchangeServers")
    for s in org.servers:
        d.server(w, s)
    w.end("ExchangeServers")
    w.reference("LocalServerId", local.name, server_guid(local.name))
    w.start("TopologySites")
    for site in [org.ad_site, *(s.name for s in org.sites)]:
        w.start("ADSite")
        d.common(w, site, stable_guid("adsite", site), f"CN={site},{d.sites_dn}")
        w.element("HubSiteEnabled", "False")  # hub sites are not modelled (rules.routing_sites)
        w.element("InboundMailEnabled", "True")
        w.end("ADSite")
    w.end("TopologySites")
    w.start("TopologySiteLinks")
    for name, sites, cost, exchange_cost in _site_links(org):
        w.start("ADSiteLink")
        d.common(w, name, stable_guid("adsitelink", name), f"CN={name},CN=IP,CN=Inter-Site Transports,{d.sites_dn}")
        w.element("ADCost", str(cost))
        if exchange_cost is not None:
            w.element("ExchangeCost", str(exchange_cost))
        w.start("LinkedADSites")
        for site in sites:
            w.reference("ADSiteId", site, stable_guid("adsite", site))
        w.end("LinkedADSites")
        w.end("ADSiteLink")
    w.end("TopologySiteLinks")
    w.start("RoutingGroups")
    w.start("RoutingGroup")
    d.common(w, ROUTING_GROUP_NAME, stable_guid("routinggroup", ROUTING_GROUP_NAME), f"{ROUTING_GROUP},{ADMIN_GROUP},{d.config_dn}")
    w.end("RoutingGroup")
    w.end("RoutingGroups")
    w.start("RoutingGroupConnectors")
    w.end("RoutingGroupConnectors")
    w.start("SendConnectors")
    for sc in org.send_connectors:
        d.send_connector(w, sc)
    w.end("SendConnectors")
    w.start("Databases")
    for s in org.servers:
        for db in s.databases:
            w.start("Database")
            d.common(w, db, stable_guid("mdb", db), f"CN={db},CN=Databases,{ADMIN_GROUP},{d.config_dn}")
            w.reference("OwningServerId", s.name, server_guid(s.name))
            w.end("Database")
    w.end("Databases")
    w.start("PublicFolderTrees")  # the lab's organisation has no public folder tree [INFERRED]
    w.end("PublicFolderTrees")
    w.end("RoutingTopology")


def _edge_topology(w: _Writer, d: _Directory, org: Organization, edge: ExchangeServer) -> None:
    """EdgeRoutingTopology.LogData: the send connectors and the Hub servers EdgeSync copied to ADAM
    (the Mailbox servers of the subscribed site [INFERRED])."""
    w.start("EdgeRoutingTopology")
    w.start("SendConnectors")
    for sc in org.send_connectors:
        d.send_connector(w, sc)
    w.end("SendConnectors")
    w.start("SyncedServers")
    site = d.site_of(edge).lower()
    for s in org.servers:
        if s.role != "Edge" and d.site_of(s).lower() == site:
            d.server(w, s)
    w.end("SyncedServers")
    w.end("EdgeRoutingTopology")


def routing_config_xml(org: Organization, process: RoutingProcess, start: datetime) -> bytes:
    """The file's bytes for `process` (RoutingTableLogger.LogRoutingTables); `start` is the lab's
    start, from which the AD objects' WhenCreated is taken [INFERRED]."""
    w = _Writer()
    d = _Directory(org, start - AD_OBJECTS_AGE)
    w.start("RoutingConfiguration")
    w.element("SchemaVersion", SCHEMA_VERSION)
    w.element("ProcessRole", process.role)
    server = org.server(process.server)
    if process.role == "Edge":
        _edge_topology(w, d, org, server)
    else:
        _hub_topology(w, d, org, server)
    w.start("Settings")
    for name, value in ROUTING_SETTINGS:
        w.element(name, value)
    w.end("Settings")
    w.end("RoutingConfiguration")
    return b"\xef\xbb\xbf" + w.text().encode("utf-8")


# The parts of a server object that are not AD configuration (service state, the local store, NIC settings)
_NOT_AD = {"stopped_services", "certificates", "intermediate_store", "winhttp_proxy", "adam_database_missing",
           "adapter_dns_servers", "utc_offset_minutes"}


def routing_signature(org: Organization, process: RoutingProcess) -> str:
    """What the process is notified of (RoutingTopology / EdgeRoutingTopology.RegisterForADNotifications):
    send connectors, Exchange servers (with their transport settings and receive connectors), databases
    and DAGs, AD sites and site links; on an Edge the send connectors, the servers and the accepted
    domains (RoutingTablesLoader.HandleAcceptedDomainChange). A new value means a reload."""
    servers = [s.model_dump(mode="json", exclude=_NOT_AD) for s in org.servers]
    for s in servers:
        for key in ("transport", "frontend"):
            if isinstance(s.get(key), dict):
                s[key].pop("running", None)
    parts: list[object] = [[c.model_dump(mode="json") for c in org.send_connectors], servers]
    if process.role == "Edge":
        parts.append([a.model_dump(mode="json") for a in org.accepted_domains])
    else:
        parts += [org.ad_site, [s.model_dump(mode="json") for s in org.sites],
                  [s.model_dump(mode="json") for s in org.site_links], [g.model_dump(mode="json") for g in org.dags]]
    return repr(parts)


# --- a corpus: one server's files across hour shards ------------------------------------------------
ROUTING_FILE = re.compile(r"(H|F|MS|MD|)RoutingConfig#(\d+)@(\d\d)_(\d\d)_(\d{4}) (\d\d)_(\d\d)_(\d\d)\.xml")


def _file_time(m: re.Match[str]) -> datetime:
    month, day, year, hour, minute, second = (int(m.group(i)) for i in range(3, 9))
    return datetime(year, month, day, hour, minute, second)


def merge_routing_logs(shards: list[tuple[Path, datetime, datetime]], out: Path) -> None:
    """The routing table logs of a corpus cut into hour shards (each `(folder, start, end)`, UTC naive):
    one process runs through all of them, so a later shard's load at its own start is not a start
    of the process and is left out; the files are numbered on as one process numbers them (a `#1`
    inside a shard is a restart, and numbering starts again); the 12-hour reloads that fall between
    two loads, and after the last up to the corpus's end, are written with the last content (a shard
    lasts less than 12 hours, so none of them writes its own)."""
    per_process: dict[tuple[str, str], list[tuple[datetime, int, int, Path]]] = {}
    for k, (shard, start, _end) in enumerate(shards):
        for path in sorted(shard.glob("*/TransportRoles/Logs/*/Routing/*.xml")):
            m = ROUTING_FILE.fullmatch(path.name)
            if m is None:
                continue
            when, number = _file_time(m), int(m.group(2))
            if k > 0 and number == 1 and when == start.replace(microsecond=0):
                continue  # the shard's lab start: the corpus's process was already running
            key = (path.parent.relative_to(shard).as_posix(), m.group(1))
            per_process.setdefault(key, []).append((when, k, number, path))
    end = shards[-1][2] if shards else datetime.min
    for (folder, prefix), files in sorted(per_process.items()):
        role = next(r for r, (p, _f) in PROCESS_ROLES.items() if p == prefix)
        _merge_process(sorted(files), out / folder, role, end)


def _merge_process(files: list[tuple[datetime, int, int, Path]], target: Path, role: str, end: datetime) -> None:
    target.mkdir(parents=True, exist_ok=True)
    counter, last, content = 0, None, b""
    for when, _k, number, path in files:
        while last is not None and last + CONFIG_RELOAD_INTERVAL < when:
            last, counter = last + CONFIG_RELOAD_INTERVAL, counter + 1
            (target / routing_log_name(role, counter, last)).write_bytes(content)
        if number == 1 and last is not None:
            counter = 0  # a restarted service: a new process
        content = path.read_bytes()
        last, counter = when, counter + 1
        (target / routing_log_name(role, counter, when)).write_bytes(content)
    while last is not None and last + CONFIG_RELOAD_INTERVAL <= end:
        last, counter = last + CONFIG_RELOAD_INTERVAL, counter + 1
        (target / routing_log_name(role, counter, last)).write_bytes(content)
