"""A series of actions fed one at a time (Scheduler.call_in_turn, a scenario's messages) runs in the
order the same actions scheduled all at once with call_at run in, including ties with actions
scheduled before, after and while the series runs; and a scenario keeps its messages compact."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from labsim.clock import VirtualClock
from labsim.engine.scheduler import Scheduler
from labsim.scenario.loader import load_scenario_text
from labsim.scenario.model import MessageRow

START = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)


async def _order(series_in_turn: bool, seed: int) -> list[str]:
    rng = random.Random(seed)
    sched = Scheduler(VirtualClock(START))
    done: list[str] = []
    offsets = [rng.choice([0, 0, 5, 5, 7, 30]) for _ in range(40)]

    def action(label: str, spawn: bool) -> object:
        async def run() -> None:
            done.append(label)
            sched.clock.set(sched.clock.now() + timedelta(milliseconds=rng.choice([0, 3])))  # a session moves time
            if spawn:  # a consequence at the same or a later instant (the next hop, a retry)
                sched.call_at(sched.clock.now() + timedelta(seconds=rng.choice([0, 0, 2, 5])), f"{label}+",
                              action(f"{label}+", False))
        return run

    sched.call_at(START + timedelta(seconds=5), "before", action("before", True))
    if series_in_turn:
        order = sorted(range(len(offsets)), key=offsets.__getitem__)

        def entries(first: int):  # type: ignore[no-untyped-def]
            for i in order:
                yield START + timedelta(seconds=offsets[i]), first + i, f"m{i}", action(f"m{i}", i % 3 == 0)
        sched.call_in_turn(len(offsets), entries)
    else:
        for i, off in enumerate(offsets):
            sched.call_at(START + timedelta(seconds=off), f"m{i}", action(f"m{i}", i % 3 == 0))
    sched.call_at(START + timedelta(seconds=5), "after", action("after", True))

    async def settle() -> None:
        return None
    await sched.run(settle)
    return done


async def test_series_runs_in_the_order_of_scheduling_them_all() -> None:
    for seed in range(5):
        assert await _order(True, seed) == await _order(False, seed)


async def test_an_empty_series_schedules_nothing() -> None:
    sched = Scheduler(VirtualClock(START))
    sched.call_in_turn(0, lambda first: iter(()))
    assert sched.pending() == 0


def test_messages_are_kept_compact_and_read_like_the_file() -> None:
    text = """
id = "compact"
title = "t"
[training]
symptom = "s"
evidence = "e"
root_cause = "r"
fix = "f"
[[message]]
id = "a"
from = "ramki@cloudmonkeys.xyz"
to = ["raghu@cloudmonkeys.xyz", "priya@cloudmonkeys.xyz"]
size = 2048
[[message]]
id = "b"
at = "+00:01:00"
from = "raghu@cloudmonkeys.xyz"
to = ["alex@fabrikam.com"]
subject = "hello"
"""
    msgs = load_scenario_text(text).scenario.message
    assert all(isinstance(m, MessageRow) for m in msgs)
    a, b = msgs
    assert (a.id, a.at, a.sender, list(a.to), a.subject, a.size) == (
        "a", "+00:00:00", "ramki@cloudmonkeys.xyz", ["raghu@cloudmonkeys.xyz", "priya@cloudmonkeys.xyz"],
        "labsim test message", 2048)
    assert b.model_dump(by_alias=True, exclude_none=True) == {
        "id": "b", "at": "+00:01:00", "from": "raghu@cloudmonkeys.xyz", "to": ["alex@fabrikam.com"],
        "subject": "hello", "body": "This message was sent by labsim.\n"}
