"""When each transport process writes its routing table log (logs.routing_log writes the bytes).

Exchange's RoutingTablesLoader [V-RT, docs/transport-logs.md §5]: a process loads (and logs) its
routing tables when it starts; an AD change it is notified of schedules a reload after
max(DeferredReloadTimeout 5 s, the last load + MinConfigReloadInterval 5 min), each further change
moving it again; a timer reloads every ConfigReloadInterval (12 h) after the last load. Every load
writes a file, `#n` counting the process's loads from 1 (a restarted service is a new process).

The lab calls `refresh` when it starts and after every timeline step (a cmdlet or an operation such
as Restart-Service), and `finish` at the end of a run. Between two calls the topology cannot change,
so the loads that fell due in between are written then, from the content as it was: no timer enters
the scheduler, and a run ends when it would have without this log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..logs.routing_log import (
    CONFIG_RELOAD_INTERVAL,
    DEFERRED_RELOAD,
    MIN_CONFIG_RELOAD_INTERVAL,
    RoutingProcess,
    routing_config_xml,
    routing_log_folder,
    routing_log_name,
    routing_processes,
    routing_signature,
)
from ..topology.model import ExchangeServer, Organization
from .services import ServiceState, edge_view, is_running

__all__ = ["RoutingTableLogs"]


@dataclass
class _Loaded:
    number: int  # the process's last file number (RoutingTableLogFileManager.sequenceNumber)
    last_load: datetime
    signature: str
    content: bytes
    pending: datetime | None = None  # a reload an AD change scheduled


class RoutingTableLogs:
    def __init__(self, out: Path, start: datetime) -> None:
        self.out = out
        self.start = start  # the lab's start: the AD objects' WhenCreated derives from it
        self._procs: dict[RoutingProcess, _Loaded] = {}
        self.written: list[Path] = []

    def refresh(self, org: Organization, now: datetime, state: ServiceState) -> None:
        """The lab as it is at `now`: processes that started load, a changed topology schedules a reload."""
        self._catch_up(now, pending_too=False)
        alive = set()
        for proc in routing_processes(org):
            server = org.server(proc.server)
            if not is_running(server, proc.service):
                continue
            alive.add(proc)
            seen = _seen_by(org, server, state)
            signature = routing_signature(seen, proc)
            loaded = self._procs.get(proc)
            if loaded is None:  # the service (re)started: a new process, its first load
                loaded = self._procs[proc] = _Loaded(0, now, signature, routing_config_xml(seen, proc, self.start))
                self._write(proc, loaded, now)
            elif signature != loaded.signature:
                loaded.signature = signature
                loaded.content = routing_config_xml(seen, proc, self.start)
                loaded.pending = max(now + DEFERRED_RELOAD, loaded.last_load + MIN_CONFIG_RELOAD_INTERVAL)
        for proc in [p for p in self._procs if p not in alive]:
            del self._procs[proc]  # stopped: its timer and notifications end with the process

    def stopped(self, server: str, service: str, now: datetime) -> None:
        """A service stopped (Stop-Service, the stop of Restart-Service): its processes end."""
        self._catch_up(now, pending_too=False)
        for proc in [p for p in self._procs if p.server.lower() == server.lower() and p.service == service]:
            del self._procs[proc]

    def finish(self, now: datetime) -> None:
        """The end of a run: the periodic loads up to `now`, and a reload a change already scheduled."""
        self._catch_up(now, pending_too=True)

    def _catch_up(self, now: datetime, *, pending_too: bool) -> None:
        due: list[tuple[datetime, int, RoutingProcess]] = []
        order = {p: i for i, p in enumerate(self._procs)}
        while True:
            due.clear()
            for proc, loaded in self._procs.items():
                periodic = loaded.last_load + CONFIG_RELOAD_INTERVAL
                nxt = min(periodic, loaded.pending) if loaded.pending is not None else periodic
                if nxt < now or (pending_too and loaded.pending is not None and nxt == loaded.pending):
                    due.append((nxt, order[proc], proc))
            if not due:
                return
            when, _, proc = min(due)
            self._write(proc, self._procs[proc], when)

    def _write(self, proc: RoutingProcess, loaded: _Loaded, when: datetime) -> None:
        loaded.number += 1
        loaded.last_load, loaded.pending = when, None
        folder = self.out / routing_log_folder(proc)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / routing_log_name(proc.role, loaded.number, when)
        path.write_bytes(loaded.content)
        self.written.append(path)


def _seen_by(org: Organization, server: ExchangeServer, state: ServiceState) -> Organization:
    """What the process loads: AD on a Mailbox server; on an Edge its AD LDS copy (engine.services
    edge_view: live while EdgeSync works, frozen when it broke), which holds no Mailbox server
    without a subscription."""
    seen = edge_view(org, server, state)
    es = state.edges.get(server.name.lower())
    if server.role == "Edge" and es is not None and not es.subscribed and es.snapshot is None:
        seen = seen.model_copy(update={"servers": [server]})
    return seen
