"""`labsim shell ID|FILE [--exercise] [--replay] [--command "..."] [--out DIR] [--seed N]`.

Only argparse at import: `labsim list`/`show` build the whole parser and must start without the
engine or asyncio (tests/test_startup.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("shell", help="open an Exchange Management Shell on the scenario's running lab")
    sp.add_argument("scenario", help="scenario id or TOML file")
    sp.add_argument("--exercise", action="store_true", help="start broken, as the scenario's exercise: Get-Hint, "
                                                            "Test-Exercise; leaving the shell grades it")
    sp.add_argument("--replay", action="store_true", help="run the exercise's reference solution and grade it")
    sp.add_argument("--command", "-c", dest="shell_command", metavar="TEXT",
                    help="run these commands (';' between them) and leave; without it a stdin that is not a "
                         "terminal is read line by line")
    sp.add_argument("--out", help="output folder: the lab's logs and the transcript (default labsim-out/<id>-shell/)")
    sp.add_argument("--seed", type=int,
                    help="seed of the lab (ids, certificates, timing); default: the scenario's own seed")
    sp.set_defaults(fn=cmd_shell)


def cmd_shell(args: argparse.Namespace) -> int:
    import asyncio

    from ..engine.outdir import RunOutput, default_out
    from ..scenario.loader import load_scenario
    from .repl import Shell, Transcript, interactive, save_transcript
    from .session import LabSession

    loaded = load_scenario(args.scenario)
    scn = loaded.scenario
    exercise = bool(args.exercise or args.replay)
    if exercise and scn.exercise is None:
        raise InputError(str(loaded.path), f"scenario {scn.id} has no [exercise] (it cannot be graded)")
    out = Path(args.out) if args.out else default_out(scn.id, where=str(loaded.path), suffix="-shell")
    tty = args.shell_command is None and not args.replay and sys.stdin.isatty() and sys.stdout.isatty()
    if args.replay:
        assert scn.exercise is not None
        lines: list[str] = list(scn.exercise.solution)
    elif args.shell_command is not None:
        lines = [args.shell_command]
    elif not tty:
        lines = sys.stdin.read().splitlines()
    else:
        lines = []
    seed = scn.seed if args.seed is None else args.seed

    async def main() -> int:
        with RunOutput(out, scenario=scn.id, seed=seed) as output:
            session = LabSession(loaded, output.work, exercise=exercise, seed=seed, wall_clock=tty)
            transcript = Transcript(scn.id, exercise)
            shell = Shell(session, transcript)
            await session.start()
            code = 0
            try:
                if tty:
                    _banner(session)
                    await interactive(shell)
                else:
                    for line in lines:
                        await shell.execute(line, echo=True)
                        if shell.parse_errors:
                            break
                if shell.parse_errors and not tty:
                    code = 2
                else:
                    grade = await shell.finish()
                    if grade is not None:
                        code = 0 if grade.passed else 1
                    else:
                        code = 1 if shell.errors else 0
            finally:
                await session.stop()
            save_transcript(transcript, output.work)
            output.commit()
        print(f"labsim shell: transcript and logs under {out}/", file=sys.stderr)
        return code

    return asyncio.run(main())


def _banner(session: Any) -> None:
    scn = session.loaded.scenario
    print(f"labsim shell {scn.id}: {scn.title}")
    print(f"Connected to {session.local}. The lab's clock follows the wall clock; Start-Sleep -Seconds N or "
          "Skip-LabTime hh:mm:ss move it on. Tab completes cmdlets and -Parameters; 'exit' leaves.")
    if session.exercise is not None:
        print(f"Exercise: {session.exercise.objective}")
        print("Get-Hint shows the next hint; Test-Exercise grades (leaving the shell grades too).")
    sys.stdout.flush()
