"""The queue machinery's shortcuts do what the plain way does (engine.queue_base, engine.scheduler,
logs.queue_history): a queue's Get-Queue line written from its kept JSON, the retry policy read once
for a queue's expiration times, the scheduler's heap of (time, sequence) pairs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from labsim.clock import VirtualClock
from labsim.engine.queue_base import QueueBase
from labsim.engine.queue_drain import QueueDrain
from labsim.engine.scheduler import Scheduler
from labsim.logs import queue_history
from labsim.logs.queue_history import QUEUE_HISTORY_FILE, QueueHistoryWriter
from labsim.rules.retry import RetryPolicy
from labsim.transport.message import MailItem
from labsim.transport.queues import Queue, QueuedMessage, QueueSet

START = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
_KEYS = ["Identity", "DeliveryType", "Status", "MessageCount", "NextHopDomain", "LastError", "RetryCount",
         "NextRetryTime"]
_TEXT = st.sampled_from(["", "Ready", "Active", "Retry", "451 4.4.0 \"quoted\", comma", "é€", "\x00\r\n", "\udcff",
                         "contoso.com", "[{LRT=5/1/2026 6:00:00 AM};{LED=421 4.4.2}]"])
_VALUE = st.one_of(_TEXT, st.integers(-3, 3), st.integers(2**60, 2**60 + 2))


# --- Get-Queue lines ------------------------------------------------------------------------------------
def _plain_queue_lines(calls: list[tuple[str, str, dict[str, Any]]]) -> str:
    """The Get-Queue lines as written before the kept JSON: a line when a queue's row values change."""
    last: dict[str, tuple[Any, ...]] = {}
    out = []
    for now, server, row in calls:
        sig = tuple(row.values())
        if last.get(row["Identity"]) != sig:
            last[row["Identity"]] = sig
            out.append(json.dumps({"Time": now, "Server": server, "Queue": row}, separators=(",", ":")) + "\n")
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["S\\1", "S\\2", "Q\\1"]), st.sampled_from(["CMHYBD01", "EXO", "é\"x"]),
                          st.lists(_VALUE, min_size=len(_KEYS) - 1, max_size=len(_KEYS) - 1)),
                min_size=1, max_size=40),
       st.integers(1, 4))
@example([("S\\1", "EXO", ["Ready", 1, "", "", 0, "", 0]), ("S\\1", "EXO", ["Active", 1, "", "", 0, "", 0]),
          ("S\\1", "EXO", ["Ready", 1, "", "", 0, "", 0])], 4)  # a row seen before: its kept JSON
def test_queue_lines_equal_the_plain_json(tmp_path_factory: pytest.TempPathFactory,
                                          rows: list[tuple[str, str, list[Any]]], kept: int) -> None:
    """Each Get-Queue line is the JSON of its line, whether its row's text was kept or not, also
    when the kept texts are dropped because there are too many (`kept` of them at most here)."""
    calls = []
    for i, (identity, server, values) in enumerate(rows):
        now = f"2026-05-01T06:00:{i % 60:02d}.{i:03d}Z"
        calls.append((now, server, dict(zip(_KEYS, [identity, *values]))))
    path = tmp_path_factory.mktemp("q") / QUEUE_HISTORY_FILE
    writer = QueueHistoryWriter(path)
    limit = queue_history.ROW_TEXTS
    queue_history.ROW_TEXTS = kept
    try:
        for now, server, row in calls:
            writer.queue_row(now, server, row)
            assert len(writer._row_texts) <= kept
    finally:
        queue_history.ROW_TEXTS = limit
    writer.close()
    assert path.read_text(encoding="utf-8") == _plain_queue_lines(calls)


def test_a_kept_queue_line_is_not_reused_for_equal_values_of_another_type(tmp_path: Path) -> None:
    """True == 1 == 1.0 as dictionary keys but not in JSON: a row whose values equal a kept row's
    only by Python's numeric equality gets its own text."""
    path = tmp_path / QUEUE_HISTORY_FILE
    writer = QueueHistoryWriter(path)
    calls = [("2026-05-01T06:00:00.000Z", "EX01", {"Identity": "EX01\\1", "MessageCount": 1}),
             ("2026-05-01T06:00:01.000Z", "EX01", {"Identity": "EX01\\1", "MessageCount": 2}),
             ("2026-05-01T06:00:02.000Z", "EX01", {"Identity": "EX01\\1", "MessageCount": True}),
             ("2026-05-01T06:00:03.000Z", "EX01", {"Identity": "EX01\\1", "MessageCount": 2}),
             ("2026-05-01T06:00:04.000Z", "EX01", {"Identity": "EX01\\1", "MessageCount": 1.0})]
    for now, server, row in calls:
        writer.queue_row(now, server, row)
    writer.close()
    counts = [json.loads(line)["Queue"]["MessageCount"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert counts == [1, 2, True, 2, 1.0]
    assert [type(c) for c in counts] == [int, int, bool, int, float]


# --- expiration times of a queue's messages ---------------------------------------------------------------
class _Party(QueueBase):
    def __init__(self) -> None:
        super().__init__(lab=None, name="EX01", queues=QueueSet("EX01"))  # type: ignore[arg-type]
        self.policy = RetryPolicy()
        self.policy_reads = 0

    def retry_policy(self) -> RetryPolicy:
        self.policy_reads += 1
        return self.policy


class _OwnWording(_Party):
    def expiration_of(self, item: MailItem) -> datetime:
        return item.arrived + timedelta(minutes=7)


def _mail(n: int) -> MailItem:
    return MailItem(server="EX01", internal_id=n, mail_from="a@contoso.com", recipients=["b@fabrikam.com"],
                    data=b"x", message_id=f"<{n}@contoso.com>", network_message_id=str(n), subject="s",
                    arrived=START + timedelta(seconds=n))


@pytest.mark.parametrize("party_type", [_Party, _OwnWording])
def test_expirations_are_expiration_of_with_the_policy_read_once(party_type: type[_Party]) -> None:
    party = party_type()
    items = [_mail(n) for n in range(5)]
    for expiration in (timedelta(days=2), timedelta(hours=24)):
        party.policy = RetryPolicy(expiration=expiration)
        reads = party.policy_reads
        expire = party.expirations()
        got = [expire(item) for item in items]
        fast_reads = party.policy_reads - reads
        assert got == [party.expiration_of(item) for item in items]
        if party_type is _Party:
            assert fast_reads == 1 and got[0] == items[0].arrived + expiration
        else:
            assert got[0] == items[0].arrived + timedelta(minutes=7)


# --- the scheduler's order ------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 6), st.booleans()), min_size=1, max_size=30))
async def test_actions_run_by_time_then_in_the_order_they_were_scheduled(plan: list[tuple[int, bool]]) -> None:
    """The heap of (time, sequence) pairs runs what the entries' own order runs: the earliest time
    first, ties in scheduling order, a time before the clock's as the clock's, cancelled ones never."""
    clock = VirtualClock(START + timedelta(seconds=2))
    sched = Scheduler(clock)
    ran: list[tuple[int, datetime]] = []

    def action(i: int) -> Any:
        async def run() -> None:
            ran.append((i, clock.now()))
        return run

    for i, (offset, cancel) in enumerate(plan):
        entry = sched.call_at(START + timedelta(seconds=offset), f"a{i}", action(i))
        if cancel:
            Scheduler.cancel(entry)

    async def settle() -> None:
        return None
    await sched.run(settle)
    due = [(max(START + timedelta(seconds=offset), START + timedelta(seconds=2)), i)
           for i, (offset, cancel) in enumerate(plan) if not cancel]
    assert ran == [(i, when) for when, i in sorted(due)]
    assert sched.pending() == 0 and sched.next_time() is None


def test_a_history_writer_reads_back_its_queue_lines(tmp_path: Path) -> None:
    writer = QueueHistoryWriter(tmp_path / QUEUE_HISTORY_FILE)
    row = {"Identity": "S\\1", "Status": "Ready", "MessageCount": 1}
    writer.queue_row("2026-05-01T06:00:00.000Z", "S", row)
    writer.queue_row("2026-05-01T06:00:01.000Z", "S", dict(row, Status="Active"))
    writer.queue_row("2026-05-01T06:00:02.000Z", "S", dict(row))
    lines = list(queue_history.queue_history(queue_history.read_lines(writer.close())))
    assert [(r["Time"][17:19], r["Status"]) for r in lines] == [("00", "Ready"), ("01", "Active"), ("02", "Ready")]


# --- the next message a connection takes -------------------------------------------------------------------
_WHEN = st.one_of(st.none(), st.integers(-3, 3).map(lambda s: START + timedelta(seconds=s)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _WHEN, _WHEN), max_size=12), st.integers(-2, 2))
def test_the_next_message_is_the_first_eligible_one_that_had_arrived(
        plan: list[tuple[bool, datetime | None, datetime | None]], at_s: int) -> None:
    """`_next_message` stops at the first message `_eligible` lists that was queued by then."""
    at = START + timedelta(seconds=at_s)
    party = QueueDrain(lab=None, name="EX01", queues=QueueSet("EX01"))  # type: ignore[arg-type]
    q = Queue(identity="EX01\\1", delivery_type="SmtpDeliveryToMailbox", next_hop_domain="db1")
    for n, (suspended, retry, queued) in enumerate(plan):
        q.messages.append(QueuedMessage(item=_mail(n), recipients=["b@fabrikam.com"], suspended=suspended,
                                        next_retry_time=retry, queued_at=queued))
    want = next((qm for qm in party._eligible(q, at) if (qm.queued_at or at) <= at), None)
    assert party._next_message(q, at) is want
