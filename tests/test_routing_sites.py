"""Least-cost routing between AD sites: IP site links, Set-AdSiteLink -ExchangeCost, aggregate
connector cost (rules.routing_sites; Learn 'Mail routing', 'Connector selection')."""

from __future__ import annotations

import math

import pytest

from labsim.errors import TopologyError
from labsim.rules.routing import route_recipient, select_send_connector, server_sites
from labsim.rules.routing_frontend import frontend_hubs
from labsim.rules.routing_sites import site_costs
from labsim.topology.changes import apply_change
from labsim.topology.defaults import default_lab
from labsim.topology.model import Lab, Mailbox


def three_sites() -> Lab:
    """HQ (CMHYBD01, CMEDGE01), Branch (EX2), DR (EX3, its own Edge EDGE3 with the cheaper address space)."""
    lab = default_lab()
    lab.organization.ad_site = "HQ"
    for sc in lab.organization.send_connectors:
        sc.name = sc.name.replace("Default-First-Site-Name", "HQ")
    for site, net in (("Branch", "10.30.0.0/16"), ("DR", "10.40.0.0/16")):
        apply_change(lab, "New-LabSite", {"Name": site, "Subnets": [net]})
    apply_change(lab, "New-LabServer", {"Name": "EX2", "Fqdn": "ex2.cloudmonkeys.xyz", "Ip": "10.30.0.13",
                                        "Site": "Branch", "Databases": ["DB02"]})
    apply_change(lab, "New-LabServer", {"Name": "EX3", "Fqdn": "ex3.cloudmonkeys.xyz", "Ip": "10.40.0.13",
                                        "Site": "DR", "Databases": ["DB03"]})
    apply_change(lab, "New-LabServer", {"Name": "EDGE3", "Fqdn": "edge3.cloudmonkeys.xyz", "Ip": "10.40.9.31",
                                        "Site": "DR", "Role": "Edge"})
    apply_change(lab, "Set-SendConnector", {"Identity": "EdgeSync - DR to Internet", "AddressSpaces": ["smtp:*;50"]})
    lab.organization.mailboxes.append(Mailbox(alias="erik", primary_smtp_address="erik@cloudmonkeys.xyz",
                                              database="DB03"))
    return lab


def test_without_site_links_every_remote_site_costs_the_default_link():
    lab = three_sites()
    cost = site_costs(lab.organization)
    assert cost("HQ", "hq") == 0 and cost("HQ", "Branch") == 100 and cost("Branch", "DR") == 100


def test_least_cost_paths_and_exchange_cost_instead_of_the_ad_cost():
    lab = three_sites()
    apply_change(lab, "New-LabSiteLink", {"Name": "HQ-Branch", "Sites": ["HQ", "Branch"], "Cost": 10})
    apply_change(lab, "New-LabSiteLink", {"Name": "Branch-DR", "Sites": ["Branch", "DR"], "Cost": 10})
    apply_change(lab, "New-LabSiteLink", {"Name": "HQ-DR", "Sites": ["HQ", "DR"], "Cost": 50})
    cost = site_costs(lab.organization)
    assert cost("HQ", "DR") == 20  # through Branch, cheaper than the direct link
    apply_change(lab, "Set-AdSiteLink", {"Identity": "HQ-DR", "ExchangeCost": 5})
    assert site_costs(lab.organization)("HQ", "DR") == 5
    apply_change(lab, "Set-AdSiteLink", {"Identity": "HQ-DR", "ExchangeCost": None})
    assert site_costs(lab.organization)("HQ", "DR") == 20


def test_a_site_no_link_reaches_is_unreachable():
    lab = three_sites()
    apply_change(lab, "New-LabSiteLink", {"Name": "HQ-Branch", "Sites": ["HQ", "Branch"]})
    assert site_costs(lab.organization)("HQ", "DR") == math.inf


def test_connector_selection_adds_the_site_link_cost_to_the_address_space_cost():
    """Aggregate cost = site link costs to the connector's source server + address space cost."""
    lab = three_sites()
    org = lab.organization

    def chosen() -> str:
        sc = select_send_connector(org.send_connectors, "fabrikam.com", local_server="CMHYBD01", message_size=1000,
                                   sites=server_sites(org), site_cost=site_costs(org))
        assert sc is not None
        return sc.name

    # default link: HQ's own 0 + 100 against DR's 100 + 50
    assert chosen() == "EdgeSync - HQ to Internet"
    apply_change(lab, "New-LabSiteLink", {"Name": "HQ-DR", "Sites": ["HQ", "DR"], "Cost": 20})
    apply_change(lab, "New-LabSiteLink", {"Name": "HQ-Branch", "Sites": ["HQ", "Branch"], "Cost": 20})
    assert chosen() == "EdgeSync - DR to Internet"  # 20 + 50 < 0 + 100
    route = route_recipient(org, org.server("CMHYBD01"), "alex@fabrikam.com", size=1000)
    assert route.delivery_type == "SmtpRelayToRemoteActiveDirectorySite" and route.next_hop_domain == "DR"
    apply_change(lab, "Set-AdSiteLink", {"Identity": "HQ-DR", "ExchangeCost": 80})
    assert chosen() == "EdgeSync - HQ to Internet"  # 80 + 50 > 100


def test_the_front_end_prefers_the_cheaper_site_of_a_group():
    lab = three_sites()
    org = lab.organization
    apply_change(lab, "New-DatabaseAvailabilityGroup", {"Name": "DAG1"})
    for m in ("EX2", "EX3"):
        apply_change(lab, "Add-DatabaseAvailabilityGroupServer", {"Identity": "DAG1", "MailboxServer": m})
    apply_change(lab, "New-LabSiteLink", {"Name": "HQ-Branch", "Sites": ["HQ", "Branch"], "Cost": 50})
    apply_change(lab, "New-LabSiteLink", {"Name": "HQ-DR", "Sites": ["HQ", "DR"], "Cost": 10})
    hubs = frontend_hubs(org, org.server("CMHYBD01"), ["erik@cloudmonkeys.xyz"], pick=lambda n: 0,
                         distance=site_costs(org))
    assert hubs == ["EX3", "EX2", "CMHYBD01"]


def test_site_link_errors_name_the_problem():
    lab = three_sites()
    with pytest.raises(TopologyError, match="not a site of the organisation"):
        apply_change(lab, "New-LabSiteLink", {"Name": "x", "Sites": ["HQ", "Mars"]})
    with pytest.raises(TopologyError, match="no AD site link"):
        apply_change(lab, "Set-AdSiteLink", {"Identity": "nope", "ExchangeCost": 3})
    apply_change(lab, "New-LabSiteLink", {"Name": "HQ-Branch", "Sites": ["HQ", "Branch"]})
    with pytest.raises(TopologyError, match="unknown parameter -Cost"):
        apply_change(lab, "Set-AdSiteLink", {"Identity": "HQ-Branch", "Cost": 3})
    with pytest.raises(TopologyError):
        apply_change(lab, "Set-AdSiteLink", {"Identity": "HQ-Branch", "ExchangeCost": 0})
    lab.mark_started()
    with pytest.raises(TopologyError, match="the lab is running"):
        apply_change(lab, "New-LabSiteLink", {"Name": "B-DR", "Sites": ["Branch", "DR"]})
    apply_change(lab, "Set-AdSiteLink", {"Identity": "HQ-Branch", "ExchangeCost": 7})  # any time
