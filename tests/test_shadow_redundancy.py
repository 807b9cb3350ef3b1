"""Shadow redundancy between Mailbox servers (rules.shadow_redundancy, engine.shadow; Learn "Shadow
redundancy in Exchange Server"; the verbs of Exchange's XShadowRequest/XShadow/XQDiscard commands)."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import datetime
from pathlib import Path

import pytest
from conftest import folder_rows, run_cli, sessions

from labsim.cli_views import load_queues, message_rows, queue_rows
from labsim.logs.queue_history import read_lines
from labsim.rules.shadow_redundancy import (
    ShadowSessionState,
    decode_context,
    discard_reply,
    encode_context,
    queued_for_redundancy,
    xqdiscard_count,
    xshadow_reply,
    xshadowrequest_reply,
)


def test_xshadowrequest_takes_the_primary_and_answers_with_its_own_context():
    st = ShadowSessionState()
    reply = xshadowrequest_reply(st, "ex1.contoso.com 4f1c7e0a-0000-4000-8000-000000000001", offered=True,
                                 authorized=True, own_name="ex2.contoso.com")
    assert reply == "250 " + base64.b64encode(b"ex2.contoso.com").decode()
    assert st.primary == "ex1.contoso.com"
    # once per session; a peer session cannot become a heartbeat either
    assert xshadowrequest_reply(st, "a b", offered=True, authorized=True, own_name="x").startswith("503 5.5.1")
    assert xshadow_reply(st, "ctx", offered=True, authorized=True, database_id="d").startswith("503 5.5.1")


@pytest.mark.parametrize(("arg", "offered", "authorized", "reply"), [
    ("a b", False, True, "502 5.3.3 Command not implemented"),
    ("a b", True, False, "550 5.7.1 Not authorized"),
    ("onlyone", True, True, "501 5.5.4 Invalid arguments"),
    ("a " + "x" * 256, True, True, "501 5.5.4 Invalid arguments"),
])
def test_xshadowrequest_refusals(arg, offered, authorized, reply):
    st = ShadowSessionState()
    assert xshadowrequest_reply(st, arg, offered=offered, authorized=authorized, own_name="x") == reply
    assert st.primary is None


def test_the_heartbeat_verbs():
    st = ShadowSessionState()
    assert xqdiscard_count(st, "50", offered=True).startswith("503 5.5.1")  # XSHADOW first
    assert xshadow_reply(st, "", offered=True, authorized=True, database_id="d") == \
        "501 5.0.0 XSHADOW requires Shadow server's context"
    assert xshadow_reply(st, encode_context("EX2"), offered=True, authorized=True, database_id="db-guid") == \
        "250 db-guid"
    assert decode_context(st.shadowed_by or "") == "EX2"
    assert xqdiscard_count(st, "", offered=True) == "501 5.0.0 XQDISCARD requires maximum discard events count"
    assert xqdiscard_count(st, "0", offered=True) == "501 5.5.4 Invalid arguments"
    assert xqdiscard_count(st, "50", offered=True) == 50
    assert discard_reply([]) == ["251 OK, no discard events"]
    assert discard_reply(["a", "b"]) == ["250-a", "250 b"]
    assert queued_for_redundancy("<m@x>", 7, "ex2.contoso.com") == \
        "250 2.6.0 <m@x> [InternalId=7, Hostname=ex2.contoso.com] Queued mail for redundancy"


def tracking(out: Path, server: str) -> list[list[str]]:
    rows = []
    for f in sorted((out / server / "TransportRoles" / "Logs" / "MessageTracking").glob("MSGTRK2*.LOG")):
        text = f.read_bytes().decode("utf-8-sig")
        rows += [next(csv.reader(io.StringIO(ln))) for ln in text.split("\r\n") if ln and not ln.startswith("#")]
    return rows


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dag") / "out"
    rc, _, err = run_cli(["run", "org-dag-lb-expired-member-cert", "--out", str(out)])
    assert rc == 0, err
    return out


def test_a_dag_member_shadows_each_message_on_the_other_member_before_it_answers(dag_run):
    """TSEX01 (DAG TSDAG1 with TSEX02) copies every message from Exchange Online to TSEX02 first."""
    shadow_sessions = [rows for rows in sessions(folder_rows(dag_run, "TSEX01", "Hub", "SmtpSend")).values()
                       if any(r[7].startswith("XSHADOWREQUEST ") for r in rows)]
    assert len(shadow_sessions) == 4  # one per message (exo-1..exo-4 all land on TSEX01's Hub)
    rows = shadow_sessions[0]
    sent = [r[7] for r in rows if r[6] == ">"]
    got = [r[7] for r in rows if r[6] == "<"]
    assert any(r[5] == "10.20.0.22:2525" for r in rows)  # TSEX02's Transport service
    at = sent.index("RSET")
    assert sent[at + 1].startswith("XSHADOWREQUEST tsex01.corp.tailspintoys.com ")
    assert "X-ANONYMOUSTLS" in sent and any(s.startswith("X-EXPS EXCHANGEAUTH") for s in sent)
    assert f"250 {base64.b64encode(b'tsex02.corp.tailspintoys.com').decode()}" in got
    final = next(g for g in got if "Queued mail for redundancy" in g)
    assert final.startswith("250 2.6.0 <") and "Hostname=tsex02.corp.tailspintoys.com]" in final
    # the primary's HAREDIRECT names the shadow server and its answer; the shadow server's HARECEIVE
    # and, once the primary delivered, HADISCARD (the heartbeat's XQDISCARD)
    primary = [r for r in tracking(dag_run, "TSEX01") if r[8] in ("HAREDIRECT", "HAREDIRECTFAIL")]
    assert [r[8] for r in primary] == ["HAREDIRECT"] * 4
    assert primary[0][5].startswith("tsex02.corp.tailspintoys.com=250 2.6.0 ")
    peer = tracking(dag_run, "TSEX02")
    received = [r for r in peer if r[8] == "HARECEIVE"]
    discarded = [r for r in peer if r[8] == "HADISCARD"]
    assert len(received) == 4 and sorted(r[10] for r in discarded) == sorted(r[10] for r in received)
    assert all(d[0] > r[0] for d, r in zip(sorted(discarded, key=lambda r: r[10]),
                                          sorted(received, key=lambda r: r[10]), strict=True))


def test_the_shadow_copy_is_never_a_second_delivery(dag_run):
    summary = json.loads((dag_run / "summary.json").read_text(encoding="utf-8"))
    for m in summary["messages"]:
        assert m["fate"] == "delivered"
        assert len([h for h in m["hops"] if h["event"] == "DELIVER"]) == 1, m["id"]
        assert not [h for h in m["hops"] if h["event"] == "RECEIVE" and h["server"] == "TSEX02"
                    and h["time"] < "2026-06-01T07:01:00.2"]


def test_a_single_mailbox_server_makes_no_shadow_copy(baseline):
    """The default organisation: no peer, HAREDIRECTFAIL 'No suitable shadow servers', no shadow verbs."""
    assert not [r for r in folder_rows(baseline.out, "CMHYBD01", "Hub", "SmtpSend")
                if r[7].startswith(("XSHADOWREQUEST", "XSHADOW ", "XQDISCARD"))]
    rows = tracking(baseline.out, "CMHYBD01")
    assert any(r[8] == "HAREDIRECTFAIL" and r[5] == "No suitable shadow servers" for r in rows)
    assert not any(r[8] in ("HAREDIRECT", "HARECEIVE", "HADISCARD") for r in rows)


@pytest.mark.integration
def test_get_queue_shows_the_shadow_queue_until_the_primary_reports_the_message_done(tmp_path):
    commands = ("Start-Sleep -Seconds 61; Get-Queue -Server TSEX02 | Where-Object {$_.DeliveryType -eq "
                "'ShadowRedundancy'} | Format-List Identity,NextHopDomain,MessageCount; Start-Sleep -Seconds 150; "
                "Get-Queue 'TSEX02\\Shadow\\1' | Format-List MessageCount")
    rc, out, err = run_cli(["shell", "org-dag-lb-expired-member-cert", "--command", commands,
                            "--out", str(tmp_path / "o")])
    assert rc == 0, err
    first, _, later = out.partition("MessageCount  : 1")
    assert "Identity      : TSEX02\\Shadow\\1" in first and "NextHopDomain : tsex01.corp.tailspintoys.com" in first
    assert "MessageCount : 0" in later  # discarded at the heartbeat after TSEX01 delivered


def test_queues_json_and_the_history_show_the_shadow_queue(dag_run):
    """`labsim queue` (queues.json) and `labsim queue --at` (queue-history.jsonl) show TSEX02's shadow
    queue as Get-Queue does: `<SERVER>\\Shadow\\<n>`, DeliveryType ShadowRedundancy, the primary as
    NextHopDomain; the copy is listed while TSEX02 holds it and leaves at the heartbeat's discard."""
    final = json.loads((dag_run / "queues.json").read_text(encoding="utf-8"))["servers"]["TSEX02"]
    shadow = [q for q in final["queues"] if q["DeliveryType"] == "ShadowRedundancy"]
    assert [(q["Identity"], q["NextHopDomain"], q["MessageCount"]) for q in shadow] == \
        [("TSEX02\\Shadow\\1", "tsex01.corp.tailspintoys.com", 0)]  # all four copies discarded by the end
    lines = [ln for ln in read_lines(dag_run / "queue-history.jsonl")
             if ln["Server"] == "TSEX02" and (ln.get("Queue") or {}).get("Identity") == "TSEX02\\Shadow\\1"]
    counts = [ln["Queue"]["MessageCount"] for ln in lines]
    assert counts[0] == 1 and counts[-1] == 0 and 0 in counts[1:]
    held = lines[0]["Time"]  # the first copy is held from here until the next heartbeat discards it
    data = load_queues(dag_run)
    at = datetime.fromisoformat(held.replace("Z", "+00:00"))
    rows = queue_rows(data, server="TSEX02", at=at)
    assert [(r["Identity"], r["MessageCount"]) for r in rows if r["DeliveryType"] == "ShadowRedundancy"] == \
        [("TSEX02\\Shadow\\1", 1)]
    msgs = message_rows(data, server="TSEX02", queue="TSEX02\\Shadow\\1", at=at)
    assert len(msgs) == 1 and msgs[0]["Recipients"] == ["mira.okafor@tailspintoys.com"]
    # the final view lists the emptied shadow queue, as the shell's Get-Queue does
    assert "TSEX02\\Shadow\\1" in [r["Identity"] for r in queue_rows(data, server="TSEX02")]
