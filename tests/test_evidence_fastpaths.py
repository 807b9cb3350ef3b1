"""The evidence writers' shortcuts write what the plain way writes, byte for byte.

Each shortcut (a row of plain text joined without escaping, a GUID printed without a UUID object,
a latency's timedelta kept, a queue's Get-Message row kept while its message is unchanged) is
checked against the plain computation it stands for, on inputs chosen to reach both branches:
commas, quotes, CR/LF, other control bytes, non-ASCII text, lone surrogates.
"""

from __future__ import annotations

import random
import tempfile
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from labsim.clock import VirtualClock, _iso_slow, dotnet_ticks, iso_ms
from labsim.engine.evidence import TrackingHub
from labsim.ids import IdSource, derive_seed, session_hex
from labsim.logs.csvfmt import escape, join
from labsim.logs.logfile import LogStream
from labsim.logs.message_tracking import MESSAGE_TRACKING_FIELDS, MessageTrackingLog
from labsim.logs.protocol_log import ProtocolLog, SessionWriter
from labsim.logs.protocol_text import escape_controls
from labsim.logs.queue_history import QUEUE_HISTORY_FILE, QueueHistoryWriter
from labsim.transport.message import MailItem
from labsim.transport.queues import Queue, QueuedMessage, message_row

START = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
# text that reaches every branch: plain, CSV-quoted, line breaks, control bytes, non-ASCII, surrogates
_PIECES = ["a", "Z", "09", " ", "<x@y.com>", ".", ":", ";", "-", "=", "250 2.0.0 OK", "\t", ",", '"', "\r", "\n",
           "\r\n", "\x00", "\x1b", "\x7f", "é", "€", "\udcff"]
_TEXT = st.one_of(st.lists(st.sampled_from(_PIECES[:11]), max_size=8).map("".join),  # plain: the shortcut
                  st.lists(st.sampled_from(_PIECES[:11] + [",", '"']), max_size=8).map("".join),  # CSV quoting only
                  st.lists(st.sampled_from(_PIECES[:11] + ["\r\n", "\n", "\t"]), max_size=8).map("".join),
                  st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- ids ---------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.booleans(), min_size=1, max_size=8),
       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_guids_are_the_uuid4_texts_of_the_same_draws(seed: int, kinds: list[bool], naive: datetime) -> None:
    when = naive.replace(tzinfo=UTC)
    ids = IdSource(seed, "EX01/msgtrk")
    rng = random.Random(derive_seed(seed, "EX01/msgtrk"))
    for network in kinds:
        if network:
            head = uuid.UUID(int=rng.getrandbits(128), version=4).hex[:20] + f"{dotnet_ticks(when):016x}"[:12]
            want = f"{head[0:8]}-{head[8:12]}-{head[12:16]}-{head[16:20]}-{head[20:32]}"
            assert ids.network_message_id(when) == want
        else:
            assert ids.guid() == str(uuid.UUID(int=rng.getrandbits(128), version=4))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.one_of(st.tuples(st.integers(-10**6, 10**6), st.integers(0, 2**70)),
                                                 st.tuples(st.just(0), st.sampled_from([0, 1, 255, 65535, 2**64 - 1])),
                                                 st.tuples(st.just(-1), st.integers(0, 40))), max_size=10))
def test_randint_and_hex_bytes_draw_what_random_draws(seed: int, calls: list[tuple[int, int]]) -> None:
    ids = IdSource(seed, "EX01/msgtrk")
    rng = random.Random(derive_seed(seed, "EX01/msgtrk"))
    for lo, width in calls:
        if lo == -1:
            assert ids.hex_bytes(width) == [f"{rng.randint(0, 255):02X}" for _ in range(width)]
        else:
            assert ids.randint(lo, lo + width) == rng.randint(lo, lo + width)
    assert ids.guid() == str(uuid.UUID(int=rng.getrandbits(128), version=4))  # the same state after


# --- the clock -----------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.sampled_from([0, 0.001, 0.002, 0.05, 1, 2.5]),
                          st.floats(0, 10**5, allow_nan=False)), max_size=30))
def test_advancing_by_kept_steps_lands_where_fresh_timedeltas_do(steps: list[float]) -> None:
    clock = VirtualClock(START)
    want = START
    for seconds in steps:
        want += timedelta(seconds=seconds)
        assert clock.advance(seconds) == want and clock.now() == want
        assert iso_ms(clock.now()) == iso_ms(want.astimezone(UTC)) == want.isoformat(timespec="milliseconds")[:23] + "Z"


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                               timezone(timedelta(hours=-8, microseconds=1))])))
def test_timestamps_read_off_the_distance_from_1970_are_the_instants_texts(when: datetime) -> None:
    # any year (before 1000 too: its text is strftime's), any zone, every instant of a second
    assert iso_ms(when) == _iso_slow(when.astimezone(UTC))
    start = when.replace(microsecond=0)
    assert iso_ms(start) == _iso_slow(start.astimezone(UTC))
    assert iso_ms(start - timedelta(microseconds=1)) == _iso_slow((start - timedelta(microseconds=1)).astimezone(UTC))


# --- CSV rows ------------------------------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(st.lists(_TEXT, max_size=8))
def test_a_row_joined_once_is_the_row_of_escaped_fields(fields: list[str]) -> None:
    assert join(fields) == ",".join([escape(f) for f in fields])


# --- log files ------------------------------------------------------------------------------------------
def _plain_files(stream: LogStream, rows: list[tuple[str, Any, bytes]]) -> dict[str, bytes]:
    """One flush of `rows` into fresh files, row by row (the stream's layout without its shortcut)."""
    files: dict[str, bytes] = {}
    cur: tuple[str, int, int] | None = None  # name, n, size
    hour = ""
    for ts, _, data in sorted(rows):
        if ts[:13] != hour:
            hour, cur = ts[:13], None
        if cur is None or cur[2] + len(data) > stream.max_file_bytes:
            n = 1 if cur is None else cur[1] + 1
            name = f"TEST{hour[0:4]}{hour[5:7]}{hour[8:10]}{hour[11:]}-{n}.LOG"
            files[name] = stream._head + ts.encode() + stream._tail
            cur = (name, n, len(files[name]))
        files[cur[0]] += data
        cur = (cur[0], cur[1], cur[2] + len(data))
    return files


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * 3600 * 1000), st.integers(0, 60), st.booleans()), min_size=1,
                max_size=120), st.integers(100, 1500))
def test_flushing_whole_hours_at_once_writes_the_files_row_by_row_flushing_writes(
        rows: list[tuple[int, int, bool]], limit: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stream = LogStream(folder, "TEST", "Test Log", ("date-time", "a"), "15.0.0.0", max_file_bytes=limit)
        added = []
        for i, (ms, width, flush) in enumerate(sorted(rows)):  # in time order: every watermark is kept
            when = START + timedelta(milliseconds=ms)
            stream.add_joined(when, (i,), "x" * width)
            added.append((iso_ms(when), (i,), f"{iso_ms(when)},{'x' * width}\r\n".encode()))
            if flush:
                stream.flush(before=iso_ms(when))
        stream.flush()
        assert stream.late_rows == 0 and stream.buffered_bytes == 0
        assert {p.name: p.read_bytes() for p in sorted(folder.iterdir())} == _plain_files(stream, added)


# --- protocol log rows ------------------------------------------------------------------------------
class _PlainWriter:
    """The writer without shortcuts: every line through escape_controls, split at CRLF, escaped."""

    def __init__(self, log: ProtocolLog, connector_id: str, session_id: int, local: str, remote: str,
                 clock: Any) -> None:
        self.stream, self.clock, self.sid = log.stream, clock, session_id
        self.head = f"{escape(connector_id)},{session_hex(session_id)},"
        self.local, self.remote, self.seq = escape(local), escape(remote), 0

    def lines(self, event: str, data: str, context: str) -> None:
        data = escape_controls(data)
        if "\r\n" in data:
            if data.endswith("\r\n"):
                data = data[:-2]
            for part in data.split("\r\n"):
                self.row(event, escape(part), context)
        else:
            self.row(event, escape(data), context)

    def row(self, event: str, data: str, context: str) -> None:
        self.stream.add_joined(self.clock(), (self.sid, self.seq),
                               f"{self.head}{self.seq},{self.local},{self.remote},{event},{data},{context}")
        self.seq += 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["sent", "received", "info", "connect", "disconnect", "local"]),
                          _TEXT, _TEXT), max_size=12), _TEXT)
def test_session_rows_equal_the_plainly_escaped_rows(calls: list[tuple[str, str, str]], connector: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clock = VirtualClock(START)
        fast_log, plain_log = ProtocolLog(root / "a", "recv", Path("x")), ProtocolLog(root / "b", "recv", Path("x"))
        fast = SessionWriter(fast_log, connector, 0x08DC0000000000AB, "10.0.0.5:25", "10.0.0.9:41234", clock.now, True)
        plain = _PlainWriter(plain_log, connector, 0x08DC0000000000AB, "10.0.0.5:25", "10.0.0.9:41234", clock.now)
        for kind, data, context in calls:
            clock.advance(0.001)
            if kind == "sent":
                fast.sent(data)
                plain.lines(">", data, "")
            elif kind == "received":
                fast.received(data)
                plain.lines("<", data, "")
            elif kind == "info":
                fast.info(data, context)
                plain.lines("*", data, escape(context))
            elif kind == "connect":
                fast.connect()
                plain.row("+", "", "")
            elif kind == "disconnect":
                fast.disconnect(context)
                plain.row("-", "", escape(context))
            else:
                fast.set_local(data)
                plain.local = escape(data)
        fast_log.flush()
        plain_log.flush()
        assert _files(root / "a") == _files(root / "b")


# --- message tracking rows ------------------------------------------------------------------------------
_NAMES = [f.replace("-", "_") for f in MESSAGE_TRACKING_FIELDS[1:]]


def _plain_tracking_row(log: MessageTrackingLog, when: datetime, fields: dict[str, Any], order: int) -> None:
    values = [""] * len(_NAMES)
    values[_NAMES.index("schema_version")] = escape(log.version)
    for name, value in fields.items():
        values[_NAMES.index(name)] = "" if value is None else escape(
            escape_controls(value if isinstance(value, str) else str(value)))
    log.stream.add_joined(when, (order,), ",".join(values))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(_NAMES), st.one_of(_TEXT, st.integers(-5, 10**15), st.none()),
                                max_size=len(_NAMES)), max_size=6),
       st.sampled_from(["15.02.1544.004", "15.01.2507.006"]))
def test_tracking_rows_equal_the_plainly_escaped_rows(rows: list[dict[str, Any]], version: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fast = MessageTrackingLog(root / "a", "EX01", "MSGTRK", version)
        plain = MessageTrackingLog(root / "b", "EX01", "MSGTRK", version)
        for i, fields in enumerate(rows, start=1):
            when = START + timedelta(milliseconds=i)
            if i % 2:
                fast.add(when, **fields)
            else:
                fast.add_fields(when, fields)
            _plain_tracking_row(plain, when, fields, i)
        fast.flush()
        plain.flush()
        assert _files(root / "a") == _files(root / "b")


# --- Get-Message rows of the queue history ---------------------------------------------------------------
def _item(n: int) -> MailItem:
    return MailItem(server="S", internal_id=1000 + n, mail_from=f"s{n}@contoso.com", recipients=[f"r{n}@fabrikam.com"],
                    data=b"x" * (100 + n), message_id=f"<{n}@contoso.com>", network_message_id=str(n),
                    subject=f"subject {n}", arrived=START + timedelta(seconds=n), client_ip="10.0.0.9")


class _Lab(SimpleNamespace):
    def register_log(self, log: Any) -> None:  # the hub's tracking logs: not used here
        pass


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "add", "remove", "status", "error", "retry", "suspend",
                                           "recipients", "source", "subject", "policy", "move", "twice",
                                           "arrived"]),
                          st.integers(0, 50)), min_size=1, max_size=60), st.integers(0, 2))
@example([("add", 0), ("arrived", 2), ("add", 0)], 0)  # a new DateReceived alone: the row is written again
@example([("add", 0), ("arrived", 1), ("add", 0)], 0)  # below the millisecond: new inputs, the same row
@example([("add", 0), ("twice", 0), ("add", 0), ("retry", 0), ("twice", 1), ("remove", 0)], 2)  # one identity twice
@example([("add", 0), ("add", 0), ("move", 0), ("retry", 0), ("add", 0)], 2)  # reordered: an Order line
def test_queue_history_equals_the_one_built_from_every_row(ops: list[tuple[str, int]], days: int) -> None:
    """The hub keeps a message's Get-Message row while nothing it prints changed; the history it
    writes is the one written from rows built afresh for every message at every change."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        expiry = {"days": days}
        # days 0: one expiration for every message (DateReceived then changes on its own)
        party = SimpleNamespace(name="S", expiration_of=lambda item: (item.arrived if expiry["days"] else START)
                                + timedelta(days=expiry["days"] or 3))
        party.expirations = lambda: party.expiration_of
        lab = _Lab(out=root / "a", clock=VirtualClock(START), servers={"S": party})
        hub = TrackingHub(lab)  # type: ignore[arg-type]
        plain = QueueHistoryWriter(root / "b" / QUEUE_HISTORY_FILE)
        q = Queue(identity="S\\1", delivery_type="SmtpDeliveryToMailbox", next_hop_domain="db1")
        made = 0
        for op, k in ops:
            lab.clock.advance(1)
            qms = q.messages
            if op == "add" or not qms:
                made += 1
                qms.append(QueuedMessage(item=_item(made), recipients=[f"r{made}@fabrikam.com"], source="SMTP:Default"))
            else:
                qm = qms[k % len(qms)]
                if op == "remove":
                    qms.remove(qm)
                elif op == "status":
                    qm.status = ("Ready", "Active", "Retry")[k % 3]
                elif op == "error":
                    qm.last_error = "" if k % 4 == 0 else f"451 4.4.0 attempt {k}"
                elif op == "retry":
                    qm.retry_count += 1  # not what an admin reads: written only with the next change
                elif op == "suspend":
                    qm.suspended = not qm.suspended
                elif op == "recipients":
                    qm.recipients.append(f"x{k}@fabrikam.com")  # changed in place
                elif op == "source":
                    qm.source = f"SMTP:{k}"
                elif op == "subject":
                    qm.item.subject = f"changed {k}"
                elif op == "policy":
                    expiry["days"] = k % 3
                elif op == "twice":  # the same message queued again (one identity, two entries)
                    qms.insert(k % (len(qms) + 1), QueuedMessage(item=qm.item, recipients=[f"y{k}@fabrikam.com"]))
                elif op == "arrived":  # below the millisecond: new inputs, the same row (or a new row)
                    qm.item.arrived += timedelta(microseconds=1 + k % 3) if k % 2 else timedelta(seconds=1)
                else:
                    qms.append(qms.pop(k % len(qms)))  # reordered behind the writer's back
            hub.queue_snapshot(party, q)  # type: ignore[arg-type]
            now = iso_ms(lab.clock.now())
            plain.queue_row(now, "S", q.row())
            plain.messages(now, "S", q.identity, [message_row(q, m, party.expiration_of(m.item)) for m in q.messages])
        hub.queue_history.close()
        plain.close()
        assert (root / "a" / QUEUE_HISTORY_FILE).read_bytes() == (root / "b" / QUEUE_HISTORY_FILE).read_bytes()
