"""`labsim up` keeps its mail: queue databases on disk, and a clean stop.

Start: every queueing party gets a queue folder (transport.persist) and takes up what an earlier
`up` on the same output folder left queued, before any listener is bound - so no new message can
be numbered like one read back. Each message taken up is registered with the ledger first
(Ledger.carried_in, as engine.carry does for a corpus hour), so its later hops are in this run's
summary and manifest. Where:

    <out>/<SERVER>/TransportRoles/data/Queue/   an on-prem server (Exchange's mail.que folder)
    <out>/EXO/data/Queue/                       Exchange Online (the service's own queues)
    <out>/<HOST>/data/Queue/                    an Internet host (Postfix's queue directory)

Stop (SIGINT / SIGTERM): stop accepting, answer every open session `421 4.3.2 Service not
available, closing transmission channel` (after the reply of a message being committed), let the
action in hand finish for a moment - an in-lab send that got the 421 leaves its message queued at
the sender - then cancel what is left, and commit every queue once more.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LabRuntimeError
from ..transport.persist import QueueStore

if TYPE_CHECKING:  # pragma: no cover
    from .queueing import QueueingParty
    from .runtime import LabRuntime

ACTION_GRACE = 0.8  # seconds the action in hand may take to finish once the sessions got their 421


def queue_folder(out: Path, party: "QueueingParty", onprem: bool) -> Path:
    if onprem:
        return out / party.name / "TransportRoles" / "data" / "Queue"
    return out / party.name / "data" / "Queue"


def parties(rt: "LabRuntime") -> list["QueueingParty"]:
    return [*rt.servers.values(), rt.exo, *rt.internet.values()]


def open_queue_databases(rt: "LabRuntime") -> int:
    """Give every party its queue folder and take up what it holds; returns the messages taken up."""
    rt.store.durable = True
    taken = 0
    for party in parties(rt):
        store = QueueStore(queue_folder(rt.out, party, party.name in rt.servers))
        party.queue_store = store
        try:
            saved = store.load()
            for s in saved:
                rt.ledger.carried_in(s.item, party.name)
            taken += party.restore(saved)
        except ValueError as exc:
            raise LabRuntimeError(f"{party.name}'s queue database: {exc}") from None
    return taken


def still_queued(rt: "LabRuntime") -> int:
    return sum(len(q.messages) for party in parties(rt) for q in party.queues.all())


async def stop_cleanly(rt: "LabRuntime", scheduler_task: "asyncio.Task[None]") -> None:
    """421 to every session, the action in hand finished or cancelled, every queue committed.

    The sessions are answered while the action in hand finishes: an in-lab send waiting on a
    session that is being closed gets its reply (250 for a message committed just before, 421
    otherwise) and its queue is updated before the action ends.
    """
    async def action_in_hand() -> None:
        try:
            await asyncio.wait_for(asyncio.shield(scheduler_task), ACTION_GRACE)
        except asyncio.TimeoutError:
            scheduler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler_task

    await asyncio.gather(rt.close_sessions(), action_in_hand())
    for party in parties(rt):
        party.persist()
