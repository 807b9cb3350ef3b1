"""The queue history of a run as a change log: `queue-history.jsonl`, written as the queues change.

`labsim queue --at` shows Get-Queue / Get-Message at any moment of a run and `--history` every
change of every queue. Instead of a snapshot of each queue's whole message list at every change
(which grows with the square of the mail), the lab appends one JSON line per change, in the order
the changes happened (virtual time never runs backwards):

- `{"Time": t, "Server": s, "Queue": {Get-Queue row}}` - a queue's Get-Queue row changed;
- `{"Time": t, "Server": s, "Messages": queue, "Set": [Get-Message rows], "Left": [identities]}` -
  what an admin reads in the queue's Get-Message view changed: `Set` holds the rows of messages
  that entered (appended) or changed (replaced in place), `Left` the identities of messages that
  left. `Order` (a list of identities) appears only if the queue's order is not the one these
  rules give (the lab only appends and removes, so it should never appear).

Replaying the lines up to a moment gives exactly the Get-Message view an admin would have seen
then; the writer keeps only the current rows of each queue (mail in flight). `QueueHistoryReader`
is the replay, used by `labsim queue`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

QUEUE_HISTORY_FILE = "queue-history.jsonl"

__all__ = ["QUEUE_HISTORY_FILE", "QueueHistoryWriter", "read_lines", "queue_history", "messages_at"]


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(line, separators=...) without a new encoder a line
_STR = json.encoder.encode_basestring_ascii  # a str as _ENCODE writes it (ensure_ascii)
ROW_TEXTS = 4096  # Get-Queue rows whose JSON is kept (cleared when full: retry times make new rows)


class QueueHistoryWriter:
    """Appends the changes of every queue to one JSON Lines file (opened on the first change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        self._opened = False  # a second open (a change after close, in `up`) appends
        self._last_row: dict[str, tuple[Any, ...]] = {}
        self._row_texts: dict[tuple[Any, ...], str] = {}  # a Get-Queue row's names and values -> its JSON
        self._rows: dict[str, dict[str, dict[str, Any]]] = {}  # queue -> identity -> Get-Message row
        self._views: dict[str, tuple[Any, ...]] = {}  # queue -> _admin_view of its rows last written

    def _write(self, line: dict[str, Any]) -> None:
        self._write_text(_ENCODE(line))

    def _write_text(self, text: str) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a" if self._opened else "w", encoding="utf-8")
            self._opened = True
        self._fh.write(text + "\n")

    def queue_row(self, now: str, server: str, row: dict[str, Any]) -> None:
        """Record a queue's Get-Queue row if it differs from the last one recorded."""
        sig = tuple(row.values())
        if self._last_row.get(row["Identity"]) == sig:
            return
        self._last_row[row["Identity"]] = sig
        # A queue's rows come back (Ready/Active with the same count, again and again): each one's
        # JSON is kept by its names, values and the values' types (True == 1 and 1 == 1.0 in a key,
        # not in JSON).
        key = (tuple(row), sig, tuple(map(type, sig)))
        text = self._row_texts.get(key)
        if text is None:
            if len(self._row_texts) >= ROW_TEXTS:
                self._row_texts.clear()
            text = self._row_texts[key] = _ENCODE(row)
        self._write_text(f'{{"Time":{_STR(now)},"Server":{_STR(server)},"Queue":{text}}}')

    def messages(self, now: str, server: str, queue: str, rows: list[dict[str, Any]],
                 view: tuple[Any, ...] | None = None) -> None:
        """Record a queue's Get-Message rows if what an admin reads changed (not every RetryCount).

        `view`: the rows' `_admin_view` when the caller has it already. The rows are kept as given
        (the next call compares with them), so a caller passes a row again only unchanged: then
        it is the kept object itself, and the comparison stops at its identity."""
        last = self._rows.get(queue)
        if view is None:
            view = _admin_view(rows)
        if last is not None and self._views[queue] == view:
            return
        last = last if last is not None else {}
        current = {r["Identity"]: r for r in rows}
        changed = [r for r in rows if (before := last.get(r["Identity"])) is not r and before != r]
        left = [i for i in last if i not in current]
        replayed = _replayed_order(list(last), changed, left) == list(current)
        self._rows[queue] = current
        # one row per identity (a repeated one keeps its first place and its last row, as `current`)
        self._views[queue] = view if len(current) == len(rows) else _admin_view(current.values())
        self.messages_changed(now, server, queue, changed, left, None if replayed else list(current))

    def messages_changed(self, now: str, server: str, queue: str, changed: list[dict[str, Any]],
                         left: list[str], order: list[str] | None = None) -> None:
        """Record a change of a queue's Get-Message rows that the caller worked out itself (engine.
        evidence keeps the rows it last wrote): the rows that entered or changed, the identities
        that left, and the whole order when replaying would not give it. The line `messages` writes
        for the same change; a queue is recorded through one of the two, never both."""
        line: dict[str, Any] = {"Time": now, "Server": server, "Messages": queue, "Set": changed, "Left": left}
        if order is not None:
            line["Order"] = order
        self._write(line)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> Path:
        """Close the file (an empty one when no queue ever changed) and return its path."""
        if not self._opened:
            self._write_empty()
        elif self._fh is not None:
            self._fh.close()
            self._fh = None
        return self.path

    def _write_empty(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")


def _admin_view(rows: Any) -> tuple[Any, ...]:
    return tuple((m["Identity"], m["Status"], m["LastError"], tuple(m["Recipients"])) for m in rows)


def _replayed_order(before: list[str], changed: list[dict[str, Any]], left: list[str]) -> list[str]:
    gone = set(left)
    order = [i for i in before if i not in gone]
    known = set(order)
    order += [r["Identity"] for r in changed if r["Identity"] not in known]
    return order


# --- reading -------------------------------------------------------------------------------------
def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The change lines of a history file, in order (a missing file has none)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def queue_history(lines: Iterator[dict[str, Any]], servers: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every Get-Queue row change of `servers` (default: all), in order, as `{"Time", "Server", **row}`."""
    for line in lines:
        if "Queue" in line and (servers is None or line["Server"] in servers):
            yield {"Time": line["Time"], "Server": line["Server"], **line["Queue"]}


def messages_at(lines: Iterator[dict[str, Any]], servers: set[str], at: datetime) -> list[dict[str, Any]]:
    """Get-Message of `servers` at `at`: every queue's rows as last recorded, queues in the order
    they were first recorded."""
    state: dict[str, dict[str, dict[str, Any]]] = {}
    for line in lines:
        if "Messages" not in line or line["Server"] not in servers or _time(line["Time"]) > at:
            continue
        rows = state.setdefault(line["Messages"], {})
        for identity in line["Left"]:
            rows.pop(identity, None)
        for r in line["Set"]:
            rows[r["Identity"]] = r
        if "Order" in line:
            state[line["Messages"]] = {i: rows[i] for i in line["Order"]}
    return [r for rows in state.values() for r in rows.values()]
