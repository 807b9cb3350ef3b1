"""Shadow redundancy's boundary (rules.shadow_redundancy; Learn 'Shadow redundancy in Exchange
Server'): which servers may hold a shadow copy, and the tracking log's HAREDIRECTFAIL when none can."""

from __future__ import annotations

from labsim.rules.shadow_redundancy import boundary_peers, shadow_candidates
from labsim.topology.changes import apply_change
from labsim.topology.defaults import default_lab
from labsim.topology.model import Lab


def org() -> Lab:
    """HQ: CMHYBD01, EX2 (DAG1 with EX3 in Branch), EX4 (HQ, no DAG); Branch: EX3, EX5 (no DAG)."""
    lab = default_lab()
    apply_change(lab, "New-LabSite", {"Name": "Branch", "Subnets": ["10.30.0.0/16"]})
    for name, ip, site in (("EX2", "192.168.1.14", None), ("EX3", "10.30.0.13", "Branch"),
                           ("EX4", "192.168.1.15", None), ("EX5", "10.30.0.15", "Branch")):
        params = {"Name": name, "Fqdn": f"{name.lower()}.cloudmonkeys.xyz", "Ip": ip}
        if site:
            params["Site"] = site
        apply_change(lab, "New-LabServer", params)
    apply_change(lab, "New-DatabaseAvailabilityGroup", {"Name": "DAG1"})
    for m in ("EX2", "EX3"):
        apply_change(lab, "Add-DatabaseAvailabilityGroupServer", {"Identity": "DAG1", "MailboxServer": m})
    return lab


def test_a_single_server_has_no_shadow_server():
    lab = default_lab()
    assert shadow_candidates(lab.organization, lab.organization.server("CMHYBD01")) == []
    assert boundary_peers(lab.organization, lab.organization.server("CMEDGE01")) == []  # an Edge has none


def test_a_dag_member_shadows_in_its_dag_remote_site_first():
    o = org().organization
    assert shadow_candidates(o, o.server("EX2")) == ["EX3"]  # the other DAG member, in Branch
    assert shadow_candidates(o, o.server("EX2"), "LocalOnly") == []
    assert shadow_candidates(o, o.server("EX3"), "RemoteOnly") == ["EX2"]


def test_outside_a_dag_the_local_site_is_the_boundary():
    o = org().organization
    assert shadow_candidates(o, o.server("CMHYBD01")) == ["EX2", "EX4"]
    assert shadow_candidates(o, o.server("EX5"), "RemoteOnly") == ["EX3"]  # the preference does not apply


def test_a_one_member_dag_has_no_shadow_server():
    lab = default_lab()
    apply_change(lab, "New-LabServer", {"Name": "EX2", "Fqdn": "ex2.cloudmonkeys.xyz", "Ip": "192.168.1.14"})
    apply_change(lab, "New-DatabaseAvailabilityGroup", {"Name": "DAG1"})
    apply_change(lab, "Add-DatabaseAvailabilityGroupServer", {"Identity": "DAG1", "MailboxServer": "CMHYBD01"})
    o = lab.organization
    assert shadow_candidates(o, o.server("CMHYBD01")) == []  # "under-provisioned DAGs"
    assert shadow_candidates(o, o.server("EX2")) == ["CMHYBD01"]
