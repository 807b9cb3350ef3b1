"""`--json` for scripts: `labsim run`, and the views `queue`, `track`, `trace`, `validate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli


@pytest.fixture(scope="module")
def expired(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("json") / "out"
    rc, stdout, err = run_cli(["run", "cert-expired", "--out", str(out), "--json"])
    assert rc == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 1  # one JSON document, nothing else on stdout
    return out, json.loads(lines[0])


def test_run_json_is_the_result(expired: tuple[Path, dict]) -> None:
    out, doc = expired
    assert doc["scenario"] == "cert-expired" and doc["ok"] is True and doc["seed"] == 1
    assert Path(doc["out"]) == out and Path(doc["manifest"]) == out / "manifest.json"
    assert all(e["ok"] for e in doc["expectations"]) and doc["expectations"]
    fates = {m["id"]: m["fate"] for m in doc["messages"]}
    assert fates == {"exo-to-onprem": "pending", "onprem-to-exo": "pending"}


def test_run_json_with_several_scenarios_is_one_line_each(tmp_path: Path) -> None:
    rc, stdout, err = run_cli(["run", "hybrid-baseline", "cert-expired", "--out", str(tmp_path), "--json"])
    assert rc == 0, err
    docs = [json.loads(line) for line in stdout.splitlines()]
    assert [d["scenario"] for d in docs] == ["hybrid-baseline", "cert-expired"]


def test_queue_json_has_every_property(expired: tuple[Path, dict]) -> None:
    out, _ = expired
    rc, stdout, _ = run_cli(["queue", str(out), "--json"])
    queues = json.loads(stdout)
    assert rc == 0 and any(q["Identity"] == "CMHYBD01\\1" and q["MessageCount"] == 1 for q in queues)
    assert all("NextHopDomain" in q and "LastError" in q for q in queues)
    rc, stdout, _ = run_cli(["queue", str(out), "--messages", "--json"])
    (msg,) = json.loads(stdout)
    assert msg["Status"] == "Retry" and msg["Recipients"] == ["ramki@cloudfield.mail.onmicrosoft.com"]


def test_track_json_filters_like_the_table(expired: tuple[Path, dict]) -> None:
    out, doc = expired
    rc, stdout, _ = run_cli(["track", str(out), "--event-id", "DEFER", "--json"])
    rows = json.loads(stdout)
    assert rc == 0 and rows and {r["EventId"] for r in rows} == {"DEFER"}
    assert {r["MessageId"] for r in rows} == {doc["messages"][1]["message_id"]}


def test_trace_json(expired: tuple[Path, dict]) -> None:
    out, _ = expired
    rc, stdout, _ = run_cli(["trace", str(out), "--json"])
    rows = json.loads(stdout)
    assert rc == 0 and {r["Status"] for r in rows} == {"Pending"}
    rc, stdout, _ = run_cli(["trace", str(out), "--detail", "--json"])
    assert "Defer" in {r["Event"] for r in json.loads(stdout)}


def test_validate_json() -> None:
    rc, stdout, _ = run_cli(["validate", "cert-expired", "--json"])
    doc = json.loads(stdout)
    assert rc == 1 and doc["scenario"] == "cert-expired" and doc["connectors"]


def test_empty_view_is_an_empty_array(expired: tuple[Path, dict]) -> None:
    out, _ = expired
    rc, stdout, _ = run_cli(["track", str(out), "--event-id", "NOSUCHEVENT", "--json"])
    assert rc == 0 and json.loads(stdout) == []
