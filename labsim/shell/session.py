"""A lab session: the scenario's lab running on a virtual clock that the trainee's commands drive.

Theory of operation. The lab is the same `LabRuntime` `labsim run` uses, on a virtual clock. The
shell moves the clock: before each command by the wall time that has passed (interactive use),
and by `Start-Sleep -Seconds N` / `Skip-LabTime HH:MM:SS`; moving it runs every action that falls
due (a retry, the next message of the scenario) through the runtime's scheduler, as `run` does.
Scripted use (--command, stdin) moves it only by those verbs, so a script gives the same lab on
every replay.

`LabSession` owns the lab and its clock, and is what the cmdlets (shell.cmdlets.LabSession) and
the prompt know. Behind it: `shell.changes.ChangeDesk` turns the trainee's changes into scheduler
actions (and holds those that wait for a service restart), `shell.network` runs the network
cmdlets on the lab, and `shell.grading.Coach` keeps the exercise's hints, finding and grade.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..engine.driver import check_timeline_operations, inject_message, timeline_change
from ..engine.runtime import LabRuntime
from ..errors import LabsimError, TopologyError
from ..scenario.loader import LoadedScenario
from ..scenario.model import Exercise
from ..topology.timespec import parse_timespan
from . import cmdlets, files, network
from .changes import ChangeDesk, PendingChange
from .errors import ShellError
from .evaluator import Context, Spec, builtins, render
from .grading import CheckResult, Coach, Grade
from .objects import PSObject, cell


class LabSession:
    def __init__(self, loaded: LoadedScenario, out: Path, *, exercise: bool = False, seed: int | None = None,
                 wall_clock: bool = False) -> None:
        scn = loaded.scenario
        if exercise and scn.exercise is None:
            raise ShellError(f"scenario {scn.id} has no [exercise]")
        self.loaded = loaded
        self.exercise: Exercise | None = scn.exercise if exercise else None
        self.out = out
        self.seed = scn.seed if seed is None else seed
        self.wall_clock = wall_clock
        self.rt: LabRuntime = LabRuntime(loaded.lab.model_copy(deep=True), seed=self.seed, out=out)
        self.notes: list[str] = []  # WARNING: lines of the command being run
        self._wall = time.monotonic()
        servers = self.rt.model.organization.servers
        self.local = next((s.name for s in servers if s.role == "Mailbox"), servers[0].name if servers else "")
        dc = next((d.name for d in self.rt.model.dns_servers if str(d.site) == "onprem"), "DC01")
        domain = next((a.domain_name for a in self.rt.model.organization.accepted_domains), "")
        self.domain_controller = f"{dc}.{domain}" if domain else dc
        self.changes = ChangeDesk(self)
        self.coach = Coach(self, self.exercise)
        self.ctx: Context = builtins()
        cmdlets.register(self.ctx, self)
        files.register(self.ctx, self)
        self._register_time_verbs()
        self.coach.register(self.ctx)
        self.changes.register(self.ctx)

    # --- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        loaded, scn = self.loaded, self.loaded.scenario
        check_timeline_operations(loaded)
        await self.rt.start()
        ex = self.exercise
        fix_at = parse_timespan(ex.fix_at) if ex is not None and ex.fix_at else None
        for m in scn.message:
            off = parse_timespan(m.at)
            if fix_at is None or off < fix_at:
                self.rt.scheduler.call_at(loaded.start + off, f"message {m.id}", inject_message(self.rt, m))
        for ch in scn.change:
            if ch.at is None:
                continue
            off = parse_timespan(ch.at)
            if fix_at is None or off < fix_at:
                self.rt.scheduler.call_at(loaded.start + off, f"change {ch.cmdlet}",
                                          timeline_change(self.rt, ch.cmdlet, ch.params))
        broken = loaded.start
        if ex is not None:  # starts broken: the lab is run up to its last fault change (a stop at +00:00:30)
            offs = [parse_timespan(ch.at) for ch in scn.change if ch.at is not None]
            offs = [o for o in offs if fix_at is None or o < fix_at]
            broken = loaded.start + max(offs, default=timedelta(0))
        await self.advance_to(max(broken, self.now()))
        self._wall = time.monotonic()

    async def stop(self) -> None:
        rt = self.rt
        try:
            rt.collect_pending()
            rt.flush_logs()
            rt.write_summary()
            rt.write_event_logs()
        finally:
            await rt.stop()

    # --- time ---------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.rt.clock.now()

    async def advance_to(self, when: datetime) -> None:
        """Run the lab up to `when`, a minute of lab time at a time: Ctrl-C (`stop_requested`) stops
        between two steps, never inside an action, so the lab is always left consistent."""
        while True:
            step = min(when, self.now() + timedelta(seconds=60))
            await self.rt.scheduler.run(self.rt.settle, until=step)
            self.rt.clock.set(step)
            if step >= when:
                return
            if self.stop_requested:
                self.stop_requested = False
                raise ShellError(f"Stopped (Ctrl-C); the lab's time is {self.now().strftime('%H:%M:%S')}.",
                                 "OperationStopped")

    stop_requested = False

    async def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ShellError("Cannot validate argument: time does not run backwards.", "InvalidArgument")
        await self.advance_to(self.now() + timedelta(seconds=seconds))

    async def catch_up(self) -> None:
        """Interactive use: the lab's time follows the wall clock between commands."""
        if not self.wall_clock:
            return
        t = time.monotonic()
        elapsed, self._wall = t - self._wall, t
        await self.advance(elapsed)

    async def act(self, label: str, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run `fn` as a scheduler action now (settled like a timeline step); its error is raised here."""
        errors: list[BaseException] = []

        async def action() -> None:
            try:
                await fn()
            except (TopologyError, ShellError) as exc:
                errors.append(exc)

        self.rt.scheduler.call_at(self.now(), label, action)
        await self.advance_to(self.now())
        if errors:
            exc = errors[0]
            if isinstance(exc, TopologyError):
                raise ShellError(exc.problem, "InvalidOperation") from None
            raise exc

    # --- what the cmdlets ask of the session (shell.cmdlets.LabSession) ------------------------------------
    def server(self, name: str) -> Any:
        try:
            return self.rt.model.organization.server(name)
        except KeyError:
            raise ShellError(f"The operation couldn't be performed because object '{name}' couldn't be found on "
                             f"'{self.domain_controller}'.", "NotSpecified") from None

    @property
    def pending(self) -> list[PendingChange]:
        """The changes waiting for a service restart (shell.changes)."""
        return self.changes.pending

    def overlay(self, cmdlet: str, identity: str, props: dict[str, Any]) -> dict[str, Any]:
        return self.changes.overlay(cmdlet, identity, props)

    async def change(self, cmdlet: str, params: dict[str, Any]) -> None:
        await self.changes.change(cmdlet, params)

    async def operation(self, name: str, params: dict[str, Any]) -> None:
        await self.changes.operation(name, params)

    async def service(self, verb: str, service: str, server: str) -> None:
        await self.changes.service(verb, service, server)

    async def resolve(self, name: str, qtype: str, server: Any) -> list[PSObject]:
        return await network.resolve(self, name, qtype, server)

    async def test_connection(self, target: str, port: int, source: str) -> PSObject:
        return await network.test_connection(self, target, port, source)

    async def validate_outbound(self, identity: str, recipients: list[str]) -> PSObject:
        return await network.validate_outbound(self, identity, recipients)

    def event_level(self, event_id: int) -> str:
        from ..engine.eventlog import EVENTS

        d = EVENTS.get(event_id)
        return d.level if d is not None else "Information"

    # --- exercises (shell.grading) ------------------------------------------------------------------------
    @property
    def hints_used(self) -> int:
        return self.coach.hints_used

    def next_hint(self) -> str:
        return self.coach.next_hint()

    async def grade(self) -> Grade:
        return await self.coach.grade()

    # --- the lab's clock verbs --------------------------------------------------------------------------------
    def _register_time_verbs(self) -> None:
        s = self

        async def sleep(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            secs = float(p.get("Seconds") or 0) + float(p.get("Milliseconds") or 0) / 1000 + \
                float(p.get("Minutes") or 0) * 60
            await s.advance(secs)
            return []

        async def skip(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            span = p.get("Duration")
            if span is None:
                raise ShellError("Missing an argument for parameter 'Duration' (e.g. Skip-LabTime 01:00:00).",
                                 "InvalidArgument")
            try:
                delta = parse_timespan(cell(span))
            except (ValueError, LabsimError) as exc:
                raise ShellError(f"Cannot convert '{cell(span)}' to a TimeSpan: {exc}", "InvalidArgument") from None
            await s.advance(delta.total_seconds())
            return [f"Lab time is now {s.now().strftime('%Y-%m-%d %H:%M:%S')} UTC"]

        async def lab_time(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            start = s.loaded.start
            return [PSObject("LabTime", {"Now": s.now(), "Elapsed": str(s.now() - start).split(".")[0],
                                         "Clock": "wall" if s.wall_clock else "manual"})]

        reg = self.ctx.register
        reg(Spec("Start-Sleep", sleep, ("Seconds", "Milliseconds", "Minutes"), (), ("Seconds",),
                 "Waits: the lab's clock moves on (retries happen)."), "sleep")
        reg(Spec("Skip-LabTime", skip, ("Duration",), (), ("Duration",), "Moves the lab's clock on by a TimeSpan."))
        reg(Spec("Get-LabTime", lab_time, (), (), (), "The lab's virtual time."))

    def render(self, values: list[Any]) -> list[str]:
        return render(self.ctx, values)


__all__ = ["CheckResult", "Grade", "LabSession", "PendingChange"]  # CheckResult, Grade: shell.grading; PendingChange: shell.changes
