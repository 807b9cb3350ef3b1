"""An output folder read back for the web view: only the files a run or a live lab writes.

- `.labsim-output` (engine/outdir.py): the scenario id, seed and mode (`run` / `up`);
- `summary.json`: every message's fate and hops, the queues, services and events (written at the
  end of a run; every second by `up`, engine/driver.write_live_snapshot);
- `queues.json` + `queue-history.jsonl`: Get-Queue / Get-Message and every queue change;
- the protocol logs (web/protolog.py) and message tracking logs (logs/message_tracking.py);
- `EXO/MessageTrace/trace.json`: EXO's message trace.

A file that is missing (a live lab that has not written it yet) or caught half-written reads as
empty; nothing here raises for what a folder holds. The topology is the scenario's world as the
scenario file describes it (scenario/loader.py), found by the id in the marker.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LabsimError
from ..logs.message_tracking import read_tracking
from ..logs.queue_history import QUEUE_HISTORY_FILE, queue_history, read_lines
from .protolog import Session, log_files, read_sessions

_ADDRESS = re.compile(r"<([^<>]*)>")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class Step:
    """One step of a message's path, from whichever file shows it."""
    time: str
    server: str
    what: str  # RECEIVE, SEND, DEFER, ..., or "session"
    where: str  # connector, queue or source
    detail: str  # the reply, recipient status or trace detail
    session: str = ""  # the protocol log session's key, when the step is a session
    source: str = ""  # which file: tracking, trace, session
    bad: bool = False  # a refusal or a deferral
    end: str = ""  # a session's last row


@dataclass
class MessageView:
    data: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    tracking: list[dict[str, Any]] = field(default_factory=list)
    trace: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class OutputTree:
    """Read-only access to one output folder; every call reads the files again (a live lab grows)."""

    def __init__(self, out: Path) -> None:
        self.out = out

    # --- the files ----------------------------------------------------------------------------
    def marker(self) -> dict[str, Any]:
        data = _json(self.out / ".labsim-output")
        return data if isinstance(data, dict) else {}

    def summary(self) -> dict[str, Any]:
        data = _json(self.out / "summary.json")
        return data if isinstance(data, dict) else {}

    def queues(self) -> dict[str, Any]:
        data = _json(self.out / "queues.json")
        return data if isinstance(data, dict) and isinstance(data.get("servers"), dict) else {}

    def queue_history(self, limit: int = 5000) -> list[dict[str, Any]]:
        """Every Get-Queue row change, in order (`{"Time", "Server", **row}`; the last `limit`)."""
        name = self.queues().get("history_file", QUEUE_HISTORY_FILE)
        path = self.out / str(name)
        if not path.is_file() or path.parent != self.out:
            return []
        try:
            lines = [x for x in read_lines(path) if isinstance(x, dict) and isinstance(x.get("Queue", {}), dict)]
            return list(queue_history(iter(lines)))[-limit:]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def trace(self) -> list[dict[str, Any]]:
        data = _json(self.out / "EXO" / "MessageTrace" / "trace.json")
        msgs = data.get("messages") if isinstance(data, dict) else None
        return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []

    def tracking(self) -> list[dict[str, Any]]:
        try:
            return read_tracking(self.out)
        except (OSError, ValueError, KeyError):
            return []

    def sessions(self) -> dict[str, Session]:
        return read_sessions(self.out)

    def messages(self) -> list[dict[str, Any]]:
        """The scenario's messages (summary.json), then every other message the logs saw: mail an
        outside client (swaks, a test) sent to a live lab appears in the message tracking logs and
        EXO's trace, not in the summary's ledger (messages_from_logs)."""
        msgs = self.summary().get("messages")
        known = [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []
        seen = {str(m.get("message_id", "")) for m in known}
        return known + messages_from_logs(self.tracking(), self.trace(), seen)

    def events(self) -> list[dict[str, Any]]:
        evs = self.summary().get("events")
        return [e for e in evs if isinstance(e, dict)] if isinstance(evs, list) else []

    def stamp(self) -> str:
        """Changes whenever a file the pages show changes (size and time of each): the live pages'
        signal to reload."""
        parts = []
        for p in [self.out / "summary.json", self.out / "queues.json", *log_files(self.out)]:
            try:
                st = p.stat()
            except OSError:
                continue
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
        return str(hash("|".join(parts)) & 0xFFFFFFFF)

    def scenario(self) -> Any:
        """The scenario the marker names (a LoadedScenario), or None when it cannot be found."""
        from ..scenario.loader import load_scenario

        sid = self.marker().get("scenario")
        if not isinstance(sid, str) or not sid:
            return None
        try:
            return load_scenario(sid)
        except LabsimError:
            return None

    # --- one message's path -------------------------------------------------------------------
    def message(self, mid: str) -> MessageView | None:
        msgs = self.messages()
        m = next((x for x in msgs if x.get("id") == mid), None)
        if m is None:
            return None
        view = MessageView(m)
        msgid = str(m.get("message_id", ""))
        others = [str(x.get("message_id", "")) for x in msgs if x is not m and x.get("message_id")]
        view.sessions = sessions_of(m, others, self.sessions())
        view.tracking = [r for r in self.tracking() if msgid and r.get("MessageId") == msgid]
        view.trace = [t for t in self.trace() if msgid and t.get("MessageId") == msgid]
        view.steps = _steps(view)
        view.events = events_along(view.steps, self.events())
        return view


_FATE_OF_EVENT = {"DELIVER": "delivered", "SENDEXTERNAL": "delivered", "FAIL": "failed", "DEFER": "pending",
                  "Delivered": "delivered", "Failed": "failed", "Pending": "pending"}


def messages_from_logs(tracking: list[dict[str, Any]], trace: list[dict[str, Any]],
                       seen: set[str]) -> list[dict[str, Any]]:
    """Messages known only from the tracking logs and EXO's trace, in the summary's shape: id is the
    Message-ID without its brackets, the fate the last telling event (DELIVER/SENDEXTERNAL, FAIL,
    DEFER; EXO's trace status), else `in transit`."""
    found: dict[str, dict[str, Any]] = {}
    for r in tracking:
        mid = str(r.get("MessageId", ""))
        if not mid or mid in seen or r.get("EventId") in ("NOTIFYMAPI", "SUBMITDEFER"):
            continue
        m = found.setdefault(mid, {"id": mid.strip("<>"), "message_id": mid, "from": r.get("Sender", ""), "to": [],
                                   "subject": r.get("MessageSubject", ""), "injected": r.get("Timestamp", ""),
                                   "fate": "in transit", "delivered": [], "failed": [], "pending": [],
                                   "from_logs": True})
        for rcpt in str(r.get("Recipients", "")).split(";"):
            if rcpt and rcpt not in m["to"]:
                m["to"].append(rcpt)
        fate = _FATE_OF_EVENT.get(str(r.get("EventId", "")))
        if fate:
            m["fate"] = fate
            if fate == "failed":
                m["failed"] = [{"server": r.get("Server", ""), "recipient": r.get("Recipients", ""),
                                "reason": r.get("RecipientStatus", "")}]
    for t in trace:
        mid = str(t.get("MessageId", ""))
        if not mid or mid in seen:
            continue
        m = found.setdefault(mid, {"id": mid.strip("<>"), "message_id": mid, "from": t.get("SenderAddress", ""),
                                   "to": [], "subject": t.get("Subject", ""), "injected": t.get("Received", ""),
                                   "fate": "in transit", "delivered": [], "failed": [], "pending": [],
                                   "from_logs": True})
        if t.get("RecipientAddress") and t["RecipientAddress"] not in m["to"]:
            m["to"].append(t["RecipientAddress"])
        if m["fate"] == "in transit":
            m["fate"] = _FATE_OF_EVENT.get(str(t.get("Status", "")), "in transit")
    return sorted(found.values(), key=lambda m: str(m["injected"]))


def events_along(steps: list[Step], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Application log events raised on a server of the message's path while it was on its way
    (from its first step to its last), e.g. the 11022 the Edge raises at each refused retry."""
    if not steps:
        return []
    servers = {s.server for s in steps}
    first, last = steps[0].time[:23], max((s.end or s.time) for s in steps)[:23]
    return [e for e in events if e.get("server") in servers and first <= str(e.get("time", ""))[:23] <= last]


def _addresses(session: Session, verb: str) -> list[str]:
    out = []
    for c in session.commands():
        if c.upper().startswith(verb):
            hit = _ADDRESS.search(c)
            if hit:
                out.append(hit.group(1).lower())
    return out


def sessions_of(m: dict[str, Any], other_ids: list[str], sessions: dict[str, Session]) -> list[Session]:
    """The protocol log sessions that carried (or tried to carry) message `m`.

    A session that names the message's Message-ID (the `250 2.6.0 <id>` acceptance) carried it. A
    session that names no Message-ID but whose MAIL FROM is the message's sender (and whose RCPT
    TO, if any got that far, has one of its recipients' local parts) is an attempt that was refused
    before the data: a deferral's retry, a 454 at MAIL FROM. Sessions that carried another
    message are never counted."""
    msgid = str(m.get("message_id", ""))
    sender = str(m.get("from", "")).lower()
    locals_ = {str(a).split("@", 1)[0].lower() for a in m.get("to", [])}
    found: list[Session] = []
    for s in sessions.values():
        text = " ".join(r.data for r in s.rows)
        if msgid and msgid in text:
            found.append(s)
            continue
        if any(o and o in text for o in other_ids) or "250 2.6.0" in text:
            continue
        if sender and sender in _addresses(s, "MAIL FROM"):
            rcpts = _addresses(s, "RCPT TO")
            if not rcpts or any(r.split("@", 1)[0] in locals_ for r in rcpts):
                found.append(s)
    injected = str(m.get("injected", ""))
    found = [s for s in found if s.first.time >= injected[:19]] if injected else found
    return sorted(found, key=lambda s: (s.first.time, s.key))


def _steps(view: MessageView) -> list[Step]:
    steps: list[Step] = []
    for r in view.tracking:
        status = r.get("RecipientStatus", "")
        steps.append(Step(r.get("Timestamp", ""), r.get("Server", ""), r.get("EventId", ""),
                          r.get("ConnectorId", "") or r.get("Source", ""), status or r.get("ServerHostname", ""),
                          source="tracking", bad=r.get("EventId") in ("DEFER", "FAIL", "HAREDIRECTFAIL")))
    for t in view.trace:
        for e in t.get("Events", []) if isinstance(t.get("Events"), list) else []:
            if isinstance(e, dict):
                steps.append(Step(str(e.get("Date", "")), "EXO", str(e.get("Event", "")),
                                  f"message trace ({t.get('RecipientAddress', '')})", str(e.get("Detail", "")),
                                  source="trace", bad=e.get("Event") in ("Defer", "Fail", "Drop")))
    for s in view.sessions:
        outcome = s.outcome()
        steps.append(Step(s.first.time, s.first.server, "session", s.first.connector, outcome, session=s.key,
                          source="session", bad=outcome[:1] in ("4", "5"), end=s.rows[-1].time))
    steps.sort(key=lambda st: st.time)
    return steps
