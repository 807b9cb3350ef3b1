"""`[[expect.tracking]]`: scenario expectations over the message tracking logs."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli, scenario_text

MESSAGE = '''
[[message]]
id = "up"
at = "+00:00:10"
from = "raghu@cloudmonkeys.xyz"
to = ["ramki@cloudmonkeys.xyz"]
'''


def _run(write_scenario, tmp_path: Path, expect: str) -> tuple[int, str, str]:
    path = write_scenario(scenario_text(MESSAGE + expect))
    return run_cli(["run", str(path), "--out", str(tmp_path / "out")])


def test_tracking_expectation_that_holds(write_scenario, tmp_path: Path) -> None:
    rc, out, err = _run(write_scenario, tmp_path, '''
[[expect.tracking]]
event_id = "sendexternal"
server = "CMHYBD01"
message = "up"
contains = "Outbound to Office 365"
''')
    assert rc == 0, out + err
    assert "expectations: 1/1 hold" in out


def test_tracking_expectation_that_fails_names_it(write_scenario, tmp_path: Path) -> None:
    rc, out, _ = _run(write_scenario, tmp_path, '''
[[expect.tracking]]
event_id = "FAIL"
message = "up"
''')
    assert rc == 1
    assert "FAILED tracking FAIL for up: 0 matching row(s)" in out


def test_absent_tracking_expectation(write_scenario, tmp_path: Path) -> None:
    rc, out, err = _run(write_scenario, tmp_path, '''
[[expect.tracking]]
event_id = "DEFER"
absent = true
''')
    assert rc == 0, out + err


def test_tracking_expectation_for_an_unknown_message_is_bad_input(write_scenario, tmp_path: Path) -> None:
    rc, _, err = _run(write_scenario, tmp_path, '''
[[expect.tracking]]
event_id = "SEND"
message = "nope"
''')
    assert rc == 2
    assert "expect.tracking[0].message" in err and "unknown message id 'nope'" in err
