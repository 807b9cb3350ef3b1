"""Running a scenario: to completion on virtual time (`run`), or live on wall-clock time (`up`)."""

from __future__ import annotations

import asyncio
import random
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..ids import derive_seed
from ..manifest import write_manifest
from ..scenario.expect import Outcome, check
from ..scenario.loader import LoadedScenario, sender_realms
from ..scenario.model import Message, MessageRow
from ..topology.changes import apply_change
from ..topology.timespec import parse_timespan
from ..transport.message import new_message
from .carry import save_queues, take_up
from .durable import open_queue_databases, stop_cleanly
from .operations import check_operation, is_operation, run_operation
from .outdir import RunOutput, claim_live
from .runtime import LabRuntime
from .scheduler import batch_collector


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


def inject_message(rt: LabRuntime, msg: Message | MessageRow) -> Any:
    """The scheduler action that writes `msg` in its sender's mail client and submits it (the
    scenario's [[message]] entries, and the shell's probe messages)."""

    async def action() -> None:
        realm, owner = sender_realms(rt.model)[msg.sender.lower()]
        now = rt.clock.now()
        mid = _message_id(rt, realm, owner, now)
        offset = rt.servers[owner].model.utc_offset_minutes if realm == "onprem" else 0
        body = msg.body
        if msg.size:
            filler = "labsim filler line to reach the requested message size .........\n"
            body += filler * max(0, (msg.size - len(body)) // len(filler) + 1)
        to = list(msg.to)
        data = new_message(mail_from=msg.sender, to=to, subject=msg.subject, body=body, message_id=mid,
                           when=now, utc_offset_minutes=offset)
        rt.ledger.register(msg.id, mid, msg.sender, to, msg.subject)
        if realm == "onprem":
            await rt.servers[owner].submit_from_mailbox(msg.sender, to, data)
        elif realm == "exo":
            await rt.exo.submit_from_mailbox(msg.sender, to, data)
        else:
            await rt.internet[owner].submit_from_mailbox(msg.sender, to, data)
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


def timeline_change(rt: LabRuntime, cmdlet: str, params: dict[str, Any]) -> Any:
    """The scheduler action of one cmdlet on the running lab: an operation (Retry-Queue,
    Restart-Service, ...) or a configuration change the lab then takes up (the scenario's timeline,
    and the shell's Set-/New-/Remove- cmdlets: one implementation for both)."""

    async def action() -> None:
        if is_operation(cmdlet):
            await run_operation(rt, cmdlet, params)
        else:
            apply_change(rt.model, cmdlet, params)
            await rt.reconfigure()
        rt.routing_logs.refresh(rt.model.organization, rt.clock.now(), rt.service_state)  # a routing change, a service start
    return action


async def run_loaded(loaded: LoadedScenario, *, out: Path, seed: int | None = None,
                     block: int | None = None, carry_in: Path | None = None,
                     carry_out: Path | None = None) -> RunResult:
    """Run to completion. The new tree replaces `out` only once the run has finished; a run that
    fails or is cancelled leaves `out` as it was (engine.outdir). `carry_in`: the mail an earlier
    run left queued, taken up at the moment it stopped; `carry_out`: where this run's own
    end-of-run queues are written for a later one (engine.carry; labsim generate's hours)."""
    check_timeline_operations(loaded)
    seed = loaded.scenario.seed if seed is None else seed
    with RunOutput(out, scenario=loaded.scenario.id, seed=seed) as output, batch_collector():
        result = await _run_into(loaded, out=output.work, seed=seed, block=block, carry_in=carry_in,
                                 carry_out=carry_out)
        write_manifest(output.work, loaded, seed=seed, outcomes=result.outcomes)  # ground truth read back from the files (labsim.manifest)
        output.commit()
    return replace(result, out=out, log_files=[out / f.relative_to(output.work) for f in result.log_files])


def _schedule_messages(rt: LabRuntime, loaded: LoadedScenario) -> datetime:
    """The scenario's messages, one at a time in order of time (the scheduler takes the next when
    the one before it fires, in the order scheduling them all now would give); returns the time of
    the last (the start when there is none)."""
    messages = loaded.scenario.message
    floor = rt.clock.now()  # call_at never schedules before now
    at = [loaded.start + parse_timespan(m.at) for m in messages]  # (each row read once: scenario.rows)
    last = max([loaded.start, *at])
    when = [max(t, floor) for t in at]
    del at
    order = array("I", sorted(range(len(messages)), key=when.__getitem__))  # stable: ties keep the file's order
    del when

    def entries(first: int) -> Iterator[tuple[datetime, int, str, Any]]:
        for i in order:
            m = messages[i]
            yield max(loaded.start + parse_timespan(m.at), floor), first + i, f"message {m.id}", inject_message(rt, m)
    rt.scheduler.call_in_turn(len(messages), entries)
    return last


async def _run_into(loaded: LoadedScenario, *, out: Path, seed: int, block: int | None,
                    carry_in: Path | None = None, carry_out: Path | None = None) -> RunResult:
    scn = loaded.scenario
    t0 = time.perf_counter()
    rt = LabRuntime(loaded.lab.model_copy(deep=True), seed=seed, out=out, block=block)
    await rt.start()
    rt.routing_logs.refresh(rt.model.organization, rt.clock.now(), rt.service_state)  # each transport process's first load
    try:
        last = _schedule_messages(rt, loaded)
        handover = take_up(rt, carry_in) if carry_in is not None else None
        last = max(last, handover) if handover is not None else last
        for ch in scn.change:
            if ch.at is not None:
                when = loaded.start + parse_timespan(ch.at)
                last = max(last, when)
                rt.scheduler.call_at(when, f"change {ch.cmdlet}", timeline_change(rt, ch.cmdlet, ch.params))
        until = last + (parse_timespan(scn.duration) if scn.duration else timedelta(days=3))
        await rt.scheduler.run(rt.settle, until=until)
        if carry_out is not None:
            save_queues(rt, carry_out, until)
        rt.collect_pending()
        rt.routing_logs.finish(rt.clock.now())
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
                ready: Any = None, stop: asyncio.Event | None = None, clients: bool = False) -> LabRuntime:
    """Serve the lab on wall-clock time until `stop` is set (or forever). `clients`: the messages
    clients of the caller's own hand to the lab are ground truth too (summary, manifest), each
    under its Message-ID (labsim.Lab; engine.ledger `report_clients`).

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
    rt.ledger.report_clients = clients
    rt.taken_up = open_queue_databases(rt)  # before any listener: no new id can collide with one read back
    await rt.start()
    rt.routing_logs.refresh(rt.model.organization, rt.clock.now(), rt.service_state)  # each transport process's first load
    stop = stop or asyncio.Event()
    if traffic:  # the scenario's messages and its timeline, on wall-clock time from now
        for m in scn.message:
            rt.scheduler.call_at(model.start + parse_timespan(m.at), f"message {m.id}", inject_message(rt, m))
        for ch in scn.change:
            if ch.at is not None:
                rt.scheduler.call_at(model.start + parse_timespan(ch.at), f"change {ch.cmdlet}",
                                     timeline_change(rt, ch.cmdlet, ch.params))

    async def flusher() -> None:
        next_snapshot = 0.0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            rt.flush_logs()
            if time.monotonic() >= next_snapshot:  # at most 10 % of the loop's time, however big the lab
                t0 = time.monotonic()
                write_live_snapshot(rt)
                next_snapshot = t0 + 10 * (time.monotonic() - t0)

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
    write_manifest(out, loaded, seed=rt.seed)  # (labsim.manifest) after a clean stop only
    return rt


def write_live_snapshot(rt: LabRuntime) -> None:
    """`up`, every second: summary.json, queues.json and EXO/MessageTrace/trace.json as they stand
    now, each replaced atomically, so `labsim queue/track/trace` and `labsim view` read a live
    folder exactly as they read a finished one (the final files are written at stop as before)."""
    import json
    import os

    from .evidence import QUEUES_FILE
    from .ledger import dump_summary

    trace_dir = rt.out / "EXO" / "MessageTrace"
    trace_dir.mkdir(parents=True, exist_ok=True)
    summary = rt.out / "summary.json"
    tmp = summary.with_name(f".{summary.name}.live-tmp")
    with open(tmp, "w", encoding="utf-8") as fh:  # the messages are read back from the ledger's spool
        dump_summary(rt.summary(), fh)
        fh.write("\n")
    os.replace(tmp, summary)
    for path, data in ((rt.out / QUEUES_FILE, rt.tracking.queue_state()),
                       (trace_dir / "trace.json", rt.tracking.trace.as_json())):
        tmp = path.with_name(f".{path.name}.live-tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)


# --- several scenarios in worker processes (`labsim run A B ... --jobs N`) -----------------------

# (index of the run, its result or None, the one-line error that stopped it or None,
#  0 every expectation holds / 1 one fails or the run failed / 2 bad input, wall seconds)
Finished = tuple[int, "RunResult | None", "str | None", int, float]


def _worker_block(slot: int) -> int:
    """Each worker's own loopback block (127.<block>.x.y), none of them the default one, so that
    runs side by side never share an address (runtime.start moves on if one is taken anyway)."""
    from ..net.vnet import DEFAULT_BLOCK

    return (DEFAULT_BLOCK + 23 * (slot + 1)) % 250 + 2


def _worker(runs: list[tuple[LoadedScenario, Path]], conn: Any, block: int, seed: int | None) -> None:
    """A forked worker: runs the scenarios the parent sends (by index) until the pipe closes. Each
    run is guarded as a single `labsim run` is (engine.interrupt): a signal cancels it, its folder
    keeps its previous output, the notice is printed here and the parent told."""
    import signal
    import sys

    from ..errors import InputError, LabsimError
    from .interrupt import Interrupted, SignalGuard

    for sig in (signal.SIGINT, signal.SIGTERM):  # idle: the parent ends us by closing the pipe
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            index = conn.recv()
        except (EOFError, OSError):
            return
        if index is None:  # no more work (EOF alone is not enough: a later fork holds the other end)
            return
        loaded, out = runs[index]
        guard = SignalGuard(
            notice=f"labsim: {out}: run interrupted by {{signal}}; the previous output is left as it was",
            notice_finished=f"labsim: {out}: interrupted by {{signal}} after the run had finished")
        t0 = time.perf_counter()
        try:
            with guard:
                result = guard.run(run_loaded, loaded, out=out, seed=seed, block=block)
        except Interrupted as exc:
            print(guard.line(exc), file=sys.stderr, flush=True)
            reply: Finished = (index, None, "interrupted", exc.exit_code, time.perf_counter() - t0)
        except LabsimError as exc:
            reply = (index, None, str(exc), 2 if isinstance(exc, InputError) else 1, time.perf_counter() - t0)
        else:
            reply = (index, result, None, 0 if result.ok else 1, time.perf_counter() - t0)
        try:
            conn.send(reply)
        except OSError:  # the parent is gone or stopping: nothing more to do
            return
        if reply[2] == "interrupted":
            return


def run_parallel(runs: list[tuple[LoadedScenario, Path]], *, seed: int | None, jobs: int) -> Any:
    """Run `runs` in `jobs` forked worker processes; yield each Finished in the order of `runs`.

    Each worker keeps its own loopback block and its process-wide caches (PKI, DNS zones) from one
    run to its next. Every run is independent, so what each writes does not depend on `jobs`. A
    worker stopped by a signal makes this raise engine.interrupt.Interrupted; however this
    generator ends (finished, closed, or a signal in the parent), the workers are told to stop,
    given the interrupted runs' grace, and reaped."""
    import multiprocessing
    import os
    import signal
    from multiprocessing.connection import wait

    from .interrupt import Interrupted

    ctx = multiprocessing.get_context("fork")  # the parent has loaded and checked everything
    workers: list[tuple[Any, Any]] = []
    for slot in range(max(1, min(jobs, len(runs)))):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(runs, theirs, _worker_block(slot), seed), daemon=True)
        proc.start()
        theirs.close()
        workers.append((proc, mine))
    todo = iter(range(len(runs)))
    running: dict[Any, int] = {}  # pipe -> index of the run it does
    done: dict[int, Finished] = {}
    ended_cleanly = False
    try:
        for _proc, conn in workers:
            index = next(todo, None)
            if index is not None:
                conn.send(index)
                running[conn] = index
        emitted = 0
        while emitted < len(runs):
            ready = wait(list(running))
            for conn in [c for c in list(running) if c in ready]:
                index = running.pop(conn)
                try:
                    finished: Finished = conn.recv()
                except (EOFError, OSError):  # the worker died (killed from outside): its run failed
                    done[index] = (index, None, f"{runs[index][1]}: the worker process running it ended", 1, 0.0)
                    continue
                if finished[2] == "interrupted":
                    raise Interrupted(finished[3] - 128)
                done[index] = finished
                nxt = next(todo, None)
                if nxt is not None:
                    conn.send(nxt)
                    running[conn] = nxt
            if not running:  # every worker died: what is left cannot run
                for index in todo:
                    done[index] = (index, None, f"{runs[index][1]}: no worker process left to run it", 1, 0.0)
            while emitted in done:
                yield done.pop(emitted)
                emitted += 1
        ended_cleanly = True
    finally:
        for proc, conn in workers:
            try:
                conn.send(None)  # an idle worker ends at once
            except OSError:
                pass
            conn.close()
            if not ended_cleanly and proc.is_alive() and proc.pid is not None:
                try:
                    os.kill(proc.pid, signal.SIGINT)  # a busy one: cancelled as a single run would be
                except ProcessLookupError:
                    pass
        for proc, _conn in workers:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
