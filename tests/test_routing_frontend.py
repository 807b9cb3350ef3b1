"""The Front End Transport service picks the Transport service by the recipients' delivery group
(Learn, "Mail routing", "Routing in the Front End Transport service"; rules.routing_frontend)."""

from __future__ import annotations

import pytest

from labsim.rules.routing_frontend import delivery_group, frontend_hubs
from labsim.topology.changes import apply_change
from labsim.topology.defaults import default_lab
from labsim.topology.model import Lab, Mailbox


@pytest.fixture
def org_lab() -> Lab:
    """CMHYBD01 (HQ site, DB01) + EX2 and EX3 in DAG1 (EX2 in HQ, EX3 in Branch), + EX4 in Branch, no DAG."""
    lab = default_lab()
    apply_change(lab, "New-LabSite", {"Name": "Branch", "Subnets": ["10.30.0.0/16"]})
    apply_change(lab, "New-LabServer", {"Name": "EX2", "Fqdn": "ex2.cloudmonkeys.xyz", "Ip": "192.168.1.14",
                                        "Databases": ["DB02"]})
    apply_change(lab, "New-LabServer", {"Name": "EX3", "Fqdn": "ex3.cloudmonkeys.xyz", "Ip": "10.30.0.13",
                                        "Site": "Branch", "Databases": ["DB03"]})
    apply_change(lab, "New-LabServer", {"Name": "EX4", "Fqdn": "ex4.cloudmonkeys.xyz", "Ip": "10.30.0.14",
                                        "Site": "Branch", "Databases": ["DB04"]})
    apply_change(lab, "New-DatabaseAvailabilityGroup", {"Name": "DAG1"})
    apply_change(lab, "Add-DatabaseAvailabilityGroupServer", {"Identity": "DAG1", "MailboxServer": "EX3"})
    apply_change(lab, "Add-DatabaseAvailabilityGroupServer", {"Identity": "DAG1", "MailboxServer": "EX2"})
    for alias, db in (("dora", "DB02"), ("erik", "DB03"), ("fay", "DB04")):
        lab.organization.mailboxes.append(Mailbox(alias=alias, primary_smtp_address=f"{alias}@cloudmonkeys.xyz",
                                                  database=db))
    return lab


def never(n: int) -> int:
    raise AssertionError("no random pick when a mailbox recipient names the delivery group")


def test_delivery_groups_are_the_dag_or_the_site(org_lab):
    org = org_lab.organization
    assert delivery_group(org, "DB03") == delivery_group(org, "DB02")  # one routable DAG across two sites
    g = delivery_group(org, "DB03")
    assert g is not None and g.kind == "RoutableDag" and set(g.servers) == {"EX2", "EX3"}
    g = delivery_group(org, "DB04")
    assert g is not None and g.kind == "MailboxDeliveryGroup" and g.name == "Branch"
    assert set(g.servers) == {"EX3", "EX4"}  # the Mailbox servers of the database's AD site
    assert delivery_group(org, "NOSUCHDB") is None


def test_a_single_recipient_goes_to_its_delivery_group_nearest_site_first(org_lab):
    org = org_lab.organization
    local = org.server("CMHYBD01")
    # DAG1 spans HQ and Branch: EX2 (HQ) before EX3 (Branch); the local site's servers are the fail-over
    assert frontend_hubs(org, local, ["erik@cloudmonkeys.xyz"], pick=never) == ["EX2", "EX3", "CMHYBD01"]
    # a Branch database outside any DAG: Branch's Mailbox servers, then the local site
    assert frontend_hubs(org, local, ["fay@cloudmonkeys.xyz"], pick=never) == ["EX3", "EX4", "CMHYBD01", "EX2"]
    # the Front End's own database: its own server first
    assert frontend_hubs(org, local, ["raghu@cloudmonkeys.xyz"], pick=never) == ["CMHYBD01", "EX2"]
    ex3 = org.server("EX3")
    assert frontend_hubs(org, ex3, ["dora@cloudmonkeys.xyz"], pick=never) == ["EX3", "EX2", "EX4"]


def test_several_recipients_pick_the_closest_group_of_the_first_20(org_lab):
    org = org_lab.organization
    local = org.server("CMHYBD01")
    # fay's group (Branch) is remote, raghu's (HQ) is local: the closest wins whatever the order
    assert frontend_hubs(org, local, ["fay@cloudmonkeys.xyz", "raghu@cloudmonkeys.xyz"],
                         pick=never)[0] == "CMHYBD01"
    # equally close groups: the first recipient's
    assert frontend_hubs(org, local, ["erik@cloudmonkeys.xyz", "raghu@cloudmonkeys.xyz"], pick=never)[0] == "EX2"
    # a mailbox recipient after the 20th is not looked at
    others = [f"x{i}@fabrikam.com" for i in range(20)]
    assert frontend_hubs(org, local, [*others, "fay@cloudmonkeys.xyz"], pick=lambda n: 1) == ["EX2", "CMHYBD01"]


def test_no_mailbox_recipient_draws_a_server_of_the_local_site(org_lab):
    org = org_lab.organization
    local = org.server("CMHYBD01")
    assert frontend_hubs(org, local, ["ramki@cloudmonkeys.xyz"], pick=lambda n: 0) == ["CMHYBD01", "EX2"]
    assert frontend_hubs(org, local, ["ramki@cloudmonkeys.xyz"], pick=lambda n: 1) == ["EX2", "CMHYBD01"]
    # one server in the site: nothing to draw
    lab = default_lab()
    assert frontend_hubs(lab.organization, lab.organization.server("CMHYBD01"), ["alex@fabrikam.com"],
                         pick=never) == ["CMHYBD01"]
