"""Ground truth beside the logs: `manifest.json`, pointing at the evidence (docs/manifest.md).

Theory of operation
-------------------
The manifest is written after a run has flushed everything (summary.json, every log, the event
logs, the EXO message trace), by reading those files back. Nothing is taken from the running lab
but what summary.json already says, so every pointer is derived from the bytes a user will open,
and `check_pointers` can prove it: each pointer names a file (relative to the output folder), line
numbers (1-based, the header lines counted), and what every one of those lines shows (a session
id, an event record id, a piece of text).

What it indexes:
- protocol logs (`*/TransportRoles/Logs/*/ProtocolLog/Smtp{Receive,Send}/*.LOG`): every session's
  lines, its connector, and the `250 2.6.0 <Message-ID> [InternalId=N, ...]` replies that tie a
  session to a message;
- message tracking logs: every row of a message (by Message-ID);
- each server's `EventLog/Application.xml` (one event a line, with its EventRecordID);
- `EXO/MessageTrace/Get-MessageTraceDetail.csv` (EXO keeps no protocol log).

Hops come from summary.json's ledger (what each party did, in causal order), each matched with the
rows that record it; deferrals (tracking DEFER rows, the trace's Defer events) are hops too. A
fault is a change the scenario made to the world (before the start or on its timeline); its
evidence is what the logs show while it was in effect: failed or deferred hops from the moment it
acted on, and the warning and error events of the Application logs. The matching is plain string
work over the files and never reads a scenario's name.
"""

from __future__ import annotations

import csv
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from importlib import resources
from itertools import chain
from json.encoder import (
    encode_basestring as _enc,  # json's (C) string encoder, ensure_ascii=False
)
from pathlib import Path
from typing import Any

from ._evidence_index import EvidenceIndex, Row, Session
from .logs.jsonfast import dumps_indented

__all__ = ["MANIFEST_FILE", "SCHEMA_VERSION", "build_manifest", "check_pointers", "iter_messages", "read_manifest",
           "schema", "write_manifest"]

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
_REPLY_250 = re.compile(r"250 2\.6\.0 (<[^>]*>) \[InternalId=(\d+),")
_STATUS = re.compile(r"\b([45]\d\d)[ -]([45]\.\d{1,3}\.\d{1,3})\b")
_RECORD = re.compile(r"<EventRecordID>(\d+)</EventRecordID>")
_EVENT = re.compile(r"<Provider Name='([^']*)'[^>]*/><EventID[^>]*>(\d+)</EventID><Version>\d+</Version><Level>(\d)"
                    r"</Level>.*?<TimeCreated SystemTime='([^']*)'/>")
_SESSION_ID = re.compile(r"[0-9A-F]{16}")
_PROTOCOL_FIELDS = 9
SLOW_LINE = 0.5  # seconds between two lines of a session that show a slow link (the lab's healthy ones: ms)
REPLY_NEAR = timedelta(hours=1)  # a failed hop's reply is looked for in the lines this close first
AT_CHANGE = timedelta(seconds=5)  # what a server logs this soon after a change acted is the change's own trace
AFTER_CHANGE = 3  # sessions a change that left no trace of its own points at (the first after it acted)
EVIDENCE_CAP = 20  # pointers a fault keeps of each kind of trace beyond its failed hops (the first ones)
FAILED_HOPS = ("FAIL", "SUBMITFAIL", "DEFER", "PENDING")  # the hops whose evidence a fault collects
_STR_TYPE = {str}
_INT_TYPE = {int}
_DICT_TYPE = {dict}
_TRACKING_KEPT = frozenset({"date-time", "connector-id", "source-context", "event-id", "internal-message-id",
                            "message-id", "network-message-id", "recipient-address", "recipient-status"})


# --- reading the files back -------------------------------------------------------------------------

def _lines(path: Path) -> list[str]:
    """The file's lines (CRLF or LF), the BOM dropped; line n is index n-1."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    return text.replace("\r\n", "\n").split("\n")


def _iter_lines(path: Path) -> Iterator[str]:
    """_lines(path) read a line at a time (the trailing empty line of a final LF not given): an
    index of a working day's logs never holds a whole file. The file is read as text cut at LF only
    (CR, LS ... stay in their line); its incremental decoder gives each line what decoding it alone
    gives (an LF ends any broken UTF-8 sequence before it), and a BOM is dropped from the first."""
    with open(path, encoding="utf-8", errors="replace", newline="\n") as f:
        first = f.readline()
        if not first:
            return
        for line in chain((first[1:] if first[:1] == "\ufeff" else first,), f):  # (the BOM: utf-8-sig's)
            if line[-1:] == "\n":
                line = line[:-2] if line[-2:-1] == "\r" else line[:-1]
            yield line


class _OneLine:
    """What one csv.reader reads, a line at a time: the line set, then its end (as a StringIO of
    that line gives it: the reader parses it alone), so no reader and StringIO is made per line."""

    def __init__(self) -> None:
        self.line: str | None = None

    def __iter__(self) -> _OneLine:
        return self

    def __next__(self) -> str:
        line, self.line = self.line, None
        if line is None:
            raise StopIteration
        return line


_READERS = threading.local()  # each thread's (_OneLine, csv.reader of it)


def _csv(line: str) -> list[str]:
    if '"' not in line and "\r" not in line and "\x00" not in line:  # nothing the csv module treats specially
        return line.split(",") if line else []
    try:
        feed, reader = _READERS.pair
    except AttributeError:
        feed = _OneLine()
        reader = csv.reader(feed)
        _READERS.pair = (feed, reader)
    feed.line = line
    try:
        return next(reader, [])
    finally:
        feed.line = None


def _status(text: str) -> re.Match[str] | None:
    """_STATUS.search(text); a status needs "4." or "5." after a space or a dash, which is looked
    for first (the regex alone tries every position of every line)."""
    if " 4." in text or " 5." in text or "-4." in text or "-5." in text:
        return _STATUS.search(text)
    return None


_Session = Session
_Row = Row


@dataclass
class _Index:
    """What the files hold that can be evidence: on disk (labsim._evidence_index), plus the list of
    files and the queue history's marks (small: one entry per file / per QUEUE_MARK lines)."""

    out: Path
    db: EvidenceIndex
    files: list[dict[str, Any]] = field(default_factory=list)
    queue_marks: list[tuple[str, int, int]] = field(default_factory=list)  # every QUEUE_MARK-th history line:
    # (its time, byte offset, line number), so a fault reads only its window of the history

    @property
    def session_count(self) -> int:
        return self.db.sessions


def _rel(out: Path, path: Path) -> str:
    return path.relative_to(out).as_posix()


def _index(out: Path) -> _Index:
    """Index `out`'s files; the caller closes `idx.db` (a private temporary file)."""
    idx = _Index(out, EvidenceIndex())
    try:
        _fill(idx, out)
    except BaseException:
        idx.db.close()
        raise
    return idx


def _fill(idx: _Index, out: Path) -> None:
    for path in sorted(out.glob("*/TransportRoles/Logs/*/ProtocolLog/Smtp*/*.LOG")):
        _index_protocol(idx, path)
    for path in sorted(out.glob("*/TransportRoles/Logs/MessageTracking/MSGTRK*.LOG")):
        _index_tracking(idx, path)
    for path in sorted(out.glob("*/EventLog/*.xml")):  # Application, System
        _index_events(idx, path)
    detail = out / "EXO" / "MessageTrace" / "Get-MessageTraceDetail.csv"
    if detail.is_file():
        _index_trace(idx, detail)
    history = out / "queue-history.jsonl"
    if history.is_file():
        _index_queue_history(idx, history)
    idx.db.finish()


QUEUE_MARK = 256


def _index_queue_history(idx: _Index, path: Path) -> None:
    rel = _rel(idx.out, path)
    with path.open("rb") as f:
        offset = 0
        for n, raw in enumerate(f, 1):
            if n % QUEUE_MARK == 1:
                m = re.match(rb'\{"Time":"([^"]*)"', raw)
                if m:
                    idx.queue_marks.append((m.group(1).decode(), offset, n))
            offset += len(raw)
            line = raw.decode("utf-8")
            if not _may_set_queued(line):
                continue
            data = json.loads(line)
            for item in data.get("Set", []):
                if item.get("LastError"):
                    idx.db.set_queued(item.get("InternetMessageId", ""), _Row(rel, n, "", {
                        "time": data["Time"], "server": data["Server"], "queue": item.get("Queue", ""),
                        "identity": item.get("Identity", ""), "error": item["LastError"],
                        "recipients": ";".join(item.get("Recipients", []))}))


def _may_set_queued(line: str) -> bool:
    """Whether a queue-history line can give a message a LastError (others are not decoded): one with a
    "Set" and a LastError that is not "" (a key spelt with its quotes is JSON's, not a string's; a line
    with a \\u escape is decoded whatever it shows)."""
    return '"LastError":"' in line and '"Set":' in line and (_SOME_ERROR.search(line) is not None or "\\u" in line)


def _header(lines: Iterable[str]) -> tuple[str, list[str]]:
    log_type, fields = "", []
    for line in lines:
        if not line.startswith("#"):
            break
        if line.startswith("#Log-type: "):
            log_type = line[len("#Log-type: "):]
        elif line.startswith("#Fields: "):
            fields = line[len("#Fields: "):].split(",")
    return log_type, fields


def _index_protocol(idx: _Index, path: Path) -> None:
    rel = _rel(idx.out, path)
    parts = path.relative_to(idx.out).parts  # SERVER/TransportRoles/Logs/Service/ProtocolLog/Kind/FILE
    server, log = parts[0], f"{parts[3]}/{parts[5]}"
    log_type, _ = _header(_iter_lines(path))
    sessions, replies, rows = _protocol_sessions(enumerate(_iter_lines(path), 1), server, log, rel)
    idx.db.add_sessions(sessions, replies, {id(s): hit for s in sessions if (hit := _failed_lines(s))})
    idx.files.append({"path": rel, "log_type": log_type, "rows": rows, "sessions": len(sessions)})


def _protocol_sessions(lines: Iterable[tuple[int, str]], server: str, log: str,
                       rel: str) -> tuple[list[_Session], list[tuple[str, str, _Session, int]], int]:
    """One protocol log's (numbered) lines as its session parts (in the order they began) with their
    lines that can be evidence (see _Session: the first, the last, and the `_kept` ones between), its
    `250 2.6.0` replies (kind, value, part, index of the line) and its number of rows. A part's latest
    line waits in its state until the part's next line says it was not the last; then it is kept
    only if `_kept` (inline) keeps it."""
    rows = 0
    state: dict[str, list[Any]] = {}  # session id -> [part, waiting line's number (0: none), its time, its text]
    replies: list[tuple[str, str, _Session, int]] = []
    search = _STATUS.search
    for n, line in lines:
        if not line or line[0] == "#":
            continue
        if '"' in line or "\r" in line or "\x00" in line:  # what the csv module reads its own way
            v: list[str] | None = _csv(line)
            if len(v) < _PROTOCOL_FIELDS:  # type: ignore[arg-type]
                continue
            t, connector, sid = v[0], v[1], v[2]  # type: ignore[index]
        elif line.count(",") < _PROTOCOL_FIELDS - 1:
            continue
        else:
            v = None  # split only when a reply needs its data field
            t, connector, sid, _ = line.split(",", 3)
        rows += 1
        st = state.get(sid)
        if st is None:  # (a session across an hourly or size rollover: a part in each file)
            s = _Session(server, log, sid, connector, rel, first=t, lines=[n], times=[t], texts=[line])
            state[sid] = [s, 0, t, ""]
            at = 0
        else:
            s, waiting, last, text = st
            if t != last and not (t[:21] == last[:21] and len(t) == 24 == len(last) and t[23] == "Z" == last[23]) \
                    and _gap(last, t) >= SLOW_LINE:  # (_gap's own shortcuts, inline: most lines share their tenth)
                s.slow.append(n)
            if waiting:  # not the last line: kept if _kept keeps it
                low = text.lower()
                if "2.6.0 <" in text or "fail" in low or "error" in low or (
                        (" 4." in text or " 5." in text or "-4." in text or "-5." in text) and search(text)):
                    s.lines.append(waiting)
                    s.times.append(last)
                    s.texts.append(text)
            st[1], st[2], st[3] = n, t, line
            at = len(s.lines)  # (its index once kept: a reply always is)
        if "250 2.6.0 <" in line:  # what _REPLY_250 needs (no quote in it: so in the line as in its field)
            m = _REPLY_250.search((v or _csv(line))[7])
            if m:
                replies += [("mid", m.group(1), s, at), ("iid", m.group(2), s, at)]
    sessions = []
    for s, waiting, last, text in state.values():
        if waiting:  # the last line
            s.lines.append(waiting)
            s.times.append(last)
            s.texts.append(text)
        s.last, s.last_line = last, waiting or s.lines[0]
        sessions.append(s)
    return sessions, replies, rows


def _failed_lines(s: _Session) -> list[int]:
    """A session that carried no message and shows a failure (a 4xx/5xx reply, something that
    failed: a connection refused its message, a retry that failed again, a client's errors): the
    indices of the lines that show it; else none."""
    if any("2.6.0 <" in t for t in s.texts):
        return []
    return [i for i, t in enumerate(s.texts) if _status(t) or "fail" in t.lower()]


def _gap(before: str, after: str) -> float:
    if len(before) == len(after) == 24 and before[23] == after[23] == "Z" and before[:21] == after[:21]:
        return 0.0  # the same tenth of a second (UTC, to the millisecond): less than SLOW_LINE, parsed or not
    try:
        return (_iso(after) - _iso(before)).total_seconds()
    except ValueError:
        return 0.0


def _kept(line: str) -> bool:
    """Whether a protocol log line can be evidence (see _Session)."""
    low = line.lower()
    return "2.6.0 <" in line or "fail" in low or "error" in low or _status(line) is not None


def _index_tracking(idx: _Index, path: Path) -> None:
    rel = _rel(idx.out, path)
    log_type, fields = _header(_iter_lines(path))
    server = path.relative_to(idx.out).parts[0]
    rows = 0
    kept = [(i, k) for i, k in enumerate(fields) if k in _TRACKING_KEPT]  # the columns a manifest reads
    for n, line in enumerate(_iter_lines(path), 1):
        if not line or line.startswith("#"):
            continue
        v = _csv(line)
        values = {k: v[i] for i, k in kept if i < len(v)}  # (as a dict of zip(fields, v) would hold them)
        values["server"] = server
        rows += 1
        event = values.get("event-id", "")
        text = line if event in ("FAIL", "DEFER", "SUBMITFAIL", "DSN") else ""
        idx.db.add_tracking(values.get("message-id", ""), _Row(rel, n, text, values))
    idx.files.append({"path": rel, "log_type": log_type, "rows": rows, "sessions": None})


def _index_events(idx: _Index, path: Path) -> None:
    rel = _rel(idx.out, path)
    rows = 0
    for n, line in enumerate(_iter_lines(path), 1):
        rec, ev = _RECORD.search(line), _EVENT.search(line)
        if rec is None or ev is None:
            continue
        rows += 1
        idx.db.add_event(_Row(rel, n, line, {
            "server": path.relative_to(idx.out).parts[0], "record_id": rec.group(1), "source": ev.group(1),
            "event_id": ev.group(2), "level": ev.group(3), "time": ev.group(4)}))
    idx.files.append({"path": rel, "log_type": f"{path.stem} event log", "rows": rows, "sessions": None})


def _index_trace(idx: _Index, path: Path) -> None:
    rel = _rel(idx.out, path)
    lines = _iter_lines(path)
    head = _csv(next(lines, ""))
    rows = 0
    for n, line in enumerate(lines, 2):
        if not line:
            continue
        values = dict(zip(head, _csv(line)))
        rows += 1
        idx.db.add_trace(values.get("MessageId", ""), _Row(rel, n, line, values))
    idx.files.append({"path": rel, "log_type": "Get-MessageTraceDetail", "rows": rows, "sessions": None})


# --- pointers -----------------------------------------------------------------------------------------

def _pointer(file: str, lines: list[int], *, shows: str, session_id: str | None = None,
             record_id: int | None = None) -> dict[str, Any]:
    """Every line in `lines` of `file` contains `shows` (and the session id / event record id given)."""
    return {"file": file, "lines": lines, "session_id": session_id, "record_id": record_id, "shows": shows}


def _row_pointer(row: _Row, shows: str) -> dict[str, Any]:
    return _pointer(row.file, [row.line], shows=shows)


def _session_pointer(s: _Session, indices: list[int], shows: str | None = None) -> dict[str, Any]:
    return _pointer(s.file, [s.lines[i] for i in indices], shows=shows or s.session_id, session_id=s.session_id)


def _failure_lines(s: _Session, reply: str) -> list[int]:
    """The indices of the session's lines that show why it failed: its lines carrying the reply's
    status code, or else the lines that say something failed, or else every line of it."""
    status = _STATUS.search(reply or "")
    if status:
        hit = [i for i, t in enumerate(s.texts) if f"{status.group(1)} {status.group(2)}" in t]
        if hit:
            return hit
    hit = [i for i, t in enumerate(s.texts) if "fail" in t.lower() or "error" in t.lower()]
    return hit or list(range(len(s.texts)))


def _reply_text(reply: str) -> str:
    """The part of a reply every log that shows it prints: from its status code to the end."""
    m = _STATUS.search(reply or "")
    return reply[m.start():] if m else reply


def check_pointers(out: Path, manifest: dict[str, Any]) -> list[str]:
    """Every evidence pointer of the manifest checked against the files: one line per problem."""
    problems: list[str] = []
    cache: dict[str, list[str]] = {}
    for where, p in _all_pointers(manifest):
        try:
            lines = cache[p["file"]] if p["file"] in cache else cache.setdefault(p["file"], _lines(out / p["file"]))
        except OSError as exc:
            problems.append(f"{where}: {p['file']}: {exc.strerror}")
            continue
        if not p["lines"]:
            problems.append(f"{where}: {p['file']}: no line")
        for n in p["lines"]:
            text = lines[n - 1] if 0 < n <= len(lines) else None
            if text is None:
                problems.append(f"{where}: {p['file']}:{n}: no such line")
                continue
            for what in (p["shows"], p["session_id"],
                         None if p["record_id"] is None else f"<EventRecordID>{p['record_id']}</EventRecordID>"):
                if what and what not in text:
                    problems.append(f"{where}: {p['file']}:{n} does not show {what!r}")
    return problems


def _all_pointers(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for f in manifest["faults"]:
        for p in f["evidence"]:
            found.append((f"fault {f['index']}", p))
    for m in manifest["messages"]:
        for i, h in enumerate(m["hops"]):
            for p in h["evidence"]:
                found.append((f"message {m['id']} hop {i}", p))
    return found


# --- messages -------------------------------------------------------------------------------------------

def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _near(rows: list[_Row], when: str, key: str = "date-time") -> _Row | None:
    """The row closest in time to `when` (the first of equals)."""
    if not rows:
        return None
    t = _iso(when)
    return min(rows, key=lambda r: abs((_iso(r.values[key]) - t).total_seconds()))


def _tracking_rows(idx: _Index, mid: str, server: str, *events: str) -> list[_Row]:
    return [r for r in idx.db.tracking(mid) if r.values["server"] == server and r.values.get("event-id") in events]


def _trace_rows(idx: _Index, mid: str, *events: str) -> list[_Row]:
    return [r for r in idx.db.trace(mid) if r.values.get("Event") in events]


def _session_of(context: str) -> str | None:
    sid = context.split(";", 1)[0]
    return sid if _SESSION_ID.fullmatch(sid) else None


def _hop(idx: _Index, mid: str, hop: dict[str, Any]) -> dict[str, Any]:
    server, event = hop["server"], hop["event"]
    out: dict[str, Any] = {
        "time": hop["time"], "server": server, "event": event, "internal_id": hop.get("internal_id"),
        "connector": None, "session_id": None, "recipients": [r for r in hop.get("to", "").split(";") if r],
        "next_hop": hop.get("next_hop"), "reply": hop.get("reason"), "evidence": []}
    ev: list[dict[str, Any]] = out["evidence"]
    if server == "EXO":
        names = {"RECEIVE": ("Receive",), "SEND": ("Send external", "Send"), "DELIVER": ("Deliver",),
                 "FAIL": ("Fail", "Drop"), "SUBMITFAIL": ("Fail",)}.get(event, ())
        ev.extend(_row_pointer(r, mid) for r in _trace_rows(idx, mid, *names))
        return out
    if event == "RECEIVE":
        iid = hop.get("internal_id", "")
        row = next((r for r in _tracking_rows(idx, mid, server, "RECEIVE") if r.values["internal-message-id"] == iid),
                   None)
        if row is not None:
            out["connector"] = row.values["connector-id"] or None
            out["session_id"] = _session_of(row.values["source-context"])
            ev.append(_row_pointer(row, mid))
        for s, i in idx.db.replies("iid", iid):
            if f"{mid} [InternalId={iid}," not in s.texts[i]:
                continue
            # the receiving server's log, or the sender's (the reply names the id the receiver gave)
            ev.append(_session_pointer(s, [i], f"{mid} [InternalId={iid},"))
            if s.server == server and s.log.endswith("SmtpReceive") and out["session_id"] in (None, s.session_id):
                out["session_id"], out["connector"] = s.session_id, out["connector"] or s.connector
    elif event == "SEND":
        row = _near(_tracking_rows(idx, mid, server, "SEND", "SENDEXTERNAL"), hop["time"])
        if row is not None:
            out["connector"] = row.values["connector-id"] or None
            ev.append(_row_pointer(row, mid))
        sent = [(s, i) for s, i in idx.db.replies("mid", mid) if s.server == server and s.log.endswith("SmtpSend")]
        if sent:
            t = _iso(hop["time"])
            s, i = min(sent, key=lambda si: abs((_iso(si[0].times[si[1]]) - t).total_seconds()))
            out["session_id"], out["connector"] = s.session_id, out["connector"] or s.connector
            ev.append(_session_pointer(s, [i], mid))
    elif event == "DELIVER":
        rows = [r for r in _tracking_rows(idx, mid, server, "DELIVER")
                if not out["recipients"] or r.values["recipient-address"].lower() in
                {x.lower() for x in out["recipients"]}]
        row = _near(rows, hop["time"])
        if row is not None:
            out["connector"] = row.values["connector-id"] or None
            ev.append(_row_pointer(row, mid))
    elif event in ("FAIL", "SUBMITFAIL"):
        reply = _reply_text(hop.get("reason", ""))
        for row in _tracking_rows(idx, mid, server, event):
            if reply and reply in row.text:
                ev.append(_row_pointer(row, reply))
            else:
                ev.append(_row_pointer(row, mid))
        ev.extend(_reply_pointers(idx, server, reply, hop["time"]) or _reply_pointers(idx, None, reply, hop["time"]))
    return out


def _reply_pointers(idx: _Index, server: str | None, reply: str, when: str) -> list[dict[str, Any]]:
    """The protocol log lines on `server` (None: on any server; a host of the Internet keeps no
    log, its peer's log shows the reply) that show `reply`, in the session closest to `when`."""
    if not reply:
        return []
    t = _iso(when)
    near = (_stamp(t - REPLY_NEAR), _stamp(t + REPLY_NEAR))  # a line within the hour beats any outside it
    best: tuple[float, _Session] | None = None
    for between in (near, None):
        for s, hit in idx.db.lines_showing(reply, server, between):
            gap = min(abs((_iso(s.times[i]) - t).total_seconds()) for i in hit)
            if best is None or gap < best[0]:
                best = (gap, s)
        if best is not None:
            break
    if best is None:
        return []
    ((s, hit),) = idx.db.lines_showing(reply, server, part=best[1].part)  # all its lines that show it
    return [_session_pointer(s, hit, reply)]


def _stamp(t: datetime) -> str:
    """As a protocol log writes a time (to the millisecond), so strings compare as times."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _defer_hops(idx: _Index, mid: str) -> list[dict[str, Any]]:
    """Delivery attempts that failed and left the message queued (no ledger entry of their own)."""
    hops = []
    for row in idx.db.tracking(mid):
        if row.values.get("event-id") != "DEFER":
            continue
        server, connector, when = row.values["server"], row.values["connector-id"], row.values["date-time"]
        status = row.values.get("recipient-status", "")
        led = re.search(r"LED=([^}]*)\}", status)
        reply = led.group(1) if led else status
        ev = [_row_pointer(row, reply if reply and reply in row.text else mid)]
        session = _send_session(idx, server, connector, when)
        if session is not None:
            ev.append(_session_pointer(session, _failure_lines(session, reply)))
        hops.append({"time": when, "server": server, "event": "DEFER", "internal_id": row.values["internal-message-id"],
                     "connector": connector or None, "session_id": session.session_id if session else None,
                     "recipients": [r for r in row.values["recipient-address"].split(";") if r], "next_hop": None,
                     "reply": reply or None, "evidence": ev})
    for row in _trace_rows(idx, mid, "Defer"):
        m = re.search(r"LED=([^}]*)\}", row.values.get("Detail", ""))
        reply = m.group(1) if m else row.values.get("Detail", "")
        hops.append({"time": _trace_time(row), "server": "EXO", "event": "DEFER", "internal_id": None,
                     "connector": None, "session_id": None, "recipients": [row.values.get("RecipientAddress", "")],
                     "next_hop": None, "reply": reply or None,
                     "evidence": [_row_pointer(row, reply if reply and reply in row.text else mid)]})
    return hops


def _trace_time(row: _Row) -> str:
    try:
        t = datetime.strptime(row.values.get("Date", ""), "%m/%d/%Y %I:%M:%S %p")
    except ValueError:
        return ""
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _send_session(idx: _Index, server: str, connector: str, when: str) -> _Session | None:
    """The SmtpSend session of `connector` on `server` that ended at (or last before) `when`."""
    t = _iso(when)
    best: tuple[timedelta, _Session] | None = None
    for s in idx.db.send_sessions(server, connector, _stamp(t + timedelta(milliseconds=1)),
                                  _stamp(t + timedelta(seconds=1))):
        end = _iso(s.last)
        if _iso(s.first) <= t + timedelta(milliseconds=1) and end <= t + timedelta(seconds=1):
            gap = abs(t - end)
            if best is None or gap < best[0]:
                best = (gap, s)
    return best[1] if best else None


def _message(idx: _Index, m: dict[str, Any]) -> dict[str, Any]:
    mid = m["message_id"]
    if type(mid) is str:  # what its hops will ask for, asked at once
        idx.db.prefetch(mid, [h["internal_id"] for h in m["hops"] if h.get("event") == "RECEIVE"
                              and h.get("server") != "EXO" and type(h.get("internal_id")) is str])
    rows = idx.db.tracking(mid)
    hops = [_hop(idx, mid, h) for h in m["hops"]]
    hops += _defer_hops(idx, mid)
    queued = idx.db.queued(mid)
    if m["pending"] and queued is not None:  # still queued at the end: the queue's last word on it
        v = queued.values
        shows = json.dumps(v["error"])[1:-1]  # as the JSON line spells it (logs.queue_history)
        hops.append({"time": v["time"], "server": v["server"], "event": "PENDING",
                     "internal_id": v["identity"].rsplit("\\", 1)[-1] or None, "connector": None, "session_id": None,
                     "recipients": [r for r in v["recipients"].split(";") if r], "next_hop": v["queue"],
                     "reply": v["error"], "evidence": [_pointer(queued.file, [queued.line], shows=shows)]})
    hops.sort(key=lambda h: h["time"])
    internal: dict[str, list[str]] = {}
    for h in m["hops"]:
        if h.get("internal_id"):
            internal.setdefault(h["server"], []).append(h["internal_id"])
    for r in rows:
        if r.values.get("internal-message-id"):
            internal.setdefault(r.values["server"], []).append(r.values["internal-message-id"])
    recipients = []
    for d in m["delivered"]:
        recipients.append({"recipient": d["recipient"], "fate": "delivered", "server": d["server"],
                           "reply": _final_reply(idx, mid, d["recipient"]), "mailbox": d["path"]})
    for f in m["failed"]:
        recipients.append({"recipient": f["recipient"], "fate": "failed", "server": f["server"],
                           "reply": f["reason"], "mailbox": None})
    for p in m["pending"]:
        recipients.append({"recipient": p["recipient"], "fate": "pending", "server": p["server"],
                           "reply": p["last_error"], "mailbox": None, "queue": p["queue"]})
    return {
        "id": m["id"], "message_id": mid,
        "network_message_ids": sorted({r.values["network-message-id"] for r in rows if r.values.get("network-message-id")}),
        "internal_ids": {k: sorted(set(v), key=v.index) for k, v in internal.items()},
        "from": m["from"], "to": m["to"], "subject": m["subject"], "injected": m["injected"], "fate": m["fate"],
        "recipients": recipients, "hops": hops,
        "notifications": [{k: n[k] for k in ("time", "action", "server", "message_id", "about")}
                          for n in m.get("notifications", [])],
    }


def _final_reply(idx: _Index, mid: str, recipient: str) -> str | None:
    """The last `250 2.6.0` any server gave for the message (the reply of its final hop)."""
    replies = idx.db.replies("mid", mid)
    if not replies:
        return None
    s, i = max(replies, key=lambda si: si[0].times[si[1]])
    v = _csv(s.texts[i])
    return v[7] if len(v) > 7 else None


# --- faults ---------------------------------------------------------------------------------------------

def _target(params: dict[str, Any]) -> str | None:
    for key in ("Identity", "Server", "Name", "ZoneName", "Host"):
        value = params.get(key)
        if isinstance(value, str):
            return value
    return None


def _server_of(target: str | None, servers: list[str]) -> str | None:
    if not target:
        return None
    head = target.split("\\", 1)[0].lower()
    return next((s for s in servers if s.lower() == head), None)


def _faults(loaded: Any, idx: _Index, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from .topology.timespec import parse_timespan

    servers = [s.name for s in loaded.lab.organization.servers]
    faults = []
    for i, ch in enumerate(loaded.scenario.change):
        when = loaded.start + (parse_timespan(ch.at) if ch.at else timedelta(0))
        faults.append(_fault(idx, messages, servers, index=i, scenario=loaded.scenario.id, cmdlet=ch.cmdlet,
                             params=ch.params, at=ch.at, acted=_iso_ms(when), end=None))
    return faults


def _fault(idx: _Index, messages: list[dict[str, Any]], servers: list[str], *, index: int, scenario: str,
           cmdlet: str, params: dict[str, Any], at: str | None, acted: str, end: str | None) -> dict[str, Any]:
    """One change as a fault: what it targets, its window, the failures and events inside it."""
    from .topology.changes import CMDLETS

    params = json.loads(json.dumps(params, default=str))
    target = _target(params)
    inside = (lambda t: acted[:23] <= t[:23]) if end is None else (lambda t: acted[:23] <= t[:23] <= end[:23])
    evidence: list[dict[str, Any]] = []
    for e in idx.db.events(acted, end):
        if e.values["level"] in ("1", "2", "3") and inside(e.values["time"]):
            evidence.append(_pointer(e.file, [e.line], shows=f">{e.values['event_id']}</EventID>",
                                     record_id=int(e.values["record_id"])))
    effects = []
    for m in messages:
        hops = m["hops"].items() if isinstance(m["hops"], dict) else enumerate(m["hops"])
        for n, h in hops:
            if h["event"] in FAILED_HOPS and h["time"] and inside(h["time"]):
                effects.append({"message": m["id"], "hop": n})
                evidence.extend(h["evidence"])
    for s, hit in idx.db.failed_in(acted, end):
        evidence.append(_session_pointer(s, hit))
    evidence += _trace_of_change(idx, target, _server_of(target, servers), acted, end)
    if not evidence:
        evidence = _after_change(idx, _server_of(target, servers), acted, end)
    return {"index": index, "scenario": scenario, "cmdlet": cmdlet,
            "kind": "configuration" if cmdlet.lower() in CMDLETS else "operation",
            "target": target, "server": _server_of(target, servers), "params": params, "at": at, "acted": acted,
            "window": {"start": acted, "end": end}, "effects": effects, "evidence": evidence}


def _trace_of_change(idx: _Index, target: str | None, server: str | None, acted: str,
                     end: str | None) -> list[dict[str, Any]]:
    """What a change left in the files beyond failed hops (each kind capped at EVIDENCE_CAP pointers):
    - the events its server logged as it acted, of any level (a service stopping: SCM's 7036);
    - the sessions of the connector it changed, inside its window (what the connector now logs);
    - the sessions inside its window whose lines came SLOW_LINE s or more apart (a slow link: nothing
      fails, the protocol log's timestamps show it);
    - the queue history inside its window: the queues' LastError, and the lines that name its
      target as it acted (a queue suspended, resumed, retried)."""
    t0 = _iso(acted)

    def at_change(t: str) -> bool:
        return t0 <= _iso(t) <= t0 + AT_CHANGE

    found: list[dict[str, Any]] = []
    events = [e for e in idx.db.events(acted, _stamp(t0 + AT_CHANGE)) if e.values["level"] not in ("1", "2", "3")
              and at_change(e.values["time"]) and (server is None or e.values["server"] == server)]
    found += [_pointer(e.file, [e.line], shows=f">{e.values['event_id']}</EventID>", record_id=int(e.values["record_id"]))
              for e in events[:EVIDENCE_CAP]]
    low = (target or "").lower()
    within, args = _window(acted, end)
    connector = idx.db.sessions_where(f"connector_low = ? AND {within}", (low, *args), order="first, keyorder",
                                      limit=EVIDENCE_CAP) if low else []
    found += [_session_pointer(s, [0]) for s in connector]
    slow = idx.db.sessions_where(f"slow IS NOT NULL AND {within}", args, order="first, file, session_id",
                                 limit=EVIDENCE_CAP)
    found += [_pointer(s.file, s.slow, shows=s.session_id, session_id=s.session_id) for s in slow]
    named = json.dumps(target)[1:-1] if target else None
    errors = changed = 0
    window = (acted, _stamp(t0 + AT_CHANGE)) if _CANONICAL_TIME.fullmatch(acted) else None

    wanted = partial(_change_line_wanted, named=named, at_change=at_change, window=window)

    for n, line, data in _queue_window(idx, acted, end, wanted):
        queue = data.get("Queue")
        if isinstance(queue, dict) and queue.get("LastError") and errors < EVIDENCE_CAP:
            errors += 1
            found.append(_pointer("queue-history.jsonl", [n], shows=json.dumps(queue["LastError"])[1:-1]))
        elif named and named in line and at_change(data["Time"]) and changed < EVIDENCE_CAP:
            changed += 1
            found.append(_pointer("queue-history.jsonl", [n], shows=named))
    return found


def _change_line_wanted(line: str, time: str, named: str | None, at_change: Callable[[str], bool],
                        window: tuple[str, str] | None = None) -> bool:
    """Whether _trace_of_change's loop can use a queue-history line (others are not decoded): a queue's
    own line whose LastError is not "" (a key spelt "Queue": with its quotes is JSON's, not a string's),
    or a line naming the target (`named`) whose time is at the change; a line whose one "Time" its
    text shows plainly (`time`: most lines name the server a change targets) is tested on that text,
    by `_at_change_text`."""
    if _SOME_ERROR.search(line) is not None and '"Queue":' in line and _QUEUE_OBJECT.search(line) is not None:
        return True
    if not (named and named in line):
        return False
    if line.count('"Time":') != 1 or "\\u" in line:
        return True
    return _at_change_text(time, at_change, window)


_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")  # (as the logs write it: _stamp)


def _at_change_text(time: str, at_change: Callable[[str], bool], window: tuple[str, str] | None) -> bool:
    """at_change(time); with `window` (the change's instant and AT_CHANGE after it, both as _stamp
    writes them), a time written that way is compared as text (fixed-width UTC digits: as the times)."""
    if window is not None and _CANONICAL_TIME.fullmatch(time) is not None:
        return window[0] <= time <= window[1]
    return at_change(time)


def _after_change(idx: _Index, server: str | None, acted: str, end: str | None) -> list[dict[str, Any]]:
    """A change that failed nothing and left no trace of its own (a fix, a read-only check): the first
    sessions its server (or, naming none, any server) logged once it acted, inside its window - what
    the lab did under it; else the first queue-history line of its window."""
    within, args = _window(acted, end)
    order = "first, file, session_id"
    after = [] if server is None else idx.db.sessions_where(f"server = ? AND {within}", (server, *args), order,
                                                             AFTER_CHANGE)
    after = after or idx.db.sessions_where(within, args, order, AFTER_CHANGE)
    if after:
        return [_session_pointer(s, [0]) for s in after]
    for n, _, data in _queue_window(idx, acted, None):
        return [_pointer("queue-history.jsonl", [n], shows=f'"Time":"{data["Time"]}"')] if end is None or \
            data["Time"][:23] <= end[:23] else []
    return []


def _window(start: str, end: str | None) -> tuple[str, tuple[str, ...]]:
    """SQL for a part that began inside [start, end] (to the millisecond, as `inside` compares)."""
    if end is None:
        return "substr(first, 1, 23) >= ?", (start[:23],)
    return "substr(first, 1, 23) >= ? AND substr(first, 1, 23) <= ?", (start[:23], end[:23])


_QUEUE_OBJECT = re.compile(r'"Queue":\s*\{')
_SOME_ERROR = re.compile(r'"LastError":(?!"")')
_LINE_TIME = re.compile(r'\{"Time":"([^"\\]*)"')


def _queue_window(idx: _Index, start: str, end: str | None,
                  wanted: Any = None) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """The queue history's lines from `start` to `end` (None: to its end) as (line number, text, data),
    read from the nearest mark before `start`; with `wanted` (a test of the text and its time), only
    the lines it keeps (a line whose time its text shows plainly is not decoded unless wanted)."""
    path = idx.out / "queue-history.jsonl"
    if not idx.queue_marks or not path.is_file():
        return
    mark = max((m for m in idx.queue_marks if m[0][:23] < start[:23]), default=idx.queue_marks[0])
    stop = None if end is None else end[:23]
    with path.open("rb") as f:
        f.seek(mark[1])
        for n, raw in enumerate(f, mark[2]):
            line = raw.decode("utf-8")
            plain = _LINE_TIME.match(line) if wanted is not None else None
            if plain is not None:
                time = plain.group(1)
                if not wanted(line, time):
                    if stop is not None and time[:23] > stop:
                        return
                    continue
            data = json.loads(line)
            when = data.get("Time", "")[:23]
            if when < start[:23]:
                continue
            if end is not None and when > end[:23]:
                return
            yield n, line, data


def _iso_ms(when: datetime) -> str:
    from .clock import iso_ms

    return iso_ms(when)


# --- the manifest ---------------------------------------------------------------------------------------
#
# Memory (issue 8): a working day of mail makes summary.json ~1.7 KB and the manifest ~5.5 KB a
# message on disk, several times that as Python data. Nothing here holds all the messages: they
# are read from summary.json one at a time (ijson), each message's manifest entry is built from the
# evidence index (on disk) and appended to a private spool file (JSON Lines), keeping only its
# failed hops (what the faults need); then the head (faults, events, logs, counts) is known and
# manifest.json is written with the messages copied from the spool one at a time. The bytes are
# the ones json.dumps(indent=1, sort_keys=True, ensure_ascii=False) gives for the whole.

def _summary_messages(path: Path) -> Iterator[dict[str, Any]]:
    """summary.json's messages, one at a time."""
    import ijson

    with path.open("rb") as f:
        yield from ijson.items(f, "messages.item", use_float=True)


def _summary_head(path: Path, *keys: str) -> dict[str, Any]:
    """summary.json's top-level `keys` (small values: start, end, queues), without its messages."""
    import ijson

    head: dict[str, Any] = {}
    for key in keys:
        with path.open("rb") as f:
            for value in ijson.items(f, key, use_float=True):
                head[key] = value
                break
    return head


_SPOOL_END = "\x00"  # after each entry's text in the spool (a JSON text has no raw NUL: json escapes it)


# An entry's text as dumps_indented(entry, 1, sort_keys=True, ensure_ascii=False, level=2) gives it,
# from templates of the shapes _message builds (an entry, its hops, their evidence pointers): every
# member json prints plainly (a str, None, an int; a list of those) is printed here, anything else
# (a value of another type, a dict with other keys) by dumps_indented at its depth, so the text is
# the same for any entry (tests/test_manifest_entry_text.py).
_ENTRY_KEYS = frozenset({"fate", "from", "hops", "id", "injected", "internal_ids", "message_id",
                         "network_message_ids", "notifications", "recipients", "subject", "to"})
_HOP_KEYS = frozenset({"connector", "event", "evidence", "internal_id", "next_hop", "recipients", "reply", "server",
                       "session_id", "time"})
_POINTER_KEYS = frozenset({"file", "lines", "record_id", "session_id", "shows"})
_NL = ["\n" + " " * n for n in range(12)]  # a newline and the indent of depth n (indent 1)


def _value_text(v: Any, depth: int) -> str:
    t = type(v)
    if t is str:
        return _enc(v)
    if v is None:
        return "null"
    if t is int:
        return int.__repr__(v)
    if depth < 10 and v:
        if t is list or t is tuple:
            inner = _NL[depth + 1]
            kinds = set(map(type, v))
            if kinds == _STR_TYPE:
                return "[" + inner + ("," + inner).join(map(_enc, v)) + _NL[depth] + "]"
            if kinds == _DICT_TYPE:
                return "[" + inner + ("," + inner).join([_value_text(x, depth + 1) for x in v]) + _NL[depth] + "]"
        elif t is dict and set(map(type, v)) == _STR_TYPE:
            inner = _NL[depth + 1]
            return "{" + inner + ("," + inner).join([f"{_enc(k)}: {_value_text(v[k], depth + 1)}" for k in sorted(v)]) \
                + _NL[depth] + "}"
    return dumps_indented(v, 1, sort_keys=True, ensure_ascii=False, level=depth)


def _pointer_text(p: Any, depth: int) -> str:
    if type(p) is not dict or p.keys() != _POINTER_KEYS or depth > 8:
        return _value_text(p, depth)
    n1 = _NL[depth + 1]
    file, lines, record_id, session_id, shows = p["file"], p["lines"], p["record_id"], p["session_id"], p["shows"]
    if type(file) is str and type(shows) is str and type(lines) is list and len(lines) == 1 and \
            type(lines[0]) is int and record_id is None and (session_id is None or type(session_id) is str):
        # (most pointers: one line, no event record)
        return (f'{{{n1}"file": {_enc(file)},{n1}"lines": [{_NL[depth + 2]}{int.__repr__(lines[0])}{n1}],{n1}'
                f'"record_id": null,{n1}"session_id": {"null" if session_id is None else _enc(session_id)},{n1}'
                f'"shows": {_enc(shows)}{_NL[depth]}}}')
    if type(lines) is list and lines and set(map(type, lines)) == _INT_TYPE:
        n2 = _NL[depth + 2]
        lines_text = "[" + n2 + ("," + n2).join(map(int.__repr__, lines)) + n1 + "]"
    else:
        lines_text = _value_text(lines, depth + 1)
    return ("{" + n1 + '"file": ' + _value_text(file, depth + 1) + "," + n1 + '"lines": ' + lines_text + "," + n1
            + '"record_id": ' + _value_text(record_id, depth + 1) + "," + n1 + '"session_id": '
            + _value_text(session_id, depth + 1) + "," + n1 + '"shows": ' + _value_text(shows, depth + 1)
            + _NL[depth] + "}")


def _hop_text(h: Any, depth: int) -> str:
    if type(h) is not dict or h.keys() != _HOP_KEYS or depth > 6:
        return _value_text(h, depth)
    d1 = depth + 1
    n1 = _NL[d1]
    evidence = h["evidence"]
    if type(evidence) is list and evidence:
        n2 = _NL[depth + 2]
        evidence_text = "[" + n2 + ("," + n2).join([_pointer_text(p, depth + 2) for p in evidence]) + n1 + "]"
    else:
        evidence_text = _value_text(evidence, d1)
    recipients = h["recipients"]
    texts = [_enc(v) if type(v) is str else "null" if v is None else _value_text(v, d1) for v in (
        h["connector"], h["event"], h["internal_id"], h["next_hop"], h["reply"], h["server"], h["session_id"], h["time"])]
    return (f'{{{n1}"connector": {texts[0]},{n1}"event": {texts[1]},{n1}"evidence": {evidence_text},{n1}'
            f'"internal_id": {texts[2]},{n1}"next_hop": {texts[3]},{n1}"recipients": '
            f'{"[]" if type(recipients) is list and not recipients else _value_text(recipients, d1)},{n1}'
            f'"reply": {texts[4]},{n1}"server": {texts[5]},{n1}"session_id": {texts[6]},{n1}"time": {texts[7]}'
            f'{_NL[depth]}}}')


def _entry_text(entry: dict[str, Any]) -> str:
    """dumps_indented(entry, 1, sort_keys=True, ensure_ascii=False, level=2), from the templates above."""
    if type(entry) is not dict or entry.keys() != _ENTRY_KEYS:
        return dumps_indented(entry, 1, sort_keys=True, ensure_ascii=False, level=2)
    n1 = _NL[3]
    parts = []
    for key in sorted(entry):
        v = entry[key]
        if key == "hops" and type(v) is list and v:
            n2 = _NL[4]
            text = "[" + n2 + ("," + n2).join([_hop_text(h, 4) for h in v]) + n1 + "]"
        elif (type(v) is list or type(v) is dict) and not v:
            text = "[]" if type(v) is list else "{}"
        else:
            text = _value_text(v, 3)
        parts.append(f'"{key}": {text}')
    return "{" + n1 + ("," + n1).join(parts) + _NL[2] + "}"


@dataclass
class _Spooled:
    """The messages' manifest entries, built one at a time into a private spool file, each as the
    text manifest.json holds it (indented at its depth there), so it is encoded once."""

    spool: Any  # a TemporaryFile: each entry's text, then _SPOOL_END
    count: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)  # each message's failed hops only

    def add(self, entry: dict[str, Any]) -> None:
        self.spool.write(_entry_text(entry) + _SPOOL_END)
        self.count += 1

    def texts(self) -> Iterator[str]:
        self.spool.seek(0)
        rest = ""
        while chunk := self.spool.read(1 << 16):
            *done, rest = (rest + chunk).split(_SPOOL_END)
            yield from done

    def entries(self) -> Iterator[dict[str, Any]]:
        for text in self.texts():
            yield json.loads(text)

    def close(self) -> None:
        self.spool.close()


def _spool_messages(idx: _Index, summaries: list[Path]) -> _Spooled:
    import tempfile

    spooled = _Spooled(tempfile.TemporaryFile("w+", encoding="utf-8"))
    try:
        for path in summaries:
            for m in _summary_messages(path):
                entry = _message(idx, m)
                spooled.add(entry)
                failed = [(n, h) for n, h in enumerate(entry["hops"]) if h["event"] in FAILED_HOPS]
                if failed:
                    spooled.failures.append({"id": entry["id"], "hops": dict(failed)})
    except BaseException:
        spooled.close()
        raise
    return spooled


def build_manifest(out: Path, loaded: Any, *, seed: int, outcomes: list[Any] | None = None) -> dict[str, Any]:
    """The manifest of the finished run in `out` (summary.json and the logs written), as data;
    `outcomes` are the scenario's checked expectations (None for a live lab: not checked). This
    holds every message: `write_manifest` writes the same file without holding them."""
    idx = _index(out)
    try:
        head, spooled = _run_manifest(idx, out, loaded, seed=seed, outcomes=outcomes)
        try:
            return {**head, "messages": list(spooled.entries())}
        finally:
            spooled.close()
    finally:
        idx.db.close()


def _run_manifest(idx: _Index, out: Path, loaded: Any, *, seed: int,
                  outcomes: list[Any] | None) -> tuple[dict[str, Any], _Spooled]:
    """The manifest but its messages, and the messages spooled (the caller closes the spool)."""
    summary = out / "summary.json"
    spooled = _spool_messages(idx, [summary])
    try:
        top = _summary_head(summary, "start", "end", "queues")
        scn = loaded.scenario
        head = {
            "schema": "labsim-manifest", "schema_version": SCHEMA_VERSION,
            "scenario": {"id": scn.id, "title": scn.title, "file": loaded.path.name if loaded.path.suffix else None,
                         "seed": seed, "start": top["start"], "end": top["end"]},
            "expectations": None if outcomes is None else
            [{"what": o.what, "ok": o.ok, "detail": o.detail} for o in outcomes],
            "faults": _faults(loaded, idx, spooled.failures),
            "queues": top.get("queues", []),
            "events": _events(idx),
            "logs": sorted(idx.files, key=lambda f: f["path"]),
            "counts": {"messages": spooled.count, "faults": len(scn.change),
                       "sessions": idx.session_count, "log_rows": sum(f["rows"] for f in idx.files)},
        }
    except BaseException:
        spooled.close()
        raise
    return head, spooled


def write_corpus_manifest(out: Path, *, corpus: dict[str, Any], windows: list[dict[str, Any]],
                          servers: list[str], summaries: list[Path]) -> dict[str, int]:
    """The manifest of a merged corpus (labsim.corpus): its messages as for a run, and each fault
    scheduled into it as a window: `windows` are {"scenario", "start", "end", "changes": [{"cmdlet",
    "params", "at"}]}, each change acting at the window's start (or `at` after it) until its end.
    `summaries` are the shards' summary.json in order: the messages are read from them one at a
    time and spooled (keeping only their failed hops, for the faults), then written one at a time.
    Returns its `counts` (so no one reads the whole manifest back for them)."""
    idx = _index(out)
    try:
        return _write_corpus_manifest(idx, out, corpus=corpus, windows=windows, servers=servers, summaries=summaries)
    finally:
        idx.db.close()


def _write_corpus_manifest(idx: _Index, out: Path, *, corpus: dict[str, Any], windows: list[dict[str, Any]],
                           servers: list[str], summaries: list[Path]) -> dict[str, int]:
    from ._corpus_merge import write_streamed
    from .topology.timespec import parse_timespan

    start, end = "", ""
    for path in summaries:
        data = _summary_head(path, "start", "end")
        start, end = min(start or data["start"], data["start"]), max(end, data["end"])
    spooled = _spool_messages(idx, summaries)
    try:
        faults: list[dict[str, Any]] = []
        for w in windows:
            opened = _iso(w["start"])
            for ch in w["changes"]:
                acted = _iso_ms(opened + (parse_timespan(ch["at"]) if ch.get("at") else timedelta(0)))
                faults.append(_fault(idx, spooled.failures, servers, index=len(faults), scenario=w["scenario"],
                                     cmdlet=ch["cmdlet"], params=ch["params"], at=ch.get("at"), acted=acted,
                                     end=w["end"]))
        queues = _summary_head(summaries[-1], "queues").get("queues", []) if summaries else []
        counts = {"messages": spooled.count, "faults": len(faults), "sessions": idx.session_count,
                  "log_rows": sum(f["rows"] for f in idx.files)}
        head = {
            "schema": "labsim-manifest", "schema_version": SCHEMA_VERSION,
            "scenario": {"id": "corpus", "title": corpus["title"], "file": None, "seed": corpus["seed"],
                         "start": start, "end": end},
            "corpus": corpus,
            "expectations": None, "faults": faults, "queues": queues,
            "events": _events(idx), "logs": sorted(idx.files, key=lambda f: f["path"]),
            "counts": counts,
        }
        write_streamed(out / MANIFEST_FILE, head, "messages", spooled.texts(), indent=1, sort_keys=True,
                       ensure_ascii=False, encoded=True)
    finally:
        spooled.close()
    return counts


def _events(idx: _Index) -> list[dict[str, Any]]:
    return [{"server": e.values["server"], "record_id": int(e.values["record_id"]),
             "event_id": int(e.values["event_id"]), "source": e.values["source"], "level": int(e.values["level"]),
             "time": e.values["time"], "file": e.file, "line": e.line} for e in idx.db.events()]


def write_manifest(out: Path, loaded: Any, *, seed: int, outcomes: list[Any] | None = None) -> Path:
    """Write `manifest.json` beside summary.json (sorted keys, stable bytes for a scenario and seed),
    a message at a time (see "the manifest" above): memory holds one message, the failed hops and
    the head, whatever the number of messages."""
    from ._corpus_merge import write_streamed

    path = out / MANIFEST_FILE
    idx = _index(out)
    try:
        head, spooled = _run_manifest(idx, out, loaded, seed=seed, outcomes=outcomes)
        try:
            write_streamed(path, head, "messages", spooled.texts(), indent=1, sort_keys=True, ensure_ascii=False,
                           encoded=True)
        finally:
            spooled.close()
    finally:
        idx.db.close()
    return path


def read_manifest(out: Path) -> dict[str, Any]:
    """The whole manifest as data (every message in memory: ~2.3 times the file; see iter_messages)."""
    data: dict[str, Any] = json.loads((Path(out) / MANIFEST_FILE).read_text(encoding="utf-8"))
    return data


def iter_messages(out: Path) -> Iterator[dict[str, Any]]:
    """The manifest's messages one at a time, as read_manifest(out)["messages"] holds them, in
    memory one message at a time (a working day of mail makes a manifest of hundreds of MB)."""
    import ijson

    with (Path(out) / MANIFEST_FILE).open("rb") as f:
        yield from ijson.items(f, "messages.item", use_float=True)


def schema() -> dict[str, Any]:
    """The manifest's JSON Schema (shipped in the package as labsim/manifest.schema.json)."""
    text = resources.files("labsim").joinpath("manifest.schema.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data

