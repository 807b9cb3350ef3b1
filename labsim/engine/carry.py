"""Mail carried from one run into the next: a run's end-of-run queues saved, and taken up by a later
run at the moment the first one stopped (`labsim generate`'s hourly shards, labsim.corpus).

A corpus is cut into hours, each an ordinary run; mail still queued when an hour's lab stops (a
fault's deferrals, a retry not yet due) must go on in the next hour, as it would on a server that
simply kept running. The hand-over uses the queue database `labsim up` keeps (transport.persist):

- `save_queues(rt, folder, at)`: every message still queued at the end of a run, written as a
  clean stop of `up` commits it (its InternalId, arrival time, retry count, LastError, its own
  next retry time, Suspended), one folder per party, and `at`, the moment the lab stopped;
- `take_up(rt, folder)`: the next run schedules one action at that moment which registers the
  scenario's messages among them with the ledger (Ledger.carried_in: their later hops are reported
  under their own keys) and gives each party its messages back (QueueAdmin.restore: routed again
  into delivery queues created afresh, which connect at once; a message waiting on its own retry
  time keeps it).

The moment is the first run's stop (its last message + its settle time), not the next run's start:
until then the message was in the first run's queue, so nothing the next run does with it can come
before what the first run logged about it.

Two things differ from a restart of `up`, because an hour's boundary is not one: the take-up writes
no second AGENTINFO tracking row (the message was categorised in the hour it arrived; the lab's
categorizer only rebuilds its delivery queue), and the party's InternalId counter is left where the
run's own seed put it (a restart continues after the ids it read back; here the ids come from
another hour's counter, and continuing after them would hand out that hour's later ids again).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LabRuntimeError
from ..transport.persist import QueueStore
from .durable import parties

if TYPE_CHECKING:  # pragma: no cover
    from ..transport.message import MailItem
    from ..transport.queues import Queue, QueuedMessage
    from .queueing import QueueingParty
    from .runtime import LabRuntime

HANDOVER_FILE = "handover.json"


def save_queues(rt: "LabRuntime", folder: Path, at: datetime) -> int:
    """Write every message still queued in `rt` into `folder` (one queue folder per party) and the
    hand-over moment `at`; returns the number of messages (a party's copy of a message counts once)."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = 0
    for party in parties(rt):
        held: dict[int, tuple["MailItem", list[tuple["Queue", "QueuedMessage"]]]] = {}
        for q in party.queues.all():
            for qm in q.messages:
                held.setdefault(id(qm.item), (qm.item, []))[1].append((q, qm))
        if not held:
            continue
        store = QueueStore(folder / party.name, fsync=False)  # (a hand-over, not a database to survive a power cut)
        for item, copies in held.values():
            store.save(item, copies, party.queues)
            saved += 1
    (folder / HANDOVER_FILE).write_text(json.dumps({"at": at.isoformat(), "messages": saved}) + "\n",
                                        encoding="utf-8")
    return saved


def carried_count(folder: Path) -> int:
    """How many messages `folder` hands over (0: none, or no hand-over at all)."""
    try:
        return int(json.loads((folder / HANDOVER_FILE).read_text(encoding="utf-8"))["messages"])
    except FileNotFoundError:
        return 0


def take_up(rt: "LabRuntime", folder: Path) -> datetime | None:
    """Schedule the messages `folder` hands over into `rt`, at the moment the run that saved them
    stopped; returns that moment (None: nothing to take up)."""
    if carried_count(folder) == 0:
        return None
    at = datetime.fromisoformat(json.loads((folder / HANDOVER_FILE).read_text(encoding="utf-8"))["at"])
    by_party = []
    for party in parties(rt):
        try:
            saved = QueueStore(folder / party.name).load()
        except ValueError as exc:
            raise LabRuntimeError(f"carried mail for {party.name}: {exc}") from None
        if saved:
            by_party.append((party, saved))

    async def action() -> None:
        for party, saved in by_party:
            for s in saved:
                rt.ledger.carried_in(s.item, party.name)
            with _own_counter(party), _no_second_agentinfo(rt):
                party.restore(saved)
    rt.scheduler.call_at(at, "carried mail", action)
    return at


@contextmanager
def _own_counter(party: "QueueingParty") -> Iterator[None]:
    """QueueAdmin.restore continues the party's InternalId counter after the ids it reads back (a
    restart's rule); ids carried from another hour must not move this hour's counter."""
    counter = getattr(party, "internal_ids", None)
    if counter is None:
        yield
        return
    setattr(counter, "continue_after", lambda used: None)  # noqa: B010 - this instance, for the restore only
    try:
        yield
    finally:
        delattr(counter, "continue_after")


class _Quiet:
    """A party's tracker that writes no AGENTINFO row (the take-up's categorisation is not one)."""

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker

    def categorized(self, item: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)


class _QuietHub:
    def __init__(self, hub: Any) -> None:
        self._hub = hub

    def for_party(self, party: Any) -> Any:
        return _Quiet(self._hub.for_party(party))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hub, name)


@contextmanager
def _no_second_agentinfo(rt: "LabRuntime") -> Iterator[None]:
    hub = rt.tracking
    rt.tracking = _QuietHub(hub)  # type: ignore[assignment]  # restore is synchronous: nothing else runs meanwhile
    try:
        yield
    finally:
        rt.tracking = hub
