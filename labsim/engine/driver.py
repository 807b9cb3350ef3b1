"""Running a scenario: to completion on virtual time (`run`), or live on wall-clock time (`up`)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..ids import derive_seed
from ..scenario.expect import Outcome, check
from ..scenario.loader import LoadedScenario, sender_realms
from ..scenario.model import Message
from ..topology.changes import apply_change
from ..topology.timespec import parse_timespan
from ..transport.message import new_message
from .durable import open_queue_databases, stop_cleanly
from .operations import check_operation, is_operation, run_operation
from .outdir import RunOutput, claim_live
from .runtime import LabRuntime


@dataclass
class RunResult:
    scenario: str
    out: Path
    summary: dict[str, Any]
    outcomes: list[Outcome] = field(default_factory=list)
    wall_seconds: float = 0.0
    log_files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


def _message_id(rt: LabRuntime, realm: str, owner: str, when: datetime) -> str:
    ids = rt.ids_for(f"{owner}/client")
    if realm == "onprem":
        return f"<{ids.guid().replace('-', '')}@{rt.servers[owner].model.fqdn}>"
    if realm == "exo":
        rng = random.Random(derive_seed(rt.seed, "exo-mid", str(ids.randint(0, 2**32))))
        head = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(20))
        return f"<PN3PR01MB{head}@PN3PR01MB{head[:4]}.INDPRD01.PROD.OUTLOOK.COM>"
    host = next(h for h in rt.model.internet_hosts if h.name == owner)
    return f"<{when.strftime('%Y%m%d%H%M%S')}.{ids.randint(0x100000, 0xFFFFFF):X}@{host.fqdn}>"


def _inject(rt: LabRuntime, msg: Message) -> Any:
    async def action() -> None:
        realm, owner = sender_realms(rt.model)[msg.sender.lower()]
        now = rt.clock.now()
        mid = _message_id(rt, realm, owner, now)
        offset = rt.servers[owner].model.utc_offset_minutes if realm == "onprem" else 0
        body = msg.body
        if msg.size:
            filler = "labsim filler line to reach the requested message size .........\n"
            body += filler * max(0, (msg.size - len(body)) // len(filler) + 1)
        data = new_message(mail_from=msg.sender, to=msg.to, subject=msg.subject, body=body, message_id=mid,
                           when=now, utc_offset_minutes=offset)
        rt.ledger.register(msg.id, mid, msg.sender, msg.to, msg.subject)
        if realm == "onprem":
            await rt.servers[owner].submit_from_mailbox(msg.sender, msg.to, data)
        elif realm == "exo":
            await rt.exo.submit_from_mailbox(msg.sender, msg.to, data)
        else:
            await rt.internet[owner].submit_from_mailbox(msg.sender, msg.to, data)
    return action


def check_timeline_operations(loaded: LoadedScenario) -> None:
    """Operations on the running lab get their static check before anything starts."""
    from ..errors import ScenarioError, TopologyError

    for i, ch in enumerate(loaded.scenario.change):
        if is_operation(ch.cmdlet):
            try:
                check_operation(loaded.lab, ch.cmdlet, ch.params)
            except TopologyError as exc:
                raise ScenarioError(f"{loaded.path}: change[{i}] ({exc.where})", exc.problem) from None


def _timeline_change(rt: LabRuntime, cmdlet: str, params: dict[str, Any]) -> Any:
    async def action() -> None:
        if is_operation(cmdlet):
            await run_operation(rt, cmdlet, params)
            return
        apply_change(rt.model, cmdlet, params)
        await rt.reconfigure()
    return action


async def run_loaded(loaded: LoadedScenario, *, out: Path, seed: int | None = None,
                     block: int | None = None) -> RunResult:
    """Run to completion. The new tree replaces `out` only once the run has finished; a run that
    fails or is cancelled leaves `out` as it was (engine.outdir)."""
    check_timeline_operations(loaded)
    seed = loaded.scenario.seed if seed is None else seed
    with RunOutput(out, scenario=loaded.scenario.id, seed=seed) as output:
        result = await _run_into(loaded, out=output.work, seed=seed, block=block)
        output.commit()
    return replace(result, out=out, log_files=[out / f.relative_to(output.work) for f in result.log_files])


async def _run_into(loaded: LoadedScenario, *, out: Path, seed: int, block: int | None) -> RunResult:
    scn = loaded.scenario
    t0 = time.perf_counter()
    rt = LabRuntime(loaded.lab.model_copy(deep=True), seed=seed, out=out, block=block)
    await rt.start()
    try:
        last = loaded.start
        for m in scn.message:
            when = loaded.start + parse_timespan(m.at)
            last = max(last, when)
            rt.scheduler.call_at(when, f"message {m.id}", _inject(rt, m))
        for ch in scn.change:
            if ch.at is not None:
                when = loaded.start + parse_timespan(ch.at)
                last = max(last, when)
                rt.scheduler.call_at(when, f"change {ch.cmdlet}", _timeline_change(rt, ch.cmdlet, ch.params))
        until = last + (parse_timespan(scn.duration) if scn.duration else timedelta(days=3))
        await rt.scheduler.run(rt.settle, until=until)
        rt.collect_pending()
        files = rt.flush_logs()
        rt.write_summary()
        rt.write_event_logs()
        outcomes = check(scn.expect, rt.ledger, out)
        return RunResult(scenario=scn.id, out=out, summary=rt.summary(), outcomes=outcomes,
                         wall_seconds=time.perf_counter() - t0, log_files=files)
    finally:
        await rt.stop()


def run_scenario(loaded: LoadedScenario, *, out: Path, seed: int | None = None) -> RunResult:
    return asyncio.run(run_loaded(loaded, out=out, seed=seed))


async def serve(loaded: LoadedScenario, *, out: Path, seed: int | None = None, traffic: bool = False,
                ready: Any = None, stop: asyncio.Event | None = None) -> LabRuntime:
    """Serve the lab on wall-clock time until `stop` is set (or forever).

    The queues live on disk under `out` (engine.durable): what an earlier `up` on the same folder
    left queued is delivered or retried now, and on `stop` every open session is answered 421 and
    every queue committed before the logs are flushed.
    """
    scn = loaded.scenario
    # Lock `out` (empty, new or labsim's; never anything else) for as long as this coroutine runs:
    # the lock goes when `claim` does, at return, on an error, or with the process (engine.outdir).
    claim = claim_live(out, scenario=scn.id, seed=scn.seed if seed is None else seed)  # noqa: F841
    model = loaded.lab.model_copy(deep=True)
    model.start = datetime.now().astimezone()
    if traffic:
        check_timeline_operations(loaded)
    rt = LabRuntime(model, seed=scn.seed if seed is None else seed, out=out, live=True)
    rt.taken_up = open_queue_databases(rt)  # before any listener: no new id can collide with one read back
    await rt.start()
    stop = stop or asyncio.Event()
    if traffic:  # the scenario's messages and its timeline, on wall-clock time from now
        for m in scn.message:
            rt.scheduler.call_at(model.start + parse_timespan(m.at), f"message {m.id}", _inject(rt, m))
        for ch in scn.change:
            if ch.at is not None:
                rt.scheduler.call_at(model.start + parse_timespan(ch.at), f"change {ch.cmdlet}",
                                     _timeline_change(rt, ch.cmdlet, ch.params))

    async def flusher() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            rt.flush_logs()

    if ready is not None:
        ready(rt)
    flush_task = asyncio.create_task(flusher())
    scheduler_task = asyncio.create_task(rt.scheduler.run(rt.settle, stop=stop))
    try:
        await stop.wait()
    finally:
        stop.set()
        await stop_cleanly(rt, scheduler_task)
        await flush_task
        rt.collect_pending()
        rt.flush_logs()
        rt.write_summary()
        rt.write_event_logs()
        await rt.stop()
    return rt
