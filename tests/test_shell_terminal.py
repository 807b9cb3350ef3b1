"""`labsim shell` in a real terminal (a pseudo-terminal): Tab completes cmdlets and parameters, Up
recalls the last command, a fix typed at the prompt makes the mail flow, and leaving grades.

Reads are polled with a generous bound (the whole test normally takes a few seconds); nothing
asserts on speed."""

from __future__ import annotations

import os
import re
import select
import struct
import subprocess
import sys
import time

import pytest

fcntl = pytest.importorskip("fcntl", reason="needs a POSIX pseudo-terminal")
termios = pytest.importorskip("termios", reason="needs a POSIX pseudo-terminal")

pytestmark = [pytest.mark.integration]

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r")
BOUND = 120.0  # seconds: generous, for a loaded machine


class Terminal:
    def __init__(self, argv: list[str], cwd: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))  # 200 columns: no wrapping
        env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="160", LINES="50")
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                     close_fds=True, start_new_session=True)
        os.close(slave)
        self.seen = ""
        self.mark = 0

    def read_until(self, pattern: str) -> str:
        """Wait for `pattern` in what the terminal showed since the last keys were typed."""
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            if re.search(pattern, ANSI.sub("", self.seen[self.mark:])):
                return ANSI.sub("", self.seen)
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536).decode("utf-8", "replace")
                except OSError:  # the other end closed
                    break
        text = ANSI.sub("", self.seen[self.mark:])
        assert re.search(pattern, text), f"{pattern!r} never appeared; the terminal shows:\n{text[-3000:]}"
        return text

    def type(self, keys: str) -> None:
        self.mark = len(self.seen)
        os.write(self.master, keys.encode())

    def close(self, failed: bool) -> int:
        try:
            if failed:
                self.proc.kill()
            return self.proc.wait(timeout=BOUND)
        finally:
            os.close(self.master)


def test_completion_history_and_a_fix_in_a_terminal(tmp_path):
    out = tmp_path / "o"
    t = Terminal([sys.executable, "-m", "labsim.cli", "shell", "cert-tlscertname-no-private-key", "--exercise",
                  "--out", str(out)], cwd=str(tmp_path))
    failed = True
    try:
        t.read_until(r"\[PS\] C:\\Windows\\system32>")
        t.type("Skip-LabT\t")
        t.read_until(r"Skip-LabTime")
        t.type(" 00:02:00\r")
        t.read_until(r"Lab time is now 2026-05-01 06:02")
        t.type("Get-Queue -Fi\t")
        t.read_until(r"-Filter")
        t.type("\x15")  # Ctrl-U: clear the line
        t.type("Get-Queue | where {$_.Status -eq 'Retry'} | ft Identity,Status\r")
        t.read_until(r"CMHYBD01\\1\s+Retry")
        t.type("\x1b[A")  # Up: the last command comes back
        t.read_until(r"Get-Queue \| where \{\$_\.Status -eq 'Retry'\} \| ft Identity,Status")
        t.type("\x15Get-ExchangeCertificate | where {-not $_.HasPrivateKey} | Remove-ExchangeCertificate\r")
        t.read_until(r"system32>\s*$")
        t.type("Import-ExchangeCertificate -FileName C:\\certs\\mail-cloudmonkeys.pfx\r")
        t.read_until(r"system32>\s*$")
        t.type("Get-Queue | where {$_.Status -eq 'Retry'} | Retry-Queue\r")
        t.read_until(r"system32>\s*$")
        t.type("Get-Foo\r")
        t.read_until(r"The term 'Get-Foo' is not recognized")
        t.type("exit\r")
        text = t.read_until(r"Result: (PASSED|NOT PASSED)")
        assert "Result: PASSED" in text
        failed = False
    finally:
        code = t.close(failed)
    assert code == 0
    assert (out / "shell-transcript.json").is_file()
