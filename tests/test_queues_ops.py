"""Queue operations as scenario timeline steps: Retry-Queue (-Resubmit), Suspend/Resume-Queue,
Suspend/Resume-Message, Remove-Message (-WithNDR), and their static checks."""

from __future__ import annotations

import email
import json
from datetime import datetime, timedelta
from email.policy import compat32
from pathlib import Path

import pytest
from conftest import SCENARIOS, folder_rows, run_cli, scenario_text

from labsim.cli_views import read_tracking
from labsim.engine.driver import run_scenario
from labsim.engine.queue_ops import compile_filter, parse_bool
from labsim.errors import ScenarioError, TopologyError
from labsim.logs.queue_history import QUEUE_HISTORY_FILE, queue_history, read_lines
from labsim.scenario.loader import load_scenario

DEAD_HOP = """
[[change]]
cmdlet = "Set-SendConnector"
Identity = "Outbound to Office 365"
SmartHosts = ["[198.51.100.77]"]

[[message]]
id = "m"
at = "+00:01:00"
from = "raghu@cloudmonkeys.xyz"
to = ["ramki@cloudmonkeys.xyz"]
subject = "queued"
"""
HEAD = 'start = "2026-05-04T08:00:00Z"\nduration = "06:00:00"\n'


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _run(write_scenario, body: str):
    path = write_scenario(scenario_text(body, head=HEAD))
    return run_scenario(load_scenario(path), out=path.parent / "out")


def _attempts(out: Path) -> list[datetime]:
    return [_iso(r[0]) for r in folder_rows(out, "CMHYBD01", "Hub", "SmtpSend") if r[8] == "attempting to connect"]


START = datetime.fromisoformat("2026-05-04T08:00:00+00:00")


# --- parameters and filters ------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [(True, True), (False, False), ("$true", True), ("$False", False),
                                            ("TRUE", True), (1, True), (0, False)])
def test_parse_bool(value, expected) -> None:
    assert parse_bool(value, "X", "Resubmit") is expected


def test_parse_bool_rejects_other_values() -> None:
    with pytest.raises(TopologyError, match="-Resubmit must be"):
        parse_bool("yes", "Retry-Queue", "Resubmit")


def test_filters() -> None:
    row = {"Status": "Retry", "MessageCount": 7, "NextHopDomain": "contoso.com", "FromAddress": "a@contoso.com"}
    assert compile_filter("Status -eq 'Retry'", "X")(row)
    assert compile_filter("{Status -eq 'Retry' -and MessageCount -gt 5}", "X")(row)
    assert not compile_filter("MessageCount -lt 5", "X")(row)
    assert compile_filter('FromAddress -like "*contoso.com"', "X")(row)
    assert compile_filter("NextHopDomain -ne 'fabrikam.com'", "X")(row)
    with pytest.raises(TopologyError, match="cannot read"):
        compile_filter("Status = Retry", "X")
    with pytest.raises(TopologyError, match="unknown property"):
        compile_filter("Colour -eq 'red'", "X")(row)


@pytest.mark.parametrize("step,problem", [
    ('cmdlet = "Retry-Queue"\nIdentity = "CMHYBD01"', "is not SERVER\\\\Queue"),
    ('cmdlet = "Retry-Queue"\nIdentity = \'NOPE\\Unreachable\'', "no transport server 'NOPE'"),
    ('cmdlet = "Retry-Queue"\nFilter = "Status is Retry"', "cannot read"),
    ('cmdlet = "Retry-Queue"\nIdentity = \'CMHYBD01\\Unreachable\'\nResubmit = "maybe"', "must be \\$true"),
    ('cmdlet = "Remove-Message"\nQueue = \'CMHYBD01\\1\'\nIdentity = \'CMHYBD01\\1\\5\'', "exactly one"),
    ('cmdlet = "Suspend-Queue"\nIdentity = \'CMHYBD01\\1\'\nColour = "red"', "unknown parameter -Colour"),
])
def test_bad_timeline_steps_fail_before_the_run(write_scenario, step: str, problem: str) -> None:
    path = write_scenario(scenario_text(DEAD_HOP + f'\n[[change]]\nat = "+00:10:00"\n{step}\n', head=HEAD))
    with pytest.raises(ScenarioError, match=problem) as info:
        run_scenario(load_scenario(path), out=path.parent / "out")
    assert "change[1]" in info.value.where
    rc, _, err = run_cli(["run", str(path), "--out", str(path.parent / "out2")])
    assert rc == 2 and "change[1]" in err


# --- the operations on a running lab ---------------------------------------------------------------
def test_retry_queue_forces_an_attempt_now(write_scenario) -> None:
    r = _run(write_scenario, DEAD_HOP + """
[[change]]
at = "+00:08:30"
cmdlet = "Retry-Queue"
Identity = 'CMHYBD01\\1'
""")
    assert START + timedelta(minutes=8, seconds=30) in _attempts(r.out)


def test_suspend_and_resume_queue(write_scenario) -> None:
    r = _run(write_scenario, DEAD_HOP + """
[[change]]
at = "+00:03:00"
cmdlet = "Suspend-Queue"
Identity = 'CMHYBD01\\1'

[[change]]
at = "+01:00:00"
cmdlet = "Resume-Queue"
Filter = "Status -eq 'Suspended'"
""")
    attempts = _attempts(r.out)
    assert not [t for t in attempts if START + timedelta(minutes=3) < t < START + timedelta(hours=1)]
    assert START + timedelta(hours=1) in attempts
    history = list(queue_history(read_lines(r.out / QUEUE_HISTORY_FILE)))
    assert any(h["Status"] == "Suspended" and h["MessageCount"] == 1 for h in history)


def test_suspend_message_holds_it_back(write_scenario) -> None:
    r = _run(write_scenario, DEAD_HOP + """
[[change]]
at = "+00:02:00"
cmdlet = "Suspend-Message"
Filter = "FromAddress -eq 'raghu@cloudmonkeys.xyz'"
""")
    attempts = _attempts(r.out)
    assert attempts and max(attempts) < START + timedelta(minutes=2)
    state = json.loads((r.out / "queues.json").read_text())
    [msg] = state["servers"]["CMHYBD01"]["messages"]
    assert msg["Status"] == "Suspended" and msg["Queue"] == "CMHYBD01\\1"
    assert r.summary["messages"][0]["fate"] == "pending"


@pytest.mark.parametrize("with_ndr", [True, False])
def test_remove_message(write_scenario, with_ndr: bool) -> None:
    r = _run(write_scenario, DEAD_HOP + f"""
[[change]]
at = "+00:30:00"
cmdlet = "Remove-Message"
Queue = 'CMHYBD01\\1'
WithNDR = {"true" if with_ndr else "false"}
""")
    m = r.summary["messages"][0]
    assert m["fate"] == "failed"
    assert m["failed"][0]["reason"] == "550 4.3.2 QUEUE.Admin; message deleted by administrative action"
    fails = [t for t in read_tracking(r.out) if t["EventId"] == "FAIL"]
    assert [f["Source"] for f in fails] == ["ADMIN"]
    if not with_ndr:
        assert m["notifications"] == [] and fails[0]["Reference"] == ""
        return
    [note] = m["notifications"]
    assert fails[0]["Reference"] == note["message_id"] and note["delivered_to"] == "raghu@cloudmonkeys.xyz"
    ndr = email.message_from_bytes((r.out / note["path"]).read_bytes(), policy=compat32)
    block = dict(next(p for p in ndr.walk() if p.get_content_type() == "message/delivery-status")
                 .get_payload()[1].items())
    assert block["Status"] == "4.3.2"


def test_unreachable_resubmit_scenario(tmp_path: Path) -> None:
    r = run_scenario(load_scenario(SCENARIOS / "unreachable-resubmit.toml"), out=tmp_path / "out")
    assert r.ok
    rows = read_tracking(r.out)
    resubmit = [t for t in rows if t["EventId"] == "RESUBMIT"]
    assert [(t["Source"], t["Timestamp"][11:19]) for t in resubmit] == [("ADMIN", "09:35:10")]
    # Suspended through the configuration change at +00:30: no automatic resubmission then.
    deliver = next(h for h in r.summary["messages"][0]["hops"] if h["event"] == "DELIVER")
    assert _iso(deliver["time"]) >= _iso("2026-05-05T09:35:10Z")


def test_routing_change_resubmits_unreachable_by_itself(write_scenario) -> None:
    r = _run(write_scenario, """
[[change]]
cmdlet = "Set-SendConnector"
Identity = "EdgeSync - Default-First-Site-Name to Internet"
Enabled = false

[[message]]
id = "m"
at = "+00:01:00"
from = "raghu@cloudmonkeys.xyz"
to = ["alex@fabrikam.com"]

[[change]]
at = "+00:10:00"
cmdlet = "Set-SendConnector"
Identity = "EdgeSync - Default-First-Site-Name to Internet"
Enabled = true
""")
    assert r.summary["messages"][0]["fate"] == "delivered"
    resubmit = [t for t in read_tracking(r.out) if t["EventId"] == "RESUBMIT"]
    assert [(t["Source"], t["Timestamp"][11:16]) for t in resubmit] == [("ROUTING", "08:10")]
