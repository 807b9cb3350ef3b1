"""`labsim shell`: the prompt (prompt_toolkit: line editing, history, tab completion of cmdlets and
parameters), scripted use (--command, stdin), the transcript and the exit code.

Exit codes of scripted use: 0 the exercise passes (without --exercise: every command ran without
an error), 1 it does not, 2 bad input (a line that cannot be parsed, an unknown scenario).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .errors import ParseError, ShellError
from .evaluator import COMMON, Context
from .parser import parse
from .session import Grade, LabSession

PROMPT = "[PS] C:\\Windows\\system32>"


@dataclass
class Entry:
    command: str
    lab_time: str
    wall_seconds: float
    output: list[str]
    error: str | None = None


@dataclass
class Transcript:
    scenario: str
    exercise: bool
    entries: list[Entry] = field(default_factory=list)
    hints_used: int = 0
    grade: Grade | None = None

    def as_json(self) -> dict[str, Any]:
        g = self.grade
        return {
            "scenario": self.scenario, "exercise": self.exercise, "hints_used": self.hints_used,
            "commands": [{"command": e.command, "lab_time": e.lab_time, "wall_seconds": round(e.wall_seconds, 3),
                          "output": e.output, "error": e.error} for e in self.entries],
            "grade": None if g is None else {"objective": g.objective, "passed": g.passed,
                                              "checks": [{"what": c.what, "ok": c.ok, "detail": c.detail}
                                                         for c in g.checks]},
        }

    def as_text(self) -> str:
        lines = [f"labsim shell transcript: {self.scenario}" + (" (exercise)" if self.exercise else "")]
        for e in self.entries:
            lines.append(f"[{e.lab_time}] {PROMPT} {e.command}")
            lines += e.output
        lines.append(f"hints used: {self.hints_used}")
        if self.grade is not None:
            lines += self.grade.lines()
        return "\n".join(lines) + "\n"


def error_lines(line: str, exc: ShellError, command: str | None = None) -> list[str]:
    """An error as PowerShell prints it: what failed, where, and the category."""
    if isinstance(exc, ParseError):
        col = max(1, exc.column)
        return [f"At line:1 char:{col}", f"+ {line}", "+ " + " " * (col - 1) + "~", exc.message,
                "    + CategoryInfo          : ParserError: (:) [], ParentContainsErrorRecordException"]
    head = f"{command} : {exc.message}" if command else exc.message
    kind = "CommandNotFoundException" if "is not recognized as the name" in exc.message else "Exception"
    return [head, f"    + CategoryInfo          : {exc.category}: (:) [{command or ''}], {kind}"]


class Shell:
    def __init__(self, session: LabSession, transcript: Transcript, stream: TextIO | None = None) -> None:
        self.session = session
        self.transcript = transcript
        self.stream = stream if stream is not None else sys.stdout
        self.lock = asyncio.Lock()
        self.parse_errors = 0
        self.errors = 0

    async def execute(self, line: str, *, echo: bool = False) -> list[str]:
        """Run one input line; prints and records its output. Returns the printed lines."""
        text = line.rstrip("\n")
        if not text.strip():
            return []
        async with self.lock:
            s = self.session
            await s.catch_up()
            t0 = time.monotonic()
            lab_time = s.now().strftime("%Y-%m-%d %H:%M:%S")
            s.notes.clear()
            error: str | None = None
            out: list[str] = []
            try:
                script = parse(text)
            except ParseError as exc:
                self.parse_errors += 1
                out = list(s.notes) + error_lines(text, exc)
                error = exc.message
                script = None
            for st in script.statements if script is not None else ():
                s.notes.clear()
                try:
                    values = await _run(s.ctx, st)
                    out += list(s.notes) + s.render(values)
                except ShellError as exc:
                    self.errors += 1
                    out += list(s.notes) + error_lines(text, exc, exc.command)
                    error = exc.message
            self.transcript.entries.append(Entry(text, lab_time, time.monotonic() - t0, out, error))
            self.transcript.hints_used = s.hints_used
        if echo:
            print(f"{PROMPT} {text}", file=self.stream)
        for ln in out:
            print(ln, file=self.stream)
        self.stream.flush()
        return out

    async def finish(self) -> Grade | None:
        """Leaving grades an exercise (and prints what still fails)."""
        s = self.session
        if s.exercise is None:
            return None
        async with self.lock:
            g = await s.grade()
        self.transcript.grade = g
        self.transcript.hints_used = s.hints_used
        for ln in g.lines():
            print(ln, file=self.stream)
        return g


async def _run(ctx: Context, st: Any) -> list[Any]:
    from .evaluator import run_script
    from .parser import Script

    return await run_script(ctx, Script((st,)))


# --- interactive ---------------------------------------------------------------------------------------
def make_completer(ctx: Context) -> Any:
    from prompt_toolkit.completion import Completer, Completion

    class ShellCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Iterable[Any]:
            before = document.text_before_cursor
            word = document.get_word_before_cursor(WORD=True)
            element = before.split("|")[-1].strip()
            if word.startswith("-"):
                name = element.split()[0] if element.split() else ""
                try:
                    spec = ctx.lookup(name)
                except ShellError:
                    return
                for p in list(spec.params) + [c for c in COMMON if spec.common]:
                    if p.lower().startswith(word[1:].lower()):
                        yield Completion("-" + p, start_position=-len(word))
                return
            if element == word:  # the command position
                names = ctx.names() + sorted(ctx.aliases)
                for n in names:
                    if n.lower().startswith(word.lower()):
                        yield Completion(n, start_position=-len(word))

    return ShellCompleter()


async def interactive(shell: Shell) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory
    from prompt_toolkit.patch_stdout import patch_stdout

    ps: PromptSession[str] = PromptSession(completer=make_completer(shell.session.ctx), history=InMemoryHistory(),
                                           complete_while_typing=False)
    stop = asyncio.Event()

    async def ticker() -> None:  # the lab lives while the trainee thinks
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                async with shell.lock:
                    await shell.session.catch_up()
                    shell.session.rt.flush_logs()

    task = asyncio.create_task(ticker())
    try:
        with patch_stdout():
            while True:
                try:
                    line = await ps.prompt_async(PROMPT + " ")
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if line.strip().lower() in ("exit", "quit", "logout"):
                    break
                await _interruptible(shell, line)
    finally:
        stop.set()
        await task


async def _interruptible(shell: Shell, line: str) -> None:
    """Run one command; Ctrl-C while it runs (a long Start-Sleep) stops it at the next safe point
    (session.advance_to) instead of ending the shell. At the prompt prompt_toolkit reads Ctrl-C
    itself (it clears the line)."""
    import signal

    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        shell.session.stop_requested = True

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):  # no signal handlers here (not the main thread)
        await shell.execute(line)
        return
    try:
        await shell.execute(line)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        shell.session.stop_requested = False


def save_transcript(transcript: Transcript, out: Any) -> None:
    (out / "shell-transcript.txt").write_text(transcript.as_text(), encoding="utf-8")
    (out / "shell-transcript.json").write_text(json.dumps(transcript.as_json(), indent=2) + "\n", encoding="utf-8")
