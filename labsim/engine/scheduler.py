"""The scheduler of actions on virtual time.

Run mode: take the earliest action (by time, then insertion order), move the clock there, run it
to completion, wait until everything it caused on the network has settled (every server session
it opened has closed), then take the next. Consequences that Exchange performs later (the next
hop, a retry in 10 minutes) are new actions, not inline awaits. That makes the order of all work,
and so every timestamp and id, a function of the scenario and seed alone.

Live mode: the same queue, but each action waits for its wall-clock time.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Awaitable, Callable, Iterator

from ..clock import VirtualClock

# The cyclic collector's youngest generation is collected after this many new container objects
# (Python's default is 700). A run allocates millions of short-lived containers (log rows, replies,
# asyncio handles) while holding a large live lab, and each young collection also walks the big
# containers made since the last one. Measured with gc.callbacks on 1,000-message gen_traffic runs:
# at 700 the collector took 0.8-0.9 s of 11-22 s of CPU (up to 2.8 s on a loaded machine), at 5,000
# 0.3-0.5 s with the same peak RSS; 10,000 saved no more and added ~15 MB of RSS (one per second).
RUN_GC_THRESHOLD = (5_000, 10, 10)


@contextmanager
def batch_collector() -> Iterator[None]:
    """Collect cyclic garbage less often while a run lasts (the old thresholds come back after).
    Refcounting frees almost everything at once anyway; output never depends on when the
    collector runs (nothing in the lab has a finaliser that writes)."""
    old = gc.get_threshold()
    gc.set_threshold(*RUN_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*old)


@dataclass(order=True, slots=True)
class _Entry:
    when: datetime
    seq: int
    label: str = field(compare=False)
    fn: Callable[[], Awaitable[None]] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)  # skipped without moving the clock
    then: Iterator[_Entry] | None = field(default=None, compare=False)  # the next of a series (call_in_turn)


class Scheduler:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        # (when, seq, entry): the heap compares the first two in C (seq is unique, so never an entry)
        self._heap: list[tuple[datetime, int, _Entry]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self.executed = 0
        self.errors: list[str] = []  # actions that raised: a lab bug, reported in the summary

    def call_at(self, when: datetime, label: str, fn: Callable[[], Awaitable[None]]) -> _Entry:
        """Schedule `fn`; the returned entry can be `cancel`led (a timer that became moot)."""
        entry = _Entry(max(when, self.clock.now()) if not self.clock.live else when, next(self._seq), label, fn)
        heapq.heappush(self._heap, (entry.when, entry.seq, entry))
        self._wake.set()
        return entry

    def call_in_turn(self, count: int, entries: Callable[[int], Iterator[tuple[datetime, int, str,
                                                                         Callable[[], Awaitable[None]]]]]) -> None:
        """Schedule a series of `count` actions as `count` call_at calls made now would, without
        holding them all: `entries(first)` yields (when, seq, label, fn) sorted by (when, seq), with
        seq in first..first+count-1 (the order the calls would have been made in) and `when` no
        earlier than now; the next enters the queue only when the one before it is taken, so the
        order of all work is the same as with `count` calls (a scenario's 50,000 messages)."""
        if count <= 0:
            return
        first = next(self._seq)
        self._seq = itertools.count(first + count)
        series = (_Entry(when, seq, label, fn) for when, seq, label, fn in entries(first))
        self._push_next(series)

    def _push_next(self, series: Iterator[_Entry]) -> None:
        entry = next(series, None)
        if entry is not None:
            entry.then = series
            heapq.heappush(self._heap, (entry.when, entry.seq, entry))
            self._wake.set()

    @staticmethod
    def cancel(entry: _Entry) -> None:
        entry.cancelled = True

    def pending(self) -> int:
        return len(self._heap)

    def next_time(self) -> datetime | None:
        return self._heap[0][0] if self._heap else None

    async def run(self, settle: Callable[[], Awaitable[None]], *, until: datetime | None = None,
                  stop: asyncio.Event | None = None) -> None:
        while True:
            if stop is not None and stop.is_set():
                return
            if not self._heap:
                if not self.clock.live:
                    return
                self._wake.clear()
                await self._wait_wake(stop, None)
                continue
            entry = self._heap[0][2]
            if until is not None and entry.when > until:
                return
            if self.clock.live:
                delay = (entry.when - self.clock.now()).total_seconds()
                if delay > 0:
                    self._wake.clear()
                    await self._wait_wake(stop, delay)
                    continue
            heapq.heappop(self._heap)
            if entry.then is not None:
                self._push_next(entry.then)
                entry.then = None
            if entry.cancelled:
                continue
            self.clock.set(entry.when)
            try:
                await entry.fn()
            except Exception as exc:  # noqa: BLE001 - one failed action must not stop the lab
                # Queued state is only changed after a session returns, so a crash inside an
                # action leaves its messages where they were; they are reported as pending.
                logging.getLogger("labsim").exception("action %r failed", entry.label)
                self.errors.append(f"{entry.label}: {type(exc).__name__}: {exc}")
            await settle()
            self.executed += 1

    async def _wait_wake(self, stop: asyncio.Event | None, timeout: float | None) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait())]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
