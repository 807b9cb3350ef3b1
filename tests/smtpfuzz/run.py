"""The fuzz run: start the lab, greet it normally, fuzz it, pin crashes on inputs, settle, judge.

Order of a run (each step bounded):
 1. start `serve()`; an ordinary session at each entry (the harness works, caches are warm);
 2. measure RSS and fds; run the corpus at every entry and the random sessions, `concurrency` at
    a time;
 3. pin every ERROR the lab logged on the session it happened in (by the client address of the
    connection in its traceback); one that cannot be pinned so is replayed: the sessions that
    overlapped it, one at a time, until one reproduces it alone;
 4. wait for the lab's sessions to close; an ordinary session at each entry again;
 5. wait until every accepted message has a fate; measure RSS and fds; stop the lab; whatever
    still runs after the stop is a session nobody closed;
 6. check the logs, account for every accepted message, collect the findings.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from .corpus import CORPUS, CORPUS_BASE
from .inputs import Gen
from .lab import LabUnderTest, Usage, signature, usage
from .sessions import KINDS, Ctx, Entry, MessageBook, Session, choose_kind, normal, play
from .verdict import (
    FD_SLACK,
    FuzzReport,
    account,
    check_log_bytes,
    check_logs,
    check_usage,
    read_summary,
)

SETTLE_LIMIT = 30.0  # seconds to wait for accepted mail to reach a fate
SETTLE_STALL = 4.0  # ... unless none has found one for this long
OPEN_DOORS_ONLY = {"rcpt-flood"}  # kinds that prove nothing where a stranger may not send (the Hub)
REPLAY_SUSPECTS = 12  # sessions replayed alone per kind of crash


@dataclass
class FuzzConfig:
    seed: int = 1
    sessions: int = 150
    concurrency: int = 10
    only: tuple[int, ...] = ()  # replay just these session numbers of the seed

    @classmethod
    def from_env(cls, sessions: int, seed: int = 1) -> "FuzzConfig":
        only = tuple(int(x) for x in os.environ.get("LABSIM_FUZZ_ONLY", "").replace(",", " ").split())
        return cls(seed=int(os.environ.get("LABSIM_FUZZ_SEED", seed)),
                   sessions=int(os.environ.get("LABSIM_FUZZ_SESSIONS", sessions)),
                   concurrency=int(os.environ.get("LABSIM_FUZZ_CONCURRENCY", 10)), only=only)


def script_of(kind: str) -> tuple[Callable[[Ctx], Awaitable[None]], float]:
    if kind.startswith("corpus:"):
        return CORPUS[kind.removeprefix("corpus:")], 30.0
    _, script, bound = KINDS[kind]
    return script, bound


def plan(cfg: FuzzConfig, entries: list[Entry]) -> list[Session]:
    """The corpus at every entry, then the random sessions. Session i of a seed is always the same
    kind, at the same entry, with the same random source."""
    names = list(CORPUS)
    corpus = range(CORPUS_BASE, CORPUS_BASE + len(names) * len(entries))
    out = []
    for i in (cfg.only or [*corpus, *range(cfg.sessions)]):
        if i >= CORPUS_BASE:
            k = i - CORPUS_BASE
            out.append(Session(i, f"corpus:{names[k // len(entries)]}", entries[k % len(entries)], f"corpus/{k}"))
            continue
        seed = f"{cfg.seed}/{i}"
        g = Gen(seed)
        kind = choose_kind(g)
        doors = [e for e in entries if e.name != "Hub"] if kind in OPEN_DOORS_ONLY else entries
        out.append(Session(i, kind, g.pick(doors), seed))
    return out


async def run_plan(sessions: list[Session], book: MessageBook, concurrency: int) -> list[Session]:
    gate = asyncio.Semaphore(concurrency)

    async def one(s: Session) -> Session:
        async with gate:
            script, bound = script_of(s.kind)
            await play(s, book, script, bound)
            if not s.findings and s.index not in book.writers and s.end != "server-closed":
                s.transcript.forget()  # nothing to report and no mail to account for: keep memory flat
            return s

    return list(await asyncio.gather(*(one(s) for s in sessions)))


async def normal_sessions(entries: list[Entry], book: MessageBook, first: int) -> list[Session]:
    return list(await asyncio.gather(*(play(Session(first - i, "normal", e, "normal"), book, normal, 30.0)
                                       for i, e in enumerate(entries))))


def judge_normal(report: FuzzReport, sessions: list[Session], when: str) -> None:
    for s in sessions:
        sent = [m for m in report.book.sent.values() if m.session == s.index]
        ok = s.end == "quit" and not s.findings and (s.entry.name == "Hub" or any(m.accepted for m in sent))
        if not ok:
            report.add("normal", f"{when}, an ordinary session at {s.entry.name} ({s.entry.what}) did not go "
                                 f"through (end: {s.end}; {[f.detail for f in s.findings]}):\n{s.transcript.render()}")


def dropped_after_command(s: Session) -> bool:
    """Did the server drop the connection right after a client write, without a 421 or 221?"""
    ev = s.transcript.events
    return s.end == "server-closed" and len(ev) >= 2 and ev[-2][0] == "C"


async def attribute_crashes(lab: LabUnderTest, sessions: list[Session], book: MessageBook) -> list[str]:
    """Pin each logged ERROR on the session it happened in (by the connection's client address);
    what cannot be pinned so is replayed: the overlapping sessions one at a time, until one
    reproduces it alone."""
    found: dict[str, str] = {}
    by_local = {}
    for s in sessions:
        if s.local is not None:
            by_local.setdefault(s.local, []).append(s)
    unpinned: dict[str, list[float]] = {}
    for rec in list(lab.errors.records):
        sig = signature(rec)
        peer = getattr(rec, "fuzz_peer", None)
        owner = next((s for s in by_local.get(peer, []) if s.started - 0.5 <= rec.created <= s.ended + 1.0), None) \
            if peer else None
        if owner is None:
            unpinned.setdefault(sig, []).append(rec.created)
            continue
        owner.find("crash", f"the lab logged {sig!r} in this session")
        found.setdefault(sig, f"{sig} <- session #{owner.index} ({owner.kind} at {owner.entry.name})")
    for sig, times in unpinned.items():
        if sig not in found:
            found[sig] = await replay_suspects(lab, sessions, book, sig, times)
    return list(found.values())


async def replay_suspects(lab: LabUnderTest, sessions: list[Session], book: MessageBook, sig: str,
                          times: list[float]) -> str:
    suspects = sorted((s for s in sessions if any(s.started - 0.2 <= t <= s.ended + 0.5 for t in times)),
                      key=lambda s: (not dropped_after_command(s), min(abs(t - s.ended) for t in times)))
    for s in suspects[:REPLAY_SUSPECTS]:
        before = sum(1 for r in lab.errors.records if signature(r) == sig)
        replay = Session(s.index, s.kind, s.entry, s.seed)
        script, bound = script_of(s.kind)
        await play(replay, book, script, bound)
        await asyncio.sleep(0.1)
        if sum(1 for r in lab.errors.records if signature(r) == sig) > before:
            replay.find("crash", f"the lab logged {sig!r} (reproduced by this session alone)")
            sessions.append(replay)
            return f"{sig} <- session #{replay.index} ({replay.kind} at {replay.entry.name}, replayed alone)"
    return f"{sig} (not pinned on a session; {len(times)} time(s))"


async def wait_for_quiet(before: Usage | None, limit: float = 10.0) -> None:
    """Give the lab time to close the sessions the fuzzer left (fds back within the slack)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        now = usage()
        if before is None or now is None or now.fds <= before.fds + FD_SLACK // 2:
            return
        await asyncio.sleep(0.2)


async def wait_for_fates(lab: LabUnderTest, book: MessageBook, limit: float = SETTLE_LIMIT) -> None:
    """Until every accepted message has a fate, or none has found one for SETTLE_STALL seconds."""
    end = time.monotonic() + limit
    last, progress = -1, time.monotonic()
    while time.monotonic() < end and time.monotonic() - progress < SETTLE_STALL:
        waiting = sum(not lab.settled(s.mid) for s in book.accepted())
        if waiting == 0:
            break
        if waiting != last:
            last, progress = waiting, time.monotonic()
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # room for what should not happen (a smuggled message) to show itself


async def fuzz(out: Path, cfg: FuzzConfig) -> FuzzReport:
    t0 = time.monotonic()
    lab = LabUnderTest(out)
    book = MessageBook(f"s{cfg.seed}", lab.register)
    report = FuzzReport(cfg.seed, book, [], out)
    clock = [t0]

    def phase(name: str) -> None:
        now = time.monotonic()
        report.phases[name] = now - clock[0]
        clock[0] = now

    await lab.start()
    try:
        phase("start")
        entries = lab.entries()
        warm = await normal_sessions(entries, book, -1)
        judge_normal(report, warm, "before the fuzz")
        await wait_for_fates(lab, book, 10.0)
        report.usage_before = usage()
        phase("warm-up")
        report.sessions = await run_plan(plan(cfg, entries), book, cfg.concurrency)
        phase("fuzz")
        await asyncio.sleep(0.5)
        report.crashes = await attribute_crashes(lab, report.sessions, book)
        phase("attribute")
        await wait_for_quiet(report.usage_before)
        after = await normal_sessions(entries, book, -100)
        judge_normal(report, after, "after the fuzz")
        await wait_for_fates(lab, book)
        report.usage_after = usage()
        report.sessions += warm + after
        phase("settle")
    finally:
        await lab.stop()
    leftovers = await lab.leftovers()
    phase("stop")
    report.tracebacks = len(lab.errors.records)
    if lab.stop_error:
        report.crashes.append(f"the lab failed while stopping:\n{lab.stop_error}")
        report.add("crash", f"the lab failed while stopping (logs and summary.json may be missing):\n{lab.stop_error}")
    for c in report.crashes:
        if "not pinned on a session" in c:
            report.add("crash", f"the lab logged {c}")
    report.session_findings()
    check_usage(report)
    for left in leftovers:
        report.add("resources", f"still running after the lab stopped: {left}")
    check_logs(report)
    check_log_bytes(report)
    account(report, read_summary(out, lab.rt))
    phase("judge")
    report.seconds = time.monotonic() - t0
    return report
