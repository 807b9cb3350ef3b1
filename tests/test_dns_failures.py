"""NXDOMAIN, SERVFAIL and no-record lookups over the running lab: which side NDRs at once, which
retries, and in which words (docs/transport-fidelity.md §2, rules.dnsfail); and which DNS servers
Mailbox Transport Submission asks (§4)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from conftest import Run, run_cli, run_text, scenario_text

NX_TLD = """
[[change]]
cmdlet = "New-LabDnsZone"
Server = "PUBLIC-DNS"
Name = "co"
"""

NDR_554 = "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain"
RETRY_NX = "451 4.4.0 DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; nonexistent domain"


def run(write_scenario, tmp_path: Path, body: str, name: str = "s", duration: str = "00:30:00") -> Run:
    return run_text(write_scenario, tmp_path, body, name, duration=duration)


def msg(mid: str, sender: str, rcpt: str) -> str:
    return f"""
[[message]]
id = "{mid}"
at = "+00:01:00"
from = "{sender}"
to = ["{rcpt}"]
"""


def hub_connector(extra: str = "") -> str:
    return f"""
[[change]]
cmdlet = "New-SendConnector"
Name = "To fabrikam.co"
AddressSpaces = ["smtp:fabrikam.co;1"]
SourceTransportServers = ["CMHYBD01"]
{extra}
"""


def when(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


def test_nonexistent_domain_bounces_at_once_from_the_edge_with_554(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, NX_TLD + msg("m", "raghu@cloudmonkeys.xyz", "alex@fabrikam.co"))
    m = r.message("m")
    assert m["fate"] == "failed"
    assert m["failed"][0] == {"recipient": "alex@fabrikam.co", "server": "CMEDGE01", "reason": NDR_554}
    events = [h["event"] for h in m["hops"]]
    assert "FAIL" in events and "DEFER" not in events
    fail = next(h for h in m["hops"] if h["event"] == "FAIL")
    assert (when(fail["time"]) - when(m["injected"])).total_seconds() < 5  # no retry schedule
    ndr = (r.out / m["notifications"][0]["path"]).read_text()
    assert "#554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain ##" in ndr


def test_hub_dns_connector_fails_and_downgrade_dns_failures_retries(write_scenario, tmp_path):
    failed = run(write_scenario, tmp_path, NX_TLD + hub_connector()
                 + msg("m", "raghu@cloudmonkeys.xyz", "alex@fabrikam.co"), name="fail")
    assert failed.message("m")["failed"][0]["server"] == "CMHYBD01"
    assert failed.message("m")["failed"][0]["reason"] == NDR_554
    kept = run(write_scenario, tmp_path, NX_TLD + hub_connector('ErrorPolicies = "DowngradeDnsFailures"')
               + msg("m", "raghu@cloudmonkeys.xyz", "alex@fabrikam.co"), name="downgrade")
    m = kept.message("m")
    assert m["fate"] == "pending"
    assert m["pending"][0]["server"] == "CMHYBD01"
    assert m["pending"][0]["last_error"] == RETRY_NX


def test_smart_host_that_does_not_resolve_retries_with_451(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, NX_TLD + hub_connector('SmartHosts = ["relay.fabrikam.co"]')
            + msg("m", "raghu@cloudmonkeys.xyz", "alex@fabrikam.co"))
    m = r.message("m")
    assert m["fate"] == "pending"
    assert m["pending"][0]["last_error"] == RETRY_NX
    assert not m["failed"]


def test_domain_without_mx_or_a_is_retried_not_bounced(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, NX_TLD + """
[[change]]
cmdlet = "New-LabDnsZone"
Server = "PUBLIC-DNS"
Name = "fabrikam.co"

[[change]]
cmdlet = "Set-LabDnsRecord"
Server = "PUBLIC-DNS"
ZoneName = "fabrikam.co"
Name = "fabrikam.co"
Type = "TXT"
Value = "v=spf1 -all"
""" + msg("m", "raghu@cloudmonkeys.xyz", "alex@fabrikam.co"))
    m = r.message("m")
    assert m["fate"] == "pending"
    assert m["pending"][0]["last_error"] == (
        "451 4.4.0 DNS query failed. The error was: DNS query failed with error InfoNoRecords")


def test_exo_mx_delivery_to_a_nonexistent_domain_fails_with_5_4_310(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, NX_TLD + msg("m", "ramki@cloudmonkeys.xyz", "alex@fabrikam.co"))
    m = r.message("m")
    assert m["fate"] == "failed"
    reason = m["failed"][0]["reason"]
    assert reason.startswith("550 5.4.310 DNS domain fabrikam.co does not exist [Message=InfoDomainNonexistent] "
                             "[LastAttemptedServerName=fabrikam.co] [")


def test_exo_connector_dns_failure_expires_after_24_hours(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
[[change]]
cmdlet = "Set-OutboundConnector"
Identity = "Outbound to 8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10"
SmartHosts = ["mail-old.cloudmonkeys.xyz"]
""" + msg("m", "ramki@cloudmonkeys.xyz", "raghu@cloudmonkeys.xyz"), duration="2.00:00:00")
    m = r.message("m")
    assert m["fate"] == "failed"
    fail = next(h for h in m["hops"] if h["event"] == "FAIL")
    hours = (when(fail["time"]) - when(m["injected"])).total_seconds() / 3600
    assert 24 <= hours < 25


ISP_ADAPTER = """
[[change]]
cmdlet = "New-LabDnsServer"
Name = "ISP-DNS1"
Ip = "202.88.152.10"
Site = "internet"
Forwarders = ["8.8.8.8"]

[[change]]
cmdlet = "Set-DnsClientServerAddress"
Server = "CMHYBD01"
ServerAddresses = ["202.88.152.10", "192.168.1.11"]
"""


def fix(cmdlet: str) -> str:
    return f"""
[[change]]
at = "+00:05:00"
cmdlet = "{cmdlet}"
Identity = "CMHYBD01"
InternalDNSServers = ["192.168.1.11"]
InternalDNSAdapterEnabled = false
"""


def test_mailbox_submission_uses_set_transport_service_dns_settings(write_scenario, tmp_path):
    out = msg("m", "raghu@cloudmonkeys.xyz", "ramki@cloudmonkeys.xyz")
    broken = run(write_scenario, tmp_path, ISP_ADAPTER + out, name="broken")
    assert broken.message("m")["fate"] == "pending"  # held in the Outbox: the ISP answers NXDOMAIN
    frontend_only = run(write_scenario, tmp_path, ISP_ADAPTER + fix("Set-FrontendTransportService") + out,
                        name="fe")
    assert frontend_only.message("m")["fate"] == "pending"
    fixed = run(write_scenario, tmp_path, ISP_ADAPTER + fix("Set-TransportService") + out, name="fixed")
    m = fixed.message("m")
    assert m["fate"] == "delivered"
    # it left the Outbox only after the fix at +00:05:00 (the message was written at +00:01:00)
    assert (when(m["hops"][0]["time"]) - when(m["injected"])).total_seconds() >= 240


def test_validate_names_the_unresolvable_smart_host_with_exchanges_retry_text(write_scenario, tmp_path):
    path = write_scenario(scenario_text(NX_TLD + """
[[change]]
cmdlet = "Set-SendConnector"
Identity = "Outbound to Office 365"
SmartHosts = ["relay.fabrikam.co"]
TlsDomain = "mail.protection.outlook.com"
""", sid="v"))
    rc, out, _ = run_cli(["validate", str(path), "--json"])
    bad = [c for c in json.loads(out)["connectors"] if c["connector"] == "Outbound to Office 365"]
    assert rc == 1 and bad and not bad[0]["ok"]
    assert bad[0]["status"] == RETRY_NX
