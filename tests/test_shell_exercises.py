"""`labsim shell` on the live lab (real loopback sockets): every catalog exercise is solved by its
reference solution typed into the shell, an empty session and a wrong fix are not; changes that a
service reads at start wait for Restart-Service; scripted use's exit codes and transcript."""

from __future__ import annotations

import csv
import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from conftest import SCENARIOS

from labsim import cli
from labsim.engine.driver import run_scenario
from labsim.manifest import FAILED_HOPS, read_manifest
from labsim.scenario.loader import load_scenario
from labsim.shell.parser import parse
from labsim.shell.session import LabSession

EXERCISES = sorted(p.stem for p in SCENARIOS.glob("*.toml") if load_scenario(p).scenario.exercise is not None)

EDGE_LOGS = "\\\\CMEDGE01\\c$\\Program Files\\Microsoft\\Exchange Server\\V15\\TransportRoles\\Logs\\Edge\\ProtocolLog"

# A fix that is wrong or a workaround, per exercise: each must not pass.
WRONG = {
    # the Front End's DNS is fixed in AD but the service is never restarted: it still asks the ISP
    "dns-isp-resolvers-prx2": "Set-FrontendTransportService CMHYBD01 -InternalDNSServers 192.168.1.11 "
                              "-InternalDNSAdapterEnabled $false; Start-Sleep -Seconds 900",
    # TLS switched off on the connector instead of putting the key back
    "cert-tlscertname-no-private-key": "Set-SendConnector 'Outbound to Office 365' -RequireTLS $false "
                                       "-TlsAuthLevel $null; Start-Sleep -Seconds 900",
    # the catch-all connector given the hybrid certificate: mail flows, but anyone is let in as the service
    "net-lb-vip-default-connector": "Set-ReceiveConnector 'CMHYBD01\\Default Frontend CMHYBD01' -TlsCertificateName "
                                    "'<I>CN=labsim Public Issuing CA 1, O=labsim Public Trust, C=US<S>"
                                    "CN=mail.cloudmonkeys.xyz' -Fqdn mail.cloudmonkeys.xyz; Start-Sleep -Seconds 1800",
    # the wrong service restarted: MSExchangeTransport stays stopped
    "svc-transport-stopped": "Start-Sleep -Seconds 240; Restart-Service MSExchangeFrontEndTransport; "
                             "Start-Sleep -Seconds 1200",
    # the right line of the connectivity log, the wrong cause: the domain does not exist, nothing refused
    "dns-nxdomain-recipient-domain": "Start-Sleep -Seconds 120; Get-ChildItem '\\\\CMEDGE01\\c$\\Program Files\\Microsoft\\Exchange Server\\V15\\TransportRoles\\Logs\\Edge\\Connectivity' | Get-Content | "
                                     "Where-Object {$_ -match 'NonExistentDomain reported by'} | Select-Object -First 1 | "
                                     "ForEach-Object {Submit-LabFinding -Cause ConnectionRefused -Evidence $_}",
    # a server failure named as a nonexistent domain (Exchange retried it: the domain exists)
    "dns-servfail-partner": "Get-ChildItem '\\\\CMEDGE01\\c$\\Program Files\\Microsoft\\Exchange Server\\V15\\TransportRoles\\Logs\\Edge\\Connectivity' | Get-Content | Where-Object {$_ -match 'ErrorRetry reported by'} | "
                            "Select-Object -First 1 | ForEach-Object {Submit-LabFinding -Cause DnsNonExistentDomain -Evidence $_}",
    # AD LDS reinstalled and started, but the Edge's Transport service is never started again
    "svc-adam-database-missing": "Install-LabAdamInstance -Server CMEDGE01; Start-Service ADAM_MSExchange -Server CMEDGE01; "
                                 "Start-Sleep -Seconds 1200",
    # transport restarted, Mailbox Transport Submission left stopped: the mail stays in the Outbox
    "svc-submission-stopped": "Start-Sleep -Seconds 240; Restart-Service MSExchangeTransport; Start-Sleep -Seconds 600",
    # the connector enabled again, but the suspended Unreachable queue never resumed: its message stays
    "unreachable-resubmit": "Start-Sleep -Seconds 360; Set-SendConnector 'EdgeSync - Default-First-Site-Name to "
                            "Internet' -Enabled $true; Start-Sleep -Seconds 600",
    # TLS without validating EOP's certificate: mail flows, the right-fix check refuses it
    "cert-wrong-tlsdomain": "Start-Sleep 120; Set-SendConnector 'Outbound to Office 365' -TlsAuthLevel EncryptionOnly; "
                            "Get-Queue | ? {$_.Status -eq 'Retry'} | Retry-Queue; Start-Sleep 300",
    # TLS switched off instead of removing the key-less duplicate
    "cert-renewed-duplicate": "Start-Sleep 120; Set-SendConnector 'Outbound to Office 365' -RequireTLS $false "
                              "-TlsAuthLevel $null -IgnoreSTARTTLS $true; Get-Queue | ? {$_.Status -eq 'Retry'} | "
                              "Retry-Queue; Start-Sleep 300",
    # -AddressSpaces without @{Add=...} replaces the list: the routing domain goes, remote mailboxes go Unreachable
    "route-unreachable-no-connector": "Start-Sleep 180; Set-SendConnector 'Outbound to Office 365' -AddressSpaces "
                                      "'smtp:cloudfield.onmicrosoft.com;1'; Retry-Queue CMHYBD01\\Unreachable "
                                      "-Resubmit $true; Start-Sleep 300",
    # a higher MaxHopCount only moves where the loop is caught
    "route-loop-internalrelay": "Start-Sleep 600; Get-ReceiveConnector -Server CMHYBD01 | Set-ReceiveConnector "
                                "-MaxHopCount 100",
    # InternalRelay on both sides: the stop-gap of one side plus the loop of route-loop-internalrelay
    "route-authoritative-exo": "Start-Sleep 180; Set-LabTenantAcceptedDomain -Identity cloudmonkeys.xyz -DomainType "
                               "InternalRelay; Set-AcceptedDomain cloudmonkeys.xyz -DomainType InternalRelay",
    # validation switched off on the way out: mail from the cloud still fails on the way in
    "cert-untrusted-root": "Start-Sleep 120; Set-SendConnector 'Outbound to Office 365' -TlsAuthLevel EncryptionOnly; "
                           "Get-Queue | ? {$_.Status -eq 'Retry'} | Retry-Queue; Start-Sleep 1800",
    # the connector pointed at the Edge's Internet name: the Edge presents its own certificate
    "exo-connector-smarthost-unresolvable": "Get-OutboundConnector | Set-OutboundConnector -SmartHosts "
                                            "smtp.cloudmonkeys.xyz; Start-Sleep -Seconds 1800",
    # the name check switched off on Exchange Online's side instead of putting the name on the certificate
    "cert-hybrid-san-missing": "Start-Sleep 120; Get-OutboundConnector | Set-OutboundConnector -TlsSettings "
                               "EncryptionOnly; Start-Sleep -Seconds 1800",
    # the partner allowed by switching the block list provider off
    "dns-blocklist-edge-provider": "Start-Sleep 120; Remove-IPBlockListProvider -Identity Spamhaus; Start-Sleep 300",
    # EOP's IP Allow List does not lift the Spamhaus rejection; the connector stays off
    "dns-blocklist-spamhaus-eop": "Start-Sleep 120; Set-HostedConnectionFilterPolicy Default -IPAllowList 27.7.57.241; "
                                  "Get-Queue | ? {$_.Status -eq 'Retry'} | Retry-Queue; Start-Sleep 300",
    # TLS switched off on the relay connector: EXO still refuses the revoked certificate inbound
    "cert-revoked": "Start-Sleep 180; Set-SendConnector 'Outbound via Office 365' -RequireTLS $false -TlsAuthLevel $null; "
                    "Start-Sleep 600",
    # the stuck message deleted instead of resubmitted
    "queue-retry-until-expiry": "Start-Sleep 900; Get-Queue | ? {$_.Status -eq 'Retry'} | Get-Message | Remove-Message "
                                "-WithNDR $false; Set-SendConnector 'Outbound to Office 365' -SmartHosts $null "
                                "-DNSRoutingEnabled $true",
    # the right session, the wrong link
    "net-reset-mid-session": "Start-Sleep 600; Get-ChildItem '" + EDGE_LOGS + "\\SmtpSend' | Get-Content | Where-Object "
                             "{$_ -match ',-,,Remote$'} | Select-Object -First 1 | ForEach-Object {Submit-LabFinding "
                             "-Cause ConnectionReset -Link CMHYBD01,CMEDGE01 -Evidence $_}",
    # a fast session as the evidence of a slow link
    "net-slow-link": "Start-Sleep 600; Get-ChildItem '" + EDGE_LOGS + "\\SmtpReceive' | Get-Content | Where-Object "
                     "{$_ -match ', \\d{3,}\\.\\d+ KB/sec'} | Select-Object -First 1 | ForEach-Object {Submit-LabFinding "
                     "-Cause SlowLink -Link FABRIKAM-MX,CMEDGE01 -Evidence $_}",
    # the right finding, and the Edge's limit raised to hide the client's errors
    "proto-client-errors": "Get-ChildItem '" + EDGE_LOGS + "\\SmtpReceive' | Get-Content | Where-Object {$_ -match "
                           "'421 4.7.0'} | Select-Object -First 1 | ForEach-Object {Submit-LabFinding -Cause "
                           "ClientProtocolErrors -Evidence $_}; Get-ReceiveConnector -Server CMEDGE01 | "
                           "Set-ReceiveConnector -MaxProtocolErrors 100",
    # validation switched off on the way out: EOP's certificate still cannot be checked on the way in
    "org-two-cas-cdp-offline": "Start-Sleep 120; Set-SendConnector 'Outbound to Office 365 - 5c1e0b7a' -TlsAuthLevel "
                               "EncryptionOnly; Get-Queue | ? {$_.Status -eq 'Retry'} | Retry-Queue; Start-Sleep 1800",
    # TSEX02 taken out of the balancer's pool: no more deferrals, but the member still has no valid certificate
    "org-dag-lb-expired-member-cert": "Start-Sleep 300; Set-LabLoadBalancer -Identity TS-LB1 -Backends @('TSEX01'); "
                                      "Start-Sleep 1800",
    # the Branch site's connector disabled: its mail leaves through HQ's Edge, TSEDGE02 stays down
    "org-two-sites-branch-edge-down": "Start-Sleep 240; Set-SendConnector 'EdgeSync - Branch to Internet' -Enabled "
                                      "$false; Get-Queue -Server TSBR01 | ? {$_.Status -eq 'Retry'} | Retry-Queue "
                                      "-Resubmit $true; Start-Sleep 1200",
}


# --- which scenarios have a fault: what their own run shows -------------------------------------------
# A scenario is a fault scenario when its run (`labsim run`, the scenario's own fix included) leaves
# evidence of a failure in its output tree, whatever its changes are: a declared organisation sets
# up a healthy connector with [[change]] blocks, and its fault may be in the declared world itself (a
# CDP host that is down). The evidence read is what an admin reads: summary.json's fates and
# notifications, manifest.json's failed and deferred hops, the queues' retries, the warning and error
# events (and the Service Control Manager's "entered the stopped state") of the event logs, and
# any 4xx/5xx reply in an SMTP conversation of the protocol logs.

_EVENT = re.compile(r"<EventID[^>]*>(\d+)</EventID><Version>\d+</Version><Level>(\d)</Level>.*?<TimeCreated "
                    r"SystemTime='([^']*)'/>.*?<EventData>(?:<Data Name='param1'>([^<]*</Data><Data Name='param2'>"
                    r"[^<]*))?")
_SMTP_ERROR = re.compile(r"[45]\d\d[ -]")


def failures(out: Path) -> list[str]:
    """What in the finished run in `out` shows a failure (empty for a healthy run)."""
    found: list[str] = []
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for m in summary["messages"]:
        if m["fate"] != "delivered":
            found.append(f"message {m['id']} {m['fate']}")
        if m.get("notifications"):
            found.append(f"message {m['id']}: a delivery status notification")
    for m in read_manifest(out)["messages"]:
        found += sorted({f"message {m['id']}: a {h['event']} hop" for h in m["hops"] if h["event"] in FAILED_HOPS})
    history = out / "queue-history.jsonl"
    if history.is_file():
        for line in history.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            items = [row["Queue"]] if "Queue" in row else row.get("Set", [])
            found += [f"{row['Server']}: retry ({it['LastError'][:40]})" for it in items if it.get("LastError")]
    for path in sorted(out.glob("*/EventLog/*.xml")):
        where = f"{path.parent.parent.name} {path.stem}"
        states = [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in _EVENT.finditer(path.read_text("utf-8-sig"))]
        found += [f"{where} event {eid} level {level}" for eid, level, _, _ in states if level in "123"]
        # a service that stopped and was not started again at once (a restart logs both at one time)
        found += [f"{where} event 7036: {data.split('<')[0]} stopped" for eid, _, when, data in states
                  if eid == "7036" and data.endswith(">stopped") and (eid, "4", when, data[:-7] + "running") not in states]
    for path in sorted(out.glob("*/TransportRoles/Logs/*/ProtocolLog/Smtp*/*.LOG")):
        for row in csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))):
            if len(row) > 7 and not row[0].startswith("#") and row[6] in "<>" and _SMTP_ERROR.match(row[7]):
                found.append(f"{path.parts[-7]} {path.parts[-2]}: {row[7][:40]}")
    return found


@pytest.fixture(scope="module")
def catalog_failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Each catalog scenario run once (`labsim run`), with what its run shows failing."""
    found = {}
    for path in sorted(SCENARIOS.glob("*.toml")):
        out = tmp_path_factory.mktemp(path.stem) / "out"
        run_scenario(load_scenario(path), out=out)
        found[path.stem] = failures(out)
    return found


@pytest.mark.integration
def test_every_fault_scenario_is_an_exercise(catalog_failures):
    """issue 13's 'Done means': every fault scenario - one whose own run shows a failure - has an
    exercise (its reference solution passing and its empty session failing are
    test_reference_solution_passes / test_empty_session_fails, which run over EXERCISES). A scenario
    whose run shows nothing failing has no exercise unless it grades a diagnosis (net-slow-link:
    nothing fails, the evidence is in the timing); the healthy references have none."""
    faults = sorted(sid for sid, found in catalog_failures.items() if found)
    assert len(faults) >= 30
    missing = [sid for sid in faults if load_scenario(sid).scenario.exercise is None]
    assert missing == []
    for sid in sorted(set(EXERCISES) - set(faults)):
        exercise = load_scenario(sid).scenario.exercise
        assert exercise is not None and exercise.check.finding is not None, sid
    for healthy in ("hybrid-baseline", "org-tailspin-baseline"):
        assert catalog_failures[healthy] == [], healthy
        assert load_scenario(healthy).scenario.exercise is None


@pytest.mark.integration
def test_a_failure_in_the_declared_world_is_a_fault(catalog_failures):
    """org-two-cas-cdp-offline changes nothing that breaks (its fault is a CDP host declared down);
    org-tailspin-baseline changes its receive connector and is healthy: the run decides."""
    assert catalog_failures["org-two-cas-cdp-offline"]
    assert any("RevocationOffline" in f or "4.7.5" in f or "event 11022" in f
               for f in catalog_failures["org-two-cas-cdp-offline"])
    assert catalog_failures["org-tailspin-baseline"] == []
    # mail waited in the Outbox and nothing failed: the stopped service is the evidence
    assert catalog_failures["svc-submission-stopped"] == [
        "CMHYBD01 System event 7036: Microsoft Exchange Mailbox Transport Submission stopped"]


def shell(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["shell", *argv])
    return code, buf.getvalue()


def grade_of(out: Path) -> dict:
    return json.loads((out / "shell-transcript.json").read_text(encoding="utf-8"))["grade"]


def test_the_catalog_has_exercises_and_wrong_fixes():
    assert len(EXERCISES) >= 3
    assert len(WRONG) >= 3 and set(WRONG) <= set(EXERCISES)


@pytest.mark.parametrize("sid", EXERCISES)
def test_every_exercise_text_parses(sid):
    ex = load_scenario(sid).scenario.exercise
    assert ex is not None and ex.hints
    for line in [*ex.solution, *(r.test for r in ex.check.require)]:
        parse(line)


@pytest.mark.integration
@pytest.mark.parametrize("sid", EXERCISES)
def test_reference_solution_passes(sid, tmp_path):
    out = tmp_path / "o"
    code, text = shell(sid, "--exercise", "--replay", "--out", str(out))
    assert code == 0, text
    assert "Result: PASSED" in text
    g = grade_of(out)
    assert g["passed"] and all(c["ok"] for c in g["checks"])
    transcript = (out / "shell-transcript.txt").read_text(encoding="utf-8")
    assert load_scenario(sid).scenario.exercise.solution[0] in transcript


@pytest.mark.integration
@pytest.mark.parametrize("sid", EXERCISES)
def test_empty_session_fails(sid, tmp_path):
    out = tmp_path / "o"
    code, text = shell(sid, "--exercise", "--command", "", "--out", str(out))
    assert code == 1
    g = grade_of(out)
    assert not g["passed"]
    failing = [c["what"] for c in g["checks"] if not c["ok"]]
    assert failing and f"[FAIL] {failing[0]}" in text  # the grade says what still fails


@pytest.mark.integration
@pytest.mark.parametrize("sid", sorted(WRONG))
def test_wrong_fix_fails(sid, tmp_path):
    out = tmp_path / "o"
    code, text = shell(sid, "--exercise", "--command", WRONG[sid], "--out", str(out))
    assert code == 1, text
    assert "Result: NOT PASSED" in text
    assert not grade_of(out)["passed"]


@pytest.mark.integration
async def test_service_settings_wait_for_the_restart(tmp_path):
    """Set-TransportService -InternalDNSServers is shown at once (AD) but used from the restart on."""
    s = LabSession(load_scenario("dns-isp-resolvers-prx2"), tmp_path, exercise=True)
    await s.start()
    try:
        hub = s.rt.model.organization.server("CMHYBD01").transport
        await s.change("Set-TransportService", {"Identity": "CMHYBD01", "InternalDNSServers": ["192.168.1.11"],
                                                "MessageRetryInterval": "00:05:00"})
        assert hub.internal_dns_servers == []  # the running service still has the old list
        assert hub.message_retry_interval == "00:05:00"  # a setting without a restart rule applies at once
        [svc] = [o for o in (await s.ctx.commands["get-transportservice"].fn(s.ctx, {"Identity": "CMHYBD01"}, []))]
        assert svc.get("InternalDNSServers") == ["192.168.1.11"]
        assert [p.service for p in s.pending] == ["MSExchangeTransport"]
        await s.service("Restart-Service", "MSExchangeFrontEndTransport", "CMHYBD01")
        assert hub.internal_dns_servers == []  # another service's restart does not apply it
        await s.service("Restart-Service", "MSExchangeTransport", "CMHYBD01")
        assert hub.internal_dns_servers == ["192.168.1.11"]
        assert s.pending == []
    finally:
        await s.stop()


@pytest.mark.integration
def test_scripted_use_exit_codes(tmp_path):
    code, text = shell("hybrid-baseline", "--command", "Get-Queue; Get-Service MSExchangeTransport",
                       "--out", str(tmp_path / "a"))
    assert code == 0
    assert "DeliveryType Status MessageCount Velocity RiskLevel OutboundIPPool NextHopDomain" in text
    assert "CMHYBD01\\Submission" in text
    assert "Running  MSExchangeTrans... Microsoft Exchange Transport" in text  # Get-Service's fixed 18-wide Name
    code, text = shell("hybrid-baseline", "--command", "Get-Qeueu", "--out", str(tmp_path / "b"))
    assert code == 1 and "The term 'Get-Qeueu' is not recognized" in text
    code, text = shell("hybrid-baseline", "--command", "Get-Queue |", "--out", str(tmp_path / "c"))
    assert code == 2 and "An empty pipe element is not allowed." in text
    code, _ = shell("hybrid-baseline", "--exercise", "--out", str(tmp_path / "d"))
    assert code == 2  # no [exercise] in that scenario


@pytest.mark.integration
def test_commands_are_read_from_stdin_when_it_is_not_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Get-Hint\nStart-Sleep -Seconds 120\nGet-Queue | measure\n"))
    out = tmp_path / "o"
    code, text = shell("dns-isp-resolvers-prx2", "--exercise", "--out", str(out))
    assert code == 1
    data = json.loads((out / "shell-transcript.json").read_text(encoding="utf-8"))
    assert [c["command"] for c in data["commands"]] == ["Get-Hint", "Start-Sleep -Seconds 120", "Get-Queue | measure"]
    assert data["hints_used"] == 1
    assert data["commands"][1]["lab_time"] < data["commands"][2]["lab_time"]
    assert "Count    : 2" in text


@pytest.mark.parametrize("body, key, problem", [
    ('[exercise]\nobjective = "o"\nsolution = ["Get-Queue"]\nhint = ["typo"]\n', "exercise.hint", "unknown key"),
    ('[exercise]\nobjective = "o"\nsolution = []\n', "exercise.solution", "at least 1"),
    ('[exercise]\nobjective = "o"\nsolution = ["Get-Queue"]\n[[exercise.check.probe]]\nfrom = "a@b.c"\n'
     'to = ["x@y.z"]\nmailbox = "mars:x@y.z"\n', "exercise.check.probe[0].mailbox", "realm:address"),
])
def test_a_bad_exercise_block_is_one_error_naming_the_key(write_scenario, body, key, problem):
    from conftest import run_cli, scenario_text

    path = write_scenario(scenario_text(body))
    rc, _, err = run_cli(["show", str(path)])
    assert rc == 2
    assert key in err and problem in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.integration
def test_a_requirement_that_does_not_parse_fails_the_grade_with_the_parser_s_words(write_scenario, tmp_path):
    from conftest import scenario_text

    path = write_scenario(scenario_text('[exercise]\nobjective = "o"\nsolution = ["Get-Queue"]\n'
                                        '[[exercise.check.require]]\ntest = "(Get-Queue"\nsays = "queues listed"\n'))
    code, text = shell(str(path), "--exercise", "--command", "", "--out", str(tmp_path / "o"))
    assert code == 1
    assert "[FAIL] queues listed: queues listed (Missing closing ')' in expression.)" in text


def test_get_winevent_reads_the_system_log_apart_from_the_application_log(tmp_path):
    """The Service Control Manager's events are in the System log only (engine.eventlog routes them)."""
    cmd = "Get-WinEvent -ComputerName CMEDGE01 -LogName System | Format-List Id,ProviderName,Message"
    code, text = shell("svc-adam-database-missing", "--exercise", "--command", cmd, "--out", str(tmp_path / "o"))
    assert "Id           : 7023" in text and "ProviderName : Service Control Manager" in text
    assert "The Microsoft Exchange Transport service depends on the Microsoft Exchange ADAM service" in text
    # the Edge's Application log has no event of its own in this scenario: none of SCM's appear there
    code, text = shell("svc-adam-database-missing", "--exercise", "--command",
                       "Get-WinEvent -ComputerName CMEDGE01 -LogName Application", "--out", str(tmp_path / "p"))
    assert "No events were found that match the specified selection criteria." in text
    assert "Service Control Manager" not in text.split("Exercise:")[0]


@pytest.mark.integration
def test_a_replay_writes_the_same_logs_twice(tmp_path):
    """Determinism holds in the shell too: Test-NetConnection's probe is logged by the receiving
    server with the lab's virtual source endpoint, not the machine's ephemeral port (it used to vary
    on every run), and the probe closes at once (Remote), as a TCP test does."""
    trees = []
    for name in ("a", "b"):
        out = tmp_path / name
        code, text = shell("net-exo-to-onprem-refused", "--exercise", "--replay", "--out", str(out))
        assert code == 0, text
        trees.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*"))
                      if p.is_file() and not p.name.startswith("shell-transcript")})
    assert trees[0] == trees[1]
    recv = b"".join(v for k, v in trees[0].items() if "FrontEnd" in k.parts and "SmtpReceive" in k.parts)
    from_exo = [ln.split(",") for ln in recv.decode("utf-8-sig").splitlines() if ",40.93.131.26:" in ln]
    probe = [row for row in from_exo if row[2] == from_exo[0][2]]  # the probe is EXO's first session
    assert [row[6] for row in probe] == ["+", ">", "-"] and probe[-1][8] == "Remote"
