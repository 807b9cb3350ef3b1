"""How connections between virtual hosts go (NAT, routes, latency) and which DNS servers transport asks.

No sockets: `NetView.plan` and `transport_dns_servers` are pure decisions over the topology.
"""

from __future__ import annotations

import pytest

from labsim.rules.dnschoice import transport_dns_servers
from labsim.rules.network import NetView, all_virtual_ips, lab_hosts
from labsim.topology.changes import apply_change
from labsim.topology.model import TransportServiceConfig


@pytest.fixture
def net(lab) -> NetView:
    return NetView(lab, lab_hosts(lab))


def test_every_virtual_host_of_the_default_lab_is_known(lab, net):
    by_name = {h.name: (h.site, h.ip) for h in lab_hosts(lab)}
    assert by_name["CMHYBD01"] == ("onprem", "192.168.1.13")
    assert by_name["CMEDGE01"] == ("onprem", "192.168.1.25")
    assert by_name["DC01"] == ("onprem", "192.168.1.11")
    assert by_name["EXO"] == ("exo", "52.101.194.15")
    assert by_name["EXO-OUT"] == ("exo", "40.93.131.26")
    assert by_name["FABRIKAM-MX"] == ("internet", "203.0.113.25")
    assert by_name["PUBLIC-DNS"] == ("internet", "8.8.8.8")
    ips = all_virtual_ips(lab)
    assert {"27.7.57.241", "27.7.57.242"} <= set(ips) and ips == sorted(ips)
    assert net.host("cmhybd01").ip == "192.168.1.13"  # host names are case-insensitive


def test_onprem_to_outside_leaves_from_the_public_address(net):
    p = net.plan(net.host("CMHYBD01"), "52.101.194.15", 25)
    assert p.failure is None and p.dst_host == "EXO"
    assert p.seen_src_ip == "27.7.57.241"          # SNAT: EOP sees the organisation's public address
    assert p.client_local_ip == "192.168.1.13"     # the Hub logs its own private address
    assert p.server_local_ip == "52.101.194.15"
    assert p.latency == pytest.approx(0.011)


def test_exo_reaches_the_mailbox_server_through_port_forwarding(net):
    p = net.plan(net.host("EXO-OUT"), "27.7.57.241", 25)
    assert p.failure is None and p.dst_host == "CMHYBD01"
    assert p.dial_ip == "27.7.57.241"
    assert p.server_local_ip == "192.168.1.13"     # the FE logs 192.168.1.13:25 as local endpoint
    assert p.seen_src_ip == "40.93.131.26"


def test_internet_reaches_the_edge_through_its_own_forwarded_address(net):
    p = net.plan(net.host("FABRIKAM-MX"), "27.7.57.242", 25)
    assert p.failure is None and p.dst_host == "CMEDGE01" and p.server_local_ip == "192.168.1.25"
    assert p.seen_src_ip == "203.0.113.25"


def test_private_address_is_unreachable_from_outside(net):
    for src in ("EXO-OUT", "FABRIKAM-MX"):
        p = net.plan(net.host(src), "192.168.1.13", 25)
        assert p.failure == "timeout" and p.dst_host is None


def test_unforwarded_port_on_the_public_address_times_out(net):
    assert net.plan(net.host("EXO-OUT"), "27.7.57.241", 587).failure == "timeout"
    assert net.plan(net.host("EXO-OUT"), "27.7.57.241", 25).failure is None


def test_unknown_address_times_out(net):
    assert net.plan(net.host("CMHYBD01"), "198.51.100.9", 25).failure == "timeout"


def test_inside_the_lan_there_is_no_nat(net):
    p = net.plan(net.host("CMEDGE01"), "192.168.1.13", 25)
    assert p.failure is None and p.seen_src_ip == "192.168.1.25" and p.dst_host == "CMHYBD01"
    assert p.latency == pytest.approx(0.0004)


def test_removing_the_port_forward_cuts_exo_off(lab):
    lab.network.nat = [r for r in lab.network.nat if r.public_ip != "27.7.57.241"]
    net = NetView(lab, lab_hosts(lab))
    assert net.plan(net.host("EXO-OUT"), "27.7.57.241", 25).failure == "timeout"


# --- transport DNS servers (Set-TransportService, seed 001 error 7) -----------------------------------

ADAPTER = ["202.88.152.10", "202.88.152.8", "192.168.1.11"]


def test_adapter_dns_servers_are_used_by_default():
    assert transport_dns_servers(TransportServiceConfig(), ADAPTER) == ADAPTER
    assert transport_dns_servers(TransportServiceConfig(), ADAPTER, external=True) == ADAPTER


def test_internal_dns_servers_apply_only_with_the_adapter_switch_off():
    only_list = TransportServiceConfig(internal_dns_servers=["192.168.1.11"])
    assert transport_dns_servers(only_list, ADAPTER) == ADAPTER
    fixed = TransportServiceConfig(internal_dns_servers=["192.168.1.11"], internal_dns_adapter_enabled=False)
    assert transport_dns_servers(fixed, ADAPTER) == ["192.168.1.11"]
    assert transport_dns_servers(fixed, ADAPTER, external=True) == ADAPTER


def test_switch_off_without_servers_keeps_the_adapter():
    assert transport_dns_servers(TransportServiceConfig(internal_dns_adapter_enabled=False), ADAPTER) == ADAPTER


def test_external_dns_servers(lab):
    apply_change(lab, "Set-TransportService", {"Identity": "CMHYBD01", "ExternalDNSServers": ["8.8.8.8", "8.8.4.4"],
                                               "ExternalDNSAdapterEnabled": False})
    cfg = lab.organization.server("CMHYBD01").transport
    assert transport_dns_servers(cfg, ADAPTER, external=True) == ["8.8.8.8", "8.8.4.4"]
    assert transport_dns_servers(cfg, ADAPTER) == ADAPTER
