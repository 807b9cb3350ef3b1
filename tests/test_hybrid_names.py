"""Seed 003 (S18): the hybrid certificate's names against what the hybrid configuration uses
(rules.hybrid_names), and `labsim validate` naming the missing SAN."""

from __future__ import annotations

import json

from conftest import run_cli

from labsim.rules.hybrid_names import (
    autodiscover_needs,
    check_names,
    covers,
    exo_inbound_needs,
    exo_outbound_need,
    hybrid_domains,
)
from labsim.topology.changes import apply_change
from labsim.topology.defaults import default_lab
from labsim.topology.model import AcceptedDomain

GUID = "8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10"


def test_names_match_case_insensitively_with_one_label_wildcards_either_side():
    assert covers(["Mail.Cloudmonkeys.xyz"], "mail.cloudmonkeys.xyz")
    assert covers(["*.cloudmonkeys.xyz"], "mail.cloudmonkeys.xyz")
    assert covers(["mail.cloudmonkeys.xyz"], "*.cloudmonkeys.xyz")  # a wildcard TlsSenderCertificateName
    assert not covers(["*.cloudmonkeys.xyz"], "a.mail.cloudmonkeys.xyz")
    assert not covers(["cloudmonkeys.xyz", "smtp.cloudmonkeys.xyz"], "mail.cloudmonkeys.xyz")


def test_the_default_lab_needs_its_hcw_names():
    lab = default_lab()
    need = exo_outbound_need(lab.tenant.outbound_connectors[0])
    assert need is not None and need.name == "mail.cloudmonkeys.xyz" and need.mail_flow
    assert "450 4.4.317" in need.breaks and "SubjectMismatch" in need.breaks
    assert [n.name for n in exo_inbound_needs(lab.tenant)] == ["mail.cloudmonkeys.xyz"]
    assert hybrid_domains(lab.organization, lab.tenant) == ["cloudmonkeys.xyz"]
    auto = autodiscover_needs(lab.organization, lab.tenant)
    assert [n.name for n in auto] == ["autodiscover.cloudmonkeys.xyz"] and not auto[0].mail_flow
    assert "not mail flow" in auto[0].breaks


def test_no_name_is_checked_without_domain_validation():
    lab = default_lab()
    apply_change(lab, "Set-OutboundConnector", {"Identity": f"Outbound to {GUID}", "TlsSettings": "EncryptionOnly"})
    assert exo_outbound_need(lab.tenant.outbound_connectors[0]) is None


def test_every_shared_domain_needs_its_autodiscover_name():
    """Seed 003: 'you'd need to create the following Autodiscover records ... You'd also need to
    include these records in the SAN certificate' - one per SMTP domain of both sides."""
    lab = default_lab()
    apply_change(lab, "New-AcceptedDomain", {"Name": "fabrikam.net", "DomainName": "fabrikam.net"})
    lab.tenant.accepted_domains.append(AcceptedDomain(name="fabrikam.net", domain_name="fabrikam.net"))
    needs = autodiscover_needs(lab.organization, lab.tenant)
    assert [n.name for n in needs] == ["autodiscover.cloudmonkeys.xyz", "autodiscover.fabrikam.net"]
    check = check_names("CMHYBD01: IIS", "CN=mail.cloudmonkeys.xyz",
                        ["mail.cloudmonkeys.xyz", "autodiscover.cloudmonkeys.xyz"], needs)
    assert [n.name for n in check.missing] == ["autodiscover.fabrikam.net"]
    assert check.ok and [n.name for n in check.warnings] == ["autodiscover.fabrikam.net"]  # a warning only


def test_a_missing_transport_name_fails_the_check_and_one_inbound_name_is_enough():
    lab = default_lab()
    need = exo_outbound_need(lab.tenant.outbound_connectors[0])
    assert need is not None
    bad = check_names("x", "CN=cloudmonkeys.xyz", ["cloudmonkeys.xyz", "autodiscover.cloudmonkeys.xyz"], [need])
    assert not bad.ok and bad.missing == [need]
    inbound = exo_inbound_needs(lab.tenant)
    apply_change(lab, "Set-InboundConnector", {"Identity": f"Inbound from {GUID}",
                                               "TlsSenderCertificateName": "*.cloudmonkeys.xyz"})
    either = check_names("y", "CN=a", ["mail.cloudmonkeys.xyz"], inbound + exo_inbound_needs(lab.tenant), any_of=True)
    assert either.ok


def test_validate_names_the_missing_san():
    rc, out, _ = run_cli(["validate", "cert-hybrid-san-missing"])
    assert rc == 1
    assert "Missing  mail.cloudmonkeys.xyz: TlsDomain of Exchange Online's outbound connector" in out
    assert "Has      autodiscover.cloudmonkeys.xyz" in out
    rc, out, _ = run_cli(["validate", "cert-hybrid-san-missing", "--json"])
    doc = json.loads(out)
    bad = [c for c in doc["certificates"] if not c["ok"]]
    assert len(bad) == 1 and [m["name"] for m in bad[0]["missing"]] == ["mail.cloudmonkeys.xyz"]
    assert "CN=cloudmonkeys.xyz" in bad[0]["certificate"]
    assert "mail.cloudmonkeys.xyz" not in bad[0]["names"]


def test_validate_after_the_reissue_finds_every_name(write_scenario):
    """The scenario's world with the CA's reissue imported: no missing name, every connector healthy."""
    from pathlib import Path

    from conftest import SCENARIOS
    text = (Path(SCENARIOS) / "cert-hybrid-san-missing.toml").read_text(encoding="utf-8")
    text = text.split("[[message]]", 1)[0] + '''
[[change]]
cmdlet = "Import-ExchangeCertificate"
Server = "CMHYBD01"
Certificate = "mail-cloudmonkeys-2026-reissued"
Services = ["SMTP", "IIS"]
'''
    rc, out, _ = run_cli(["validate", str(write_scenario(text)), "--json"])
    doc = json.loads(out)
    assert rc == 0 and all(c["ok"] and not c["missing"] for c in doc["certificates"])
    assert len(doc["certificates"]) == 3
