"""The README's example: testing a log analyzer against labsim's ground truth, through the pytest
plugin (labsim/pytest_plugin.py, registered as the `pytest11` entry point `labsim`)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest


# --- the analyzer under test (imaginary: in real life it lives in your own project) -----------------
def tls_failures(out: Path) -> dict[str, set[str]]:
    """Send connector -> the SmtpSend sessions whose TLS negotiation failed, from the logs alone."""
    found: dict[str, set[str]] = {}
    for log in out.glob("*/TransportRoles/Logs/*/ProtocolLog/SmtpSend/*.LOG"):
        for row in csv.reader(line for line in log.read_text(encoding="utf-8-sig").splitlines()
                              if not line.startswith("#")):
            if row[6] == "*" and row[8].startswith("TLS negotiation failed"):
                found.setdefault(row[1], set()).add(row[2])
    return found


# --- its tests ---------------------------------------------------------------------------------------
@pytest.mark.labsim("cert-tlscertname-no-private-key")
def test_finds_exactly_the_tls_failures_the_manifest_names(labsim_run) -> None:  # noqa: ANN001
    found = tls_failures(labsim_run.out)
    # the ground truth: the SmtpSend sessions the fault's evidence points at
    (fault,) = labsim_run.faults
    expected = {e.session_id for e in fault.evidence if e.session_id and "/SmtpSend/" in e.file}
    assert set().union(*found.values()) == expected  # a miss or an extra is a precise diff
    deferred = [h for m in labsim_run.messages for h in m.hops if h.event == "DEFER" and h.session_id]
    assert set(found) == {h.connector for h in deferred}  # and the connector the mail waits on


BASELINE = """
id = "quiet-day"
title = "one message, nothing wrong"
[training]
symptom = "none"
evidence = "none"
root_cause = "none"
fix = "none"
[[message]]
id = "m1"
from = "raghu@cloudmonkeys.xyz"
to = ["ramki@cloudmonkeys.xyz"]
"""


@pytest.mark.labsim(BASELINE)
def test_finds_nothing_on_a_quiet_day(labsim_run) -> None:  # noqa: ANN001
    assert tls_failures(labsim_run.out) == {}
    assert [m.fate for m in labsim_run.messages] == ["delivered"]
    assert not [h for m in labsim_run.messages for h in m.hops if h.event in ("DEFER", "FAIL")]


def test_a_run_is_cached_for_the_session(labsim_runner) -> None:  # noqa: ANN001
    first = labsim_runner(BASELINE)
    assert labsim_runner(BASELINE) is first  # same bytes, same seed: run once
    other = labsim_runner(BASELINE, seed=2)
    assert other is not first and other.out != first.out and other.seed == 2


@pytest.mark.parametrize("labsim_run", ["hybrid-baseline"], indirect=True)
def test_indirect_parameter(labsim_run) -> None:  # noqa: ANN001
    assert labsim_run.scenario == "hybrid-baseline" and labsim_run.ok


async def test_live_lab_fixture(labsim_lab) -> None:  # noqa: ANN001
    async with labsim_lab("hybrid-baseline") as lab:
        ip, port = lab.address("CMHYBD01")
        assert ip.startswith("127.") and port >= 1024
