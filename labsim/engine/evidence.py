"""The evidence beyond protocol logs, gathered while the lab runs and written into the output tree.

- message tracking logs per on-prem server (`transport.tracking.OnPremTracker`, MSGTRK/MSGTRKMS/
  MSGTRKMD under `<SERVER>/TransportRoles/Logs/MessageTracking/`);
- EXO's message trace (`engine.trace.ExoTrace`, `EXO/MessageTrace/`);
- queue state: the final Get-Queue / Get-Message view of every server and a snapshot of each
  queue at every change (`queues.json`, read by `labsim queue`, `--at` picks a moment).

Everything is written in a fixed order from data recorded in causal order, so two runs of a
scenario give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import iso_ms
from ..logs.message_tracking import MessageTrackingLog
from ..transport.queues import Queue, message_row
from ..transport.tracking import OnPremTracker
from .queueing import NullTracker
from .trace import ExoTrace

if TYPE_CHECKING:  # pragma: no cover
    from .queueing import QueueingParty
    from .runtime import LabRuntime

QUEUES_FILE = "queues.json"


class TrackingHub:
    def __init__(self, lab: "LabRuntime") -> None:
        self.lab = lab
        self._logs: dict[tuple[str, str], MessageTrackingLog] = {}
        self._trackers: dict[str, Any] = {}
        self.trace = ExoTrace(lab)
        self.history: list[dict[str, Any]] = []
        self.message_history: list[dict[str, Any]] = []  # Get-Message of a queue at each change
        self._last: dict[str, tuple] = {}
        self._last_messages: dict[str, tuple] = {}

    def log(self, server: str, prefix: str, version: str) -> MessageTrackingLog:
        key = (server, prefix)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = MessageTrackingLog(self.lab.out, server, prefix, version)  # type: ignore[arg-type]
            self.lab.register_log(log)  # type: ignore[arg-type]  # flushed with the protocol logs
        return log

    def for_party(self, party: "QueueingParty") -> Any:
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
    def queue_snapshot(self, party: "QueueingParty", q: Queue) -> None:
        if party.name not in self.lab.servers and party.name != "EXO":
            return
        row = q.row()
        now = iso_ms(self.lab.clock.now())
        sig = tuple(row.values())
        if self._last.get(q.identity) != sig:
            self._last[q.identity] = sig
            self.history.append({"Time": now, "Server": party.name, **row})
        if getattr(self.lab, "live", False):
            # `up`: a Get-Message snapshot per change grows with the square of the queue length
            # under load (and `--at` is a virtual-time view); the final Get-Message state is kept.
            return
        messages = [message_row(q, qm, party.expiration_of(qm.item)) for qm in q.messages]
        # Get-Message rows only when something an admin reads changed (not every RetryCount).
        msig = tuple((m["Identity"], m["Status"], m["LastError"], tuple(m["Recipients"])) for m in messages)
        if self._last_messages.get(q.identity) != msig:
            self._last_messages[q.identity] = msig
            self.message_history.append({"Time": now, "Server": party.name, "Queue": q.identity,
                                         "Messages": messages})

    def queue_state(self) -> dict[str, Any]:
        servers: dict[str, Any] = {}
        parties: list[QueueingParty] = [*self.lab.servers.values(), self.lab.exo, *self.lab.internet.values()]
        for party in parties:
            queues, messages = [], []
            for q in party.queues.all():
                queues.append(q.row())
                for qm in q.messages:
                    messages.append(message_row(q, qm, party.expiration_of(qm.item)))
            servers[party.name] = {"queues": queues, "messages": messages,
                                   "admin_visible": party.name in self.lab.servers}
        return {"time": iso_ms(self.lab.clock.now()), "servers": servers, "history": self.history,
                "message_history": self.message_history}

    def write_outputs(self) -> list[Path]:
        out = self.lab.out
        path = out / QUEUES_FILE
        path.write_text(json.dumps(self.queue_state(), indent=1) + "\n", encoding="utf-8")
        return [path, *self.trace.write(out)]
