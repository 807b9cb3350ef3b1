"""Benchmark: wall time and peak memory of `labsim run`, and message throughput.

Usage: .venv/bin/python benchmarks/bench_run.py [--repeat 5] [--messages 200]

Each measurement is a fresh `labsim run` subprocess (what a user runs), so start-up, PKI
generation, binding every listener, the run and the log flush are all included. Peak memory is the
child's maximum resident set size (getrusage). The throughput run sends N messages on-prem -> EXO
and N Internet -> on-prem in one scenario (2-4 SMTP hops per message, STARTTLS on every hop).
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABSIM = [sys.executable, "-m", "labsim.cli"]


def run_once(args: list[str]) -> tuple[float, float, int]:
    """(process wall incl. interpreter start-up and imports, the run's own wall, peak RSS in KiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(LABSIM + args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"labsim {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    m = re.search(r"wall ([0-9.]+) s", proc.stdout)
    return wall, float(m.group(1)) if m else wall, max(peak, before)


def throughput_scenario(n: int, path: Path) -> None:
    base = (ROOT / "scenarios" / "hybrid-baseline.toml").read_text()
    head = base.split("[[message]]", 1)[0].replace('id = "hybrid-baseline"', 'id = "bench-throughput"')
    parts = [head]
    for i in range(n):
        parts.append(f'[[message]]\nid = "up-{i}"\nat = "+00:00:{i % 60:02d}"\nfrom = "raghu@cloudmonkeys.xyz"\n'
                     f'to = ["ramki@cloudmonkeys.xyz"]\nsubject = "bench {i}"\n\n')
        parts.append(f'[[message]]\nid = "in-{i}"\nat = "+00:01:{i % 60:02d}"\nfrom = "alex@fabrikam.com"\n'
                     f'to = ["raghu@cloudmonkeys.xyz"]\nsubject = "bench in {i}"\n\n')
    path.write_text("".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--messages", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        walls, runs, peaks = [], [], []
        for i in range(a.repeat):
            wall, run, peak = run_once(["run", "hybrid-baseline", "--out", f"{tmp}/base{i}"])
            walls.append(wall)
            runs.append(run)
            peaks.append(peak)
        print(f"labsim run hybrid-baseline: median {statistics.median(walls):.3f} s wall for the whole command "
              f"(min {min(walls):.3f}, max {max(walls):.3f}, n={a.repeat}), of which the run itself "
              f"median {statistics.median(runs):.3f} s; peak RSS {max(peaks) / 1024:.1f} MiB")
        for sid in ("queue-retry-until-expiry",):
            wall, run, peak = run_once(["run", sid, "--out", f"{tmp}/{sid}"])
            print(f"labsim run {sid} (two virtual days of retries): run {run:.3f} s, command {wall:.3f} s")
        scn = Path(tmp) / "bench-throughput.toml"
        throughput_scenario(a.messages, scn)
        wall, run, peak = run_once(["run", str(scn), "--out", f"{tmp}/tp"])
        total = 2 * a.messages
        print(f"throughput: {total} messages (2-4 SMTP hops each, STARTTLS on every hop) in {run:.2f} s of run = "
              f"{total / run:.1f} msg/s ({wall:.2f} s for the command); peak RSS {peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
