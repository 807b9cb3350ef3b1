"""logs.connectivity and logs.agent_log: the connectivity log (CONNECTLOG) of every outbound connection
and the agent log of the Connection Filtering agent, in Exchange's formats and folders
(docs/transport-logs.md), written by the same decisions that write the protocol logs."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import SAMPLES, folder_rows, rows_of, run_cli, run_text

from labsim.logs.agent_log import (
    AGENT_LOG_FIELDS,
    AgentAction,
    AgentLog,
    agent_log_folder,
)
from labsim.logs.connectivity import (
    CONNECTIVITY_FIELDS,
    ConnectionTrace,
    ConnectivityLog,
    connectivity_log_folder,
    failed_description,
    failover_description,
    resolution_failed_description,
    resolved_description,
    start_description,
    stop_description,
)

T0 = datetime(2026, 5, 1, 6, 0, 5, 123000, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def check_exchange_log(path: Path, log_type: str, fields: tuple[str, ...]) -> list[list[str]]:
    """The format checks of shared/tools/exlog_check.py, for these log types: UTF-8 BOM, the five
    header lines, CRLF, every row parsable as CSV with as many values as #Fields, ISO ms UTC times."""
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), path
    lines = raw[3:].decode("utf-8").split("\r\n")
    assert lines[-1] == "" and "\n" not in "".join(lines), "every line ends with CRLF"
    assert lines[0] == "#Software: Microsoft Exchange Server"
    assert lines[1] == "#Version: 15.0.0.0"
    assert lines[2] == f"#Log-type: {log_type}"
    assert lines[3].startswith("#Date: ") and lines[3].endswith("Z")
    assert lines[4] == "#Fields: " + ",".join(fields)
    rows = [next(csv.reader(io.StringIO(line))) for line in lines[5:-1]]
    for row in rows:
        assert len(row) == len(fields), row
        datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert lines[3] == f"#Date: {rows[0][0]}" if rows else True
    return rows


# --- the row texts (ConnectionLog's format strings) -------------------------------------------------
def test_descriptions_are_exchanges_format_strings() -> None:
    assert (start_description("DnsConnectorDelivery", "e8b09f5f-c59f-5a08-ac72-ef6ecb76cc65", 3, 1, 2)
            == "DnsConnectorDelivery e8b09f5f-c59f-5a08-ac72-ef6ecb76cc65;QueueLength=TQ=3;AN=1;RN=2;. ")
    assert start_description("SmtpDeliveryToMailbox", "0" * 8, 1, 0, 0) == "SmtpDeliveryToMailbox 00000000;QueueLength=TQ=1;. "
    assert resolved_description([("mx1.fabrikam.com", ["203.0.113.25", "203.0.113.26"]), ("mx2.fabrikam.com", ["198.51.100.7"])]) \
        == "mx1.fabrikam.com[203.0.113.25, 203.0.113.26], mx2.fabrikam.com[198.51.100.7]"
    long = resolved_description([(f"mx{i}.example.com", ["192.0.2.1"]) for i in range(40)])
    assert len(long) == 256 and long.endswith("...")
    assert failed_description("203.0.113.99", 25, "connect_timeout") == "Failed connection to 203.0.113.99:25 (TimedOut:0000274C)"
    assert failed_description("10.0.0.9", 2525, "connect_refused") == "Failed connection to 10.0.0.9:2525 (ConnectionRefused:0000274D)"
    assert failover_description(0x08DEA3F84EA83D0A, "ConnectionFailure") \
        == "Session Failover; previous session id = 08DEA3F84EA83D0A; reason = ConnectionFailure"
    assert resolution_failed_description("InfoDomainNonexistent", "192.168.1.10") \
        == "InfoDomainNonexistent reported by 192.168.1.10. "
    assert stop_description(2, 1776) == "Messages: 2 Bytes: 1776"
    assert stop_description(0, 0, "Remote(ConnectionReset)") == "Messages: 0 Bytes: 0 (Remote(ConnectionReset))"


def test_folders_are_where_exchange_writes_them() -> None:
    assert connectivity_log_folder("EX1", "Hub") == Path("EX1/TransportRoles/Logs/Hub/Connectivity")
    assert connectivity_log_folder("EDGE", "Edge") == Path("EDGE/TransportRoles/Logs/Edge/Connectivity")
    assert connectivity_log_folder("EX1", "MailboxSubmission") == Path("EX1/TransportRoles/Logs/Mailbox/Connectivity/Submission")
    assert agent_log_folder("EDGE", "Edge") == Path("EDGE/TransportRoles/Logs/Edge/AgentLog")
    with pytest.raises(ValueError):
        agent_log_folder("EX1", "MailboxDelivery")


def test_a_connection_with_a_failover_in_one_file(tmp_path: Path) -> None:
    clock = Clock()
    log = ConnectivityLog(tmp_path, connectivity_log_folder("EX1", "Hub"))
    trace = ConnectionTrace(log, clock, "fabrikam.com", start_description("DnsConnectorDelivery", "g", 1, 1, 0),
                            [("mx1.fabrikam.com", ["203.0.113.1"]), ("mx2.fabrikam.com", ["203.0.113.2"])])
    trace.session_started(0x10, "mx1.fabrikam.com")
    clock.now += timedelta(seconds=21)
    trace.connect_failed("mx1.fabrikam.com", "203.0.113.1", 25, "connect_timeout")
    trace.session_started(0x11, "mx2.fabrikam.com", "connect_timeout")
    trace.connected("mx2.fabrikam.com", "203.0.113.2")
    trace.delivered(1000)
    clock.now += timedelta(seconds=1)
    trace.stop()
    trace.stop()  # once only
    [path] = log.flush()
    assert path.name == "CONNECTLOG2026050106-1.LOG"
    rows = check_exchange_log(path, "Transport Connectivity Log", CONNECTIVITY_FIELDS)
    assert [r[1:] for r in rows] == [
        ["0000000000000010", "SMTP", "fabrikam.com", "+", "DnsConnectorDelivery g;QueueLength=TQ=1;AN=1;. "],
        ["0000000000000010", "SMTP", "fabrikam.com", ">", "mx1.fabrikam.com[203.0.113.1], mx2.fabrikam.com[203.0.113.2]"],
        ["0000000000000010", "SMTP", "mx1.fabrikam.com", ">", "Failed connection to 203.0.113.1:25 (TimedOut:0000274C)"],
        ["0000000000000011", "SMTP", "mx2.fabrikam.com", "*",
         "Session Failover; previous session id = 0000000000000010; reason = ConnectionFailure"],
        ["0000000000000011", "SMTP", "mx2.fabrikam.com", ">", "Established connection to 203.0.113.2"],
        ["0000000000000011", "SMTP", "fabrikam.com", "-", "Messages: 1 Bytes: 1000"],
    ]


def test_agent_log_header_is_the_real_files_and_names_are_daily(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, agent_log_folder("EDGE", "Edge"))
    log.add(T0, AgentAction(session_id=0x08DEA3F84EA83D09, local_endpoint="192.168.1.25:25",
                            remote_endpoint="203.0.113.25:49735", entered_org_from_ip="203.0.113.25",
                            agent="Connection Filtering Agent", event="OnRcptCommand", action="RejectCommand",
                            smtp_response="550 5.7.1 Service unavailable, Client host [203.0.113.25] blocked using Spamhaus",
                            reason="BlockListProvider", reason_data="Spamhaus", p1_from="alex@fabrikam.com",
                            recipients=("raghu@cloudmonkeys.xyz",), diagnostics="line one\r\nline two"))
    log.add(T0 + timedelta(hours=5), AgentAction(session_id=1, local_endpoint="a", remote_endpoint="b",
                                                  entered_org_from_ip="c", agent="x", event="y", action="z"))
    [path] = log.flush()
    assert path.name == "AgentLog20260501-1.LOG"  # one file a day, as the real AgentLog20220913-1.LOG
    real = (SAMPLES / "qazeer-agentlog-AgentLog20220913-1.log").read_text(encoding="utf-8").splitlines()
    ours = path.read_bytes().decode("utf-8-sig").split("\r\n")
    assert [ours[i] for i in (0, 1, 2, 4)] == [real[i] for i in (1, 2, 3, 5)]
    rows = check_exchange_log(path, "Agent Log", AGENT_LOG_FIELDS)
    assert rows[0][1:] == ["08DEA3F84EA83D09", "192.168.1.25:25", "203.0.113.25:49735", "203.0.113.25", "",
                           "alex@fabrikam.com", "", "raghu@cloudmonkeys.xyz", "1", "Connection Filtering Agent",
                           "OnRcptCommand", "RejectCommand",
                           "550 5.7.1 Service unavailable, Client host [203.0.113.25] blocked using Spamhaus",
                           "BlockListProvider", "Spamhaus", "line one line two", "", "", "Undefined"]
    assert rows[1][9] == "0"  # no recipient


# --- written by the lab ---------------------------------------------------------------------------
def _run(tmp_path: Path, scenario: str) -> Path:
    out = tmp_path / scenario
    code, _, err = run_cli(["run", scenario, "--out", str(out)])
    assert code == 0, err
    return out


def _connectivity_rows(out: Path, server: str, service: str) -> list[list[str]]:
    folder = out / connectivity_log_folder(server, service)
    return [r for p in sorted(folder.glob("CONNECTLOG*.LOG"))
            for r in check_exchange_log(p, "Transport Connectivity Log", CONNECTIVITY_FIELDS)]


def test_every_outbound_connection_of_the_baseline_is_in_the_connectivity_log(tmp_path: Path) -> None:
    out = _run(tmp_path, "hybrid-baseline")
    for server, service in (("CMHYBD01", "Hub"), ("CMEDGE01", "Edge")):
        rows = _connectivity_rows(out, server, service)
        sessions: dict[str, list[str]] = {}
        for r in rows:
            sessions.setdefault(r[1], []).append(r[4])
        assert sessions, server
        for directions in sessions.values():
            assert directions[0] == "+" and directions[-1] == "-" and directions.count("-") == 1
            assert ">" in directions
        # the connection's session is the SMTP Send protocol log's session
        send_sessions = {r[2] for r in folder_rows(out, server, service, "SmtpSend")}
        assert set(sessions) <= send_sessions
        assert any(r[4] == "-" and r[5].startswith("Messages: 1 Bytes: ") for r in rows)
        assert any(r[5].startswith("Established connection to ") for r in rows)


def test_a_connect_timeout_is_a_failed_connection_and_an_empty_end(tmp_path: Path) -> None:
    out = _run(tmp_path, "net-port25-blocked-to-eop")
    rows = _connectivity_rows(out, "CMHYBD01", "Hub")
    failed = [r for r in rows if r[5].startswith("Failed connection to ")]
    assert failed and all(r[5].endswith(":25 (TimedOut:0000274C)") for r in failed)
    ends = {r[1]: r[5] for r in rows if r[4] == "-"}
    assert all(ends[r[1]] == "Messages: 0 Bytes: 0" for r in failed)


def test_the_edge_block_list_rejection_is_in_the_agent_log(tmp_path: Path) -> None:
    out = _run(tmp_path, "dns-blocklist-edge-provider")
    [path] = sorted((out / agent_log_folder("CMEDGE01", "Edge")).glob("AgentLog*.LOG"))
    rows = check_exchange_log(path, "Agent Log", AGENT_LOG_FIELDS)
    assert rows, "the rejection is logged"
    reject = rows[0]
    assert reject[10:16] == ["Connection Filtering Agent", "OnRcptCommand", "RejectCommand",
                             "550 5.7.1 Service unavailable, Client host [203.0.113.25] blocked using Spamhaus",
                             "BlockListProvider", "Spamhaus"]
    assert reject[4] == "203.0.113.25" and reject[3].startswith("203.0.113.25:")
    # the same session's RCPT TO got that reply in the Edge's SmtpReceive protocol log
    recv = [r for p in sorted((out / "CMEDGE01/TransportRoles/Logs/Edge/ProtocolLog/SmtpReceive").glob("*.LOG"))
            for r in rows_of(p)]
    assert any(r[2] == reject[1] and r[6] == ">" and r[7] == reject[13] for r in recv)


def test_a_failed_lookup_of_the_next_hop_is_in_the_connectivity_log(write_scenario, tmp_path: Path) -> None:
    # PUBLIC-DNS answers SERVFAIL: the Hub's lookup of the cloud's MX fails (ErrorRetry)
    r = run_text(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:30"
        cmdlet = "Set-LabDnsServer"
        Identity = "PUBLIC-DNS"
        Mode = "servfail"

        [[message]]
        id = "out"
        at = "+00:01:00"
        from = "raghu@cloudmonkeys.xyz"
        to = ["ramki@cloudmonkeys.xyz"]
        """, duration="00:05:00")
    rows = _connectivity_rows(r.out, "CMHYBD01", "Hub")
    failed = [r for r in rows if " reported by " in r[5]]
    assert failed, rows
    session = failed[0][1]
    mine = [r for r in rows if r[1] == session]
    assert [r[4] for r in mine] == ["+", ">", "-"]
    assert mine[1][5].startswith("ErrorRetry reported by ") and mine[2][5] == "Messages: 0 Bytes: 0"
    # no SMTP session was opened for it
    assert session not in {x[2] for x in folder_rows(r.out, "CMHYBD01", "Hub", "SmtpSend")}


# --- Mailbox Transport Delivery: the store driver's MapiDelivery rows (evidence2) -----------------------
def test_store_delivery_rows_are_the_store_drivers(tmp_path: Path) -> None:
    from labsim.logs.connectivity import store_delivery

    log = ConnectivityLog(tmp_path, connectivity_log_folder("MBX1", "MailboxDelivery"))
    store_delivery(log, T0, 0x10, "DB01", "mbx1.contoso.com", 1500, 2)
    paths = log.flush()
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "MBX1/TransportRoles/Logs/Mailbox/Connectivity/Delivery/CONNECTLOG2026050106-1.LOG"]
    rows = check_exchange_log(paths[0], "Transport Connectivity Log", CONNECTIVITY_FIELDS)
    assert [r[1:] for r in rows] == [
        ["0000000000000010", "MapiDelivery", "DB01", "+", "Delivery;MailboxServer=mbx1.contoso.com;Database=DB01"],
        ["0000000000000010", "MapiDelivery", "DB01", ">", "Starting delivery"],
        ["0000000000000010", "MapiDelivery", "DB01", "-", "Messages: 1 Bytes: 1500 Recipients: 2"]]


def test_every_mailbox_delivery_of_the_baseline_is_in_the_delivery_connectivity_log(tmp_path: Path) -> None:
    out = _run(tmp_path, "hybrid-baseline")
    folder = out / "CMHYBD01" / "TransportRoles" / "Logs" / "Mailbox" / "Connectivity" / "Delivery"
    rows = [r for p in sorted(folder.glob("CONNECTLOG*.LOG"))
            for r in check_exchange_log(p, "Transport Connectivity Log", CONNECTIVITY_FIELDS)]
    ends = [r for r in rows if r[4] == "-"]
    delivered = sum(1 for p in (out / "mailboxes").rglob("*.eml") if p.parts[-3].startswith("onprem-"))
    assert ends and sum(int(r[5].rsplit(" ", 1)[1]) for r in ends) == delivered  # Recipients: n
    assert {r[2] for r in rows} == {"MapiDelivery"} and {r[3] for r in rows} == {"DB01"}
    assert len({r[1] for r in rows}) == len(ends)  # one session per mail item


# --- Front End proxy and Mailbox Transport Submission (evidence3) ---------------------------------------
def test_proxy_start_is_the_proxy_connections_format() -> None:
    from labsim.logs.connectivity import (
        mapi_submission_stop_description,
        proxy_start_description,
    )

    assert proxy_start_description("Starting outbound connection for inbound session 08DEA419D5B95653") == (
        "Undefined 00000000-0000-0000-0000-000000000000;QueueLength=<no priority counts>. "
        "Starting outbound connection for inbound session 08DEA419D5B95653")
    assert proxy_start_description(None).endswith("<no priority counts>. ")
    assert mapi_submission_stop_description(3, 900, 4, 0, False, True) == (
        "RegularSubmissions: 3 ShadowSubmissions: 0 Bytes: 900 Recipients: 4 Failures: 0 ReachedLimit: False "
        "Idle: True")


def test_the_front_ends_proxy_connections_are_in_its_connectivity_log(tmp_path: Path) -> None:
    out = _run(tmp_path, "hybrid-baseline")
    rows = _connectivity_rows(out, "CMHYBD01", "FrontEnd")
    starts = [r for r in rows if r[4] == "+"]
    assert starts and all(r[3] == "InternalProxy" for r in starts)
    recv = {r[2] for r in folder_rows(out, "CMHYBD01", "FrontEnd", "SmtpReceive")}
    for r in starts:  # each names the inbound session it proxies, a session of the FE's receive log
        inbound = r[5].rsplit(" ", 1)[1]
        assert r[5].startswith("Undefined 00000000-0000-0000-0000-000000000000;QueueLength=<no priority counts>. "
                               "Starting outbound connection for inbound session ") and inbound in recv
    for session in {r[1] for r in rows}:
        directions = [r[4] for r in rows if r[1] == session]
        assert directions[0] == "+" and directions[-1] == "-" and directions.count("-") == 1


def test_mailbox_submission_writes_its_store_and_smtp_connections(tmp_path: Path) -> None:
    out = _run(tmp_path, "hybrid-baseline")
    rows = _connectivity_rows(out, "CMHYBD01", "MailboxSubmission")
    mapi = [r for r in rows if r[2] == "MapiSubmission"]
    smtp = [r for r in rows if r[2] == "SMTP"]
    assert mapi and smtp
    assert {r[3] for r in smtp if r[4] in "+-"} == {"MailboxTransportSubmissionInternalProxy"}
    stops = [r for r in mapi if r[4] == "-"]
    assert all(r[5].endswith("Failures: 0 ReachedLimit: False Idle: True") for r in stops)
    assert {r[5] for r in mapi if r[4] == "+"} == {"cmhybd01.cloudmonkeys.xyz"}  # the mailbox server
    # every message submitted to Transport is counted once on a store connection (Regular)
    submitted = sum(int(r[5].split()[1]) for r in stops)
    assert submitted == sum(int(r[5].split()[1]) for r in smtp if r[4] == "-")
    for session in {r[1] for r in mapi}:  # idle: the stop comes at the scan after the 5 s deadline
        start, stop = (datetime.strptime(r[0], "%Y-%m-%dT%H:%M:%S.%fZ") for r in mapi if r[1] == session)
        assert timedelta(seconds=5) < stop - start <= timedelta(seconds=10)


class _Sched:
    def __init__(self) -> None:
        self.entries: list[tuple[datetime, object]] = []

    def call_at(self, when: datetime, label: str, fn: object) -> object:
        entry = (when, fn)
        self.entries.append(entry)
        return entry

    def cancel(self, entry: object) -> None:
        self.entries.remove(entry)  # type: ignore[arg-type]


class _Ids:
    def __init__(self) -> None:
        self.n = 0x100

    def next(self) -> int:
        self.n += 1
        return self.n


async def test_a_store_connection_stops_at_its_twentieth_submission_or_when_idle(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from labsim.engine.connectivity import SubmissionConnections

    clock = Clock()
    clock.now = datetime(2026, 5, 1, 6, 0, 0, tzinfo=timezone.utc)
    sched = _Sched()
    lab = SimpleNamespace(out=tmp_path, clock=SimpleNamespace(now=clock), scheduler=sched,
                          model=SimpleNamespace(start=clock.now), register_log=lambda log: None)
    server = SimpleNamespace(name="MBX1", lab=lab, model=SimpleNamespace(fqdn="mbx1.contoso.com"),
                             session_ids={"MailboxSubmission": _Ids()}, connectivity_logs={})
    pool = SubmissionConnections(server)
    for i in range(21):  # one message a second: the 20th ends the first connection, the 21st opens one
        clock.now += timedelta(seconds=1)
        c = pool.begin("mdb-1")
        pool.end(c, True, 100, 1)
    assert len(sched.entries) == 1  # only the second connection waits for a scan
    when, scan = sched.entries[0]
    assert when == datetime(2026, 5, 1, 6, 0, 30, tzinfo=timezone.utc)  # deadline 06:00:26 -> the 5 s grid
    clock.now = when
    await scan()  # type: ignore[operator]
    rows = [r for p in server.connectivity_logs["MailboxSubmission"].flush() for r in rows_of(p)]
    assert [(r[1], r[4], r[5]) for r in rows] == [
        ("0000000000000101", "+", "mbx1.contoso.com"),
        ("0000000000000101", "-", "RegularSubmissions: 20 ShadowSubmissions: 0 Bytes: 2000 Recipients: 20 "
                                  "Failures: 0 ReachedLimit: True Idle: False"),
        ("0000000000000102", "+", "mbx1.contoso.com"),
        ("0000000000000102", "-", "RegularSubmissions: 1 ShadowSubmissions: 0 Bytes: 100 Recipients: 1 "
                                  "Failures: 0 ReachedLimit: False Idle: True")]
    assert {r[2] for r in rows} == {"MapiSubmission"} and {r[3] for r in rows} == {"mdb-1"}
