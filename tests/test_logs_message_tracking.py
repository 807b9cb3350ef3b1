"""Message tracking log: the QAZ MSGTRKMS file rebuilt byte-for-byte, ELA rows, field handling."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest

from labsim.logs.message_tracking import MESSAGE_TRACKING_FIELDS, MessageTrackingLog

GOLDEN = Path(__file__).parent / "golden" / "logs"
SNAKE = [f.replace("-", "_") for f in MESSAGE_TRACKING_FIELDS]


def from_row(log: MessageTrackingLog, row: str) -> None:
    """Add a real row back from its parsed values (only non-empty ones, by snake_case name)."""
    (values,) = list(csv.reader([row]))
    assert len(values) == 30
    log.add(datetime.fromisoformat(values[0]), **{k: v for k, v in zip(SNAKE[1:], values[1:]) if v})


def test_qazeer_msgtrkms_file_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    lines = (GOLDEN / "qazeer-msgtrk-MSGTRKMS2022091915-1.log").read_text(encoding="utf-8").splitlines()[1:]
    log = MessageTrackingLog(tmp_path, "SERVER-HOSTNAME", "MSGTRKMS", version="15.01.2375.007")
    for row in lines[5:]:
        from_row(log, row)
    (path,) = log.flush()
    assert path == tmp_path / "SERVER-HOSTNAME/TransportRoles/Logs/MessageTracking/MSGTRKMS2022091915-1.LOG"
    assert path.read_bytes() == b"\xef\xbb\xbf" + "".join(ln + "\r\n" for ln in lines).encode()


def test_elastic_rows_rebuilt(tmp_path: Path) -> None:
    rows = [ln for ln in (GOLDEN / "elastic-messagetracking.log").read_text(encoding="utf-8").splitlines()
            if not ln.startswith("#")]
    got: list[str] = []
    for row in rows:  # rows of several servers and builds: one log per row, its own schema version
        log = MessageTrackingLog(tmp_path / str(len(got)), "S", "MSGTRK", version=row.rsplit(",", 1)[1])
        from_row(log, row)
        (path,) = log.flush()
        got.append(path.read_bytes().decode("utf-8-sig").split("\r\n")[5])
    assert got == rows


def test_unset_fields_are_empty_and_schema_version_defaults_to_the_build(tmp_path: Path) -> None:
    log = MessageTrackingLog(tmp_path, "EX1", "MSGTRK")
    log.add(datetime.fromisoformat("2024-05-01T10:00:00.5Z"), event_id="RECEIVE", source="SMTP", total_bytes=1234,
            message_subject='Re: "hello", world')
    (path,) = log.flush()
    text = path.read_bytes().decode("utf-8-sig").split("\r\n")
    assert text[1] == "#Version: 15.02.1544.004" and text[2] == "#Log-type: Message Tracking Log"
    assert text[4] == "#Fields: " + ",".join(MESSAGE_TRACKING_FIELDS)
    (values,) = list(csv.reader([text[5]]))
    row = dict(zip(SNAKE, values))
    assert row["date_time"] == "2024-05-01T10:00:00.500Z" and row["total_bytes"] == "1234"
    assert row["message_subject"] == 'Re: "hello", world' and row["schema_version"] == "15.02.1544.004"
    assert sum(1 for v in values if v) == 6


def test_rows_of_one_millisecond_keep_the_order_they_were_added(tmp_path: Path) -> None:
    log = MessageTrackingLog(tmp_path, "EX1", "MSGTRK")
    t = datetime.fromisoformat("2024-05-01T10:00:00.000Z")
    for event in ("RECEIVE", "AGENTINFO", "SEND"):
        log.add(t, event_id=event)
    (path,) = log.flush()
    rows = path.read_bytes().decode("utf-8-sig").split("\r\n")[5:8]
    assert [r.split(",")[8] for r in rows] == ["RECEIVE", "AGENTINFO", "SEND"]


def test_rejects_unknown_fields_and_prefixes(tmp_path: Path) -> None:
    log = MessageTrackingLog(tmp_path, "EX1", "MSGTRKMD")
    with pytest.raises(TypeError):
        log.add(datetime.fromisoformat("2024-05-01T10:00:00Z"), event="DELIVER")
    with pytest.raises(ValueError):
        MessageTrackingLog(tmp_path, "EX1", "MSGTRKX")  # type: ignore[arg-type]
