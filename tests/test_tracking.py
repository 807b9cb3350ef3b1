"""Message tracking (MSGTRK, MSGTRKMS, MSGTRKMD) of the baseline run: files, event sequences, ids,
and the headers that decide internal vs external; plus the `labsim track` and `labsim queue` views."""

from __future__ import annotations

import email
import re
import subprocess
import sys
from datetime import datetime
from email.policy import compat32
from typing import Any

from conftest import exlog_check, run_cli

from labsim.cli_views import filter_tracking, read_tracking
from labsim.logs.message_tracking import MESSAGE_TRACKING_FIELDS


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _events(rows: list[dict[str, Any]], message_id: str) -> list[tuple[str, str, str]]:
    return [(r["Log"], r["EventId"], r["Source"]) for r in rows if r["MessageId"] == message_id]


def test_files_and_header(baseline) -> None:
    folder = baseline.out / "CMHYBD01" / "TransportRoles" / "Logs" / "MessageTracking"
    names = sorted(p.name for p in folder.glob("*.LOG"))
    assert [re.sub(r"\d{10}-\d+\.LOG$", "", n) for n in names] == ["MSGTRK", "MSGTRKMD", "MSGTRKMS"]
    head = (folder / names[0]).read_bytes().decode("utf-8-sig").split("\r\n")[:5]
    assert head[2] == "#Log-type: Message Tracking Log"
    assert head[4] == "#Fields: " + ",".join(MESSAGE_TRACKING_FIELDS)


def test_exlog_check_accepts_the_tree(baseline) -> None:
    res = subprocess.run([sys.executable, str(exlog_check()), str(baseline.out)], capture_output=True, text=True)
    assert "errors=0" in res.stdout, res.stdout + res.stderr


def test_mailbox_to_exo_sequence(baseline) -> None:
    m = baseline.message("onprem-to-exo")
    rows = read_tracking(baseline.out)
    assert _events(rows, m["message_id"]) == [
        ("MSGTRKMS", "RECEIVE", "STOREDRIVER"),  # NOTIFYMAPI carries no message-id yet
        ("MSGTRK", "HAREDIRECTFAIL", "SMTP"), ("MSGTRK", "RECEIVE", "SMTP"), ("MSGTRK", "AGENTINFO", "AGENT"),
        ("MSGTRKMS", "SUBMIT", "STOREDRIVER"), ("MSGTRK", "SENDEXTERNAL", "SMTP")]
    notify = [r for r in rows if r["EventId"] == "NOTIFYMAPI" and r["Sender"] == m["from"]]
    assert notify and notify[0]["SourceContext"].startswith("MDB:")
    send = next(r for r in rows if r["MessageId"] == m["message_id"] and r["EventId"] == "SENDEXTERNAL")
    assert send["ConnectorId"] == "Outbound to Office 365"
    assert send["RecipientStatus"] == "250 2.1.5 Recipient OK"
    assert send["SourceContext"].startswith(";250 2.6.0 " + m["message_id"])
    assert "RequiredTlsAuthLevel=DomainValidation" in send["EventData"]
    haredirect = next(r for r in rows if r["MessageId"] == m["message_id"] and r["EventId"] == "HAREDIRECTFAIL")
    assert haredirect["SourceContext"] == "No suitable shadow servers"


def test_inbound_through_the_front_end(baseline) -> None:
    m = baseline.message("exo-to-onprem")
    rows = read_tracking(baseline.out)
    events = [e for _, e, _ in _events(rows, m["message_id"])]
    # The store delivers during the Hub's session; the Hub logs SEND when the 250 comes back.
    assert events[:3] == ["HAREDIRECTFAIL", "RECEIVE", "AGENTINFO"] and sorted(events[3:]) == ["DELIVER", "SEND"]
    receive = next(r for r in rows if r["MessageId"] == m["message_id"] and r["EventId"] == "RECEIVE")
    assert receive["ConnectorId"] == "CMHYBD01\\Default CMHYBD01" and receive["OriginalClientIp"] == "40.93.131.26"
    assert "S:ProxiedClientIPAddress=40.93.131.26" in receive["EventData"]
    send = next(r for r in rows if r["MessageId"] == m["message_id"] and r["EventId"] == "SEND")
    deliver = next(r for r in rows if r["MessageId"] == m["message_id"] and r["EventId"] == "DELIVER")
    assert f"[InternalId={deliver['InternalMessageId']}," in send["SourceContext"]
    assert send["ConnectorId"] == "Intra-Organization SMTP Send Connector"


def test_internet_mail_is_anonymous_and_incoming(baseline) -> None:
    m = baseline.message("internet-to-onprem")
    rows = [r for r in read_tracking(baseline.out) if r["MessageId"] == m["message_id"]]
    assert {r["Directionality"] for r in rows if r["Server"] == "CMHYBD01"} == {"Incoming"}
    eml = baseline.out / m["delivered"][0]["path"]
    msg = email.message_from_bytes(eml.read_bytes(), policy=compat32)
    assert msg["X-MS-Exchange-Organization-AuthAs"] == "Anonymous"
    assert msg["X-MS-Exchange-Organization-MessageDirectionality"] == "Incoming"


def test_hybrid_mail_stays_internal(baseline) -> None:
    for mid, realm in (("onprem-to-exo", "exo"), ("exo-to-onprem", "onprem")):
        m = baseline.message(mid)
        msg = email.message_from_bytes((baseline.out / m["delivered"][0]["path"]).read_bytes(), policy=compat32)
        assert msg["X-MS-Exchange-Organization-AuthAs"] == "Internal", mid
        assert msg["X-MS-Exchange-Organization-MessageDirectionality"] == "Originating", mid
        assert msg["X-CrossPremisesHeadersFilteredBySendConnector"] is None, mid
        assert msg["X-OriginatorOrg"] == "cloudmonkeys.xyz", mid
        assert not [h for h in msg.keys() if h.startswith("X-MS-Exchange-CrossPremises-")], mid


def test_internet_copy_carries_no_organization_headers(baseline) -> None:
    m = baseline.message("onprem-to-internet")
    msg = email.message_from_bytes((baseline.out / m["delivered"][0]["path"]).read_bytes(), policy=compat32)
    assert not [h for h in msg.keys() if h.startswith(("X-MS-Exchange-Organization-", "X-MS-Exchange-CrossPremises-"))]
    assert msg["X-CrossPremisesHeadersFilteredBySendConnector"] == "cmedge01.cloudmonkeys.xyz"


def test_track_filters(baseline) -> None:
    rows = read_tracking(baseline.out)
    assert {r["EventId"] for r in filter_tracking(rows, event_id="deliver")} == {"DELIVER"}
    assert all(r["Sender"] == "alex@fabrikam.com" for r in filter_tracking(rows, sender="ALEX@fabrikam.com"))
    assert filter_tracking(rows, subject="invoice") and not filter_tracking(rows, subject="no such subject")
    some = rows[len(rows) // 2]
    assert all(r["Timestamp"] >= some["Timestamp"] for r in filter_tracking(rows, start=_iso(some["Timestamp"])))
    rc, out, _ = run_cli(["track", str(baseline.out), "--event-id", "SENDEXTERNAL", "--csv"])
    assert rc == 0 and out.startswith('"Server","Timestamp"') and out.count("\r\n") == 3  # header + 2 rows


def test_queue_view(baseline) -> None:
    rc, out, _ = run_cli(["queue", str(baseline.out)])
    assert rc == 0 and "CMHYBD01\\Unreachable" in out and "CMHYBD01\\1" not in out  # empty delivery queues idle out
    rc, out, _ = run_cli(["queue", str(baseline.out), "--all", "--csv"])
    assert rc == 0 and '"CMHYBD01\\1"' in out
    rc, _, err = run_cli(["queue", str(baseline.out), "--server", "NOPE"])
    assert rc == 2 and "NOPE" in err
