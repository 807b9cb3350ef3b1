"""The lab under fuzz: `serve()` on loopback, its error log captured, its ledger told about fuzz mail.

The fuzzer is a stranger on 127.0.0.1 like any outside client (tests/test_live_mode.py); the only
things it takes from the running lab are the listener table (where to connect), the topology's
mailboxes (whom to write to), the ledger (to register each fuzz Message-ID before it is sent, so
the lab's own ground truth follows it) and, while waiting for mail to settle, the queues.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labsim.engine.driver import serve
from labsim.scenario.loader import load_scenario

from .sessions import Entry


@dataclass(frozen=True)
class Usage:
    rss_kb: int
    fds: int

    def __str__(self) -> str:
        return f"RSS {self.rss_kb / 1024:.1f} MB, {self.fds} fds"


def usage() -> Usage | None:
    """This process's resident memory and open file descriptors (None where /proc is absent)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    gc.collect()
    release_freed_memory()
    m = re.search(r"^VmRSS:\s+(\d+)", status.read_text(), re.MULTILINE)
    return Usage(int(m.group(1)) if m else 0, len(os.listdir("/proc/self/fd")))


def release_freed_memory() -> None:
    """Hand memory that is free but still held by the C allocator back to the system (glibc's
    malloc_trim), so RSS measures what is in use rather than the high-water mark of a burst of
    large lines: the property is about leaks, not about how glibc caches freed arenas."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class ErrorLog(logging.Handler):
    """Every ERROR the lab or asyncio logs while the fuzzer runs (a traceback is a crash)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.fuzz_peer = peer_of(record)
        self.records.append(record)


def peer_of(record: logging.LogRecord) -> tuple[str, int] | None:
    """The client address of the connection a logged exception was raised in: the peer of the
    StreamWriter found in the traceback's frames (the session's own), so a crash is pinned on the
    fuzz session that caused it even when many run at once."""
    tb = record.exc_info[2] if record.exc_info else None
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, asyncio.StreamWriter):
                peer = value.get_extra_info("peername")
                if peer:
                    return peer[0], peer[1]
        tb = tb.tb_next
    return None


def describe_task(task: asyncio.Task) -> str:
    """A task by its coroutine and, for an SMTP server session, who it was talking to."""
    text = task.get_coro().__qualname__
    coro: Any = task.get_coro()
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        session = coro.cr_frame.f_locals.get("session")
        if session is not None and hasattr(session, "context") and hasattr(session, "policy"):
            listener = getattr(session.policy, "listener", None)
            where = f"{listener.service} port {listener.port}" if listener else type(session.policy).__name__
            helo = getattr(session.state, "helo", None)
            return f"{text}: an SMTP session at {where} from {session.context.get('remote')} (EHLO {helo})"
        coro = getattr(coro, "cr_await", None)
    return text


def signature(record: logging.LogRecord) -> str:
    """What a crash is: the logged message, the exception and the innermost labsim frame."""
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        tb, where = record.exc_info[2], ""
        while tb is not None:
            path = tb.tb_frame.f_code.co_filename
            if "labsim" in path:
                where = f"{path[path.rindex('labsim'):]}:{tb.tb_lineno}"
            tb = tb.tb_next
        text += f": {exc.__class__.__name__}: {str(exc)[:160]}" + (f" at {where}" if where else "")
    return text


class LabUnderTest:
    """`labsim up` in-process, on wall-clock time, for one fuzz run."""

    LOGGERS = ("labsim", "asyncio")

    def __init__(self, out: Path, scenario: str = "hybrid-baseline") -> None:
        self.out = out
        self.scenario = scenario
        self.rt: Any = None
        self.errors = ErrorLog()
        self.stop_error: str | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self.errors)
        loaded = load_scenario(self.scenario)
        ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(serve(loaded, out=self.out, stop=self._stop, ready=ready.set_result))
        self.rt = await asyncio.wait_for(ready, 30)

    async def stop(self) -> None:
        """Stop the lab (it writes its logs and summary.json); a failure to stop is itself a crash."""
        self._stop.set()
        try:
            if self._task is not None:
                await asyncio.wait_for(self._task, 60)
        except Exception as exc:  # noqa: BLE001 - reported as a finding, not raised
            import traceback
            self.stop_error = "".join(traceback.format_exception(exc))[-2000:]
            try:
                await self.rt.stop()  # the listeners must not outlive the run
            except Exception:  # noqa: BLE001
                pass
        finally:
            for name in self.LOGGERS:
                logging.getLogger(name).removeHandler(self.errors)

    async def leftovers(self) -> list[str]:
        """Tasks still running after the lab stopped (each an SMTP session nobody closed), then
        cancelled so that they do not outlive the run."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        found = [describe_task(t) for t in tasks]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        return found

    # --- what the fuzzer needs to know ---------------------------------------------------------
    def entries(self) -> list[Entry]:
        """The five doors of the lab: the Front End, the Edge, EOP, an Internet MTA, the Hub (2525)."""
        model = self.rt.model
        org = model.organization
        onprem = [m.primary_smtp_address for m in org.mailboxes]
        remote = [m.primary_smtp_address for m in org.remote_mailboxes]
        domain = onprem[0].split("@", 1)[1]
        mta = model.internet_hosts[0]
        outsider = mta.mailboxes[0]
        org_rcpts = tuple(onprem[:1] + remote[:1] + [f"nobody.fuzz@{domain}"])
        rows = self.rt.listen_table

        def row(what: str, port: int | None = None) -> tuple[str, int, str]:
            for _host, vip, real_ip, real_port, w in rows:
                if w == what and (port is None or vip.endswith(f":{port}")):
                    return real_ip, real_port, f"{w} {vip}"
            raise LookupError(f"no listener {what!r} (port {port}) in the lab's listen table")

        def entry(name: str, where: tuple[str, int, str], sender: str, rcpts: tuple[str, ...], names: bool) -> Entry:
            return Entry(name, where[0], where[1], where[2], sender, rcpts, names)

        return [
            entry("FrontEnd", row("SMTP FrontEnd", 25), outsider, org_rcpts, True),
            entry("Edge", row("SMTP Edge", 25), outsider, org_rcpts, True),
            entry("EOP", row("SMTP EOP front end"), outsider, org_rcpts, True),
            entry("MTA", row("SMTP Internet MTA"), onprem[0], (outsider, f"nobody.fuzz@{mta.domains[0]}"), False),
            entry("Hub", row("SMTP Hub", 2525), outsider, org_rcpts, True),
        ]

    def register(self, mid: str, sender: str, recipients: list[str]) -> None:
        """Tell the ledger about a fuzz message, so its fate is followed like scenario traffic."""
        self.rt.ledger.register(mid, mid, sender, recipients, "labsim fuzz")

    def settled(self, mid: str) -> bool:
        """Has the message reached a fate: delivered or failed, or waiting in a queue with an error?"""
        if self.rt.ledger.has_outcome(mid):  # delivered or failed (the ledger's fates live in its spool)
            return True
        parties = [*self.rt.servers.values(), self.rt.exo, *self.rt.internet.values()]
        for party in parties:
            for q in party.queues.all():
                for qm in q.messages:
                    if qm.item.message_id == mid and (qm.last_error or q.last_error):
                        return True
        return False
