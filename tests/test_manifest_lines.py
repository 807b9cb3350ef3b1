"""The manifest reads every log back; how it reads a protocol log's lines and which queue-history
lines it decodes are shortcuts. Each gives what the plain way gives (the loop over the lines that
appends every line and deletes the previous last one unless `_kept` keeps it; decoding every line
the loop could look at), so manifest.json's bytes do not depend on them."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim._evidence_index import EvidenceIndex, Session, pack_part, unpack_part
from labsim.manifest import (
    _LINE_TIME,
    _PROTOCOL_FIELDS,
    _QUEUE_OBJECT,
    _REPLY_250,
    AT_CHANGE,
    SLOW_LINE,
    _at_change_text,
    _change_line_wanted,
    _csv,
    _gap,
    _iso,
    _iter_lines,
    _kept,
    _may_set_queued,
    _protocol_sessions,
    _stamp,
)

# --- a protocol log's sessions ----------------------------------------------------------------------


def _plain_sessions(lines: list[tuple[int, str]], server: str, log: str,
                    rel: str) -> tuple[list[Session], list[tuple[str, str, Session, int]], int]:
    """The loop labsim.manifest used before (wave 5): every line appended, the previous last one
    deleted again unless `_kept` keeps it."""
    rows = 0
    sessions: dict[str, Session] = {}
    replies: list[tuple[str, str, Session, int]] = []
    for n, line in lines:
        if not line or line[0] == "#":
            continue
        if '"' in line or "\r" in line or "\x00" in line:
            v: list[str] | None = _csv(line)
            if len(v) < _PROTOCOL_FIELDS:  # type: ignore[arg-type]
                continue
            t, connector, sid = v[0], v[1], v[2]  # type: ignore[index]
        elif line.count(",") < _PROTOCOL_FIELDS - 1:
            continue
        else:
            v = None
            t, connector, sid, _ = line.split(",", 3)
        rows += 1
        s = sessions.get(sid)
        if s is None:
            s = sessions[sid] = Session(server, log, sid, connector, rel, first=t)
        else:
            if _gap(s.last, t) >= SLOW_LINE:
                s.slow.append(n)
            if len(s.lines) > 1 and not _kept(s.texts[-1]):
                del s.lines[-1], s.times[-1], s.texts[-1]
        s.last, s.last_line = t, n
        s.lines.append(n)
        s.times.append(t)
        s.texts.append(line)
        if "250 2.6.0 <" in line:
            m = _REPLY_250.search((v or _csv(line))[7])
            if m:
                replies += [("mid", m.group(1), s, len(s.lines) - 1), ("iid", m.group(2), s, len(s.lines) - 1)]
    return list(sessions.values()), replies, rows


_TIMES = ["2026-05-01T06:00:00.000Z", "2026-05-01T06:00:00.040Z", "2026-05-01T06:00:00.120Z",
          "2026-05-01T06:00:00.700Z", "2026-05-01T06:00:02.000Z", "2026-05-01T05:59:58.000Z",
          "2026-05-01T06:00:00.0+05:00", "2026-05-01T06:00:00.05", "not a time", ""]
_DATA = ["", "EHLO x", "250 2.1.0 Sender OK", '"250 2.6.0 <m1@x> [InternalId=11, Hostname=h] Queued"',
         '"250 2.6.0 <m2@x> [InternalId=12, Hostname=h]"', "250 2.6.0 <m3@x> [InternalId=13", "FAILED",
         "Error", "faıl", "FAİL", "errOr x", "451 4.4.0 later", "x-5.7.1 no", "550 5.1.1 unknown",
         "451-4.4.0 wait", "550-5.7.1 no", "a 4. b", "\r", "\x00", '"quoted, text"', '"', "İ", "2.6.0 <", "fail"]


@st.composite
def _protocol_lines(draw: st.DrawFn) -> list[tuple[int, str]]:
    lines = []
    for n in range(1, draw(st.integers(0, 40)) + 1):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            line = draw(st.sampled_from(["", "#Fields: a,b,c,d,e,f,g,h,i", "#", "x,y"]))
        else:
            fields = [draw(st.sampled_from(_TIMES)), draw(st.sampled_from(["C1", "C2", '"C,3"'])),
                      draw(st.sampled_from(["A", "B", "C", "0123456789ABCDEF"])), str(n), "1.2.3.4:25",
                      "5.6.7.8:1", draw(st.sampled_from([">", "<", "*", "+"])), draw(st.sampled_from(_DATA)),
                      draw(st.sampled_from(["", "ctx", "fail ctx", "Error!"]))]
            line = ",".join(fields[:draw(st.sampled_from([9, 9, 9, 8, 10]))])
        lines.append((n, line))
    return lines


def _shape(found: tuple[list[Session], list[tuple[str, str, Session, int]], int]) -> object:
    sessions, replies, rows = found
    at = {id(s): i for i, s in enumerate(sessions)}
    return ([(s.server, s.log, s.session_id, s.connector, s.file, s.first, s.last, s.last_line, s.lines, s.times,
              s.texts, s.slow) for s in sessions], [(k, v, at[id(s)], i) for k, v, s, i in replies], rows)


@settings(max_examples=800, deadline=None)
@given(_protocol_lines())
def test_protocol_sessions_as_the_plain_loop_gives_them(lines: list[tuple[int, str]]) -> None:
    def outcome(read: Any) -> object:
        try:
            return _shape(read(lines, "S", "Hub/SmtpReceive", "f.LOG"))
        except (TypeError, csv.Error) as exc:  # (an aware and a naive time in one session, a bare CR: both raise)
            return repr(exc)

    assert outcome(_protocol_sessions) == outcome(_plain_sessions)


def test_protocol_sessions_keep_the_evidence_between_first_and_last() -> None:
    rows = [f"2026-05-01T06:00:00.00{i}Z,C,A,{i},l,r,>,{d}," for i, d in
            enumerate(["220 ready", "EHLO x", "451 4.4.0 later", "MAIL", "RCPT", "QUIT"])]
    ((s,), _, count) = _protocol_sessions(list(enumerate(rows, 1)), "S", "L", "f")
    assert (s.lines, count) == ([1, 3, 6], 6)  # the first, the 4xx, the last


# --- queue-history lines not decoded ----------------------------------------------------------------

_ERRORS = ['""', '"x"', "null", "0", '"\\u0078"', '""']
_KEYS = ['"LastError"', '"\\u004castError"', '"LastErrors"']


@st.composite
def _history_line(draw: st.DrawFn) -> str:
    items = []
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(_KEYS))
        items.append('{"Identity":"S\\\\1\\\\7","InternetMessageId":"<m@x>",' + key + ":"
                     + draw(st.sampled_from(_ERRORS)) + ',"Recipients":["a@x"]}')
    head = draw(st.sampled_from(['"Set"', '"Left"', '"Set"']))
    return '{"Time":"2026-05-01T06:00:00.000Z","Server":"S",' + head + ":[" + ",".join(items) + "]}"


@settings(max_examples=500, deadline=None)
@given(_history_line())
def test_queue_history_lines_not_decoded_give_no_last_error(line: str) -> None:
    data = json.loads(line)
    sets = [item for item in data.get("Set", []) if item.get("LastError")]
    plain_gate = '"LastError":"' in line and '"Set":' in line
    if plain_gate and sets:
        assert _may_set_queued(line)
    if not plain_gate:
        assert not _may_set_queued(line)


_CHANGE_TIMES = ["2026-05-01T06:00:01.000Z", "2026-05-01T07:00:00.000Z"]


@st.composite
def _change_line(draw: st.DrawFn) -> str:
    time = draw(st.sampled_from(_CHANGE_TIMES))
    spelt = draw(st.sampled_from(["plain", "escaped", "twice", "nested", "escaped key"]))
    other = draw(st.sampled_from(_CHANGE_TIMES))
    queue = draw(st.sampled_from(['"Queue":{"Identity":"S\\\\1","LastError":' + e + "}" for e in _ERRORS]
                                 + ['"Queue":"S\\\\1"', '"Messages":"S\\\\1"', '"Note":"T1 here"']))
    if spelt == "plain":
        head = '{"Time":"' + time + '",'
    elif spelt == "escaped":
        head = '{"Time":"' + time.replace("2", "\\u0032", 1) + '",'
    elif spelt == "twice":
        head = '{"Time":"' + time + '","Time":"' + other + '",'
    elif spelt == "nested":
        head = '{"Time":"' + time + '","In":{"Time":"' + other + '"},'
    else:  # a second "Time" key, spelt with an escape: the one json.loads keeps
        head = '{"Time":"' + time + '","\\u0054ime":"' + other + '",'
    return head + '"Server":"S",' + queue + "}"


def _at_change(t: str) -> bool:
    return t.startswith("2026-05-01T06:00:0")


@settings(max_examples=500, deadline=None)
@given(_change_line(), st.sampled_from([None, "T1", "S\\\\1", "S"]))
def test_a_change_line_not_decoded_is_one_the_loop_would_not_use(line: str, named: str | None) -> None:
    data = json.loads(line)
    queue = data.get("Queue")
    used = (isinstance(queue, dict) and bool(queue.get("LastError"))) or \
        bool(named and named in line and _at_change(data["Time"]))
    plain = _LINE_TIME.match(line)  # (what _queue_window gives the test; a line without it is decoded)
    if plain is None:
        return
    time = plain.group(1)
    if used:
        assert _change_line_wanted(line, time, named, _at_change)
    if _QUEUE_OBJECT.search(line) is None and not (named and named in line):
        assert not _change_line_wanted(line, time, named, _at_change)


_NEAR_CHANGE = ["2026-05-01T06:00:00.000Z", "2026-05-01T05:59:59.999Z", "2026-05-01T06:00:05.000Z",
                "2026-05-01T06:00:05.001Z", "2026-05-01T06:00:04.999999Z", "2026-05-01 06:00:01.000Z",
                "2026-05-01T06:00:01.000+00:00", "2026-05-01T11:30:01.000+05:30", "2026-05-01T06:00:01Z",
                "2026-05-01T06:00:01.5Z", "2026-05-01T06:00:01.000z"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_NEAR_CHANGE), st.sampled_from(["2026-05-01T06:00:00.000Z", "2026-05-01T05:59:58.000Z"]))
def test_a_time_at_the_change_as_the_parsed_times_say(time: str, acted: str) -> None:
    t0 = _iso(acted)

    def at_change(t: str) -> bool:
        return t0 <= _iso(t) <= t0 + AT_CHANGE

    def outcome(test: Any) -> object:
        try:
            return bool(test())
        except ValueError as exc:  # (a time fromisoformat does not read: both raise)
            return repr(exc)

    window = (acted, _stamp(t0 + AT_CHANGE))
    assert outcome(lambda: _at_change_text(time, at_change, window)) == outcome(lambda: at_change(time))


# --- a part's kept lines, packed for its row --------------------------------------------------------

_PART_TEXT = st.text(alphabet=st.sampled_from(list('ab,[]"\\\x1e\x1f\u2028 0')), max_size=6)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**9), _PART_TEXT, _PART_TEXT), max_size=6))
def test_a_packed_part_unpacks_to_its_lists(kept: list[tuple[int, str, str]]) -> None:
    lines, times, texts = [n for n, _, _ in kept], [t for _, t, _ in kept], [x for _, _, x in kept]
    assert unpack_part(pack_part(lines, times, texts)) == (lines, times, texts)


# --- the text search's table, made when first searched -----------------------------------------------

_SEARCH_TEXTS = ["250 2.6.0 <a@x>", "451 4.4.0 later", "550 5.1.1 unknown", "QUIT", "fail", "451"]
_SEARCH_TIMES = ["2026-05-01T06:00:00.000Z", "2026-05-01T06:30:00.000Z", "2026-05-01T07:00:00.000Z"]


@st.composite
def _parts(draw: st.DrawFn) -> list[Session]:
    parts = []
    for n in range(draw(st.integers(0, 6))):
        kept = draw(st.lists(st.tuples(st.sampled_from(_SEARCH_TIMES), st.sampled_from(_SEARCH_TEXTS)),
                             min_size=1, max_size=4))
        parts.append(Session(draw(st.sampled_from(["S1", "S2"])), "Hub/SmtpSend", draw(st.sampled_from(["A", "B", "C"])),
                             "C", f"f{n}.LOG", first=kept[0][0], last=kept[-1][0],
                             lines=list(range(1, len(kept) + 1)), times=[t for t, _ in kept],
                             texts=[x for _, x in kept]))
    return parts


@settings(max_examples=150, deadline=None)
@given(_parts(), st.sampled_from(_SEARCH_TEXTS), st.sampled_from([None, "S1"]),
       st.sampled_from([None, (_SEARCH_TIMES[0], _SEARCH_TIMES[1])]))
def test_lines_showing_finds_what_the_parts_hold(parts: list[Session], text: str, server: str | None,
                                                 between: tuple[str, str] | None) -> None:
    current: dict[tuple[str, str, str], Session] = {}
    order: dict[tuple[str, str, str], int] = {}
    for s in parts:
        key = (s.server, s.log, s.session_id)
        order.setdefault(key, len(order))
        current[key] = s  # (the last part of a session is its current one)
    want = []
    for key in sorted(current, key=order.__getitem__):
        s = current[key]
        hit = [i for i, (t, x) in enumerate(zip(s.times, s.texts)) if text in x and (server is None or s.server == server)
               and (between is None or between[0] <= t <= between[1])]
        if hit:
            want.append((s.file, hit))
    with EvidenceIndex() as db:
        db.add_sessions(parts, [], {})
        db.finish()
        got = [(s.file, hit) for s, hit in db.lines_showing(text, server, between)]
        again = [(s.file, hit) for s, hit in db.lines_showing(text, server, between)]
        parts_of = [(s.file, hit) for p in {s.part for s in parts}
                    for s, hit in db.lines_showing(text, None, None, part=p)]
    assert got == want == again
    assert sorted(parts_of) == sorted((s.file, [i for i, x in enumerate(s.texts) if text in x])
                                      for s in current.values() if any(text in x for x in s.texts))


# --- a log read a line at a time ---------------------------------------------------------------------

def _plain_lines(path: Path) -> list[str]:
    """Each line's bytes cut at LF, its CRLF or LF dropped, decoded alone (the first as utf-8-sig)."""
    out = []
    with path.open("rb") as f:
        encoding = "utf-8-sig"
        for raw in f:
            if raw.endswith(b"\r\n"):
                raw = raw[:-2]
            elif raw.endswith(b"\n"):
                raw = raw[:-1]
            out.append(raw.decode(encoding, errors="replace"))
            encoding = "utf-8"
    return out


_PIECES = [b"a", b",", b"\n", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\xef\xbb", b"\xc3", b"\xa9", b"\xe2\x82", b"\xac",
           b"\xff", b"\xf0\x9f\x98", b"\x80", b"\xe2\x80\xa8", b"\x85", b"x" * 3000]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=60))
def test_iter_lines_as_each_line_decoded_alone(pieces: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.LOG"
        path.write_bytes(b"".join(pieces))
        assert list(_iter_lines(path)) == _plain_lines(path)
