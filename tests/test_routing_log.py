"""Routing table log (logs.routing_log, engine.routing_tables; docs/transport-logs.md §5)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import run_text

from labsim.logs.routing_log import (
    RoutingProcess,
    routing_config_xml,
    routing_log_folder,
    routing_log_name,
    routing_processes,
)
from labsim.topology.defaults import default_lab

START = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)

# RoutingTableLogger / RoutingTopology.LogData / EdgeRoutingTopology.LogData, in the order they write [V-RT]
HUB_TOPOLOGY = ["ExchangeServers", "LocalServerId", "TopologySites", "TopologySiteLinks", "RoutingGroups",
                "RoutingGroupConnectors", "SendConnectors", "Databases", "PublicFolderTrees"]
SERVER = ["Name", "ObjectGuid", "DN", "WhenCreated", "MajorVersion", "FQDN", "LegacyDN", "ServerRoles", "ADSiteId"]
SEND_CONNECTOR = ["Name", "ObjectGuid", "DN", "WhenCreated", "MaxMessageSize", "SourceRoutingGroupId",
                  "SourceServers", "HomeMtaServerId", "ConnectorType", "Enabled", "IsScopedConnector",
                  "AddressSpaces", "DnsRoutingEnabled"]
SETTINGS = ["ConfigReloadInterval", "DeferredReloadTimeout", "MaxDeferredNotifications", "MinConfigReloadInterval",
            "PFReplicaAgeThreshold", "DestinationRoutingToRemoteSitesEnabled", "DagRoutingEnabled",
            "RoutingToNonActiveServersEnabled", "SmtpDeliveryToMailboxEnabled", "ProxyRoutingMaxTotalHubCount",
            "ProxyRoutingMaxRemoteSiteHubCount", "OutboundProxyRoutingXVersionEnabled"]


def _tags(e: ET.Element) -> list[str]:
    return [c.tag for c in e]


def test_file_names_folders_and_processes_are_exchanges():
    lab = default_lab(START)
    procs = routing_processes(lab.organization)
    assert [(p.server, p.role) for p in procs] == [
        ("CMHYBD01", "Hub"), ("CMHYBD01", "FrontEnd"), ("CMHYBD01", "MailboxSubmission"),
        ("CMHYBD01", "MailboxDelivery"), ("CMEDGE01", "Edge")]
    assert routing_log_name("Hub", 1, START) == "HRoutingConfig#1@05_01_2026 06_00_00.xml"
    assert routing_log_name("Edge", 257, START + timedelta(hours=12)) == "RoutingConfig#1@05_01_2026 18_00_00.xml"
    assert routing_log_name("MailboxDelivery", 3, START) == "MDRoutingConfig#3@05_01_2026 06_00_00.xml"
    assert routing_log_folder(RoutingProcess("CMHYBD01", "MailboxSubmission")).as_posix() == \
        "CMHYBD01/TransportRoles/Logs/Mailbox/Routing"
    assert routing_log_folder(RoutingProcess("CMEDGE01", "Edge")).as_posix() == "CMEDGE01/TransportRoles/Logs/Edge/Routing"


def test_the_hub_file_is_xmltextwriter_indented_utf8_with_the_logged_elements():
    lab = default_lab(START)
    data = routing_config_xml(lab.organization, RoutingProcess("CMHYBD01", "Hub"), START)
    assert data.startswith(b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\r\n<RoutingConfiguration>\r\n  <Schema')
    assert not data.endswith(b"\n") and b"\n" not in data.replace(b"\r\n", b"")
    assert b"    <RoutingGroupConnectors />\r\n" in data
    root = ET.fromstring(data.decode("utf-8-sig"))
    assert _tags(root) == ["SchemaVersion", "ProcessRole", "RoutingTopology", "Settings"]
    assert root.findtext("SchemaVersion") == "15.00.0610.000" and root.findtext("ProcessRole") == "Hub"
    topo = root.find("RoutingTopology")
    assert topo is not None and _tags(topo) == HUB_TOPOLOGY
    hub, edge = topo.findall("ExchangeServers/Server")
    assert _tags(hub) == SERVER + ["FrontendComponentActive", "HubComponentActive"] and _tags(edge) == SERVER
    assert hub.findtext("ServerRoles") == "Cafe, Mailbox, ClientAccess, HubTransport, FrontendTransport"
    assert edge.findtext("ServerRoles") == "Edge"
    assert hub.findtext("WhenCreated") == "4/1/2026 6:00:00 AM"  # DateTime.ToString(), en-US
    assert topo.findtext("LocalServerId/Name") == "CMHYBD01"
    connectors = {c.findtext("Name"): c for c in topo.findall("SendConnectors/SendConnector")}
    assert set(connectors) == {sc.name for sc in lab.organization.send_connectors}
    o365 = connectors["Outbound to Office 365"]
    assert _tags(o365) == SEND_CONNECTOR
    assert o365.findtext("MaxMessageSize") == "35 MB (36,700,160 bytes)"
    assert [a.text for a in o365.findall("AddressSpaces/AddressSpace")] == ["SMTP:cloudfield.mail.onmicrosoft.com;1"]
    inbound = connectors["EdgeSync - Inbound to Default-First-Site-Name"]
    assert inbound.findtext("DnsRoutingEnabled") == "False" and inbound.findtext("SmartHosts") == "--"
    assert [d.findtext("OwningServerId/Name") for d in topo.findall("Databases/Database")] == ["CMHYBD01"]
    settings = root.find("Settings")
    assert settings is not None and _tags(settings) == SETTINGS
    assert settings.findtext("ConfigReloadInterval") == "12:00:00"


def test_the_edge_file_has_the_send_connectors_and_the_synced_hub_servers():
    lab = default_lab(START)
    root = ET.fromstring(routing_config_xml(lab.organization, RoutingProcess("CMEDGE01", "Edge"), START)
                         .decode("utf-8-sig"))
    assert root.findtext("ProcessRole") == "Edge"
    topo = root.find("EdgeRoutingTopology")
    assert topo is not None and _tags(topo) == ["SendConnectors", "SyncedServers"]
    assert [s.findtext("Name") for s in topo.findall("SyncedServers/Server")] == ["CMHYBD01"]


# --------------------------------------------------------------------------- in a run

CHANGE = """
[[change]]
at = "+00:10:00"
cmdlet = "Set-SendConnector"
Identity = "Outbound to Office 365"
MaxMessageSize = "20MB"

[[change]]
at = "+00:12:00"
cmdlet = "Restart-Service"
Name = "MSExchangeTransport"
Server = "CMEDGE01"

[[message]]
id = "late"
at = "+13:00:00"
from = "raghu@cloudmonkeys.xyz"
to = ["alex@cloudfield.onmicrosoft.com"]
"""


def _files(out: Path, server: str, folder: str) -> list[str]:
    return sorted(p.name for p in (out / server / "TransportRoles" / "Logs" / folder / "Routing").iterdir())


def _size(path: Path) -> str:
    root = ET.fromstring(path.read_bytes().decode("utf-8-sig"))
    topo = root[2]
    return next(c.findtext("MaxMessageSize") or "" for c in topo.iter("SendConnector")
                if c.findtext("Name") == "Outbound to Office 365")


def test_every_process_logs_at_start_after_a_change_after_a_restart_and_every_12_hours(write_scenario, tmp_path):
    r = run_text(write_scenario, tmp_path, CHANGE, "routing")
    hub = _files(r.out, "CMHYBD01", "Hub")
    # start; the change at +10 min reloads 5 s later (DeferredReloadTimeout); 12 h after that, again
    assert hub == ["HRoutingConfig#1@05_01_2026 06_00_00.xml", "HRoutingConfig#2@05_01_2026 06_10_05.xml",
                   "HRoutingConfig#3@05_01_2026 18_10_05.xml"]
    folder = r.out / "CMHYBD01" / "TransportRoles" / "Logs" / "Hub" / "Routing"
    assert [_size(folder / f) for f in hub] == ["35 MB (36,700,160 bytes)", "20 MB (20,971,520 bytes)",
                                                "20 MB (20,971,520 bytes)"]
    assert _files(r.out, "CMHYBD01", "FrontEnd")[:2] == ["FRoutingConfig#1@05_01_2026 06_00_00.xml",
                                                         "FRoutingConfig#2@05_01_2026 06_10_05.xml"]
    mailbox = _files(r.out, "CMHYBD01", "Mailbox")
    assert "MDRoutingConfig#2@05_01_2026 06_10_05.xml" in mailbox and "MSRoutingConfig#1@05_01_2026 06_00_00.xml" in mailbox
    # the Edge: its change reload, then Restart-Service at +12 min: a new process starts again at #1
    assert _files(r.out, "CMEDGE01", "Edge")[:3] == ["RoutingConfig#1@05_01_2026 06_00_00.xml",
                                                     "RoutingConfig#1@05_01_2026 06_12_00.xml",
                                                     "RoutingConfig#2@05_01_2026 06_10_05.xml"]


# --------------------------------------------------------------------------- a corpus of hour shards

def test_a_corpus_merge_keeps_one_process_across_its_hour_shards(tmp_path):
    from labsim.logs.routing_log import merge_routing_logs

    t0 = datetime(2026, 5, 1, 6, 0)
    folder = "CMHYBD01/TransportRoles/Logs/Hub/Routing"

    def shard(k: int, *files: tuple[int, datetime, bytes]) -> tuple[Path, datetime, datetime]:
        d = tmp_path / f"shard{k}"
        (d / folder).mkdir(parents=True)
        for number, when, data in files:
            (d / folder / routing_log_name("Hub", number, when)).write_bytes(data)
        return d, t0 + timedelta(hours=k), t0 + timedelta(hours=k, minutes=59)

    shards = [shard(0, (1, t0, b"a")),
              shard(1, (1, t0 + timedelta(hours=1), b"a"), (2, t0 + timedelta(hours=1, minutes=20), b"b")),
              shard(2, (1, t0 + timedelta(hours=2), b"b"), (1, t0 + timedelta(hours=2, minutes=30), b"c"))]
    shards.append((tmp_path / "shard13", t0 + timedelta(hours=14), t0 + timedelta(hours=14, minutes=59)))
    (tmp_path / "shard13").mkdir()
    out = tmp_path / "out"
    merge_routing_logs(shards, out)
    got = {p.name: p.read_bytes() for p in (out / folder).iterdir()}
    assert got == {  # the shards' own starts are no loads; a restart numbers from 1; 12 h reloads in between
        "HRoutingConfig#1@05_01_2026 06_00_00.xml": b"a",
        "HRoutingConfig#2@05_01_2026 07_20_00.xml": b"b",
        "HRoutingConfig#1@05_01_2026 08_30_00.xml": b"c",
        "HRoutingConfig#2@05_01_2026 20_30_00.xml": b"c",
    }


def test_an_edge_logs_its_ad_lds_copy_not_ad(tmp_path):
    """svc-edgesync-stale: ADAM stops at +10 s, a new accepted domain at +1 min does not reach the
    Edge (no reload); Remove-EdgeSubscription at +10 min empties its copy; the new subscription and
    Start-EdgeSynchronization (+12..+13 min) fill it again, one reload 5 min after the last one."""
    from conftest import run_cli

    out = tmp_path / "o"
    rc, stdout, stderr = run_cli(["run", "svc-edgesync-stale", "--out", str(out)])
    assert rc == 0, stdout + stderr
    names = _files(out, "CMEDGE01", "Edge")
    assert names == ["RoutingConfig#1@05_01_2026 06_00_00.xml", "RoutingConfig#2@05_01_2026 06_10_05.xml",
                     "RoutingConfig#3@05_01_2026 06_15_05.xml"]
    folder = out / "CMEDGE01" / "TransportRoles" / "Logs" / "Edge" / "Routing"
    counts = [len(list(ET.fromstring((folder / n).read_bytes().decode("utf-8-sig")).iter("SendConnector")))
              for n in names]
    assert counts == [3, 0, 3]
