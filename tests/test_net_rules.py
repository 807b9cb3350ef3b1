"""Link rules, load balancers and reputation as pure decisions (no sockets)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim.errors import TopologyError
from labsim.rules.network import (
    NetView,
    backend_order,
    lab_hosts,
    link_effect,
    spec_matches,
    validate_host_spec,
)
from labsim.rules.reputation import (
    connection_filter_reply,
    eop_block_reply,
    provider_matches,
    query_name,
)
from labsim.topology.changes import apply_change
from labsim.topology.model import IPBlockListProvider, LinkRule, LoadBalancer


def view(lab) -> NetView:
    return NetView(lab, lab_hosts(lab))


def rule(**kw) -> dict:
    return {"Name": kw.pop("Name", "r"), **kw}


# --- matching -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, hit", [
    ("*", True), ("CMHYBD01", True), ("cmhybd01", True), ("192.168.1.13", True), ("192.168.1.0/24", True),
    ("192.168.1.10-192.168.1.20", True), ("192.168.1.14", False), ("10.0.0.0/8", False), ("CMEDGE01", False),
])
def test_spec_matches_names_addresses_blocks_and_ranges(spec, hit):
    assert spec_matches(spec, ["CMHYBD01"], ["192.168.1.13"]) is hit


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=32))
def test_a_cidr_spec_matches_exactly_the_addresses_in_the_block(addr, prefix):
    net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    assert spec_matches(str(net), [], [str(addr)])
    outside = int(net.broadcast_address) + 1
    if outside < 2 ** 32:
        assert not spec_matches(str(net), [], [str(ipaddress.IPv4Address(outside))])


def test_host_spec_validation_names_the_problem(lab):
    hosts = lab_hosts(lab)
    assert validate_host_spec("EXO-OUT", hosts) is None and validate_host_spec("40.92.0.0/15", hosts) is None
    problem = validate_host_spec("NOSUCHHOST", hosts)
    assert "NOSUCHHOST" in problem and "CMHYBD01" in problem
    assert "backwards" in validate_host_spec("10.0.0.9-10.0.0.1", hosts)


def test_first_blocking_rule_wins_and_shaping_rules_add_up():
    rules = [LinkRule(name="lat1", action="Latency", latency_ms=100),
             LinkRule(name="lat2", action="Latency", latency_ms=50, destination="EXO"),
             LinkRule(name="cap", action="Bandwidth", bandwidth_kbps=800),
             LinkRule(name="cap2", action="Bandwidth", bandwidth_kbps=80),
             LinkRule(name="drop25", action="Drop", ports=[25]),
             LinkRule(name="refuse", action="Refuse")]
    e = link_effect(rules, src_names=["CMHYBD01"], src_ips=["192.168.1.13"], dst_names=["EXO"],
                    dst_ips=["52.101.194.15"], port=587, protocol="TCP")
    assert e.failure == "refused" and e.rule == "refuse"
    assert e.rules == ("lat1", "lat2", "cap", "cap2", "refuse")
    e = link_effect(rules, src_names=["CMHYBD01"], src_ips=[], dst_names=["EXO"], dst_ips=[], port=25, protocol="TCP")
    assert (e.failure, e.rule) == ("timeout", "drop25")
    e = link_effect(rules[:4], src_names=["X"], src_ips=[], dst_names=["FABRIKAM-MX"], dst_ips=[], port=25,
                    protocol="TCP")
    assert e.failure is None and e.extra_latency == pytest.approx(0.1) and e.bandwidth == pytest.approx(10000.0)


def test_rules_filter_on_protocol_and_enabled():
    rules = [LinkRule(name="dns", action="Drop", protocol="UDP", ports=[53]),
             LinkRule(name="off", action="Refuse", enabled=False)]
    args = dict(src_names=["A"], src_ips=[], dst_names=["B"], dst_ips=[], port=53)
    assert link_effect(rules, protocol="UDP", **args).failure == "timeout"
    assert link_effect(rules, protocol="TCP", **args).failure is None


@pytest.mark.parametrize("action, params", [("Latency", {}), ("Bandwidth", {}), ("SlowClose", {})])
def test_shaping_actions_need_their_amount(action, params):
    with pytest.raises(ValueError, match="needs"):
        LinkRule(name="x", action=action, **params)


# --- plans ----------------------------------------------------------------------------------------------
def test_a_drop_rule_makes_the_plan_time_out_and_names_the_rule(lab):
    apply_change(lab, "New-LabNetworkRule", rule(Name="no 25", Source="CMHYBD01", Destination="EXO", Ports=[25],
                                                 Action="Drop"))
    net = view(lab)
    p = net.plan(net.host("CMHYBD01"), "52.101.194.15", 25)
    assert (p.failure, p.rule) == ("timeout", "no 25")
    assert net.plan(net.host("CMHYBD01"), "52.101.194.15", 587).failure is None
    assert net.plan(net.host("CMEDGE01"), "52.101.194.15", 25).failure is None  # another source


def test_source_matches_the_natted_address_too(lab):
    apply_change(lab, "New-LabNetworkRule", rule(Source="27.7.57.241", Destination="FABRIKAM-MX", Action="Refuse"))
    net = view(lab)
    assert net.plan(net.host("CMHYBD01"), "203.0.113.25", 25).failure == "refused"  # seen as 27.7.57.241
    assert net.plan(net.host("EXO-OUT"), "203.0.113.25", 25).failure is None


def test_destination_matches_the_host_behind_port_forwarding(lab):
    apply_change(lab, "New-LabNetworkRule", rule(Source="EXO-OUT", Destination="CMHYBD01", Action="Refuse"))
    net = view(lab)
    assert net.plan(net.host("EXO-OUT"), "27.7.57.241", 25).failure == "refused"
    assert net.plan(net.host("EXO-OUT"), "27.7.57.242", 25).failure is None  # forwarded to the Edge


def test_latency_bandwidth_reset_and_slow_close_reach_the_plan(lab):
    for r in (rule(Name="a", Action="Latency", LatencyMs=120, Destination="FABRIKAM-MX"),
              rule(Name="b", Action="Bandwidth", BandwidthKbps=64, Destination="FABRIKAM-MX"),
              rule(Name="c", Action="Reset", ResetAfterBytes=4096, Destination="FABRIKAM-MX"),
              rule(Name="d", Action="SlowClose", SlowCloseMs=1500, Destination="FABRIKAM-MX")):
        apply_change(lab, "New-LabNetworkRule", r)
    net = view(lab)
    p = net.plan(net.host("CMEDGE01"), "203.0.113.25", 25)
    assert p.latency == pytest.approx(0.018 + 0.12)
    assert p.bandwidth == pytest.approx(8000.0) and p.reset_after == 4096 and p.slow_close == pytest.approx(1.5)
    assert p.needs_proxy
    assert not net.plan(net.host("CMHYBD01"), "52.101.194.15", 25).needs_proxy


def test_nat_to_a_load_balancer_lands_on_its_vip(lab):
    apply_change(lab, "New-LabLoadBalancer", {"Name": "LB01", "Vip": "192.168.1.50", "Backends": ["CMHYBD01"]})
    apply_change(lab, "Set-LabNatRule", {"PublicIp": "27.7.57.241", "Server": "LB01"})
    net = view(lab)
    p = net.plan(net.host("EXO-OUT"), "27.7.57.241", 25)
    assert p.failure is None and p.dst_host == "LB01" and p.load_balancer == "LB01"
    assert net.plan(net.host("EXO-OUT"), "27.7.57.241", 587).failure == "timeout"  # not forwarded
    assert net.plan(net.host("CMEDGE01"), "192.168.1.50", 587).failure == "refused"  # VIP has no 587


def test_backend_order_is_round_robin_with_failover():
    lb = LoadBalancer(name="LB", vip="192.168.1.50", backends=["A", "B", "C"])
    assert [backend_order(lb, n) for n in range(4)] == [["A", "B", "C"], ["B", "C", "A"], ["C", "A", "B"],
                                                       ["A", "B", "C"]]


# --- cmdlets --------------------------------------------------------------------------------------------
def test_bad_rule_input_is_a_clear_error_and_changes_nothing(lab):
    with pytest.raises(TopologyError) as e:
        apply_change(lab, "New-LabNetworkRule", rule(Source="NOWHERE", Action="Drop"))
    assert "-Source" in str(e.value) and "NOWHERE" in str(e.value)
    with pytest.raises(TopologyError, match="Action"):
        apply_change(lab, "New-LabNetworkRule", rule(Action="Explode"))
    assert lab.network.rules == []
    with pytest.raises(TopologyError, match="not an Exchange server"):
        apply_change(lab, "New-LabLoadBalancer", {"Name": "LB", "Vip": "192.168.1.50", "Backends": ["NOPE"]})
    with pytest.raises(TopologyError, match="already used"):
        apply_change(lab, "New-LabLoadBalancer", {"Name": "LB", "Vip": "192.168.1.13", "Backends": ["CMHYBD01"]})


def test_rules_can_be_changed_and_removed(lab):
    apply_change(lab, "New-LabNetworkRule", rule(Name="x", Action="Drop", Destination="EXO"))
    apply_change(lab, "Set-LabNetworkRule", {"Identity": "x", "Enabled": False})
    assert view(lab).plan(view(lab).host("CMHYBD01"), "52.101.194.15", 25).failure is None
    apply_change(lab, "Remove-LabNetworkRule", {"Identity": "x"})
    assert lab.network.rules == []
    with pytest.raises(TopologyError, match="no network rule"):
        apply_change(lab, "Remove-LabNetworkRule", {"Identity": "x"})


def test_set_lab_site_latency(lab):
    apply_change(lab, "Set-LabSiteLatency", {"Sites": "exo-onprem", "LatencyMs": 80})
    assert lab.network.latency("onprem", "exo") == pytest.approx(0.08)
    with pytest.raises(TopologyError, match="Sites"):
        apply_change(lab, "Set-LabSiteLatency", {"Sites": "mars-onprem", "LatencyMs": 1})


# --- reputation -----------------------------------------------------------------------------------------
def test_block_list_query_name_reverses_the_octets():
    assert query_name("27.7.57.241", "zen.spamhaus.org.") == "241.57.7.27.zen.spamhaus.org"


@pytest.mark.parametrize("kw, answers, hit", [
    ({}, ["127.0.0.2"], False),                                   # nothing configured: nothing matches
    ({"any_match": True}, ["127.0.0.2"], True),
    ({"any_match": True}, [], False),
    ({"bitmask_match": "127.0.0.2"}, ["127.0.0.10"], True),        # ...0010 & ...1010
    # the agent ANDs every byte, 127 included: any 127.x answer meets a 127.x bitmask (as coded)
    ({"bitmask_match": "127.0.0.4"}, ["127.0.0.10"], True),
    ({"bitmask_match": "0.0.0.4"}, ["127.0.0.10"], False),
    ({"ip_addresses_match": ["127.0.0.11"]}, ["127.0.0.11"], True),
    ({"ip_addresses_match": ["127.0.0.11"]}, ["127.0.0.10"], False),
])
def test_provider_match_follows_the_connection_filtering_agent(kw, answers, hit):
    p = IPBlockListProvider(name="P", lookup_domain="bl.example", **kw)
    assert provider_matches(p, answers) is hit


def test_rejection_response_formatting_and_fallbacks():
    p = IPBlockListProvider(name="Spamhaus", lookup_domain="zen.spamhaus.org",
                            rejection_response="Client host [{0}] blocked using {1} ({2})")
    assert connection_filter_reply(p, "203.0.113.25") == \
        "550 5.7.1 Client host [203.0.113.25] blocked using Spamhaus (zen.spamhaus.org)"
    default = "550 5.7.1 Recipient not authorized, your IP has been found on a block list"
    assert connection_filter_reply(IPBlockListProvider(name="P", lookup_domain="x"), "1.2.3.4") == default
    broken = IPBlockListProvider(name="P", lookup_domain="x", rejection_response="bad {7} format")
    assert connection_filter_reply(broken, "1.2.3.4") == default


def test_eop_block_reply_has_eops_shape():
    text = eop_block_reply("27.7.57.241", "zen.spamhaus.org", "Spamhaus", "FE01.outlook.com 2026-05-01T06:00:00.000Z 08DE0000000000AA")
    assert text.startswith("550 5.7.1 Service unavailable, Client host [27.7.57.241] blocked using Spamhaus.")
    assert "https://www.spamhaus.org/query/ip/27.7.57.241 AS(1450) [FE01.outlook.com" in text


def test_block_list_providers_only_on_edge_servers(lab):
    with pytest.raises(TopologyError, match="not an Edge"):
        apply_change(lab, "Add-IPBlockListProvider", {"Server": "CMHYBD01", "Name": "S", "LookupDomain": "x.org"})
    apply_change(lab, "Add-IPBlockListProvider", {"Name": "S", "LookupDomain": "x.org"})  # the only Edge
    apply_change(lab, "Add-IPBlockListProvider", {"Name": "T", "LookupDomain": "y.org"})
    assert [p.priority for p in lab.organization.server("CMEDGE01").ip_block_list_providers] == [1, 2]
    apply_change(lab, "Set-IPBlockListProvider", {"Identity": "CMEDGE01\\T", "Enabled": False})
    apply_change(lab, "Remove-IPBlockListProvider", {"Identity": "S"})
    assert [p.name for p in lab.organization.server("CMEDGE01").ip_block_list_providers] == ["T"]
