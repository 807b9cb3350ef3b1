"""Issue 12: an organisation declared in the scenario file ([organization]).

A declared world loads and runs with its own names only; impossible worlds fail on load with one
error naming the key (never a traceback); each CA's CDP is its own host with its own state.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labsim.errors import ScenarioError
from labsim.scenario.loader import builtin_dir, load_scenario, load_scenario_data
from labsim.topology.cmdlets_pki import set_lab_crl_server

CATALOG = builtin_dir()
TAILSPIN = "org-tailspin-baseline"
# Every name and address of seed 001's organisation (topology/defaults.py).
SEED_001 = ["CMHYBD01", "CMEDGE01", "DC01", "cloudmonkeys", "cloudfield", "27.7.57.", "192.168.1.",
            "raghu", "priya", "ramki", "fabrikam", "8f2c6a9e", "Default-First-Site-Name"]


def _tailspin() -> dict:
    assert CATALOG is not None
    return tomllib.loads((CATALOG / f"{TAILSPIN}.toml").read_text(encoding="utf-8"))


def _problem(data: dict) -> str:
    with pytest.raises(ScenarioError) as exc:
        load_scenario_data(data, "t.toml")
    return str(exc.value)


def test_declared_org_replaces_the_default() -> None:
    lab = load_scenario(TAILSPIN).lab
    assert [s.name for s in lab.organization.servers] == ["TSEX01", "TSEDGE01"]
    assert lab.organization.ad_site == "HQ"
    assert lab.tenant.initial_domain == "tailspintoys.onmicrosoft.com"
    # setup's five connectors on the Mailbox server, one on the Edge; the Edge subscription's two
    tsex = lab.organization.server("TSEX01")
    assert [rc.name for rc in tsex.receive_connectors][0] == "Default Frontend TSEX01"
    assert len(tsex.receive_connectors) == 5
    names = {sc.name for sc in lab.organization.send_connectors}
    assert {"EdgeSync - HQ to Internet", "EdgeSync - Inbound to HQ"} <= names


def _bad_binding(d: dict) -> None:
    d["organization"]["Servers"][0]["ReceiveConnectors"] = [{"Name": "Relay", "Bindings": ["10.99.0.1:25"]}]


def _dup_ip(d: dict) -> None:
    d["organization"]["Servers"][1]["Ip"] = "10.20.0.21"


def _dup_name(d: dict) -> None:
    d["organization"]["InternetHosts"][0]["Name"] = "tsex01"


def _missing_cert(d: dict) -> None:
    d["organization"]["Servers"][0]["Certificates"][0]["Certificate"] = "no-such-cert"


def _dag_outside_site(d: dict) -> None:
    d["organization"]["Dags"] = [{"Name": "DAG1", "Members": ["TSEX01"]}]
    d["organization"]["Servers"][0]["Site"] = "Branch"


def _dag_edge(d: dict) -> None:
    d["organization"]["Dags"] = [{"Name": "DAG1", "Members": ["TSEDGE01"]}]


def _cdp_unknown(d: dict) -> None:
    d["organization"]["CertificateAuthorities"][0]["Cdp"] = "crl.nowhere.example"


def _no_tenant(d: dict) -> None:
    del d["organization"]["Tenant"]


@pytest.mark.parametrize(("mutate", "says"), [
    (_bad_binding, "bound to 10.99.0.1, an address TSEX01 does not have"),
    (_dup_ip, "address 10.20.0.21 is already used by server 'TSEX01'"),
    (_dup_name, "the name is already used by server 'TSEX01'"),
    (_missing_cert, "certificate 'no-such-cert' is not defined"),
    (_dag_outside_site, "site 'Branch' is not a site of the organisation"),
    (_dag_edge, "member TSEDGE01 is an Edge server"),
    (_cdp_unknown, "CDP 'crl.nowhere.example' is not a CDP host"),
    (_no_tenant, "organization.Tenant: required key is missing"),
])
def test_impossible_worlds_fail_with_one_clear_error(mutate, says: str) -> None:
    data = _tailspin()
    mutate(data)
    problem = _problem(data)
    assert says in problem
    assert "\n" not in problem and "Traceback" not in problem


def test_a_dag_member_in_a_declared_site_loads() -> None:
    data = _tailspin()
    data["organization"]["Sites"] = [{"Name": "Branch", "Subnets": ["10.30.0.0/16"]}]
    data["organization"]["Servers"][0]["Site"] = "Branch"
    data["organization"]["Dags"] = [{"Name": "DAG1", "Members": ["TSEX01"]}]
    lab = load_scenario_data(data, "t.toml").lab
    assert lab.server_site(lab.organization.server("TSEX01")) == "Branch"


_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=12),
                    st.lists(st.text(max_size=6), max_size=2), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _paths(value, here=()):  # every (container, key) of the organisation table
    if isinstance(value, dict):
        for k, v in value.items():
            yield value, k
            yield from _paths(v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield value, i
            yield from _paths(v)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_broken_organisation_is_one_error_never_a_traceback(data) -> None:
    doc = _tailspin()
    org = copy.deepcopy(doc["organization"])
    spots = list(_paths(org))
    for _ in range(data.draw(st.integers(1, 3))):
        container, key = spots[data.draw(st.integers(0, len(spots) - 1))]
        try:
            if data.draw(st.booleans()):
                container[key] = data.draw(_values)
            elif isinstance(container, dict):
                del container[key]
            else:
                container[key] = data.draw(_values)
        except (KeyError, IndexError):
            pass
    doc["organization"] = org
    try:
        load_scenario_data(doc, "t.toml")
    except ScenarioError as exc:
        assert "\n" not in str(exc)


def test_org_tree_shows_none_of_seed_001s_names(tmp_path: Path) -> None:
    """The whole output tree (logs, headers, events, traces, summaries) of a declared organisation."""
    from labsim.api import run

    run(TAILSPIN, out=tmp_path / "out")
    found = []
    for p in (tmp_path / "out").rglob("*"):
        if p.is_file():
            raw = p.read_bytes().lower()
            for name in SEED_001:
                for enc in ("utf-8", "utf-16-le"):
                    if name.lower().encode(enc) in raw:
                        hit = raw.replace(b"tsdc01", b"")
                        if name.lower().encode(enc) in hit:
                            found.append((p.name, name))
    assert found == []
    assert any((tmp_path / "out" / "TSEX01").rglob("*.LOG"))


def test_crl_server_per_cdp_host() -> None:
    lab = load_scenario("org-two-cas-cdp-offline").lab
    from labsim.pki.authority import crl_url_for

    assert crl_url_for(lab, "cloud-issuing") == "http://crl.labsim-cloudtrust.net/cloud-issuing.crl"
    assert crl_url_for(lab, "public-issuing") == "http://crl.labsim-pki.net/public-issuing.crl"
    assert set_lab_crl_server(lab, {"Name": "crl.labsim-cloudtrust.net", "Mode": "stale"}).endswith("stale")
    assert lab.network.cdp_hosts[0].mode == "stale" and lab.network.crl_mode == "up"
    with pytest.raises(Exception, match="not a CDP host"):
        set_lab_crl_server(lab, {"Name": "crl.elsewhere.example", "Mode": "down"})


@pytest.mark.parametrize("sid", ["org-two-cas-cdp-offline", "org-dag-lb-expired-member-cert",
                                 "org-two-sites-branch-edge-down", TAILSPIN])
def test_org_scenarios_hold_and_repeat(sid: str, tmp_path: Path) -> None:
    from labsim.api import run

    a = run(sid, out=tmp_path / "a")
    b = run(sid, out=tmp_path / "b")
    assert a.ok, a
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    del b


def _two_site_org():
    lab = load_scenario("org-two-sites-branch-edge-down").lab
    return lab.organization


def test_remote_dag_is_its_own_delivery_group() -> None:
    from labsim.rules.routing import route_recipient

    org = _two_site_org()
    hq, br = org.server("TSEX01"), org.server("TSBR01")
    r = route_recipient(org, hq, "ana.lima@tailspintoys.com", size=1000)
    assert (r.delivery_type, r.next_hop_domain, r.target_servers) == ("SmtpRelayToDag", "TSDAG2", ("TSBR01",))
    # in its own DAG the database's server is delivered to directly
    r = route_recipient(org, br, "ana.lima@tailspintoys.com", size=1000)
    assert (r.delivery_type, r.next_hop_domain) == ("SmtpDeliveryToMailbox", "br-db1")


def test_connector_choice_prefers_the_local_sites_edge() -> None:
    from labsim.rules.routing import route_recipient

    org = _two_site_org()
    hq = route_recipient(org, org.server("TSEX01"), "lena@woodgrovebank.com", size=1000)
    br = route_recipient(org, org.server("TSBR01"), "lena@woodgrovebank.com", size=1000)
    assert (hq.delivery_type, hq.next_hop_domain) == ("SmtpRelayWithinAdSiteToEdge", "EdgeSync - HQ to Internet")
    assert (br.delivery_type, br.next_hop_domain) == ("SmtpRelayWithinAdSiteToEdge", "EdgeSync - Branch to Internet")


def test_an_edge_of_a_remote_site_is_reached_through_that_site() -> None:
    from labsim.rules.routing import route_recipient

    org = _two_site_org()
    org.send_connectors = [sc for sc in org.send_connectors if "Branch" not in sc.name]  # Branch has no Edge
    r = route_recipient(org, org.server("TSBR01"), "lena@woodgrovebank.com", size=1000)
    assert (r.delivery_type, r.next_hop_domain, r.target_servers) == (
        "SmtpRelayToRemoteActiveDirectorySite", "HQ", ("TSEX01",))


def test_edge_inbound_goes_to_its_own_sites_mailbox_servers() -> None:
    from labsim.rules.routing import route_recipient

    org = _two_site_org()
    r = route_recipient(org, org.server("TSEDGE02"), "ana.lima@tailspintoys.com", size=1000)
    assert r.next_hop_domain == "EdgeSync - Inbound to Branch" and r.target_servers == ("TSBR01",)


def _default_with(changes: list[dict]) -> dict:
    return {"id": "org-verbs", "title": "t", "training": {"symptom": "s", "evidence": "e", "root_cause": "r",
                                                             "fix": "f"}, "change": changes}


_BUILD = [
    {"cmdlet": "New-LabSite", "Name": "Branch", "Subnets": ["10.30.0.0/16"]},
    {"cmdlet": "New-LabServer", "Name": "EXBR01", "Fqdn": "exbr01.cloudmonkeys.xyz", "Ip": "10.30.0.21",
     "Site": "Branch", "Databases": ["BR-DB1"]},
    {"cmdlet": "New-LabServer", "Name": "EDGEBR01", "Role": "Edge", "Fqdn": "edgebr01.cloudmonkeys.xyz",
     "Ip": "10.30.9.31", "Site": "Branch"},
    {"cmdlet": "New-DatabaseAvailabilityGroup", "Name": "DAGBR"},
    {"cmdlet": "Add-DatabaseAvailabilityGroupServer", "Identity": "DAGBR", "MailboxServer": "EXBR01"},
]


def test_lab_verbs_build_sites_servers_dags_and_subscriptions() -> None:
    lab = load_scenario_data(_default_with(_BUILD), "t.toml").lab
    org = lab.organization
    assert [s.name for s in org.sites] == ["Branch"]
    ex = org.server("EXBR01")
    assert ex.site == "Branch" and [rc.name for rc in ex.receive_connectors][0] == "Default Frontend EXBR01"
    assert org.server("EDGEBR01").receive_connectors[0].name == "Default internal receive connector EDGEBR01"
    inbound = next(sc for sc in org.send_connectors if sc.name == "EdgeSync - Inbound to Branch")
    assert inbound.source_transport_servers == ["EDGEBR01"]
    assert org.dags[0].members == ["EXBR01"]


@pytest.mark.parametrize(("change", "says"), [
    ({"cmdlet": "New-LabServer", "Name": "CMHYBD01", "Fqdn": "x.y", "Ip": "10.1.1.1"}, "a server named 'CMHYBD01' exists"),
    ({"cmdlet": "New-LabServer", "Name": "EX9", "Fqdn": "x.y", "Ip": "192.168.1.13"}, "already used by server 'CMHYBD01'"),
    ({"cmdlet": "New-LabServer", "Name": "EX9", "Fqdn": "x.y", "Ip": "10.1.1.1", "Site": "Nowhere"}, "is not a site"),
    ({"cmdlet": "Add-DatabaseAvailabilityGroupServer", "Identity": "DAGBR", "MailboxServer": "CMEDGE01"},
     "member CMEDGE01 is an Edge server"),
    ({"cmdlet": "New-LabServer", "Name": "EX9", "Fqdn": "x.y", "Ip": "10.1.1.1", "Role": "Hub"}, "is not Mailbox or Edge"),
])
def test_lab_verbs_refuse_impossible_worlds(change: dict, says: str) -> None:
    assert says in _problem(_default_with([*_BUILD, change]))


def test_shape_verbs_apply_before_the_lab_starts_only() -> None:
    from labsim.errors import TopologyError
    from labsim.topology.changes import apply_change

    assert "remove `at`" in _problem(_default_with([{**_BUILD[0], "at": "+00:01:00"}]))
    lab = load_scenario("hybrid-baseline").lab.model_copy(deep=True)
    lab.mark_started()
    with pytest.raises(TopologyError, match="the lab is running"):
        apply_change(lab, "New-LabSite", {"Name": "Branch"})
    assert lab.organization.sites == []


def test_web_topology_shows_each_sites_edge_and_each_cdp() -> None:
    from labsim.web.topology import build

    pic = build(load_scenario("org-two-sites-branch-edge-down").lab)
    assert sorted((a, b) for a, b, label in pic.lines if label.startswith("EdgeSync")) == [
        ("TSEDGE01", "TSEX01"), ("TSEDGE02", "TSBR01")]
    assert "crl.labsim-cloudtrust.net" in build(load_scenario("org-two-cas-cdp-offline").lab).nodes


async def test_a_stale_cdp_serves_an_expired_crl_and_only_its_own_cas() -> None:
    from cryptography import x509

    from labsim.pki.authority import LabPki
    from labsim.pki.crl_server import CrlServer, http_get
    from labsim.pki.errors import CrlUnavailable

    lab = load_scenario("org-two-cas-cdp-offline").lab
    pki = LabPki(lab, 12)
    now = lab.start
    server = CrlServer(pki, lambda: now, mode="stale", host="crl.labsim-cloudtrust.net")
    port = await server.start("127.0.0.1", 0)
    try:
        crl = x509.load_der_x509_crl(await http_get("127.0.0.1", port, server.host or "", "/cloud-issuing.crl", 5.0))
        assert crl.next_update_utc is not None and crl.next_update_utc < now
        with pytest.raises(CrlUnavailable, match="HTTP 404"):  # the public CA publishes elsewhere
            await http_get("127.0.0.1", port, server.host or "", "/public-issuing.crl", 5.0)
        await server.set_mode("up")
        crl = x509.load_der_x509_crl(await http_get("127.0.0.1", port, server.host or "", "/cloud-issuing.crl", 5.0))
        assert crl.next_update_utc is not None and crl.next_update_utc > now
    finally:
        await server.stop()
