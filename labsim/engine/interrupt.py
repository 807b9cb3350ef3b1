"""Ctrl-C and SIGTERM during `labsim run`: stop within a second, leave the previous output intact.

Theory of operation
-------------------
asyncio's own SIGINT handling (asyncio.run) cancels the main task and raises KeyboardInterrupt
once the task has unwound. Two things make that slow or noisy: cancellation only lands at the next
`await`, so a long synchronous phase (serialising a large queue state to JSON, measured at 25 s for
3,000 messages) runs to its end first, and the KeyboardInterrupt comes out as a traceback.

SignalGuard installs its own handlers for SIGINT and SIGTERM (plain `signal.signal` handlers, which
Python runs between bytecodes even inside synchronous code, unlike `loop.add_signal_handler`):

1. The first signal cancels the main task and wakes the loop. The run unwinds normally: sessions
   close, engine.outdir removes the run's temporary tree, and `run()` raises Interrupted.
2. If that has not finished within GRACE_SECONDS (a synchronous phase is running, or removing
   the temporary tree is slow), a SIGALRM ends the process from the handler: every uncommitted
   temporary tree is renamed out of the way and removed by a detached child (outdir.abandon;
   unlinking thousands of files took up to 10 s on a disk mounted with `discard`), the one-line
   notice is printed, the exit handlers run, and os._exit ends the process. It waits while
   outdir is renaming a tree (outdir.busy, microseconds), so a swap is never cut in two. A second
   signal takes the same path at once.

Outside `run()` (loading a scenario, printing the summary) a signal raises Interrupted where it
lands. Interrupted derives from KeyboardInterrupt so that no `except Exception` swallows it.

Exit codes follow the shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, TypeVar

from . import outdir

GRACE_SECONDS = 0.5
_RETRY_SECONDS = 0.05
_SIGNALS = (signal.SIGINT, signal.SIGTERM)

T = TypeVar("T")


class Interrupted(KeyboardInterrupt):
    """The user stopped labsim with a signal; `exit_code` is 128 + its number."""

    def __init__(self, signum: int, *, finished: bool = False) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.finished = finished  # the run had completed (its output is in place) when it came
        super().__init__(self.name)


class SignalGuard:
    """`with SignalGuard() as guard: guard.run(coroutine_function, ...)`.

    `notice` is the one line for an interruption before the coroutine finished, `notice_finished`
    the one for after; either may contain `{signal}`. line(exc) picks one; the handler prints it
    itself when it has to end the process. Handlers are restored on leaving the block. Off the
    main thread (where Python cannot take signals) the guard installs nothing.
    """

    def __init__(self, notice: str = "labsim: interrupted by {signal}",
                 notice_finished: str = "labsim: interrupted by {signal}") -> None:
        self.notice = notice
        self.notice_finished = notice_finished
        self.signum: int | None = None
        self.finished = False  # run() has put its output in place (or its coroutine returned)
        self._commits = outdir.commits()
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (*_SIGNALS, signal.SIGALRM):
            self._saved[sig] = signal.getsignal(sig)
        for sig in _SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _done(self) -> bool:
        return self.finished or outdir.commits() > self._commits

    def line(self, exc: Interrupted) -> str:
        return (self.notice_finished if exc.finished else self.notice).format(signal=exc.name)

    def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """asyncio.run(fn(*args, **kwargs)); raises Interrupted if a signal stopped it."""

        async def main() -> T:
            self._loop = asyncio.get_running_loop()
            self._loop.set_exception_handler(self._on_loop_error)
            self._task = asyncio.current_task()
            result = await fn(*args, **kwargs)
            self.finished = True
            return result

        try:
            result = asyncio.run(main())
        except asyncio.CancelledError:
            if self.signum is None:
                raise
            # The process is about to exit: move the cancelled lab (a million objects after a few
            # thousand messages) out of the collector's sight, or the interpreter's final
            # collection walks it for seconds before the process can end.
            gc.freeze()
            raise Interrupted(self.signum, finished=self._done()) from None
        finally:
            if self._saved:
                signal.setitimer(signal.ITIMER_REAL, 0)
            self._task = self._loop = None
        if self.signum is not None:  # the run swallowed the cancellation and finished
            raise Interrupted(self.signum, finished=True)
        return result

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Once interrupted, asyncio.run cancels the sessions still open; a cancelled session is
        # then reported by asyncio's stream callbacks as an error with a traceback (Python 3.11).
        # That is the interruption itself, not a fault: it is not reported.
        if self.signum is not None and isinstance(context.get("exception"), asyncio.CancelledError):
            return
        loop.default_exception_handler(context)

    # --- handlers (run in the main thread, between bytecodes) ---------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            self._exit_now()  # a second signal: no more waiting
            return
        self.signum = signum
        task, loop = self._task, self._loop
        if task is None or loop is None or task.done():
            raise Interrupted(signum, finished=self._done())
        task.cancel()
        loop.call_soon_threadsafe(lambda: None)  # wake a select() that waits for a far timer
        signal.setitimer(signal.ITIMER_REAL, GRACE_SECONDS)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self._exit_now()

    def _exit_now(self) -> None:
        if outdir.busy():  # a tree is being swapped in or removed: let that finish first
            signal.setitimer(signal.ITIMER_REAL, _RETRY_SECONDS)
            return
        outdir.abandon()
        signum = self.signum or signal.SIGINT
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        try:
            sys.stderr.write(self.line(Interrupted(signum, finished=self._done())) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        _run_exit_handlers()  # e.g. the PKI's temporary key folders (weakref.finalize)
        os._exit(128 + signum)


def _run_exit_handlers() -> None:
    run: Callable[[], None] | None = getattr(atexit, "_run_exitfuncs", None)
    if run is not None:
        try:
            run()
        except BaseException:  # noqa: BLE001 - we are leaving anyway; the notice is printed
            pass
