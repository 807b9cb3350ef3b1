"""The exercise side of a shell session: hints, the finding the trainee submits, and the grade.

`Coach` sends the exercise's probe messages through the running lab, lets the lab's clock run
until they have settled (or the exercise's wait is over), and grades what the lab itself knows:
where each probe ended (the ledger), what is still queued, the submitted finding
(shell.findings) and the exercise's `require` tests run in the shell. It knows the session by
`GradedLab`, the few things it uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..engine.driver import inject_message
from ..scenario.model import Exercise, Message
from ..topology.timespec import parse_timespan
from . import views
from .errors import ShellError
from .evaluator import Context, Spec, enumerate_value, run_script, truthy
from .findings import CAUSE_ACTIONS, Submitted, grade_finding
from .objects import PSObject, cell
from .parser import parse

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.runtime import LabRuntime

NOT_AN_EXERCISE = "This lab was not started as an exercise (labsim shell ID --exercise)."


@dataclass
class CheckResult:
    what: str
    ok: bool
    detail: str


@dataclass
class Grade:
    objective: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def lines(self) -> list[str]:
        out = [f"Exercise: {self.objective}"]
        for c in self.checks:
            out.append(f"  [{'PASS' if c.ok else 'FAIL'}] {c.what}" + ("" if c.ok or not c.detail else f": {c.detail}"))
        out.append("Result: " + ("PASSED" if self.passed else "NOT PASSED"))
        return out


class GradedLab(Protocol):
    """What grading uses of the session (shell.session.LabSession)."""

    rt: LabRuntime
    out: Path
    ctx: Context

    def now(self) -> datetime: ...
    async def advance_to(self, when: datetime) -> None: ...


def settled(fate: Any) -> bool:
    """Has the ledger's fate of a message reached its end?"""
    return fate is not None and fate.fate in ("delivered", "failed", "partial")


def _parties(rt: LabRuntime) -> list[Any]:
    return [*rt.servers.values(), rt.exo, *rt.internet.values()]


def where_is(rt: LabRuntime, fate: Any) -> str:
    """Where an undelivered probe is: failed (and why), or the queue that holds it and its error."""
    if fate is None:
        return "it was never sent"
    if fate.failed:
        return "failed: " + "; ".join(x["reason"] for x in fate.failed)
    for party in _parties(rt):
        for q in party.queues.all():
            for qm in q.messages:
                if qm.item.message_id == fate.message_id:
                    return f"still queued in {q.identity}: {qm.last_error or q.last_error or q.status}"
    if any(h.message_id == fate.message_id for h in rt.service_state.outbox.held):
        return "still in the sender's Outbox (not submitted)"
    return "not delivered within the wait"


def queued(rt: LabRuntime) -> list[tuple[str, int]]:
    """Every queue that still holds messages, with its count, and the Outbox's."""
    left = []
    for party in _parties(rt):
        for q in party.queues.all():
            if q.messages:
                left.append((q.identity, len(q.messages)))
    outbox = rt.service_state.outbox.held
    if outbox:
        left.append(("Outbox", len(outbox)))
    return left


class Coach:
    """The exercise's hints, the submitted finding and the grade (exercise None: not an exercise)."""

    def __init__(self, lab: GradedLab, exercise: Exercise | None) -> None:
        self.lab = lab
        self.exercise = exercise
        self.hints_used = 0
        self.probes = 0
        self.finding: Submitted | None = None
        self.last_grade: Grade | None = None

    def _exercise(self) -> Exercise:
        if self.exercise is None:
            raise ShellError(NOT_AN_EXERCISE)
        return self.exercise

    def next_hint(self) -> str:
        ex = self._exercise()
        if self.hints_used >= len(ex.hints):
            return "No more hints."
        self.hints_used += 1
        return ex.hints[self.hints_used - 1]

    async def grade(self) -> Grade:
        ex = self._exercise()
        lab, rt = self.lab, self.lab.rt
        g = Grade(ex.objective)
        keys = []
        for probe in ex.check.probe:
            self.probes += 1
            key = f"exercise-probe-{self.probes}"
            msg = Message.model_validate({"id": key, "from": probe.sender, "to": probe.to,
                                          "subject": f"{probe.subject} {self.probes}"})
            rt.scheduler.call_at(lab.now(), f"message {key}", inject_message(rt, msg))
            keys.append((key, probe))
        limit = lab.now() + parse_timespan(ex.check.wait)
        while True:
            await lab.advance_to(min(limit, lab.now() + timedelta(seconds=60)))
            done = all(settled(rt.ledger.fates.get(k)) for k, _ in keys)
            if (done and (not ex.check.drained or not queued(rt))) or lab.now() >= limit:
                break
        for n, (key, probe) in enumerate(keys, 1):
            fate = rt.ledger.fates.get(key)
            realm, _, address = probe.mailbox.partition(":")
            hit = fate is not None and any(d["realm"] == realm and d["recipient"].lower() == address.lower()
                                           for d in fate.delivered)
            g.checks.append(CheckResult(f"probe message {n} delivered to {probe.mailbox}", hit,
                                        "" if hit else where_is(rt, fate)))
        if ex.check.drained:
            left = queued(rt)
            g.checks.append(CheckResult("queues drained", not left,
                                        "still queued: " + ", ".join(f"{q} ({n})" for q, n in left)))
        if ex.check.finding is not None:
            rt.flush_logs()
            for what, ok, detail in grade_finding(lab.out, rt.model, ex.check.finding, self.finding):
                g.checks.append(CheckResult(what, ok, detail))
        for r in ex.check.require:
            try:
                ok = truthy(await run_script(lab.ctx, parse(r.test)))
                detail = ""
            except ShellError as exc:
                ok, detail = False, f"{r.says} ({exc.message})"
            g.checks.append(CheckResult(r.says, ok, detail))
        return g

    # --- the exercise's verbs ---------------------------------------------------------------------------
    def register(self, ctx: Context) -> None:
        async def hint(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            text = self.next_hint()
            total = len(self.exercise.hints) if self.exercise else 0
            return [PSObject("LabHint", {"Hint": text, "Number": f"{self.hints_used} of {total}",
                                         "Remaining": total - self.hints_used}, views.HINT)]

        async def test_exercise(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            g = await self.grade()
            self.last_grade = g
            return ["\n".join(g.lines())]

        async def objective(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            return [self._exercise().objective]

        async def submit_finding(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            cause, evidence = p.get("Cause"), p.get("Evidence")
            if cause is None or evidence is None:
                raise ShellError("Submit-LabFinding needs -Cause and -Evidence (a session id or a protocol log line).",
                                 "InvalidArgument")
            if cell(cause) not in CAUSE_ACTIONS:
                raise ShellError(f"Cannot validate argument on parameter 'Cause'. The argument \"{cell(cause)}\" does "
                                 f"not belong to the set \"{','.join(CAUSE_ACTIONS)}\".", "InvalidArgument")
            link = [cell(x) for x in enumerate_value(p.get("Link"))] if p.get("Link") is not None else []
            self.finding = Submitted(cell(cause), cell(evidence), link)
            return [PSObject("LabFinding", {"Cause": self.finding.cause, "Evidence": self.finding.evidence,
                                            "Link": ",".join(link), "Submitted": self.lab.now()})]

        ctx.register(Spec("Submit-LabFinding", submit_finding, ("Cause", "Evidence", "Link"), (), ("Cause",),
                          "Names the cause of the fault, with a session that shows it (diagnosis exercises)."))
        ctx.register(Spec("Get-Hint", hint, (), (), (), "The exercise's next hint."))
        ctx.register(Spec("Test-Exercise", test_exercise, (), (), (), "Grades the exercise (sends its probe messages)."),
                     "Test-LabObjective")
        ctx.register(Spec("Get-LabObjective", objective, (), (), (), "The exercise's objective."))


__all__ = ["CheckResult", "Coach", "Grade", "GradedLab", "queued", "settled", "where_is"]
