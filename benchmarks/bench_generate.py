"""Benchmark: `labsim generate` (a corpus for analyzers) — log lines per second with one process
and with --jobs 2, and peak RSS.

Usage: .venv/bin/python benchmarks/bench_generate.py [--days 1] [--mailboxes 500] [--faults ...]

Each configuration is one fresh `labsim generate` subprocess; the log lines are the manifest's
`counts.log_rows` (every protocol, tracking and event-log row written), the wall time is the whole
process's, and the peak RSS is the largest resident set of the process and the children it reaped
(os.wait4: with --jobs 2 that is the biggest worker or the parent, not their sum). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(out: Path, days: int, mailboxes: int, faults: str, jobs: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "labsim.cli", "generate", "--out", str(out), "--days", str(days),
           "--mailboxes", str(mailboxes), "--jobs", str(jobs)] + (["--faults", faults] if faults else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"labsim generate exited {os.waitstatus_to_exitcode(status)}")
    counts = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["counts"]
    children = __import__("resource").getrusage(__import__("resource").RUSAGE_CHILDREN)
    return {"wall": wall, "rows": counts["log_rows"], "messages": counts["messages"],
            "rss_mib": max(rusage.ru_maxrss, children.ru_maxrss) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--mailboxes", type=int, default=500)
    ap.add_argument("--faults", default="cert-expired,net-port25-blocked-to-eop,queue-retry-until-expiry")
    ap.add_argument("--jobs", default="1,2")
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {a.days} day(s), {a.mailboxes} mailboxes, faults: {a.faults}")
    print(f"{'jobs':>4} {'messages':>9} {'log lines':>10} {'wall s':>8} {'lines/s':>9} {'lines/min':>11} "
          f"{'peak RSS MiB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (int(j) for j in a.jobs.split(",")):
            r = measure(Path(tmp) / f"j{jobs}", a.days, a.mailboxes, a.faults, jobs)
            rate = r["rows"] / r["wall"]
            print(f"{jobs:>4} {r['messages']:>9} {r['rows']:>10} {r['wall']:>8.1f} {rate:>9.0f} {rate * 60:>11.0f} "
                  f"{r['rss_mib']:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
