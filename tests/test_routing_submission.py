"""Mailbox Transport Submission picks the Transport service by the recipients' delivery group, with
its own delivery group as the fall-back (Learn, "Mail routing", "Routing in the Mailbox Transport
service on Mailbox servers"; rules.routing_submission)."""

from __future__ import annotations

import pytest

from labsim.rules.routing_submission import local_delivery_group, submission_hubs
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


def test_the_local_delivery_group_is_the_dag_or_the_site(org_lab):
    org = org_lab.organization
    assert set(local_delivery_group(org, org.server("EX3"))) == {"EX2", "EX3"}  # DAG1 spans both sites
    assert set(local_delivery_group(org, org.server("EX4"))) == {"EX3", "EX4"}  # Branch's Mailbox servers
    assert set(local_delivery_group(org, org.server("CMHYBD01"))) == {"CMHYBD01", "EX2"}


def test_a_mailbox_recipient_goes_to_its_delivery_group_then_the_local_group(org_lab):
    org = org_lab.organization
    ex4 = org.server("EX4")
    # erik's database is in DAG1: EX3 (EX4's own site) before EX2; EX4's group is the fall-back
    assert submission_hubs(org, ex4, ["erik@cloudmonkeys.xyz"]) == ["EX3", "EX2", "EX4"]
    # raghu's database is on CMHYBD01 (HQ, no DAG): HQ's Mailbox servers, then Branch's
    assert submission_hubs(org, ex4, ["raghu@cloudmonkeys.xyz"]) == ["CMHYBD01", "EX2", "EX4", "EX3"]
    # its own database: itself first
    assert submission_hubs(org, ex4, ["fay@cloudmonkeys.xyz"]) == ["EX4", "EX3"]


def test_several_recipients_use_the_closest_group_of_the_first_20(org_lab):
    org = org_lab.organization
    ex4 = org.server("EX4")
    assert submission_hubs(org, ex4, ["raghu@cloudmonkeys.xyz", "fay@cloudmonkeys.xyz"])[0] == "EX4"
    others = [f"x{i}@fabrikam.com" for i in range(20)]
    assert submission_hubs(org, ex4, [*others, "raghu@cloudmonkeys.xyz"]) == ["EX4", "EX3"]


def test_no_mailbox_recipient_stays_in_the_local_delivery_group(org_lab):
    org = org_lab.organization
    # not a random server of the local site (the Front End's rule): the local delivery group, own first
    assert submission_hubs(org, org.server("EX3"), ["someone@fabrikam.com"]) == ["EX3", "EX2"]
    assert submission_hubs(org, org.server("EX2"), ["someone@fabrikam.com"]) == ["EX2", "EX3"]
    assert submission_hubs(org, org.server("CMHYBD01"), ["ramki@cloudmonkeys.xyz"]) == ["CMHYBD01", "EX2"]


def test_the_default_org_submits_to_its_one_server():
    org = default_lab().organization
    local = org.server("CMHYBD01")
    assert submission_hubs(org, local, ["raghu@cloudmonkeys.xyz", "a@fabrikam.com"]) == ["CMHYBD01"]
    assert submission_hubs(org, local, []) == ["CMHYBD01"]


def test_hq_mail_for_a_branch_mailbox_is_submitted_to_the_branch_server(tmp_path):
    """org-two-sites-branch-edge-down: TSEX01's Submission hands mail for a Branch mailbox (TSDAG2)
    to TSBR01's Transport service, so TSEX01 queues nothing for TSDAG2; mail for the Internet stays
    in TSEX01's own delivery group."""
    import json

    from labsim.api import run
    from labsim.logs.message_tracking import read_tracking

    out = tmp_path / "out"
    assert run("org-two-sites-branch-edge-down", out=out).ok
    submits = {(r["Server"], r["Recipients"]): r for r in read_tracking(out)
               if r["EventId"] == "SUBMIT" and r["Source"] == "STOREDRIVER"}
    to_branch = submits[("TSEX01", "ana.lima@tailspintoys.com")]
    assert to_branch["ServerIp"] == "10.30.0.21"  # TSBR01's Transport service
    to_internet = submits[("TSEX01", "lena@woodgrovebank.com")]
    assert to_internet["ServerIp"] == "10.20.0.21"  # its own
    queues = json.loads((out / "queues.json").read_text(encoding="utf-8"))["servers"]["TSEX01"]["queues"]
    assert not [q for q in queues if q["DeliveryType"] == "SmtpRelayToDag"]
