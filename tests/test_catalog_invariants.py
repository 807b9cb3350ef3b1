"""Every scenario of the catalog: each message's fate agrees across all the evidence.

For every file in scenarios/ (the other areas keep adding some) the scenario is run once and its
output tree read back the way an admin would read it. The ledger (summary.json) is the ground
truth; the invariant is that every other piece of evidence tells the same story:

- delivered -> a DELIVER row (on-prem), a Deliver event in the EXO trace, or a SENDEXTERNAL/Send to
  the Internet host; never a FAIL row, never still queued;
- failed -> a FAIL row with the same response (or SUBMITFAIL for a submission that never reached
  transport) on the server that gave up, or Failed in the EXO trace; an NDR (multipart/report with
  the right Status and Diagnostic-Code) generated for it, delivered to the sender or queued;
- pending -> in queues.json on that server and queue with the same LastError; no DELIVER/FAIL;
- the SMTP RECEIVE rows carry the protocol log's `receiving message` triple and the InternalId of
  the 250 2.6.0 reply; SEND rows carry the next hop's reply as logged in the Send protocol log;
- one network-message-id per message across the organisation's rows.
"""

from __future__ import annotations

import csv
import email
import html
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest

from labsim.engine.driver import run_scenario
from labsim.logs.message_tracking import read_tracking
from labsim.scenario.loader import load_scenario
from labsim.transport.ndr import enhanced_status

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))
WALL: dict[str, float] = {}


@dataclass
class Evidence:
    name: str
    out: Path
    summary: dict[str, Any]
    tracking: list[dict[str, Any]]
    queues: dict[str, Any]
    trace: dict[str, Any]
    servers: list[str]
    wall: float
    protocol: dict[tuple[str, str, str], list[list[str]]] = field(default_factory=dict)

    def rows(self, *, message_id: str, event: str | None = None, server: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.tracking if r["MessageId"] == message_id and (event is None or r["EventId"] == event)
                and (server is None or r["Server"] == server)]

    def trace_rows(self, message_id: str) -> list[dict[str, Any]]:
        return [m for m in self.trace["messages"] if m["MessageId"] == message_id]


def _protocol_logs(out: Path) -> dict[tuple[str, str, str], list[list[str]]]:
    logs: dict[tuple[str, str, str], list[list[str]]] = {}
    for path in sorted(out.glob("*/TransportRoles/Logs/*/ProtocolLog/*/*.LOG")):
        server, service, kind = path.parts[-7], path.parts[-4], path.parts[-2]
        text = path.read_bytes().decode("utf-8-sig")
        rows = [next(csv.reader(io.StringIO(line))) for line in text.split("\r\n") if line and not line.startswith("#")]
        logs.setdefault((server, service, kind), []).extend(rows)
    return logs


@pytest.fixture(scope="module", params=SCENARIOS, ids=[p.stem for p in SCENARIOS])
def ev(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    path: Path = request.param
    loaded = load_scenario(path)
    out = tmp_path_factory.mktemp(path.stem) / "out"
    result = run_scenario(loaded, out=out)
    WALL[path.stem] = result.wall_seconds
    return Evidence(
        name=path.stem, out=out, summary=json.loads((out / "summary.json").read_text(encoding="utf-8")),
        tracking=read_tracking(out), queues=json.loads((out / "queues.json").read_text(encoding="utf-8")),
        trace=json.loads((out / "EXO" / "MessageTrace" / "trace.json").read_text(encoding="utf-8")),
        servers=[s.name for s in loaded.lab.organization.servers], wall=result.wall_seconds,
        protocol=_protocol_logs(out))


def _has(rcpts: str, address: str) -> bool:
    return address.lower() in {x.lower() for x in rcpts.split(";") if x}


def test_catalog_ran(ev: Evidence) -> None:
    assert ev.summary["messages"] or ev.name, "a scenario without traffic proves nothing here"
    assert not ev.summary.get("internal_errors"), ev.summary.get("internal_errors")


def test_no_message_is_lost(ev: Evidence) -> None:
    """Every message the lab accepted is delivered, still queued, or failed with a reason."""
    for m in ev.summary["messages"]:
        assert m["fate"] != "lost", (m["id"], m["hops"])
        accounted = {d["recipient"].lower() for d in m["delivered"]} | {f["recipient"].lower() for f in m["failed"]} \
            | {p["recipient"].lower() for p in m["pending"]}
        assert accounted, m["id"]


def test_delivered_everywhere_the_same(ev: Evidence) -> None:
    for m in ev.summary["messages"]:
        for d in m["delivered"]:
            rcpt = d["recipient"]
            if d["realm"] == "onprem":
                hits = [r for r in ev.rows(message_id=m["message_id"], event="DELIVER") if _has(r["Recipients"], rcpt)]
                assert hits, f"{m['id']}: delivered to {rcpt} on-prem but no DELIVER row"
            elif d["realm"] == "exo":
                events = [e["Event"] for t in ev.trace_rows(m["message_id"]) for e in t["Events"]]
                assert "Deliver" in events, f"{m['id']}: delivered in EXO but the trace has {events}"
            else:
                sent = [r for r in ev.rows(message_id=m["message_id"], event="SENDEXTERNAL") if _has(r["Recipients"], rcpt)]
                exo_sent = [e for t in ev.trace_rows(m["message_id"]) for e in t["Events"] if e["Event"] == "Send"]
                internet_sender = not any(h["server"] in ev.servers or h["server"] == "EXO" for h in m["hops"])
                assert sent or exo_sent or internet_sender, f"{m['id']}: reached the Internet host without a send row"
            fails = [r for r in ev.rows(message_id=m["message_id"], event="FAIL") if _has(r["Recipients"], rcpt)]
            assert not fails, f"{m['id']}: delivered to {rcpt} and also FAILed: {fails}"


def _delivery_status(path: Path) -> list[dict[str, str]]:
    msg = email.message_from_bytes(path.read_bytes(), policy=compat32)
    assert msg.get_content_type() == "multipart/report", path
    assert msg.get_param("report-type") == "delivery-status", path
    part = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
    blocks = part.get_payload()  # the email package parses it into header blocks
    return [dict(b.items()) for b in blocks[1:]]


def test_failed_everywhere_the_same(ev: Evidence) -> None:
    for m in ev.summary["messages"]:
        submit_failed = any(h["event"] == "SUBMITFAIL" for h in m["hops"])
        for f in m["failed"]:
            rcpt, server, reason = f["recipient"], f["server"], f["reason"]
            if submit_failed:
                rows = ev.rows(message_id=m["message_id"], event="SUBMITFAIL", server=server)
                assert rows, f"{m['id']}: submission failed on {server} without a SUBMITFAIL row"
                continue
            if server in ev.servers:
                rows = [r for r in ev.rows(message_id=m["message_id"], event="FAIL", server=server)
                        if _has(r["Recipients"], rcpt)]
                assert rows, f"{m['id']}: failed for {rcpt} on {server} without a FAIL row"
                assert any(f"{{LED={reason}}}" in r["RecipientStatus"] for r in rows), (rows, reason)
            elif server == "EXO":
                fails = [e for t in ev.trace_rows(m["message_id"]) for e in t["Events"] if e["Event"] == "Fail"]
                assert any(f"LED={reason}" in e["Detail"] for e in fails), f"{m['id']}: EXO trace lacks {reason}"
                assert any(t["Status"] == "Failed" for t in ev.trace_rows(m["message_id"]))
            else:
                continue  # an Internet MTA gave up: no Exchange evidence expected
            notes = [n for n in m["notifications"] if n["action"] == "failed" and _has(n["about"], rcpt)]
            if not notes:
                assert reason.startswith("550 4.3.2 QUEUE.Admin"), f"{m['id']}: no NDR for {rcpt} ({reason})"
                continue
            note = notes[0]
            assert note["server"] == server
            fail_rows = ev.rows(message_id=m["message_id"], event="FAIL", server=server)
            if server in ev.servers:
                assert any(r["Reference"] == note["message_id"] for r in fail_rows), "FAIL row must reference the NDR"
                assert ev.rows(message_id=note["message_id"], event="DSN", server=server), "no DSN row for the NDR"
            if note["delivered_to"]:
                assert note["delivered_to"].lower() == m["from"].lower()
                blocks = _delivery_status(ev.out / note["path"])
                mine = [b for b in blocks if b.get("Final-Recipient", "").lower() == f"rfc822;{rcpt.lower()}"]
                assert mine, blocks
                assert mine[0]["Action"] == "failed"
                assert mine[0]["Status"] == enhanced_status(reason)
                assert mine[0]["Diagnostic-Code"] == f"smtp;{reason}"
            else:
                queued = [x for s in ev.queues["servers"].values() for x in s["messages"]
                          if x["InternetMessageId"] == note["message_id"]]
                assert queued, f"{m['id']}: the NDR {note['message_id']} was neither delivered nor queued"


def test_pending_everywhere_the_same(ev: Evidence) -> None:
    for m in ev.summary["messages"]:
        for p in m["pending"]:
            rcpt = p["recipient"]
            state = ev.queues["servers"].get(p["server"])
            assert state is not None, f"{p['server']} missing from queues.json"
            queued = [x for x in state["messages"] if x["InternetMessageId"] == m["message_id"]
                      and x["Queue"] == p["queue"] and rcpt in x["Recipients"]]
            assert queued, f"{m['id']}: pending for {rcpt} in {p['queue']} but not in queues.json"
            queue_error = next(q["LastError"] for q in state["queues"] if q["Identity"] == p["queue"])
            assert p["last_error"] in (queued[0]["LastError"], queue_error)
            for event in ("DELIVER", "FAIL"):
                assert not [r for r in ev.rows(message_id=m["message_id"], event=event)
                            if _has(r["Recipients"], rcpt)], f"{m['id']}: pending yet {event}"
            if p["server"] == "EXO":
                assert any(t["Status"] in ("Pending", "GettingStatus") for t in ev.trace_rows(m["message_id"]))


def test_queue_state_is_coherent(ev: Evidence) -> None:
    for name, state in ev.queues["servers"].items():
        for q in state["queues"]:
            inside = [x for x in state["messages"] if x["Queue"] == q["Identity"]]
            assert q["MessageCount"] == len(inside), (name, q["Identity"])
            if q["Status"] == "Retry":
                assert q["LastError"] and q["NextRetryTime"], q


def test_receive_rows_carry_the_protocol_log_triple(ev: Evidence) -> None:
    for (server, service, kind), rows in ev.protocol.items():
        if kind != "SmtpReceive" or service not in ("Hub", "Edge"):
            continue
        triples: dict[str, list[str]] = {}
        for r in rows:
            if len(r) == 9 and r[8] == "receiving message":
                triples.setdefault(r[2], []).append(r[7])
            m = re.search(r"\[InternalId=(\d+), Hostname=", r[7]) if len(r) == 9 and r[6] == ">" else None
            if m and "Queued mail for delivery" in r[7] and triples.get(r[2]):
                triple = triples[r[2]].pop(0)
                hits = [t for t in ev.tracking if t["Server"] == server and t["EventId"] == "RECEIVE"
                        and t["Source"] == "SMTP" and t["InternalMessageId"] == m.group(1)]
                assert hits, f"{server}: InternalId {m.group(1)} queued in the protocol log, no RECEIVE row"
                # the same session and start; the tracking row's counter is taken at MAIL FROM before
                # this message is counted, the log row after it (SmtpInSessionState.CreateTransportMailItem)
                sid, start, n = triple.split(";")
                assert hits[0]["SourceContext"] == f"{sid};{start};{int(n) - 1}"


def test_send_rows_carry_the_next_hops_reply(ev: Evidence) -> None:
    for t in ev.tracking:
        if t["EventId"] not in ("SEND", "SENDEXTERNAL"):
            continue
        reply = t["SourceContext"].removeprefix(";").removesuffix(";ClientSubmitTime:")
        logged = [r for (server, _, kind), rows in ev.protocol.items() if server == t["Server"] and kind == "SmtpSend"
                  for r in rows if len(r) == 9 and r[1] == t["ConnectorId"]]
        if logged:  # the connector logs (ProtocolLoggingLevel Verbose)
            assert any(r[6] == "<" and r[7] == reply for r in logged), (t["ConnectorId"], reply)


def test_one_network_message_id_per_message(ev: Evidence) -> None:
    by_mid: dict[str, set[str]] = {}
    for t in ev.tracking:
        if t["MessageId"] and t["NetworkMessageId"]:
            by_mid.setdefault(t["MessageId"], set()).add(t["NetworkMessageId"])
    for mid, ids in by_mid.items():
        assert len(ids) == 1, (mid, ids)


def test_the_run_follows_virtual_time_not_the_wall_clock(ev: Evidence) -> None:
    """A scenario's timeline runs on the virtual clock: waits (retry intervals, expiry, the
    scenario's duration) cost no real time. Not a speed test (make bench measures speed): a run
    spanning hours or days takes a small fraction of that span in real time, and none hangs."""
    start = datetime.fromisoformat(ev.summary["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(ev.summary["end"].replace("Z", "+00:00"))
    span = (end - start).total_seconds()
    limit = span / 100 if span >= 3600 else 60.0
    assert ev.wall < limit, f"{ev.name} took {ev.wall:.2f} s of real time for {span:.0f} s of virtual time"


_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def sisimai_like_statuses(text: str) -> dict[str, str]:
    """Sisimai's Lhost::Exchange2007 reading of a classic NDR's text (rb-sisimai): after "Diagnostic
    information for administrators:" and the "Generating server" line, a line with '@' and no space is a
    recipient; every later line holding a reply or status code *replaces* that recipient's status, so
    the last such line wins."""
    found: dict[str, str] = {}
    started = generating = False
    current = ""
    for line in text.split("\n"):
        if line.startswith("Original message headers:"):
            break
        if not started:
            started = line.startswith("Diagnostic information for administrators:")
            continue
        if not generating:
            generating = line.startswith("Generating server")
            continue
        if "@" in line and " " not in line:
            current = line
        elif current and (m := _STATUS.search(line)):
            found[current] = m.group(1)
    return found


def test_every_dsn_has_its_layout_and_agrees_with_itself(ev: Evidence) -> None:
    """Every NDR and delay DSN of the catalog, parsed with the email package: the layout of its side
    (on-prem classic, EXO's newer one), the HTML alternative, and the delivery-status fields in the
    text and the HTML. Sisimai's Exchange reading gives the stated status, except where Exchange itself
    writes the last error under the stated line (expiry, delay): it reads that error, as it does on
    real Exchange NDRs (rb-sisimai expects 4.4.1 from its real 4.4.7 expiry NDR lhost-exchange2007-05)."""
    for path in sorted((ev.out / "mailboxes").rglob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=compat32)
        if msg.get_content_type() != "multipart/report":
            continue
        parts = msg.get_payload()
        assert [p.get_content_type() for p in parts][:2] == ["multipart/alternative", "message/delivery-status"], path
        text_part, html_part = parts[0].get_payload()
        text = text_part.get_payload(decode=True).decode().replace("\r\n", "\n")
        page = html.unescape(html_part.get_payload(decode=True).decode())
        exo = "onmicrosoft.com" in (msg["From"] or "")
        blocks = _delivery_status(path)
        delayed = blocks[0]["Action"] == "delayed"
        if exo:
            assert "couldn't be delivered." in text and "More Info for Email Admins" in text, path
            assert msg["Thread-Topic"] is not None and msg["Thread-Index"], path
        else:
            head = "Delivery is delayed to these recipients" if delayed else "Delivery has failed to these recipients"
            assert text.startswith(head) and head in page, path
        for b in blocks:
            rcpt = b["Final-Recipient"].split(";", 1)[1]
            diag = b["Diagnostic-Code"].split(";", 1)[1]
            assert _STATUS.search(diag).group(1) == b["Status"], path  # type: ignore[union-attr]
            for body in (text, page):
                assert rcpt in body and diag in body, (path, rcpt, diag)
            if not exo:
                read = sisimai_like_statuses(text)[rcpt]
                last = [ln for ln in text.split("Original message headers:")[0].split("\n") if _STATUS.search(ln)][-1]
                if " - Remote Server at " in last and diag not in last:
                    assert read == _STATUS.search(last).group(1), path  # type: ignore[union-attr]
                else:
                    assert read == b["Status"], path


def test_manifest_pointers_land_on_lines_that_show_them(ev: Evidence) -> None:
    """manifest.json (labsim.manifest): valid against its shipped schema; every evidence pointer
    names a line that shows what it claims; every failed or deferred hop on a server that keeps
    logs has evidence; its counts match the files."""
    import jsonschema

    from labsim.manifest import check_pointers, read_manifest, schema

    manifest = read_manifest(ev.out)
    jsonschema.validate(manifest, schema())
    assert check_pointers(ev.out, manifest) == []
    logged = set(ev.servers) | {"EXO"}
    for m in manifest["messages"]:
        for h in m["hops"]:
            if h["event"] in ("FAIL", "SUBMITFAIL", "DEFER") and h["server"] in logged:
                assert h["evidence"], (m["id"], h)
    assert [m["id"] for m in manifest["messages"]] == [m["id"] for m in ev.summary["messages"]]
    assert manifest["counts"]["messages"] == len(ev.summary["messages"])
    sessions = {(s, svc, kind): {r[2] for r in rows} for (s, svc, kind), rows in ev.protocol.items()}
    assert manifest["counts"]["sessions"] == sum(len(v) for v in sessions.values())
    for f in manifest["faults"]:
        if f["effects"]:
            assert f["evidence"], f


def test_every_event_has_its_description(ev: Evidence) -> None:
    """Issue 11: no event of any server renders Event Viewer's "description ... cannot be found"
    placeholder; each Application event is one the text table knows (engine.eventlog.EVENTS), its
    description is the table's text (or, for a [GAP] text, exactly its insertion strings) and the
    .xml holds the same events as the .txt."""
    import xml.etree.ElementTree as ET

    from labsim.engine.eventlog import EVENTS, message_text, read_text_log

    ns = "{http://schemas.microsoft.com/win/2004/08/events/event}"
    for folder in sorted(ev.out.glob("*/EventLog")):
        for log in ("Application", "System"):
            events = read_text_log(folder / f"{log}.txt")
            lines = [ln for ln in (folder / f"{log}.xml").read_bytes().decode("utf-8").split("\r\n") if ln]
            assert len(lines) == len(events), folder / log
            for fields, line in zip(events, lines):
                assert "cannot be found" not in fields["Description"], (folder, fields)
                assert fields["Description"].strip(), (folder, fields)
                if log == "Application":
                    event_id = int(fields["Event ID"])
                    assert event_id in EVENTS, (folder, event_id)
                    strings = [d.text or "" for d in ET.fromstring(line).iter(f"{ns}Data")]
                    assert fields["Description"] == message_text(event_id, strings, fields["Source"]), folder
