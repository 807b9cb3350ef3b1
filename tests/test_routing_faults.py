"""Routing faults (no matching connector, Authoritative vs InternalRelay, mail loops), moved to other
domains, recipients and hop limits: the evidence follows the fault."""

from __future__ import annotations

from pathlib import Path

from conftest import Run, folder_rows, run_cli, run_text

from labsim.rules.exo import route_exo
from labsim.topology.changes import apply_change

NO_CONNECTOR = "A matching connector cannot be found to route the external recipient"

LOOP = """
[[change]]
cmdlet = "Set-AcceptedDomain"
Identity = "cloudmonkeys.xyz"
DomainType = "InternalRelay"

[[change]]
cmdlet = "Set-SendConnector"
Identity = "Outbound to Office 365"
AddressSpaces = ["smtp:cloudfield.mail.onmicrosoft.com;1", "smtp:cloudmonkeys.xyz;1"]
SmartHosts = ["cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com"]

[[change]]
cmdlet = "Set-LabTenantAcceptedDomain"
Identity = "cloudmonkeys.xyz"
DomainType = "InternalRelay"

[[message]]
id = "loop"
at = "+00:01:00"
from = "priya@cloudmonkeys.xyz"
to = ["typo@cloudmonkeys.xyz"]
"""


def run(write_scenario, tmp_path: Path, body: str, name: str = "s", duration: str = "00:05:00") -> Run:
    return run_text(write_scenario, tmp_path, body, name, duration=duration)


def test_unreachable_follows_the_domain_and_a_new_connector_plus_resubmit_clears_it(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "Remove-SendConnector"
        Identity = "EdgeSync - Default-First-Site-Name to Internet"

        [[change]]
        at = "+00:10:00"
        cmdlet = "New-SendConnector"
        Name = "To fabrikam"
        AddressSpaces = ["smtp:fabrikam.com;1"]
        SourceTransportServers = ["CMHYBD01"]

        [[change]]
        at = "+00:10:00"
        cmdlet = "Retry-Queue"
        Identity = 'CMHYBD01\\Unreachable'
        Resubmit = true

        [[message]]
        id = "fabrikam"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["alex@fabrikam.com"]

        [[message]]
        id = "cloud"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["ramki@cloudmonkeys.xyz"]

        [[message]]
        id = "elsewhere"
        at = "+00:02:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["someone@contoso.example"]
        """)
    assert r.message("fabrikam")["fate"] == "delivered"
    assert r.message("cloud")["fate"] == "delivered"  # the routing domain has its connector all along
    still = r.message("elsewhere")["pending"][0]
    assert (still["queue"], still["last_error"]) == ("CMHYBD01\\Unreachable", NO_CONNECTOR)


def test_loop_caught_on_premises_with_a_lower_hop_limit(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, LOOP + """
        [[change]]
        cmdlet = "Set-ReceiveConnector"
        Identity = 'CMHYBD01\\Default Frontend CMHYBD01'
        MaxHopCount = 8
        """)
    failed = r.message("loop")["failed"][0]
    assert failed["reason"] == "554 5.4.6 Hop count exceeded - possible mail loop" and failed["server"] == "EXO"
    rows = folder_rows(r.out, "CMHYBD01", "Hub", "SmtpSend")
    trips = sum(1 for x in rows if x[7] == "RCPT TO:<typo@cloudmonkeys.xyz>")
    assert 2 <= trips <= 8  # each trip adds Received headers on both sides


def test_loop_caught_by_exchange_online_when_its_limit_is_lower(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, LOOP + """
        [[change]]
        cmdlet = "Set-LabTenant"
        MaxHopCount = 6
        """)
    failed = r.message("loop")["failed"][0]
    assert failed["server"] == "CMHYBD01"
    assert failed["reason"].startswith("554 5.4.14 Hop count exceeded - possible mail loop ATTR34 [")


def test_authoritative_tenant_domain_rejects_whichever_user_is_not_synced(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "Remove-LabTenantMailUser"
        Identity = "raghu@cloudmonkeys.xyz"

        [[message]]
        id = "raghu"
        at = "+00:01:00"
        from = "ramki@cloudmonkeys.xyz"
        to = ["raghu@cloudmonkeys.xyz"]

        [[message]]
        id = "priya"
        at = "+00:01:00"
        from = "ramki@cloudmonkeys.xyz"
        to = ["priya@cloudmonkeys.xyz"]
        """)
    assert r.message("raghu")["failed"][0]["reason"].startswith("550 5.1.10 RESOLVER.ADR.RecipientNotFound")
    assert r.message("priya")["fate"] == "delivered"


def test_route_exo_passes_unknown_recipients_on_only_for_internal_relay(lab):
    assert route_exo(lab.tenant, "nobody@cloudmonkeys.xyz").kind == "reject"
    apply_change(lab, "Set-LabTenantAcceptedDomain", {"Identity": "cloudmonkeys.xyz", "DomainType": "InternalRelay"})
    r = route_exo(lab.tenant, "nobody@cloudmonkeys.xyz")
    assert r.kind == "connector" and r.connector.smart_hosts == ["mail.cloudmonkeys.xyz"]


def test_routing_scenarios_hold_their_expectations(tmp_path):
    for sid in ("route-unreachable-no-connector", "route-authoritative-exo", "route-loop-internalrelay",
                "route-loop-exo-attr34"):
        rc, stdout, _ = run_cli(["run", sid, "--out", str(tmp_path / sid)])
        assert rc == 0, stdout
