"""Windows Application events the lab's servers raise: the record and the collector.

A server raises an event (`ExchangeServerRuntime.raise_event`); the collector stamps it with the
virtual time, keeps it for summary.json and hands it to the event-log writer (engine.eventlog) as
it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..clock import VirtualClock


@dataclass
class LabEvent:
    """A Windows Application event a server raised (rendered by the event-log writer)."""

    time: datetime
    server: str
    source: str
    event_id: int
    insertion_strings: list[str]


class EventCollector:
    def __init__(self, clock: VirtualClock, sink: Callable[[LabEvent], None] | None = None) -> None:
        self.clock = clock
        self.events: list[LabEvent] = []
        self.sink = sink  # called with each event as it is raised (the event-log writer)

    def add(self, server: str, source: str, event_id: int, strings: list[str]) -> None:
        ev = LabEvent(self.clock.now(), server, source, event_id, list(strings))
        self.events.append(ev)
        if self.sink is not None:
            self.sink(ev)
