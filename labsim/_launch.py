"""The `labsim` console script: quiet on Ctrl-C from the first instant.

The entry point imports this tiny module first. Until `labsim.cli` (and what it imports) is
loaded, SIGINT/SIGTERM end the process with 130/143 and one line instead of a traceback from the
middle of an import; then the default handlers come back and the command installs its own
(`run` and `up` do, see engine.interrupt and cli.cmd_up).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _early_exit(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write(f"labsim: interrupted ({signal.Signals(signum).name}) while starting; nothing was written\n")
    raise SystemExit(128 + signum)


# Installed as this module is imported: the earliest moment labsim's own code runs. (Before it,
# while the interpreter itself starts, a Ctrl-C is Python's.)
_PREVIOUS = {sig: signal.signal(sig, _early_exit) for sig in (signal.SIGINT, signal.SIGTERM)}


def main() -> int:
    from .cli import main as cli_main

    for sig, handler in _PREVIOUS.items():
        signal.signal(sig, handler)
    return cli_main()
