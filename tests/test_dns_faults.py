"""DNS faults (wrong servers, SERVFAIL, stopped/unreachable servers, split-brain) and DNS block lists,
moved to other hosts and domains: the evidence follows the fault."""

from __future__ import annotations

from pathlib import Path

from conftest import Run, folder_rows, run_cli, run_text

ISP = """
[[change]]
cmdlet = "New-LabDnsServer"
Name = "ISP-DNS1"
Ip = "202.88.152.10"
Site = "internet"
Forwarders = ["8.8.8.8"]
"""

FROM_CLOUD = """
[[message]]
id = "in"
at = "+00:01:00"
from = "ramki@cloudmonkeys.xyz"
to = ["raghu@cloudmonkeys.xyz"]
"""

TO_CLOUD = """
[[message]]
id = "out"
at = "+00:01:00"
from = "raghu@cloudmonkeys.xyz"
to = ["ramki@cloudmonkeys.xyz"]
"""


def run(write_scenario, tmp_path: Path, body: str, name: str = "s", duration: str = "00:05:00") -> Run:
    return run_text(write_scenario, tmp_path, body, name, duration=duration)


def fe_replies(r: Run) -> list[str]:
    return [x[7] for x in folder_rows(r.out, "CMHYBD01", "FrontEnd", "SmtpReceive") if x[6] == ">"]


def test_isp_resolver_first_in_the_frontend_list_gives_prx2_and_the_fix_clears_it(write_scenario, tmp_path):
    broken = run(write_scenario, tmp_path, ISP + """
        [[change]]
        cmdlet = "Set-FrontendTransportService"
        Identity = "CMHYBD01"
        InternalDNSServers = ["202.88.152.10", "192.168.1.11"]
        InternalDNSAdapterEnabled = false
        """ + FROM_CLOUD, name="broken")
    assert any(x.startswith("451 4.7.0 Temporary server error. Please try again later. PRX2") for x in fe_replies(broken))
    assert broken.message("in")["fate"] == "pending"
    # the DNS detail before the PRX2 reply (seed 001 error 7: "DNS query failed with error ErrorRetry"),
    # as the Front End's proxy layer logs the ack of its connection
    rows = folder_rows(broken.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    i = next(i for i, x in enumerate(rows) if x[6] == ">" and "PRX2" in x[7])
    # (this ISP server answers NXDOMAIN for the internal name; a proxy's next hop is a server, so it retries)
    assert rows[i - 1][6:9] == ["*", "", "Message or connection acked with status Retry and response 451 4.4.0 "
                                         "DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; "
                                         "nonexistent domain"]
    # the same list with the DC first: the ISP server is never asked
    fixed = run(write_scenario, tmp_path, ISP + """
        [[change]]
        cmdlet = "Set-FrontendTransportService"
        Identity = "CMHYBD01"
        InternalDNSServers = ["192.168.1.11", "202.88.152.10"]
        InternalDNSAdapterEnabled = false
        """ + FROM_CLOUD, name="fixed")
    assert fixed.message("in")["fate"] == "delivered"
    assert not any("PRX2" in x for x in fe_replies(fixed))


def test_unreachable_frontend_resolver_gives_prx2_with_errorretry(write_scenario, tmp_path):
    """Seed 001 error 7's detail: a resolver that does not answer is `ErrorRetry` (no DNS server at
    203.0.113.53); the Front End logs its proxy's ack, then PRX2."""
    r = run(write_scenario, tmp_path, ISP + """
        [[change]]
        cmdlet = "Set-FrontendTransportService"
        Identity = "CMHYBD01"
        InternalDNSServers = ["203.0.113.53"]
        InternalDNSAdapterEnabled = false
        """ + FROM_CLOUD, name="silent")
    rows = folder_rows(r.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    i = next(i for i, x in enumerate(rows) if x[6] == ">" and "PRX2" in x[7])
    assert rows[i - 1][8] == ("Message or connection acked with status Retry and response 451 4.4.0 DNS query "
                              "failed. The error was: DNS query failed with error ErrorRetry")


def test_a_list_set_while_the_adapter_switch_is_on_changes_nothing(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, ISP + """
        [[change]]
        cmdlet = "Set-FrontendTransportService"
        Identity = "CMHYBD01"
        InternalDNSServers = ["202.88.152.10"]
        """ + FROM_CLOUD)
    assert r.message("in")["fate"] == "delivered"


def test_isp_resolver_on_the_edge_breaks_the_edges_relay_to_the_site(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, ISP + """
        [[change]]
        cmdlet = "Set-DnsClientServerAddress"
        Server = "CMEDGE01"
        ServerAddresses = ["202.88.152.10", "192.168.1.11"]

        [[message]]
        id = "in"
        at = "+00:01:00"
        from = "alex@fabrikam.com"
        to = ["raghu@cloudmonkeys.xyz"]
        """)
    m = r.message("in")
    assert m["fate"] in ("pending", "failed")
    where = (m["pending"] or m["failed"])[0]
    assert where["server"] == "CMEDGE01"
    reason = where.get("last_error") or where.get("reason")
    assert "DNS" in reason and "NonExistentDomain" in reason  # cmhybd01 does not exist in the public zone


def test_servfail_upstream_gives_error_retry_on_the_hub_and_4_4_312_in_exo(write_scenario, tmp_path):
    # PUBLIC-DNS answers SERVFAIL: the DC (which forwards to it) fails external names only
    r = run(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:30"
        cmdlet = "Set-LabDnsServer"
        Identity = "PUBLIC-DNS"
        Mode = "servfail"
        """ + TO_CLOUD + FROM_CLOUD)
    out = r.message("out")["pending"][0]
    assert out["server"] == "CMHYBD01"
    assert out["last_error"].startswith("451 4.4.0 DNS query failed") and "ErrorRetry" in out["last_error"]
    inbound = r.message("in")["pending"][0]
    assert inbound["server"] == "EXO" and inbound["last_error"].startswith("450 4.4.312 DNS query failed")


def test_the_dc_answering_servfail_stops_submission_and_proxying(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:30"
        cmdlet = "Set-LabDnsServer"
        Identity = "DC01"
        Mode = "servfail"
        """ + TO_CLOUD + FROM_CLOUD)
    assert r.message("out")["pending"][0]["queue"] == "Outbox"  # the Hub's name does not resolve
    # the Front End cannot resolve the CRL host either: EOP's certificate is 'RevocationOffline', the
    # capability check fails and the session is refused at MAIL FROM (seed 000's pattern)
    rows = folder_rows(r.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    assert any(x[8] == "Client certificate chain validation status: 'RevocationOffline'" for x in rows)
    assert "454 4.7.5 Certificate validation failure" in fe_replies(r)


def test_stopped_or_unreachable_dns_server_times_out_and_recovers(write_scenario, tmp_path):
    stopped = run(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:30"
        cmdlet = "Set-LabDnsServer"
        Identity = "DC01"
        Running = false

        [[change]]
        at = "+00:10:00"
        cmdlet = "Set-LabDnsServer"
        Identity = "DC01"
        Running = true
        """ + TO_CLOUD, name="stopped", duration="00:30:00")
    assert stopped.message("out")["fate"] == "delivered"
    firewalled = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "New-LabNetworkRule"
        Name = "no DNS to the DC"
        Source = "CMHYBD01"
        Destination = "DC01"
        Ports = [53]
        Protocol = "UDP"
        Action = "Drop"
        """ + TO_CLOUD, name="firewalled")
    held = firewalled.message("out")["pending"][0]
    assert (held["server"], held["queue"]) == ("CMHYBD01", "Outbox")  # submission cannot resolve the Hub


def test_eop_block_list_follows_the_listed_address(write_scenario, tmp_path):
    listing = """
        [[change]]
        cmdlet = "New-LabDnsZone"
        Server = "PUBLIC-DNS"
        Name = "zen.spamhaus.org"

        [[change]]
        cmdlet = "Set-LabDnsRecord"
        Server = "PUBLIC-DNS"
        ZoneName = "zen.spamhaus.org"
        Name = "25.113.0.203.zen.spamhaus.org"
        Type = "A"
        Value = "127.0.0.4"
        """
    r = run(write_scenario, tmp_path, listing + """
        [[message]]
        id = "direct"
        at = "+00:01:00"
        from = "alex@fabrikam.com"
        to = ["ramki@cloudfield.onmicrosoft.com"]

        [[message]]
        id = "hybrid"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["ramki@cloudmonkeys.xyz"]
        """)
    failed = r.message("direct")["failed"][0]["reason"]
    assert failed.startswith("550 5.7.1 Service unavailable, Client host [203.0.113.25] blocked using Spamhaus.")
    assert r.message("hybrid")["fate"] == "delivered"  # 27.7.57.241 is not listed (and is attributed anyway)


def test_attributed_hybrid_mail_is_not_checked_against_block_lists(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "New-LabDnsZone"
        Server = "PUBLIC-DNS"
        Name = "zen.spamhaus.org"

        [[change]]
        cmdlet = "Set-LabDnsRecord"
        Server = "PUBLIC-DNS"
        ZoneName = "zen.spamhaus.org"
        Name = "241.57.7.27.zen.spamhaus.org"
        Type = "A"
        Value = "127.0.0.11"
        """ + TO_CLOUD)
    assert r.message("out")["fate"] == "delivered"  # the HCW inbound connector attributes it: no IP reputation


def test_edge_provider_with_default_text_and_a_bitmask(write_scenario, tmp_path):
    r = run(write_scenario, tmp_path, """
        [[change]]
        cmdlet = "New-LabDnsZone"
        Server = "PUBLIC-DNS"
        Name = "bl.example.net"

        [[change]]
        cmdlet = "Set-LabDnsRecord"
        Server = "PUBLIC-DNS"
        ZoneName = "bl.example.net"
        Name = "25.113.0.203.bl.example.net"
        Type = "A"
        Value = "127.0.0.2"

        [[change]]
        cmdlet = "Add-IPBlockListProvider"
        Name = "Example BL"
        LookupDomain = "bl.example.net"
        IPAddressesMatch = ["127.0.0.2"]

        [[message]]
        id = "in"
        at = "+00:01:00"
        from = "alex@fabrikam.com"
        to = ["raghu@cloudmonkeys.xyz", "priya@cloudmonkeys.xyz"]
        """)
    reasons = {f["recipient"]: f["reason"] for f in r.message("in")["failed"]}
    text = "550 5.7.1 Recipient not authorized, your IP has been found on a block list"
    assert reasons == {"raghu@cloudmonkeys.xyz": text, "priya@cloudmonkeys.xyz": text}  # every RCPT refused
    rows = folder_rows(r.out, "CMEDGE01", "Edge", "SmtpReceive")
    assert sum(1 for x in rows if x[7] == text) == 2


def test_dns_scenarios_hold_their_expectations(tmp_path):
    for sid in ("dns-isp-resolvers-prx2", "dns-blocklist-spamhaus-eop", "dns-blocklist-edge-provider",
                "dns-cache-stale-record"):
        rc, stdout, _ = run_cli(["run", sid, "--out", str(tmp_path / sid)])
        assert rc == 0, stdout
