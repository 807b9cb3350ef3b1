"""Shared fixtures for the lab-engine tests: the default topology, scenario files, one baseline run.

The baseline run (`labsim run hybrid-baseline`, in-process through the CLI) is made once per test
session and shared read-only by the integration tests; tests that need a different run make their
own (each takes about 0.3 s).
"""

from __future__ import annotations

import csv
import io
import json
import os
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labsim import cli
from labsim.topology.defaults import default_lab
from labsim.topology.model import Lab

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"
BASELINE_TOML = SCENARIOS / "hybrid-baseline.toml"
TESTS = Path(__file__).resolve().parent
SAMPLES = TESTS / "golden" / "logs"  # the real Exchange log excerpts (copies of shared/reference/samples)
SEEDS = TESTS / "data" / "seeds"  # the seed documents, verbatim (copies of shared/seeds)
# The project's shared folder is optional: beside the checkout (<repo>/../shared) or $LABSIM_SHARED.
SHARED = Path(os.environ.get("LABSIM_SHARED") or REPO.parent / "shared")
EXLOG_CHECK = Path(os.environ.get("EXLOG_CHECK") or SHARED / "tools" / "exlog_check.py")


def exlog_check() -> Path:
    """The independent log checker (shared/tools/exlog_check.py); skips the test when it is absent."""
    if not EXLOG_CHECK.is_file():
        pytest.skip(f"the independent log checker is not at {EXLOG_CHECK} (it lives in the project's shared "
                    "folder beside the checkout; set EXLOG_CHECK or LABSIM_SHARED to run this check)")
    return EXLOG_CHECK

TRAINING = """
[training]
symptom = "s"
evidence = "e"
root_cause = "r"
fix = "f"
"""

# One message per mail-flow direction of seed 001 §1, as in scenarios/hybrid-baseline.toml.
FOUR_DIRECTIONS = """
[[message]]
id = "exo-to-onprem"
at = "+00:00:05"
from = "ramki@cloudmonkeys.xyz"
to = ["raghu@cloudmonkeys.xyz"]

[[message]]
id = "onprem-to-exo"
at = "+00:01:00"
from = "raghu@cloudmonkeys.xyz"
to = ["ramki@cloudmonkeys.xyz"]

[[message]]
id = "onprem-to-internet"
at = "+00:02:00"
from = "raghu@cloudmonkeys.xyz"
to = ["alex@fabrikam.com"]

[[message]]
id = "internet-to-onprem"
at = "+00:03:00"
from = "alex@fabrikam.com"
to = ["raghu@cloudmonkeys.xyz"]
"""


def scenario_text(body: str = "", *, sid: str = "t", head: str = "") -> str:
    """A minimal valid scenario file with `body` (changes, messages, expectations) appended."""
    return f'id = "{sid}"\ntitle = "test scenario"\n{head}' + TRAINING + textwrap.dedent(body)


@pytest.fixture
def write_scenario(tmp_path: Path):
    """write_scenario(text, name="s.toml") -> Path of a scenario file in tmp_path."""

    def write(text: str, name: str = "s.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def lab() -> Lab:
    return default_lab()


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`labsim ARGV` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


def log_files(out: Path) -> list[Path]:
    """Every SMTP protocol log file of an output tree."""
    return sorted(p for p in out.rglob("*.LOG") if "ProtocolLog" in p.parts)


def rows_of(path: Path) -> list[list[str]]:
    """The data rows of one protocol log, each parsed by the csv module."""
    text = path.read_bytes().decode("utf-8-sig")
    return [next(csv.reader(io.StringIO(line))) for line in text.split("\r\n") if line and not line.startswith("#")]


def folder_rows(out: Path, server: str, service: str, kind: str) -> list[list[str]]:
    folder = out / server / "TransportRoles" / "Logs" / service / "ProtocolLog" / kind
    return [r for f in sorted(folder.glob("*.LOG")) for r in rows_of(f)]


def sessions(rows: list[list[str]]) -> dict[str, list[list[str]]]:
    """Rows grouped by session id, in file order."""
    out: dict[str, list[list[str]]] = {}
    for r in rows:
        out.setdefault(r[2], []).append(r)
    return out


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    out: Path

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.out / "summary.json").read_text(encoding="utf-8"))

    def message(self, mid: str) -> dict[str, Any]:
        return next(m for m in self.summary["messages"] if m["id"] == mid)


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`labsim run hybrid-baseline --out DIR`, once per session (read-only for the tests)."""
    out = tmp_path_factory.mktemp("baseline") / "out"
    rc, stdout, stderr = run_cli(["run", "hybrid-baseline", "--out", str(out)])
    return Run(rc, stdout, stderr, out)


def run_text(write_scenario, tmp_path: Path, body: str, name: str = "s", *, head: str = "",  # noqa: ANN001
             duration: str | None = None) -> Run:
    """Write a scenario made of `body` (plus `head` lines, a `duration`), run it, insist on exit 0."""
    if duration is not None:
        head = f'duration = "{duration}"\n' + head
    path = write_scenario(scenario_text(body, sid=name, head=head), f"{name}.toml")
    out = tmp_path / f"out-{name}"
    rc, stdout, stderr = run_cli(["run", str(path), "--out", str(out)])
    assert rc == 0, stdout + stderr
    return Run(rc, stdout, stderr, out)


# --------------------------------------------------------------------------- a live lab (`labsim up`) in a test


async def serving(scenario: Any, out: Path, body: Any, *, ready_timeout: float = 30.0) -> Any:
    """Serve `scenario` (an id, a path or a LoadedScenario) live into `out`, await `body(rt)`, then
    stop the lab the way Ctrl-C does and wait for it to finish. Returns the runtime."""
    import asyncio

    from labsim.engine.driver import serve
    from labsim.scenario.loader import LoadedScenario, load_scenario

    loaded = scenario if isinstance(scenario, LoadedScenario) else load_scenario(scenario)
    stop = asyncio.Event()
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(loaded, out=out, stop=stop, ready=ready.set_result))
    rt = await asyncio.wait_for(ready, ready_timeout)
    try:
        await body(rt)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return rt


def listen_address(rt: Any, *, host: str | None = None, vaddr: str | None = None,
                   what: str | None = None) -> tuple[str, int]:
    """The real (ip, port) of the first listener of a running lab matching every given column."""
    row = next(r for r in rt.listen_table
               if (host is None or r[0] == host) and (vaddr is None or r[1] == vaddr) and (what is None or r[4] == what))
    return row[2], row[3]


def free_udp_port(ips: list[str]) -> int:
    """A UDP port free on every given real address, so parallel test runs in one block do not clash."""
    import random
    import socket

    for _ in range(50):
        port = random.randint(20000, 60000)
        socks = []
        try:
            for ip in ips:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((ip, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no free UDP port on {', '.join(ips)}")


# --------------------------------------------------------------------------- small scenarios and waits

ONE_MESSAGE = """
[[message]]
id = "m"
at = "+00:00:05"
from = "raghu@cloudmonkeys.xyz"
to = ["alex@fabrikam.com"]
"""


def many_messages(n: int) -> str:
    """`n` on-prem -> EXO messages over the first minute: a run long enough to interrupt."""
    return "".join(f'[[message]]\nid = "m{i}"\nat = "+00:00:{i % 60:02d}"\nfrom = "raghu@cloudmonkeys.xyz"\n'
                   f'to = ["ramki@cloudmonkeys.xyz"]\n\n' for i in range(n))


def wait_until(cond: Any, seconds: float) -> bool:
    """Poll `cond()` (every 20 ms) until it holds or `seconds` pass; its last value."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())
