"""The `labsim` console script: quiet on Ctrl-C from the first instant.

The entry point imports this tiny module first. Until `labsim.cli` (and what it imports) is
loaded, SIGINT/SIGTERM are only noted: raising from a signal handler in the middle of an import
can surface as another error (Python wraps exceptions raised inside a class body's `__set_name__`),
so the process ends with 130/143 and one line as soon as the imports are done (well under a
second); a second signal ends it at once. Nothing is written before then. Then the default
handlers come back and the command installs its own (`run` and `up` do: engine.interrupt, cli.cmd_up).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

_caught: list[int] = []


def _notice(signum: int) -> str:
    return f"labsim: interrupted ({signal.Signals(signum).name}) while starting; nothing was written\n"


def _early(signum: int, frame: FrameType | None) -> None:
    if _caught:  # asked twice: do not wait for the imports
        os.write(2, _notice(signum).encode())
        os._exit(128 + signum)
    _caught.append(signum)


# Installed as this module is imported: the earliest moment labsim's own code runs. (Before it,
# while the interpreter itself starts, a Ctrl-C is Python's.)
_PREVIOUS = {sig: signal.signal(sig, _early) for sig in (signal.SIGINT, signal.SIGTERM)}


def main() -> int:
    from .cli import main as cli_main

    if _caught:
        sys.stderr.write(_notice(_caught[0]))
        return 128 + _caught[0]
    for sig, handler in _PREVIOUS.items():
        signal.signal(sig, handler)
    return cli_main()
