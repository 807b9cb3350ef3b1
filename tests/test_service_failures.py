"""Service failures that come from the world: AD LDS without its database (rules.services,
topology.cmdlets_svc, engine.service_ops) and the SCM events they raise (logs.scm)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli, run_text

from labsim.engine.eventlog import read_text_log
from labsim.errors import TopologyError
from labsim.logs.scm import failure_strings, render_scm_xml, scm_message
from labsim.rules.services import STATUS_NO_SUCH_FILE, start_plan
from labsim.topology.changes import apply_change
from labsim.topology.model import Lab


def _edge(lab: Lab):  # noqa: ANN202
    return next(s for s in lab.organization.servers if s.role == "Edge")


def test_edge_transport_starts_its_stopped_adam_first(lab: Lab) -> None:
    plan = start_plan(_edge(lab), "MSExchangeTransport", running=set())
    assert plan.started == ["ADAM_MSExchange", "MSExchangeTransport"] and not plan.events and not plan.failed


def test_adam_without_its_database_ends_with_0xc000000f_and_keeps_transport_down(lab: Lab) -> None:
    apply_change(lab, "Remove-LabAdamDatabase", {"Server": _edge(lab).name})
    plan = start_plan(_edge(lab), "MSExchangeTransport", running=set())
    assert plan.failed and plan.started == []
    assert plan.events == [(7023, ["ADAM_MSExchange", f"%%{STATUS_NO_SUCH_FILE}"]),
                           (7001, ["MSExchangeTransport", "ADAM_MSExchange", "%%3221225487"])]
    # a Mailbox server's Transport service does not depend on AD LDS
    mbx = next(s for s in lab.organization.servers if s.role == "Mailbox")
    assert start_plan(mbx, "MSExchangeTransport", running=set()).started == ["MSExchangeTransport"]
    apply_change(lab, "Install-LabAdamInstance", {"Server": _edge(lab).name})
    assert start_plan(_edge(lab), "ADAM_MSExchange", running=set()).started == ["ADAM_MSExchange"]


def test_scm_failure_texts_are_the_real_ones() -> None:
    assert scm_message(7023, failure_strings(7023, ["ADAM_MSExchange", "%%3221225487"])) == (
        "The Microsoft Exchange ADAM service terminated with the following error: \r\n%%3221225487")
    assert scm_message(7001, failure_strings(7001, ["MSExchangeTransport", "ADAM_MSExchange", "%%3221225487"])) == (
        "The Microsoft Exchange Transport service depends on the Microsoft Exchange ADAM service which failed "
        "to start because of the following error: \r\n%%3221225487")
    xml = render_scm_xml(7023, ["Microsoft Exchange ADAM", "%%3221225487"], __import__("datetime").datetime(2026, 5, 1),
                         7, "CMEDGE01.cloudmonkeys.xyz")
    assert "<EventID Qualifiers='49152'>7023</EventID><Version>0</Version><Level>2</Level>" in xml
    assert "<Data Name='param2'>%%3221225487</Data></EventData>" in xml


@pytest.mark.parametrize(("params", "problem"), [
    ({"Server": "CMHYBD01"}, "is not an Edge Transport server"),
    ({}, "-Server is required"),
    ({"Server": "CMEDGE01", "Path": "x"}, "unknown parameter -Path"),
    ({"Server": "NOPE"}, "no server 'NOPE'"),
])
def test_adam_verbs_refuse_bad_parameters(lab: Lab, params: dict, problem: str) -> None:
    with pytest.raises(TopologyError) as exc:
        apply_change(lab, "Remove-LabAdamDatabase", dict(params))
    assert problem in str(exc.value)


def test_start_service_with_the_database_gone_logs_7023_and_stays_stopped(write_scenario, tmp_path: Path) -> None:
    r = run_text(write_scenario, tmp_path, """
        [[change]]
        at = "+00:00:10"
        cmdlet = "Stop-Service"
        Name = "ADAM_MSExchange"
        Server = "CMEDGE01"

        [[change]]
        at = "+00:00:20"
        cmdlet = "Remove-LabAdamDatabase"
        Server = "CMEDGE01"

        [[change]]
        at = "+00:00:30"
        cmdlet = "Restart-Service"
        Name = "MSExchangeTransport"
        Server = "CMEDGE01"
        """, duration="00:02:00")
    system = read_text_log(r.out / "CMEDGE01" / "EventLog" / "System.txt")
    assert [(e["Event ID"], e["Level"]) for e in system] == [
        ("7036", "Information"), ("7036", "Information"), ("7023", "Error"), ("7001", "Error")]
    assert system[1]["Description"] == "The Microsoft Exchange Transport service entered the stopped state."
    states = r.summary["services"]["servers"]["CMEDGE01"]
    assert states == {"MSExchangeTransport": "Stopped", "ADAM_MSExchange": "Stopped"}
    assert "7023" in (r.out / "CMEDGE01" / "EventLog" / "System.xml").read_text()


def test_adam_database_scenario_holds_its_expectations(tmp_path: Path) -> None:
    rc, stdout, _ = run_cli(["run", "svc-adam-database-missing", "--out", str(tmp_path / "o")])
    assert rc == 0, stdout
    assert "expectations: 5/5 hold" in stdout
