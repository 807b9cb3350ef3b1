"""LogStream: Exchange header and file layout, hourly files, rollover, append, determinism."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from labsim.logs.logfile import BOM, LogStream

FIELDS = ("date-time", "a", "b")
UTC = timezone.utc
T0 = datetime(2024, 3, 13, 9, 59, 59, 998_000, tzinfo=UTC)


def make(folder: Path, **kw: int) -> LogStream:
    return LogStream(folder, "TEST", "Test Log", FIELDS, "15.0.0.0", **kw)


def header(date: str) -> bytes:
    return BOM + (
        "#Software: Microsoft Exchange Server\r\n#Version: 15.0.0.0\r\n#Log-type: Test Log\r\n"
        f"#Date: {date}\r\n#Fields: date-time,a,b\r\n").encode()


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_header_bom_crlf_and_first_row_date(tmp_path: Path) -> None:
    s = make(tmp_path / "f")
    s.add(T0 + timedelta(milliseconds=1), (1, 1), ["x,y", "z"])
    s.add(T0, (1, 0), ["", ""])
    written = s.flush()
    assert [p.name for p in written] == ["TEST2024031309-1.LOG"]
    data = written[0].read_bytes()
    assert data == header("2024-03-13T09:59:59.998Z") + (
        b"2024-03-13T09:59:59.998Z,,\r\n"
        b'2024-03-13T09:59:59.999Z,"x,y",z\r\n')
    body = data[len(BOM):]
    assert b"\n" not in body.replace(b"\r\n", b"") and b"\r" not in body.replace(b"\r\n", b"")


def test_rows_go_to_the_file_of_their_utc_hour(tmp_path: Path) -> None:
    s = make(tmp_path)
    s.add(T0 + timedelta(milliseconds=2), (0,), ["next", "hour"])   # 10:00:00.000
    s.add(T0, (0,), ["this", "hour"])
    local = timezone(timedelta(hours=1))
    s.add((T0 + timedelta(hours=1)).astimezone(local), (0,), ["aware", "non-UTC"])  # 10:59:59.998Z
    s.flush()
    got = files(tmp_path)
    assert list(got) == ["TEST2024031309-1.LOG", "TEST2024031310-1.LOG"]
    assert got["TEST2024031309-1.LOG"] == header("2024-03-13T09:59:59.998Z") + b"2024-03-13T09:59:59.998Z,this,hour\r\n"
    assert got["TEST2024031310-1.LOG"] == header("2024-03-13T10:00:00.000Z") + (
        b"2024-03-13T10:00:00.000Z,next,hour\r\n2024-03-13T10:59:59.998Z,aware,non-UTC\r\n")


def test_rollover_to_next_n_when_the_limit_would_be_exceeded(tmp_path: Path) -> None:
    row = len(b"2024-03-13T09:59:59.998Z,aa,bb\r\n")
    limit = len(header("2024-03-13T09:59:59.998Z")) + 2 * row  # room for exactly two rows
    s = make(tmp_path, max_file_bytes=limit)
    for i in range(5):
        s.add(T0 - timedelta(seconds=5 - i), (i,), ["aa", "bb"])
    s.flush()
    got = files(tmp_path)
    assert list(got) == ["TEST2024031309-1.LOG", "TEST2024031309-2.LOG", "TEST2024031309-3.LOG"]
    assert [len(v) for v in got.values()] == [limit, limit, limit - row]
    assert got["TEST2024031309-2.LOG"].startswith(header("2024-03-13T09:59:56.998Z"))
    assert got["TEST2024031309-3.LOG"].startswith(header("2024-03-13T09:59:58.998Z"))


def test_a_row_larger_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    s = make(tmp_path, max_file_bytes=10)
    s.add(T0, (0,), ["a", "b"])
    s.add(T0, (1,), ["c", "d"])
    s.flush()
    assert list(files(tmp_path)) == ["TEST2024031309-1.LOG", "TEST2024031309-2.LOG"]


def test_later_flush_appends_to_the_current_file_of_the_hour(tmp_path: Path) -> None:
    once, twice = tmp_path / "once", tmp_path / "twice"
    rows = [(T0 - timedelta(seconds=i), (i,), [f"r{i}", ""]) for i in range(6)][::-1]
    a = make(once, max_file_bytes=300)
    for r in rows:
        a.add(*r)
    a.flush()
    b = make(twice, max_file_bytes=300)
    for chunk in (rows[:2], rows[2:3], [], rows[3:]):
        for r in chunk:
            b.add(*r)
        b.flush()
    assert files(once) == files(twice)
    assert len(files(once)) == 2  # the periodic flushes also rolled over at the same row


def test_identical_rows_in_any_order_give_identical_bytes(tmp_path: Path) -> None:
    rows = [(T0 + timedelta(microseconds=250 * i), (i % 3, i), [f"s{i % 3}", str(i)]) for i in range(40)]
    rows += [(T0, (9, 9), ["same", "key"]), (T0, (9, 9), ["same", "key, other bytes"])]
    outputs = []
    for k in range(4):
        random.Random(k).shuffle(rows)
        s = make(tmp_path / str(k), max_file_bytes=600)
        for r in rows:
            s.add(*r)
        s.flush()
        outputs.append(files(tmp_path / str(k)))
    assert all(o == outputs[0] for o in outputs)
    text = b"".join(outputs[0].values()).decode("utf-8-sig")
    # within one printed millisecond: by sort key, not by the invisible microseconds
    assert text.index(",s0,0\r\n") < text.index(",s0,3\r\n") < text.index(",s1,1\r\n") < text.index(",s2,2\r\n")


def test_no_rows_no_file_no_folder(tmp_path: Path) -> None:
    s = make(tmp_path / "never")
    assert s.flush() == []
    assert not (tmp_path / "never").exists()


def test_a_new_process_continues_after_existing_files(tmp_path: Path) -> None:
    first = make(tmp_path)
    first.add(T0, (0,), ["first", "run"])
    first.flush()
    before = (tmp_path / "TEST2024031309-1.LOG").read_bytes()
    second = make(tmp_path)
    second.add(T0, (0,), ["second", "run"])
    second.flush()
    assert (tmp_path / "TEST2024031309-1.LOG").read_bytes() == before
    assert (tmp_path / "TEST2024031309-2.LOG").read_bytes() == header("2024-03-13T09:59:59.998Z") + (
        b"2024-03-13T09:59:59.998Z,second,run\r\n")


def test_rejects_naive_times_and_wrong_field_counts(tmp_path: Path) -> None:
    s = make(tmp_path)
    with pytest.raises(ValueError):
        s.add(datetime(2024, 1, 1), (0,), ["a", "b"])
    with pytest.raises(ValueError):
        s.add(T0, (0,), ["a"])
    assert len(s) == 0


def test_lone_surrogates_are_written_as_replacement_characters(tmp_path: Path) -> None:
    s = make(tmp_path)
    s.add(T0, (0,), [b"caf\xe9".decode("ascii", "surrogateescape"), "ok"])
    (path,) = s.flush()
    assert path.read_bytes().endswith("caf\ufffd,ok\r\n".encode())


# --- streaming: flush under a watermark -------------------------------------------------------------
def _iso(when: datetime) -> str:
    from labsim.clock import iso_ms

    return iso_ms(when)


def test_watermark_flush_writes_only_rows_before_it_and_keeps_the_rest(tmp_path: Path) -> None:
    s = make(tmp_path)
    s.add(T0, (0, 0), ["early", ""])
    s.add(T0 + timedelta(seconds=5), (0, 1), ["late", ""])
    s.flush(before=_iso(T0 + timedelta(seconds=1)))
    on_disk = files(tmp_path)["TEST2024031309-1.LOG"]
    assert on_disk == header("2024-03-13T09:59:59.998Z") + b"2024-03-13T09:59:59.998Z,early,\r\n"
    assert len(s) == 1 and s.buffered_bytes == len(b"2024-03-13T10:00:04.998Z,late,\r\n")
    s.flush()
    assert len(s) == 0 and s.buffered_bytes == 0
    assert files(tmp_path)["TEST2024031310-1.LOG"].endswith(b"2024-03-13T10:00:04.998Z,late,\r\n")


def test_a_row_printed_at_the_watermark_waits(tmp_path: Path) -> None:
    """The watermark's own millisecond is not final: a later row may print the same time and sort first."""
    s = make(tmp_path)
    s.add(T0, (5, 0), ["b", ""])
    assert s.flush(before=_iso(T0)) == [] and len(s) == 1
    s.add(T0, (1, 0), ["a", ""])  # same millisecond, smaller session id: must come first
    s.flush()
    assert files(tmp_path)["TEST2024031309-1.LOG"].endswith(
        b"2024-03-13T09:59:59.998Z,a,\r\n2024-03-13T09:59:59.998Z,b,\r\n")
    assert s.late_rows == 0


def test_flushing_in_watermark_steps_gives_the_bytes_of_one_flush(tmp_path: Path) -> None:
    """The promise the run keeps (no row below a flushed watermark) makes streaming invisible in
    the files: hourly files, size rollover and #Date come out byte for byte the same."""
    rng = random.Random(7)
    rows = []
    t = T0 - timedelta(hours=1)
    for i in range(3000):
        t += timedelta(milliseconds=rng.choice([0, 0, 1, 7, 250, 4000]))
        rows.append((t + timedelta(milliseconds=rng.randint(0, 900)), (rng.randint(1, 9), i), [f"r{i}", "x" * rng.randint(0, 80)]))
    one = make(tmp_path / "one", max_file_bytes=20_000)
    for when, key, values in rows:
        one.add(when, key, values)
    one.flush()
    steps = make(tmp_path / "steps", max_file_bytes=20_000)
    # rows arrive in "action" order: an action at time a adds rows stamped at or after a
    rows.sort(key=lambda r: r[0])
    step_start = [r[0] - timedelta(milliseconds=rng.randint(0, 900)) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: step_start[i])
    for n, i in enumerate(order):
        steps.add(*rows[i])
        if n % 97 == 0 and n + 1 < len(order):
            # everything still to come starts at or after the next action's time
            steps.flush(before=_iso(min(step_start[j] for j in order[n + 1:])))
            assert len(steps) < len(rows)
    steps.flush()
    assert steps.late_rows == 0
    assert files(tmp_path / "steps") == files(tmp_path / "one")
    assert len(files(tmp_path / "one")) > 3  # several hours and rollovers were exercised


def test_rows_are_on_disk_while_the_stream_goes_on_and_the_buffer_stays_small(tmp_path: Path) -> None:
    """A long run: with a watermark following the clock, the buffer holds only recent rows."""
    s = make(tmp_path)
    most = 0
    for i in range(5000):
        now = T0 + timedelta(seconds=i)
        s.add(now, (i, 0), ["row", str(i)])
        s.add(now + timedelta(seconds=3), (i, 1), ["later", str(i)])  # a cursor ahead of the clock
        s.flush(before=_iso(now + timedelta(seconds=1)))
        most = max(most, len(s))
    assert most <= 8
    written = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert written > 0.99 * 10_000 * len(b"2024-03-13T10:00:00.000Z,row,1000\r\n")


def test_a_row_below_a_flushed_watermark_is_counted_and_still_written(tmp_path: Path) -> None:
    s = make(tmp_path)
    s.add(T0 + timedelta(seconds=2), (0, 0), ["first", ""])
    s.flush(before=_iso(T0 + timedelta(seconds=3)))
    s.add(T0, (0, 1), ["late", ""])
    assert s.late_rows == 1
    s.flush()
    assert files(tmp_path)["TEST2024031309-1.LOG"].endswith(b"2024-03-13T09:59:59.998Z,late,\r\n")
