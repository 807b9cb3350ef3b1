"""The evidence beyond protocol logs, gathered while the lab runs and written into the output tree.

- message tracking logs per on-prem server (`transport.tracking.OnPremTracker`, MSGTRK/MSGTRKMS/
  MSGTRKMD under `<SERVER>/TransportRoles/Logs/MessageTracking/`);
- EXO's message trace (`engine.trace.ExoTrace`, `EXO/MessageTrace/`);
- queue state: the final Get-Queue / Get-Message view of every server (`queues.json`) and every
  change of every queue (`queue-history.jsonl`, logs/queue_history.py), read by `labsim queue`
  (`--at` replays the changes up to a moment).

Everything is written in a fixed order from data recorded in causal order, so two runs of a
scenario give the same bytes.

Streaming (theory of operation): a run holds only the evidence of mail in flight. The scheduler
runs actions in (virtual time, sequence) order and lets each settle; every row an action causes is
stamped at or after the action's start, because the clock never runs backwards and every session
cursor starts from the clock. Session cursors run ahead of the clock by modelled latencies, so an
action can leave rows stamped after the next action's start, but never before it. So after each
action settles, the rows printed before the next scheduled action's time (the watermark) are
final: no later row can sort before them. `settled()` flushes them, Exchange's way: when a log's
buffer is full or the flush interval has passed (log-formats.md §1.6), and the files come out
byte for byte as one flush at the end would write them. The promise is checked, not assumed:
a log row added below a flushed watermark is counted by its LogStream and reported as a lab error
in the summary (`internal_errors`). The queue history and each server's Application event log
are appended as they change (events come in clock order) and written out on the same tick. In
`up` mode the clock is the wall clock: the live flusher writes every buffered log row each
second, and the tick writes the queue history and events after each action.

The EXO message trace (its CSVs are sorted over all rows and print the run's end in every row)
and the ledger (summary.json) are written at the end, from disk: the trace keeps its rows in a
temporary SQLite database, the ledger its facts in a spool file (docs/performance.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..clock import iso_ms
from ..logs.message_tracking import MessageTrackingLog
from ..logs.queue_history import QUEUE_HISTORY_FILE, QueueHistoryWriter
from ..transport.message import MailItem
from ..transport.queues import (
    EXPIRATION,
    Queue,
    admin_view,
    message_row,
    message_row_inputs,
)
from ..transport.tracking import OnPremTracker
from .eventlog import EventLogWriter
from .queueing import NullTracker
from .trace import ExoTrace

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping

    from ..clock import VirtualClock
    from ..logs.protocol_log import ProtocolLog
    from ..topology.model import Lab
    from .events import LabEvent
    from .queueing import QueueingParty
    from .scheduler import Scheduler


class EvidenceLab(Protocol):
    """What the evidence hub asks of the lab (engine.runtime.LabRuntime): its parties, its clock and
    scheduler (the streaming watermark), its output folder and its registry of log writers."""

    model: Lab
    out: Path
    clock: VirtualClock
    scheduler: Scheduler
    @property
    def servers(self) -> Mapping[str, QueueingParty]: ...

    @property
    def exo(self) -> QueueingParty: ...

    @property
    def internet(self) -> Mapping[str, QueueingParty]: ...

    def ids_for(self, owner: str) -> Any: ...

    def register_log(self, log: ProtocolLog) -> None: ...

    def registered_logs(self) -> list[ProtocolLog]: ...

    def flush_logs(self, before: datetime | None = None) -> list[Path]: ...

QUEUES_FILE = "queues.json"
# Exchange flushes a log's buffer when it is full or its flush interval has passed; the defaults
# (SmtpSendLogBufferSize / SmtpRecvLogBufferSize 524288 bytes, Default*LogFlushInterval 30 s) are
# [UNVERIFIED] in log-formats.md §1.6. Any interval gives the same bytes; these bound the memory.
LOG_BUFFER_BYTES = 524288
LOG_FLUSH_INTERVAL = timedelta(seconds=30)


@dataclass
class _WrittenRows:
    """A queue's Get-Message rows as its history last wrote them (what a reader replays): by
    message number, in order, each with the `message_row_inputs` it was built from, and their
    `admin_view` in the same order (to compare the queue's messages now with)."""

    rows: dict[int, tuple[tuple[Any, ...], dict[str, Any]]]
    view: list[tuple[Any, ...]]


class TrackingHub:
    def __init__(self, lab: EvidenceLab) -> None:
        self.lab = lab
        self._logs: dict[tuple[str, str], MessageTrackingLog] = {}
        self._trackers: dict[str, Any] = {}
        self.trace = ExoTrace(lab)
        self.queue_history = QueueHistoryWriter(lab.out / QUEUE_HISTORY_FILE)
        self.event_logs = EventLogWriter(lab)
        self._flushed_at: datetime | None = None  # the watermark of the last streaming flush
        self._late_reported = 0
        self._written: dict[str, _WrittenRows] = {}  # queue -> its Get-Message rows last written

    def log(self, server: str, prefix: str, version: str) -> MessageTrackingLog:
        key = (server, prefix)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = MessageTrackingLog(self.lab.out, server, prefix, version)  # type: ignore[arg-type]
            self.lab.register_log(log)  # type: ignore[arg-type]  # flushed with the protocol logs
        return log

    def for_party(self, party: QueueingParty) -> Any:
        t = self._trackers.get(party.name)
        if t is None:
            if party.name in self.lab.servers:
                t = OnPremTracker(self, party)
            elif party.name == "EXO":
                t = self.trace
            else:
                t = NullTracker()
            self._trackers[party.name] = t
        return t

    # --- queues ------------------------------------------------------------------------------------
    def queue_snapshot(self, party: QueueingParty, q: Queue) -> None:
        if party.name not in self.lab.servers and party.name != "EXO":
            return
        now = iso_ms(self.lab.clock.now())
        self.queue_history.queue_row(now, party.name, q.row())
        if self.lab.clock.live:
            # `up`: Get-Message rows of the whole queue at every change cost O(queue) each under
            # load (and `--at` is a virtual-time view); the final Get-Message state is kept.
            return
        view = admin_view(q.messages)
        written = self._written.get(q.identity)
        if written is not None and view == written.view:
            return  # what an admin reads did not change: no line (the rows need not be built)
        self._write_messages(now, party.name, q, view, written, party.expirations())

    def _write_messages(self, now: str, server: str, q: Queue, view: list[tuple[Any, ...]],
                        written: _WrittenRows | None, expiration: Callable[[MailItem], datetime]) -> None:
        """The history line of a changed Get-Message view `view`: the line QueueHistoryWriter.
        messages writes when given every message's row, worked out from the rows last written. A
        message whose row inputs are those of its row last written keeps that row; only the others
        are built again (and written when they differ)."""
        kept = written.rows if written is not None else {}
        rows: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        changed: list[dict[str, Any]] = []
        changed_numbers: list[int] = []
        for inp, qm in zip(message_row_inputs(q.messages, view, expiration), q.messages):
            number = inp[0][0]
            before = kept.get(number)
            if before is not None and before[0] == inp:
                row = before[1]
            else:
                row = message_row(q, qm, inp[EXPIRATION])
                if before is None or before[1] != row:
                    changed.append(row)
                    changed_numbers.append(number)
            rows[number] = (inp, row)  # a repeated number keeps its first place and its last row
        left = [row["Identity"] for number, (_, row) in kept.items() if number not in rows]
        # the order a reader replays: the rows kept, then the new ones as the line lists them
        order = [number for number in kept if number in rows]
        known = set(order)
        order += [number for number in changed_numbers if number not in known]
        shown = [row["Identity"] for _, row in rows.values()] if order != list(rows) else None
        if len(rows) != len(view):  # what the reader holds: one row per identity
            view = [inp[0] for inp, _ in rows.values()]
        self._written[q.identity] = _WrittenRows(rows, view)
        self.queue_history.messages_changed(now, server, q.identity, changed, left, shown)

    def event_raised(self, ev: LabEvent) -> None:
        self.event_logs.add(ev)

    # --- streaming -----------------------------------------------------------------------------------
    def settled(self) -> None:
        """After an action settled (run mode): write the evidence no later action can precede."""
        lab = self.lab
        if lab.clock.live:  # `up`: the wall clock; the live flusher writes the logs every second
            self.queue_history.flush()
            self.event_logs.flush()
            return
        watermark = lab.scheduler.next_time()
        if watermark is None:
            return  # the run is over: the final flush writes the rest
        # one pass over the logs (a few dozen, after every action): a full buffer, and the rows
        # added below a flushed watermark (a flush does not change that count)
        full = False
        late = 0
        for log in lab.registered_logs():
            stream = log.stream
            late += stream.late_rows
            if stream.buffered_bytes >= LOG_BUFFER_BYTES:
                full = True
        if full or self._flushed_at is None or watermark - self._flushed_at >= LOG_FLUSH_INTERVAL:
            self._flushed_at = watermark
            lab.flush_logs(before=watermark)
            self.queue_history.flush()
            self.event_logs.flush()
        late += self.event_logs.out_of_order
        if late > self._late_reported:
            lab.scheduler.errors.append(f"evidence: {late - self._late_reported} log row(s) or event(s) stamped "
                                        f"before ones already written (the streaming watermark was broken)")
            self._late_reported = late

    def queue_state(self) -> dict[str, Any]:
        servers: dict[str, Any] = {}
        parties: list[QueueingParty] = [*self.lab.servers.values(), self.lab.exo, *self.lab.internet.values()]
        for party in parties:
            queues, messages = [], []
            for q in party.queues.all() + party.shadow_queues():  # + <SERVER>\Shadow\<n> (engine.shadow)
                queues.append(q.row())
                for qm in q.messages:
                    messages.append(message_row(q, qm, party.expiration_of(qm.item)))
            servers[party.name] = {"queues": queues, "messages": messages,
                                   "admin_visible": party.name in self.lab.servers}
        return {"time": iso_ms(self.lab.clock.now()), "servers": servers, "history_file": QUEUE_HISTORY_FILE}

    def write_outputs(self) -> list[Path]:
        out = self.lab.out
        path = out / QUEUES_FILE
        path.write_text(json.dumps(self.queue_state(), indent=1) + "\n", encoding="utf-8")
        return [path, self.queue_history.close(), *self.trace.write(out)]
