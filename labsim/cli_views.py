"""`labsim queue`, `labsim track`, `labsim trace`: the admin's views over a finished run's output tree.

They read only what the run wrote (queues.json, queue-history.jsonl, the message tracking logs,
EXO/MessageTrace/trace.json), never the live lab, so they work on any output tree, copied or
archived. Filters follow the cmdlets they imitate:

- `queue` ~ Get-Queue / Get-Message (`--messages`), `--at` for the state at a moment of the run
  (replayed from the change log, logs/queue_history.py), `--history` for every change;
- `track` ~ Get-MessageTrackingLog: -Server, -Sender, -Recipients, -EventId, -MessageSubject
  (substring), -MessageId, -InternalMessageId, -Start, -End;
- `trace` ~ Get-MessageTrace (-SenderAddress, -RecipientAddress, -Status, -MessageId) and
  `--detail` ~ Get-MessageTraceDetail (-MessageTraceId, -RecipientAddress).

Output is a table sized for the terminal, `--csv` (Export-Csv -NoTypeInformation style) or `--json`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from .clock import us_time
from .errors import InputError
from .logs.message_tracking import TRACK_PROPERTIES, read_tracking
from .logs.queue_history import (
    QUEUE_HISTORY_FILE,
    messages_at,
    queue_history,
    read_lines,
)

QUEUE_TABLE = ("Identity", "DeliveryType", "Status", "MessageCount", "NextHopDomain", "LastError")
MESSAGE_TABLE = ("Identity", "FromAddress", "Status", "Size", "Recipients", "LastError")
# Get-MessageTrackingLog property names, in the order of the log's fields.
TRACK_TABLE = ("Timestamp", "Server", "EventId", "Source", "Sender", "Recipients", "MessageSubject", "RecipientStatus")


# --- shared helpers ----------------------------------------------------------------------------------
def _out_dir(path: str) -> Path:
    out = Path(path)
    if not out.is_dir():
        raise InputError(path, "not an output folder of `labsim run` (no such directory)")
    return out


def parse_moment(text: str, start: datetime) -> datetime:
    """`2026-05-04T12:00:00Z`, or `+04:00:00` / `+1.02:00:00` after the run's start."""
    t = text.strip()
    if t.startswith("+"):
        from .topology.timespec import parse_timespan

        try:
            return start + parse_timespan(t)
        except ValueError as exc:
            raise InputError(t, str(exc)) from None
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(t, "not a time (use 2026-05-04T12:00:00Z or +hh:mm:ss after the start)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def render_table(rows: list[dict[str, Any]], columns: Iterable[str], *, width: int | None = None) -> str:
    """A plain table; long columns are cut to fit the terminal (`…` marks a cut)."""
    cols = list(columns)
    if not rows:
        return "(nothing)\n"
    cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    total = width or shutil.get_terminal_size((160, 40)).columns
    while sum(widths) + 2 * (len(widths) - 1) > total and max(widths) > 12:
        i = widths.index(max(widths))
        widths[i] -= 1
    lines = ["  ".join(c.ljust(widths[i])[:widths[i]] for i, c in enumerate(cols)).rstrip(),
             "  ".join("-" * widths[i] for i in range(len(cols)))]
    for row in cells:
        lines.append("  ".join(_fit(v, widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return str(v)


def _fit(v: str, w: int) -> str:
    return v.ljust(w) if len(v) <= w else v[: w - 1] + "…"


def export_csv(rows: list[dict[str, Any]], columns: Iterable[str]) -> str:
    cols = list(columns)
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c, "")) for c in cols])
    return buf.getvalue()


def print_json(rows: list[dict[str, Any]]) -> int:
    """`--json`: the rows as a JSON array of objects with every property (ConvertTo-Json style)."""
    print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], indent=1,
                     ensure_ascii=False))
    return 0


# --- labsim queue --------------------------------------------------------------------------------------
def load_queues(out: Path) -> dict[str, Any]:
    """queues.json (the final state), with `_out` set so the history can be read beside it."""
    path = out / "queues.json"
    if not path.is_file():
        raise InputError(str(out), "no queues.json (is this the output folder of a `labsim run`?)")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data["_out"] = str(out)
    return data


def _history_lines(data: dict[str, Any]) -> Iterable[dict[str, Any]]:
    return read_lines(Path(data["_out"]) / data.get("history_file", QUEUE_HISTORY_FILE))


def _queue_history(data: dict[str, Any], servers: list[str]) -> Iterable[dict[str, Any]]:
    if "history" in data:  # an output tree of an earlier labsim: snapshots inside queues.json
        return (h for h in data["history"] if h["Server"] in servers)
    return queue_history(iter(_history_lines(data)), set(servers))


def _servers(data: dict[str, Any], server: str | None) -> list[str]:
    names = list(data["servers"])
    if server is None:
        return [n for n in names if data["servers"][n].get("admin_visible", True)]
    hit = [n for n in names if n.lower() == server.lower()]
    if not hit:
        raise InputError(server, f"no server with this name in the run (servers: {', '.join(names)})")
    return hit


def _visible(row: dict[str, Any], show_all: bool) -> bool:
    """Get-Queue lists the persistent queues (Poison only when not empty), live delivery queues and
    the shadow queues (`<SERVER>\\Shadow\\<n>`, listed empty as the shell's Get-Queue does: engine.shadow)."""
    name = row["Identity"].split("\\", 1)[1]
    if show_all or row["MessageCount"]:
        return True
    return name in ("Submission", "Unreachable") or name.startswith("Shadow\\")


def queue_rows(data: dict[str, Any], *, server: str | None = None, at: datetime | None = None,
               show_all: bool = False) -> list[dict[str, Any]]:
    servers = _servers(data, server)
    if at is None:
        rows = [q for s in servers for q in data["servers"][s]["queues"]]
    else:
        latest: dict[str, dict[str, Any]] = {}
        for snap in _queue_history(data, servers):
            if _iso(snap["Time"]) <= at:
                latest[snap["Identity"]] = snap
        rows = list(latest.values())
        known = {r["Identity"] for r in rows}
        for s in servers:  # the persistent queues exist from the start
            for q in data["servers"][s]["queues"]:
                if q["Identity"] not in known and q["Identity"].split("\\", 1)[1] in ("Submission", "Unreachable"):
                    rows.append({**q, "MessageCount": 0, "Status": "Ready", "LastError": ""})
    return [r for r in rows if _visible(r, show_all)]


def message_rows(data: dict[str, Any], *, server: str | None = None, queue: str | None = None,
                 at: datetime | None = None) -> list[dict[str, Any]]:
    servers = _servers(data, server)
    if at is None:
        rows = [m for s in servers for m in data["servers"][s]["messages"]]
    elif "message_history" in data:  # an output tree of an earlier labsim
        latest: dict[str, list[dict[str, Any]]] = {}
        for snap in data["message_history"]:
            if snap["Server"] in servers and _iso(snap["Time"]) <= at:
                latest[snap["Queue"]] = snap["Messages"]
        rows = [m for msgs in latest.values() for m in msgs]
    else:
        rows = messages_at(iter(_history_lines(data)), set(servers), at)
    if queue:
        rows = [m for m in rows if m["Queue"].lower() == queue.lower()]
    return rows


def cmd_queue(args: argparse.Namespace) -> int:
    out = _out_dir(args.out)
    data = load_queues(out)
    if args.history:
        rows = list(_queue_history(data, _servers(data, args.server)))
        cols = ("Time", "Identity", "Status", "MessageCount", "NextRetryTime", "LastError")
    elif args.messages:
        at = parse_moment(args.at, _run_start(out)) if args.at else None
        rows = message_rows(data, server=args.server, queue=args.queue, at=at)
        cols = MESSAGE_TABLE
    else:
        at = parse_moment(args.at, _run_start(out)) if args.at else None
        rows = queue_rows(data, server=args.server, at=at, show_all=args.all)
        cols = QUEUE_TABLE
    if args.json:
        return print_json(rows)
    if args.csv:
        full = list(rows[0].keys()) if rows else list(cols)
        print(export_csv(rows, full), end="")
    else:
        print(render_table(rows, cols), end="")
    return 0


# --- labsim track --------------------------------------------------------------------------------------
def filter_tracking(rows: list[dict[str, Any]], *, server: str | None = None, sender: str | None = None,
                    recipients: list[str] | None = None, event_id: str | None = None, subject: str | None = None,
                    message_id: str | None = None, internal_message_id: str | None = None,
                    start: datetime | None = None, end: datetime | None = None,
                    source: str | None = None) -> list[dict[str, Any]]:
    out = []
    want_rcpts = {r.lower() for r in recipients or []}
    for r in rows:
        if server and r["Server"].lower() != server.lower():
            continue
        if sender and r["Sender"].lower() != sender.lower():
            continue
        if want_rcpts and not want_rcpts & {x.lower() for x in r["Recipients"].split(";") if x}:
            continue
        if event_id and r["EventId"].lower() != event_id.lower():
            continue
        if source and r["Source"].lower() != source.lower():
            continue
        if subject and subject.lower() not in r["MessageSubject"].lower():
            continue
        if message_id and r["MessageId"].strip("<>").lower() != message_id.strip("<>").lower():
            continue
        if internal_message_id and r["InternalMessageId"] != internal_message_id:
            continue
        t = _iso(r["Timestamp"])
        if start and t < start:
            continue
        if end and t >= end:  # -End is exclusive, as in Get-MessageTrackingLog
            continue
        out.append(r)
    return out


def cmd_track(args: argparse.Namespace) -> int:
    out = _out_dir(args.out)
    start_of_run = _run_start(out)
    rows = filter_tracking(
        read_tracking(out), server=args.server, sender=args.sender, recipients=args.recipients,
        event_id=args.event_id, subject=args.subject, message_id=args.message_id,
        internal_message_id=args.internal_message_id, source=args.source,
        start=parse_moment(args.start, start_of_run) if args.start else None,
        end=parse_moment(args.end, start_of_run) if args.end else None)
    if args.json:  # scripts get the log's ISO date-time
        return print_json(rows)
    # Get-MessageTrackingLog returns Timestamp as a DateTime, which PowerShell prints (and Export-Csv
    # writes) in the shell's culture: `5/1/2026 6:00:05 AM` in en-US, as `labsim trace` prints
    # Received. The log file keeps its ISO date-time in UTC; the cmdlet converts it to the shell's
    # time zone (Learn, Get-MessageTrackingLog; the lab's shell runs on UTC). docs/web-view.md.
    rows = [{**r, "Timestamp": us_time(_iso(r["Timestamp"]))} for r in rows]
    if args.csv:
        print(export_csv(rows, ["Server", *TRACK_PROPERTIES.values()]), end="")
    else:
        print(render_table(rows, TRACK_TABLE), end="")
    return 0


def _run_start(out: Path) -> datetime:
    path = out / "summary.json"
    if path.is_file():
        return _iso(json.loads(path.read_text(encoding="utf-8"))["start"])
    return datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- labsim trace --------------------------------------------------------------------------------------
def load_trace(out: Path) -> dict[str, Any]:
    path = out / "EXO" / "MessageTrace" / "trace.json"
    if not path.is_file():
        raise InputError(str(out), "no EXO/MessageTrace/trace.json (is this the output folder of a `labsim run`?)")
    return json.loads(path.read_text(encoding="utf-8"))


def cmd_trace(args: argparse.Namespace) -> int:
    from .engine.trace import DETAIL_COLUMNS, TRACE_COLUMNS, detail_rows, trace_rows

    data = load_trace(_out_dir(args.out))
    cols: tuple[str, ...]
    table: tuple[str, ...]
    if args.v2:
        rows, cols, table = _trace_v2(data, args)
    elif args.detail:
        rows = detail_rows(data, trace_id=args.message_trace_id, recipient=args.recipient)
        cols = DETAIL_COLUMNS
        table = ("Date", "Event", "MessageId", "RecipientAddress", "Detail")
    else:
        rows = trace_rows(data, sender=args.sender, recipient=args.recipient, status=args.status,
                          message_id=args.message_id)
        cols = TRACE_COLUMNS
        table = ("Received", "SenderAddress", "RecipientAddress", "Subject", "Status", "MessageTraceId")
    if args.json:
        return print_json(rows)
    if args.csv:
        print(export_csv(rows, cols), end="")
    else:
        print(render_table(rows, table), end="")
    return 0


def _trace_v2(data: dict[str, Any], args: argparse.Namespace) -> tuple[list[dict[str, Any]], tuple[str, ...],
                                                                        tuple[str, ...]]:
    """`labsim trace --v2`: Get-MessageTraceV2 / Get-MessageTraceDetailV2 (engine.trace_v2)."""
    from .engine.trace_v2 import (
        DETAIL_V2_COLUMNS,
        SUBJECT_FILTER_TYPES,
        TRACE_V2_COLUMNS,
        detail_v2_rows,
        trace_v2_rows,
    )

    if args.detail:
        return (detail_v2_rows(data, trace_id=args.message_trace_id, recipient=args.recipient), DETAIL_V2_COLUMNS,
                ("Date", "Event", "MessageId", "RecipientAddress", "Detail"))
    how = next((t for t in SUBJECT_FILTER_TYPES if t.lower() == (args.subject_filter_type or "Contains").lower()), None)
    if how is None:
        raise InputError("--subject-filter-type", f"{args.subject_filter_type!r} is not one of "
                                                  f"{', '.join(SUBJECT_FILTER_TYPES)}")
    rows = trace_v2_rows(data, sender=args.sender, recipient=args.recipient, status=args.status,
                         message_id=args.message_id, subject=args.subject, subject_filter_type=how)
    return rows, TRACE_V2_COLUMNS, ("Received", "SenderAddress", "RecipientAddress", "Subject", "Status")


# --- argparse ------------------------------------------------------------------------------------------
def add_parsers(sub: Any) -> None:
    sp = sub.add_parser("queue", help="Get-Queue / Get-Message over a run's output (finished or live)")
    sp.add_argument("out", help="output folder of `labsim run` or `labsim up`")
    sp.add_argument("--server", help="one server (default: every on-prem transport server)")
    sp.add_argument("--messages", action="store_true", help="Get-Message: the messages in the queues")
    sp.add_argument("--queue", help="with --messages: one queue (SERVER\\Queue)")
    sp.add_argument("--at", help="the queues at a moment: 2026-05-04T12:00:00Z or +hh:mm:ss after the start")
    sp.add_argument("--history", action="store_true", help="every change of every queue, in order")
    sp.add_argument("--all", action="store_true", help="also empty delivery queues")
    sp.add_argument("--csv", action="store_true", help="CSV with every property (Export-Csv style)")
    sp.set_defaults(fn=cmd_queue)

    sp = sub.add_parser("track", help="Get-MessageTrackingLog over a run's output (finished or live)")
    sp.add_argument("out", help="output folder of `labsim run` or `labsim up`")
    sp.add_argument("--server", help="one server's logs (-Server)")
    sp.add_argument("--sender", help="the sender address (-Sender)")
    sp.add_argument("--recipients", nargs="+", metavar="ADDRESS", help="any of these recipients (-Recipients)")
    sp.add_argument("--event-id", help="RECEIVE, SEND, SENDEXTERNAL, DELIVER, DEFER, FAIL, DSN, ...")
    sp.add_argument("--source", help="SMTP, STOREDRIVER, AGENT, DSN, QUEUE, ROUTING, ADMIN")
    sp.add_argument("--subject", help="part of the subject (-MessageSubject)")
    sp.add_argument("--message-id", help="the Message-ID header, with or without <> (-MessageId)")
    sp.add_argument("--internal-message-id", help="one server's InternalMessageId (-InternalMessageId)")
    sp.add_argument("--start", help="2026-05-04T08:00:00Z or +hh:mm:ss after the start")
    sp.add_argument("--end", help="exclusive, like -End")
    sp.add_argument("--csv", action="store_true", help="CSV with every property (Export-Csv style)")
    sp.set_defaults(fn=cmd_track)

    sp = sub.add_parser("trace", help="EXO Get-MessageTrace / Get-MessageTraceDetail over a run's output "
                                      "(finished or live)")
    sp.add_argument("out", help="output folder of `labsim run` or `labsim up`")
    sp.add_argument("--sender", help="the sender address (-SenderAddress)")
    sp.add_argument("--recipient", help="the recipient address (-RecipientAddress)")
    sp.add_argument("--status", help="Delivered, Failed, Pending, GettingStatus")
    sp.add_argument("--message-id", help="the Message-ID header (-MessageId)")
    sp.add_argument("--detail", action="store_true", help="Get-MessageTraceDetail")
    sp.add_argument("--message-trace-id", help="with --detail: one message")
    sp.add_argument("--csv", action="store_true", help="CSV (Export-Csv style)")
    sp.add_argument("--v2", action="store_true", help="Get-MessageTraceV2 / Get-MessageTraceDetailV2 columns")
    sp.add_argument("--subject", help="with --v2: part of the subject (-Subject)")
    sp.add_argument("--subject-filter-type", help="with --v2 --subject: Contains (default), StartsWith, EndsWith")
    sp.set_defaults(fn=cmd_trace)

    # --json on the views (api): every property of every row, for scripts
    for name in ("queue", "track", "trace"):
        sub.choices[name].add_argument("--json", action="store_true",
                                       help="a JSON array with every property of every row (for scripts)")
