"""Message trace V2 (engine.trace_v2): Get-MessageTraceV2 / Get-MessageTraceDetailV2 CSVs beside V1
and `labsim trace --v2`; the detail views name the message of each row."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from conftest import run_cli

from labsim.engine.trace_v2 import (
    DETAIL_V2_COLUMNS,
    TRACE_V2_COLUMNS,
    detail_v2_rows,
    trace_v2_rows,
)


def _csv(path: Path) -> list[dict[str, str]]:
    text = path.read_bytes().decode("utf-8")
    assert text.startswith('"') and text.endswith("\r\n")  # Export-Csv: quoted, CRLF
    return list(csv.DictReader(io.StringIO(text)))


def test_v2_csvs_agree_with_v1_row_for_row(baseline) -> None:
    folder = baseline.out / "EXO" / "MessageTrace"
    v1, v2 = _csv(folder / "Get-MessageTrace.csv"), _csv(folder / "Get-MessageTraceV2.csv")
    assert v2 and list(v2[0]) == list(TRACE_V2_COLUMNS)
    assert "Index" not in v2[0] and "Organization" not in v2[0]  # no paging in V2
    assert [{c: r[c] for c in TRACE_V2_COLUMNS} for r in v1] == v2  # same rows, same order
    d1, d2 = _csv(folder / "Get-MessageTraceDetail.csv"), _csv(folder / "Get-MessageTraceDetailV2.csv")
    assert list(d2[0]) == list(DETAIL_V2_COLUMNS)
    assert [{c: r[c] for c in DETAIL_V2_COLUMNS} for r in d1] == d2
    inbound = baseline.message("onprem-to-exo")
    mine = [d for d in d2 if d["MessageId"] == inbound["message_id"]]
    assert [d["Event"] for d in mine] == ["Receive", "Deliver"]


_DATA = {"organization": "t.onmicrosoft.com", "start": "2026-05-01T06:00:00.000Z", "end": "2026-05-01T07:00:00.000Z",
         "messages": [
             {"MessageId": "<a@x>", "MessageTraceId": "t1", "Received": "2026-05-01T06:00:01.000Z",
              "SenderAddress": "s@x", "RecipientAddress": "b@y", "Subject": "Quarterly report", "Status": "Delivered",
              "ToIP": "", "FromIP": "1.2.3.4", "Size": 10,
              "Events": [{"Date": "2026-05-01T06:00:02.000Z", "Event": "Deliver", "Action": "", "Detail": "d",
                          "Data": ""},
                         {"Date": "2026-05-01T06:00:01.000Z", "Event": "Receive", "Action": "", "Detail": "r",
                          "Data": ""}]},
             {"MessageId": "<b@x>", "MessageTraceId": "t2", "Received": "2026-05-01T06:05:00.000Z",
              "SenderAddress": "s@x", "RecipientAddress": "a@y", "Subject": "Re: agenda", "Status": "Failed",
              "ToIP": "", "FromIP": "", "Size": 5, "Events": []}]}


def test_v2_subject_filter_types_and_order() -> None:
    assert [r["MessageTraceId"] for r in trace_v2_rows(_DATA)] == ["t2", "t1"]  # newest first
    assert [r["MessageTraceId"] for r in trace_v2_rows(_DATA, subject="report")] == ["t1"]
    assert [r["MessageTraceId"] for r in trace_v2_rows(_DATA, subject="re", subject_filter_type="StartsWith")] == ["t2"]
    assert [r["MessageTraceId"] for r in trace_v2_rows(_DATA, subject="REPORT", subject_filter_type="EndsWith")] == ["t1"]
    assert trace_v2_rows(_DATA)[1]["Received"] == "5/1/2026 6:00:01 AM"
    assert [r["Event"] for r in detail_v2_rows(_DATA, trace_id="T1")] == ["Receive", "Deliver"]  # time order


def test_labsim_trace_v2_views(baseline) -> None:
    rc, out, _ = run_cli(["trace", str(baseline.out), "--v2", "--csv"])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and list(rows[0]) == list(TRACE_V2_COLUMNS)
    rc, out, _ = run_cli(["trace", str(baseline.out), "--v2", "--detail", "--message-trace-id",
                          rows[0]["MessageTraceId"]])
    assert rc == 0 and out.splitlines()[0].split()[:4] == ["Date", "Event", "MessageId", "RecipientAddress"]
    rc, out, _ = run_cli(["trace", str(baseline.out), "--detail"])  # V1 detail table names the message too
    assert rc == 0 and "MessageId" in out.splitlines()[0]
    rc, _, err = run_cli(["trace", str(baseline.out), "--v2", "--subject", "x", "--subject-filter-type", "Like"])
    assert rc != 0 and "--subject-filter-type" in err and "Traceback" not in err
