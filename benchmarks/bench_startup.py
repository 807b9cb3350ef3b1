"""Benchmark: start-up of `labsim list`, `show` and `run` as whole processes, what they import,
and the wall time of the whole scenario catalog.

Usage: .venv/bin/python benchmarks/bench_startup.py [--runs 7] [--skip-catalog]

Each command runs as a fresh process (what a user types), --runs times after one warm-up run, the
commands taken in turn (list, show, run, list, show, run ...) so a change in the machine's speed
hits all alike; wall time, the child's own CPU time and peak RSS (os.wait4) are printed as median,
min and max (on a loaded machine the CPU time is what one free core would take). Then `python -X importtime -m labsim.cli list` and `... show`: the packages that cost the most
to import (self time summed per top-level package). Then every scenario of the catalog is run
once, one `labsim run` process each, as the catalog is run today; the sum of their walls is the
catalog's total wall.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABSIM = [sys.executable, "-m", "labsim.cli"]
TARGETS = {"show": 0.3}  # issue 8: `labsim show` <= 0.3 s
CATALOG_TARGET = 8.0  # issue 8: the whole catalog <= 8 s


def timed(argv: list[str], cwd: Path) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MiB, exit code, CPU seconds) of one process; its output is discarded."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rc = proc.returncode
    if rc not in (0, 1):
        sys.exit(f"{' '.join(argv)} failed ({rc}):\n{err.decode(errors='replace')}")
    return wall, usage.ru_maxrss / 1024, rc, usage.ru_utime + usage.ru_stime


def _row(name: str, walls: list[float], cpus: list[float], peaks: list[float], target: float | None) -> str:
    med, cpu = statistics.median(walls), statistics.median(cpus)
    mark = "" if target is None else (f"  target <= {target:.2f} s: {'met' if med <= target else 'not met'} (wall), "
                                      f"{'met' if cpu <= target else 'not met'} (CPU)")
    return (f"  {name:<30} {med:7.3f} {min(walls):7.3f} {max(walls):7.3f}  {cpu:7.3f} {min(cpus):7.3f} "
            f"{max(cpus):7.3f}  {statistics.median(peaks):6.1f}{mark}")


def startup(runs: int, tmp: Path) -> None:
    commands = {
        "labsim list": ["list"],
        "labsim show hybrid-baseline": ["show", "hybrid-baseline"],
        "labsim run hybrid-baseline": ["run", "hybrid-baseline", "--out", str(tmp / "run")],
    }
    walls: dict[str, list[float]] = {k: [] for k in commands}
    peaks: dict[str, list[float]] = {k: [] for k in commands}
    cpus: dict[str, list[float]] = {k: [] for k in commands}
    load0 = os.getloadavg()[0]
    for i in range(runs + 1):
        for name, args in commands.items():
            wall, peak, _, cpu = timed(LABSIM + args, tmp)
            if i:  # the first round is the warm-up (file cache, .pyc)
                walls[name].append(wall)
                peaks[name].append(peak)
                cpus[name].append(cpu)
    print(f"start-up, whole processes ({runs} runs each after a warm-up, taken in turn; "
          f"load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores)")
    print(f"  {'command':<30} {'wall s: median':>15} {'min':>7} {'max':>7}  {'CPU s: median':>15} {'min':>7} "
          f"{'max':>7}  {'RSS MiB':>6}")
    for name in commands:
        print(_row(name, walls[name], cpus[name], peaks[name], TARGETS.get(commands[name][0])))


def import_offenders(args: list[str], tmp: Path, top: int = 8) -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "labsim.cli", *args], cwd=tmp,
                          capture_output=True, text=True)
    per_package: Counter[str] = Counter()
    total = 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        us, name = int(m.group(1)), m.group(4)
        per_package[name.split(".")[0]] += us
        total += us
    parts = ", ".join(f"{pkg} {us / 1000:.0f}" for pkg, us in per_package.most_common(top))
    print(f"  imports of `labsim {' '.join(args)}`: {total / 1000:.0f} ms in all; by package (ms): {parts}")


def catalog_wall(tmp: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from labsim.scenario.loader import list_scenarios

    ids = [sid for sid, _, _ in list_scenarios()]
    load0 = os.getloadavg()[0]
    rows = []
    for sid in ids:
        wall, peak, rc, cpu = timed(LABSIM + ["run", sid, "--out", str(tmp / "catalog" / sid)], tmp)
        rows.append((wall, sid, peak, rc, cpu))
    total = sum(r[0] for r in rows)
    failed = [sid for _, sid, _, rc, _ in rows if rc != 0]
    print(f"catalog: {len(ids)} scenarios, one `labsim run` process each, in {total:.1f} s of wall in all "
          f"({sum(r[4] for r in rows):.1f} s of CPU) "
          f"(target <= {CATALOG_TARGET:.0f} s: {'met' if total <= CATALOG_TARGET else 'not met'}; "
          f"load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after)")
    print(f"  per scenario: median {statistics.median(r[0] for r in rows):.2f} s, "
          f"peak RSS up to {max(r[2] for r in rows):.0f} MiB; slowest: "
          + ", ".join(f"{sid} {wall:.2f} s" for wall, sid, _, _, _ in sorted(rows, reverse=True)[:5]))
    if failed:
        print(f"  expectations failed in: {', '.join(failed)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=7, help="counted runs of each command")
    ap.add_argument("--skip-catalog", action="store_true", help="leave out the whole-catalog run")
    a = ap.parse_args()
    # an empty working folder: no ./scenarios beside it, so only the built-in catalog is found
    with tempfile.TemporaryDirectory(prefix="labsim-bench-startup-") as name:
        tmp = Path(name)
        startup(a.runs, tmp)
        import_offenders(["list"], tmp)
        import_offenders(["show", "hybrid-baseline"], tmp)
        if not a.skip_catalog:
            catalog_wall(tmp)


if __name__ == "__main__":
    main()
