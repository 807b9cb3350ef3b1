"""The Exchange Online message trace: Get-MessageTrace / Get-MessageTraceDetail CSVs and `labsim trace`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from conftest import SCENARIOS, run_cli

from labsim.engine.driver import run_scenario
from labsim.engine.trace import DETAIL_COLUMNS, TRACE_COLUMNS
from labsim.scenario.loader import load_scenario


def _csv(path: Path) -> list[dict[str, str]]:
    text = path.read_bytes().decode("utf-8")
    assert text.startswith('"') and text.endswith("\r\n")  # Export-Csv: quoted, CRLF
    return list(csv.DictReader(io.StringIO(text)))


def test_baseline_trace(baseline) -> None:
    folder = baseline.out / "EXO" / "MessageTrace"
    rows = _csv(folder / "Get-MessageTrace.csv")
    assert rows and list(rows[0]) == list(TRACE_COLUMNS)
    assert {r["Status"] for r in rows} == {"Delivered"}
    assert [r["Index"] for r in rows] == [str(i) for i in range(len(rows))]
    inbound = baseline.message("onprem-to-exo")
    row = next(r for r in rows if r["MessageId"] == inbound["message_id"])
    assert row["FromIP"] == "27.7.57.241" and row["Organization"] == "cloudfield.onmicrosoft.com"
    details = _csv(folder / "Get-MessageTraceDetail.csv")
    assert list(details[0]) == list(DETAIL_COLUMNS)
    mine = [d["Event"] for d in details if d["MessageTraceId"] == row["MessageTraceId"]]
    assert mine == ["Receive", "Deliver"]
    outbound = baseline.message("exo-to-onprem")
    sent = [d for d in details if d["MessageId"] == outbound["message_id"] and d["Event"] == "Send"]
    assert sent and "Message sent to mail.cloudmonkeys.xyz at 27.7.57.241" in sent[0]["Detail"]


@pytest.fixture(scope="module")
def exo_broken(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("exo") / "out"
    result = run_scenario(load_scenario(SCENARIOS / "exo-connector-smarthost-unresolvable.toml"), out=out)
    print(f"\n  exo-connector-smarthost-unresolvable: 48 virtual hours in {result.wall_seconds:.2f} s")
    return result


def test_exo_defer_then_fail_with_led(exo_broken) -> None:
    assert exo_broken.ok, [o for o in exo_broken.outcomes if not o.ok]
    m = exo_broken.summary["messages"][0]
    rc, out, _ = run_cli(["trace", str(exo_broken.out), "--sender", m["from"], "--csv"])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and [r["Status"] for r in rows] == ["Failed"]
    rc, out, _ = run_cli(["trace", str(exo_broken.out), "--detail", "--message-trace-id", rows[0]["MessageTraceId"],
                          "--csv"])
    details = list(csv.DictReader(io.StringIO(out)))
    assert [d["Event"] for d in details] == ["Receive", "Defer", "Fail"]
    assert "{LED=450 4.4.312 DNS query failed}" in details[1]["Detail"]
    assert "{FQDN=mail-old.cloudmonkeys.xyz}" in details[1]["Detail"]
    assert "{LED=550 4.4.7 QUEUE.Expired; message expired}" in details[2]["Detail"]
    assert "{MSG=450 4.4.312 DNS query failed}" in details[2]["Detail"]


def test_exo_ndr_reaches_the_cloud_sender(exo_broken) -> None:
    [note] = exo_broken.summary["messages"][0]["notifications"]
    assert note["server"] == "EXO" and note["realm"] == "exo" and note["delivered_to"] == "ramki@cloudmonkeys.xyz"
    text = (exo_broken.out / note["path"]).read_text()
    assert "From: Microsoft Outlook <postmaster@cloudfield.onmicrosoft.com>" in text
    assert "Diagnostic-Code: smtp;550 4.4.7 QUEUE.Expired; message expired" in text


def test_trace_view_rejects_a_folder_without_a_trace(tmp_path: Path) -> None:
    rc, _, err = run_cli(["trace", str(tmp_path)])
    assert rc == 2 and "trace.json" in err


def test_the_trace_written_from_its_database_is_the_one_the_rendering_functions_give(tmp_path):
    """trace.json, Get-MessageTrace.csv and Get-MessageTraceDetail.csv come from the trace's
    database in SQL order; `labsim trace` renders trace.json with trace_rows / detail_rows in
    Python order: both must print the same rows (ties, case, descending dates and all)."""
    import json
    from datetime import datetime, timedelta, timezone
    from types import SimpleNamespace

    from labsim.engine.trace import (
        DETAIL_COLUMNS,
        TRACE_COLUMNS,
        ExoTrace,
        detail_rows,
        export_csv,
        trace_rows,
    )

    t0 = datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc)
    clock = SimpleNamespace(now=lambda: t0 + timedelta(seconds=90))
    tenant = SimpleNamespace(initial_domain="contoso.onmicrosoft.com", frontend_host="EOP01", mail_users=[],
                             mailboxes=[])
    lab = SimpleNamespace(clock=clock, model=SimpleNamespace(tenant=tenant, start=t0))
    trace = ExoTrace(lab)  # type: ignore[arg-type]
    for i in range(12):
        item = SimpleNamespace(network_message_id=f"nmid-{i % 5}", message_id=f"<m{i % 5}@x>",
                               arrived=t0 + timedelta(seconds=i % 3), mail_from="a@x", subject=f"s{i} \u00e9",
                               size=100 + i, client_ip="10.0.0.1")
        rcpts = [["Bob@y", "bob@y"][i % 2], "Carol@y", f"d{i % 4}@Y"][: 1 + i % 3]
        trace._event(item, rcpts, ["Receive", "Defer", "Send", "Deliver", "Fail"][i % 5], f"detail {i}",
                     to_ip="10.0.0.9" if i % 4 == 0 else None)
    paths = trace.write(tmp_path)
    data = json.loads(paths[0].read_text(encoding="utf-8"))
    assert len(data["messages"]) == len({(f"nmid-{i % 5}", r.lower()) for i in range(12)
                                         for r in [["Bob@y", "bob@y"][i % 2], "Carol@y", f"d{i % 4}@Y"][: 1 + i % 3]})
    assert paths[1].read_text(encoding="utf-8") == export_csv(trace_rows(data), TRACE_COLUMNS).replace("\r\n", "\n")
    detail = [{k: v for k, v in r.items() if k != "_iso"} for r in detail_rows(data)]
    assert paths[2].read_text(encoding="utf-8") == export_csv(detail, DETAIL_COLUMNS).replace("\r\n", "\n")
    trace.close()


@pytest.mark.parametrize("young", [1, 3, 4096])
def test_the_trace_finds_rows_whose_numbers_waited_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            young: int) -> None:
    """The trace keeps the row number of each (Network Message ID, recipient) in a SpilledMap:
    with the older numbers on disk, a later event of an early message lands on its first row, and
    EXO's rewritten mail user is still found as it was addressed (issue 8: memory in flight)."""
    import json
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from labsim.engine import spill
    from labsim.engine.trace import ExoTrace

    monkeypatch.setattr(spill, "YOUNG", young)
    t0 = datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc)
    mu = SimpleNamespace(primary_smtp_address="Pat@contoso.com", external_email_address="pat@fabrikam.com")
    tenant = SimpleNamespace(initial_domain="contoso.onmicrosoft.com", frontend_host="EOP01", mail_users=[mu],
                             mailboxes=[])
    lab = SimpleNamespace(clock=SimpleNamespace(now=lambda: t0), model=SimpleNamespace(tenant=tenant, start=t0))
    trace = ExoTrace(lab)  # type: ignore[arg-type]

    def item(i: int) -> SimpleNamespace:
        return SimpleNamespace(network_message_id=f"nmid-{i}", message_id=f"<m{i}@x>", arrived=t0, mail_from="a@x",
                               subject=f"s{i}", size=100, client_ip="10.0.0.1", recipients=[f"r{i}@y", "Pat@contoso.com"])
    for i in range(10):
        trace.received(item(i))
    assert trace._seq.in_memory <= 2 * young
    assert trace._original(item(0), "pat@fabrikam.com") == "Pat@contoso.com"  # the mail user as addressed
    trace.deliver(item(0), "pat@fabrikam.com")
    trace.deliver(item(1), "R1@y")
    data = json.loads(trace.write(tmp_path)[0].read_text(encoding="utf-8"))
    trace.close()
    assert len(data["messages"]) == 20  # no new row: the deliveries found their first rows
    events = {(m["MessageTraceId"], m["RecipientAddress"]): [e["Event"] for e in m["Events"]]
              for m in data["messages"]}
    assert events[("nmid-0", "Pat@contoso.com")] == ["Receive", "Deliver"]
    assert events[("nmid-1", "r1@y")] == ["Receive", "Deliver"]
    assert [k for k, v in events.items() if v != ["Receive"]] == [("nmid-0", "Pat@contoso.com"), ("nmid-1", "r1@y")]
