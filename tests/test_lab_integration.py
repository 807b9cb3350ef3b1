"""The lab over real loopback: hybrid-baseline end to end, its logs, mailboxes and determinism.

Most tests read the session's one baseline run (conftest `baseline`); the others make their own
short runs through `engine.driver.run_loaded`.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import filecmp
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    FOUR_DIRECTIONS,
    Run,
    exlog_check,
    folder_rows,
    log_files,
    rows_of,
    run_cli,
    scenario_text,
    sessions,
)

from labsim.engine.driver import run_loaded
from labsim.scenario.loader import load_scenario

pytestmark = pytest.mark.integration

SUBJECTS = {
    "exo-to-onprem": "Quarterly report (from Exchange Online)",
    "onprem-to-exo": "Re: Quarterly report (from on-premises)",
    "onprem-to-internet": "Invoice 2026-0412",
    "internet-to-onprem": "Re: Invoice 2026-0412",
}
MAILBOX = {
    "exo-to-onprem": ("onprem", "raghu@cloudmonkeys.xyz"),
    "onprem-to-exo": ("exo", "ramki@cloudmonkeys.xyz"),
    "onprem-to-internet": ("internet", "alex@fabrikam.com"),
    "internet-to-onprem": ("onprem", "raghu@cloudmonkeys.xyz"),
}
LOG_DIRS = {
    "CMHYBD01/TransportRoles/Logs/FrontEnd/ProtocolLog/SmtpReceive",
    "CMHYBD01/TransportRoles/Logs/FrontEnd/ProtocolLog/SmtpSend",
    "CMHYBD01/TransportRoles/Logs/Hub/ProtocolLog/SmtpReceive",
    "CMHYBD01/TransportRoles/Logs/Hub/ProtocolLog/SmtpSend",
    "CMEDGE01/TransportRoles/Logs/Edge/ProtocolLog/SmtpReceive",
    "CMEDGE01/TransportRoles/Logs/Edge/ProtocolLog/SmtpSend",
}
SENDING_CERT = "Sending certificate Subject Issuer name Serial number Thumbprint Not before Not after Subject alternate names"
REMOTE_CERT = "Remote certificate Subject Issuer name Serial number Thumbprint Not before Not after Subject alternate names"


def session_from(rows: list[list[str]], remote_prefix: str) -> list[list[str]]:
    """The one session whose remote endpoint starts with `remote_prefix`."""
    found = [s for s in sessions(rows).values() if s[0][5].startswith(remote_prefix)]
    assert len(found) == 1, f"{len(found)} sessions from {remote_prefix}"
    return found[0]


def has(session: list[list[str]], event: str, text: str, field: int = 7) -> bool:
    return any(r[6] == event and text in r[field] for r in session)


def assert_tls_receive_session(session: list[list[str]], cert_subject: str = "", verb: str = "STARTTLS") -> None:
    assert has(session, "<", verb) and has(session, ">", "220 2.0.0 SMTP server ready")
    assert any(r[6] == "*" and r[8] == SENDING_CERT and r[7].startswith(f" {cert_subject}") for r in session)
    assert has(session, "*", "negotiation succeeded", 8)
    assert has(session, ">", "Queued mail for delivery")
    assert re.match(r"^250 2\.6\.0 <[^>]+> \[InternalId=\d+, Hostname=\S+\] \d+ bytes in \d+\.\d{3}, \d+\.\d{3} "
                    r"KB/sec Queued mail for delivery$", next(r[7] for r in session if "Queued mail" in r[7]))


# --- the four directions ---------------------------------------------------------------------------------

def test_baseline_exits_0_and_every_expectation_holds(baseline: Run):
    assert baseline.rc == 0, baseline.stdout + baseline.stderr
    m = re.search(r"expectations: (\d+)/(\d+) hold", baseline.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) >= 15, baseline.stdout
    assert baseline.stderr == ""
    summary = baseline.summary
    assert summary["events"] == []  # a healthy lab raises no 12014 / 11022 / 2022 events
    assert summary.get("internal_errors", []) == []
    assert all(q["MessageCount"] == 0 and q["LastError"] == "" for q in summary["queues"])


@pytest.mark.parametrize("mid", list(MAILBOX))
def test_each_direction_is_delivered_to_the_right_mailbox(baseline: Run, mid):
    m = baseline.message(mid)
    assert m["fate"] == "delivered" and not m["failed"] and not m["pending"]
    (d,) = m["delivered"]
    assert (d["realm"], d["recipient"]) == MAILBOX[mid]
    eml = baseline.out / d["path"]
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == SUBJECTS[mid]
    assert msg["Message-ID"] == m["message_id"]
    assert msg["To"] == ", ".join(m["to"])
    received = msg.get_all("Received")
    assert received and len(received) >= 2  # at least the submission hop and the delivery hop
    assert all("(version=TLS1_2" in r or "with ESMTPS" in r for r in received)  # every hop over STARTTLS
    assert msg.get_content().strip() == "This message was sent by labsim."


def test_mailboxes_hold_exactly_the_delivered_messages(baseline: Run):
    emls = sorted(p.relative_to(baseline.out).as_posix() for p in (baseline.out / "mailboxes").rglob("*.eml"))
    assert emls == sorted(d["path"] for m in baseline.summary["messages"] for d in m["delivered"])


def test_received_headers_show_virtual_addresses_and_nat(baseline: Run):
    exo = email.message_from_bytes((baseline.out / baseline.message("onprem-to-exo")["delivered"][0]["path"])
                                   .read_bytes())
    assert exo.get_all("Received")[0].startswith("from mail.cloudmonkeys.xyz (27.7.57.241) by ")
    onprem = email.message_from_bytes((baseline.out / baseline.message("exo-to-onprem")["delivered"][0]["path"])
                                      .read_bytes())
    assert any("(40.93.131.26)" in r and "via Frontend Transport" in r for r in onprem.get_all("Received"))
    for eml in (baseline.out / "mailboxes").rglob("*.eml"):
        assert not re.search(rb"\b127\.\d+\.\d+\.\d+\b", eml.read_bytes()), eml


def test_summary_lists_each_message_and_the_logs(baseline: Run):
    for mid in MAILBOX:
        assert re.search(rf"^  {mid}: .* \[delivered\]$", baseline.stdout, re.MULTILINE)
    assert "CMHYBD01/TransportRoles/Logs/FrontEnd/ProtocolLog/SmtpReceive  (1 file)" in baseline.stdout
    assert baseline.summary["seed"] == 1 and baseline.summary["start"] == "2026-05-01T06:00:00.000Z"


# --- protocol logs ------------------------------------------------------------------------------------------

def test_frontend_receive_log_of_the_exo_session(baseline: Run):
    rows = folder_rows(baseline.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    s = session_from(rows, "40.93.131.26:")
    assert {r[1] for r in s} == {r"CMHYBD01\Default Frontend CMHYBD01"}
    assert {r[4] for r in s} == {"192.168.1.13:25"}
    assert s[0][6] == "+" and s[-1][6] == "-"
    assert [int(r[3]) for r in s] == list(range(len(s)))
    assert_tls_receive_session(s, "CN=mail.cloudmonkeys.xyz")  # the TlsCertificateName certificate
    assert has(s, "*", "Remote certificate", 8) and has(s, "*", "CN=mail.protection.outlook.com")
    assert has(s, "*", "Client certificate chain validation status: 'Valid'", 8)
    assert has(s, "*", "TlsDomainCapabilities='AcceptCloudServicesMail'; Status='Success'; "
                       "Domain='mail.protection.outlook.com'", 8)
    assert has(s, "*", "Proxy destination(s) obtained from OnProxyInboundMessage event", 8)
    ehlo = [r[7] for r in s if r[6] == ">" and " Hello [40.93.131.26] " in r[7]]
    assert len(ehlo) == 2 and "STARTTLS" in ehlo[0] and "STARTTLS" not in ehlo[1]


def test_frontend_proxies_to_the_hub_over_tls(baseline: Run):
    rows = folder_rows(baseline.out, "CMHYBD01", "FrontEnd", "SmtpSend")
    s = next(iter(sessions(rows).values()))
    assert s[0][1] == "Inbound Proxy Internal Send Connector" and s[0][5] == "192.168.1.13:2525"
    # between Exchange servers TLS starts with X-ANONYMOUSTLS, not STARTTLS (docs/transport-fidelity.md §1.2)
    assert has(s, ">", "X-ANONYMOUSTLS") and not has(s, ">", "STARTTLS")
    assert has(s, "*", SENDING_CERT, 8) and has(s, "<", "Queued mail for delivery")


def test_hub_send_log_to_eop(baseline: Run):
    rows = folder_rows(baseline.out, "CMHYBD01", "Hub", "SmtpSend")
    s = [r for r in rows if r[1] == "Outbound to Office 365"]
    assert s and {r[5] for r in s} == {"52.101.194.15:25"}
    assert s[0][7:] == ["None", "Set Session Permissions"] and s[1][8] == "attempting to connect"
    assert has(s, ">", "EHLO mail.cloudmonkeys.xyz")  # the connector's Fqdn
    assert has(s, "<", "Hello [27.7.57.241]")  # EOP sees the public address
    assert has(s, ">", "STARTTLS") and has(s, "<", "220 2.0.0 SMTP server ready")
    assert any(r[8] == SENDING_CERT and r[7].startswith(" CN=mail.cloudmonkeys.xyz ") for r in s)
    assert any(r[8] == REMOTE_CERT and "CN=mail.protection.outlook.com" in r[7] for r in s)
    assert has(s, ">", "RCPT TO:<ramki@cloudfield.mail.onmicrosoft.com>")
    assert has(s, "<", "Queued mail for delivery") and s[-1][6] == "-"


def test_edge_logs_both_directions(baseline: Run):
    recv = folder_rows(baseline.out, "CMEDGE01", "Edge", "SmtpReceive")
    from_hub = session_from(recv, "192.168.1.13:")
    from_internet = session_from(recv, "203.0.113.25:")
    for s, verb in ((from_hub, "X-ANONYMOUSTLS"), (from_internet, "STARTTLS")):
        assert s[0][1] == r"CMEDGE01\Default internal receive connector CMEDGE01"
        assert_tls_receive_session(s, verb=verb)
    send = folder_rows(baseline.out, "CMEDGE01", "Edge", "SmtpSend")
    out = [r for r in send if r[1] == "EdgeSync - Default-First-Site-Name to Internet"]
    inbound = [r for r in send if r[1] == "EdgeSync - Inbound to Default-First-Site-Name"]
    assert {r[5] for r in out} == {"203.0.113.25:25"} and {r[5] for r in inbound} == {"192.168.1.13:25"}
    for s, verb in ((out, "STARTTLS"), (inbound, "X-ANONYMOUSTLS")):  # EdgeSync inbound: ExchangeServer auth
        assert has(s, ">", verb) and has(s, "*", SENDING_CERT, 8)
    assert has(out, "<", "250 2.0.0 Ok: queued as") and has(inbound, "<", "Queued mail for delivery")


def test_every_log_row_has_nine_csv_fields_and_exchange_values(baseline: Run):
    files = log_files(baseline.out)
    assert len(files) == 6
    for f in files:
        raw = f.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf#Software: Microsoft Exchange Server\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
        rows = rows_of(f)
        assert rows
        for r in rows:
            assert len(r) == 9, (f, r)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r[0])
            assert re.fullmatch(r"[0-9A-F]{16}", r[2])
            assert r[6] in "+-<>*" and len(r[6]) == 1
        for s in sessions(rows).values():
            assert [int(r[3]) for r in s] == list(range(len(s)))


def test_log_file_names_and_folders(baseline: Run):
    files = log_files(baseline.out)
    assert {f.parent.relative_to(baseline.out).as_posix() for f in files} == LOG_DIRS
    for f in files:
        prefix = "RECV" if f.parent.name == "SmtpReceive" else "SEND"
        assert re.fullmatch(rf"{prefix}\d{{10}}-\d+\.LOG", f.name), f
        assert f.name[4:14] == rows_of(f)[0][0][:13].replace("-", "").replace("T", "")  # yyyyMMddHH of the rows
    # Only the on-prem Exchange servers keep transport logs (not EXO, not the Internet hosts).
    assert {p.parent.name for p in baseline.out.glob("*/TransportRoles")} == {"CMHYBD01", "CMEDGE01"}


def test_logs_show_virtual_addresses_only(baseline: Run):
    for f in log_files(baseline.out):
        for r in rows_of(f):
            for endpoint in (r[4], r[5]):
                assert not endpoint.startswith("127."), (f, r)


def test_independent_log_checker_finds_no_error(baseline: Run):
    res = subprocess.run([sys.executable, str(exlog_check()), str(baseline.out)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "errors=0" in res.stdout and "files recv=3 send=3" in res.stdout


# --- determinism ------------------------------------------------------------------------------------------

def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_same_seed_gives_byte_identical_trees_even_on_another_loopback_block(baseline: Run, tmp_path):
    again = tmp_path / "again"
    result = asyncio.run(run_loaded(load_scenario("hybrid-baseline"), out=again, block=131))
    assert result.ok
    names = tree(baseline.out)
    assert names == tree(again) and len(names) > 10
    match, mismatch, errors = filecmp.cmpfiles(baseline.out, again, names, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(names)


def test_another_seed_changes_ids_and_thumbprints_but_not_the_fates(baseline: Run, tmp_path):
    other = tmp_path / "seed7"
    rc, stdout, _ = run_cli(["run", "hybrid-baseline", "--out", str(other), "--seed", "7"])
    assert rc == 0, stdout
    a = folder_rows(baseline.out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    b = folder_rows(other, "CMHYBD01", "FrontEnd", "SmtpReceive")
    assert {r[2] for r in a}.isdisjoint({r[2] for r in b})
    def thumbs(rows: list[list[str]]) -> set[str]:
        return {r[7].split()[-4] for r in rows if r[8] == SENDING_CERT}

    assert thumbs(a) and thumbs(a).isdisjoint(thumbs(b))
    assert [m["fate"] for m in Run(rc, stdout, "", other).summary["messages"]] == ["delivered"] * 4


# --- scenario variations -----------------------------------------------------------------------------------

def test_protocol_logging_none_writes_no_frontend_receive_log_but_mail_flows(write_scenario, tmp_path):
    path = write_scenario(scenario_text("""
        [[change]]
        cmdlet = "Set-ReceiveConnector"
        Identity = 'CMHYBD01\\Default Frontend CMHYBD01'
        ProtocolLoggingLevel = "None"
    """ + FOUR_DIRECTIONS + """
        [[expect.message]]
        id = "exo-to-onprem"
        fate = "delivered"
        mailbox = "onprem:raghu@cloudmonkeys.xyz"

        [[expect.message]]
        id = "internet-to-onprem"
        fate = "delivered"
        mailbox = "onprem:raghu@cloudmonkeys.xyz"
    """))
    out = tmp_path / "out"
    result = asyncio.run(run_loaded(load_scenario(path), out=out))
    assert result.ok, [o for o in result.outcomes if not o.ok]
    assert [m["fate"] for m in result.summary["messages"]] == ["delivered"] * 4
    fe_recv = out / "CMHYBD01" / "TransportRoles" / "Logs" / "FrontEnd" / "ProtocolLog" / "SmtpReceive"
    assert not fe_recv.exists() or not list(fe_recv.iterdir())
    assert folder_rows(out, "CMEDGE01", "Edge", "SmtpReceive")  # other connectors still log


def test_long_horizon_with_nothing_pending_finishes_fast(write_scenario, tmp_path):
    path = write_scenario(scenario_text(FOUR_DIRECTIONS, head='duration = "2.00:00:00"\n'))
    t0 = time.perf_counter()
    result = asyncio.run(run_loaded(load_scenario(path), out=tmp_path / "out"))
    assert time.perf_counter() - t0 < 10
    assert [m["fate"] for m in result.summary["messages"]] == ["delivered"] * 4
    assert result.summary["end"] <= "2026-05-03T06:03:00.000Z"  # never past the last traffic + duration
    assert all(q["MessageCount"] == 0 for q in result.summary["queues"])


def test_output_folder_is_replaced_not_merged(tmp_path, write_scenario):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".labsim-output").write_text('{"labsim": "0.1.0", "mode": "run"}')  # an earlier run's tree
    (out / "stale.txt").write_text("old run")
    asyncio.run(run_loaded(load_scenario(write_scenario(scenario_text())), out=out))
    assert not (out / "stale.txt").exists() and (out / "summary.json").is_file()
