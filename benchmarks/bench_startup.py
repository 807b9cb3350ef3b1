"""Benchmark: start-up of `labsim list`, `show` and `run` as whole processes, what they import,
and the wall time of the whole scenario catalog.

Usage: .venv/bin/python benchmarks/bench_startup.py [--runs 7] [--skip-catalog | --catalog-only]
       [--catalog-rounds N]

Each command runs as a fresh process (what a user types), --runs times after one warm-up run, the
commands taken in turn (list, show, run, list, show, run ...) so a change in the machine's speed
hits all alike; wall time, the child's own CPU time and peak RSS (os.wait4) are printed as median,
min and max (on a loaded machine the CPU time is what one free core would take). Then `python -X importtime -m labsim.cli list` and `... show`: the packages that cost the most
to import (self time summed per top-level package). Then every scenario of the catalog is run
once, one `labsim run` process each; the sum of their walls is the catalog's total wall that way.
Beside it, the same catalog in one process, `labsim run --all` (each scenario on its own event loop
and LabRuntime, the PKI's certificates and the DNS zones built once per process), under the same
conditions: the two are taken in turn, --catalog-rounds times, and the median of each is compared.
The trees the two ways write are compared file by file (they must be byte-identical).
"""

from __future__ import annotations

import argparse
import filecmp
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
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "labsim.cli", *args], cwd=tmp, check=False,
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


def _per_process(ids: list[str], out: Path, tmp: Path) -> list[tuple[float, str, float, int, float]]:
    rows = []
    for sid in ids:
        wall, peak, rc, cpu = timed(LABSIM + ["run", sid, "--out", str(out / sid)], tmp)
        rows.append((wall, sid, peak, rc, cpu))
    return rows


def _differences(a: Path, b: Path) -> list[str]:
    """Paths (relative) whose presence or bytes differ between two trees."""
    found: list[str] = []

    def walk(cmp: filecmp.dircmp[str], rel: Path) -> None:
        found.extend(str(rel / n) for n in cmp.left_only + cmp.right_only + cmp.funny_files)
        _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
        found.extend(str(rel / n) for n in mismatch + errors)
        for name, sub in cmp.subdirs.items():
            walk(sub, rel / name)

    walk(filecmp.dircmp(a, b), Path("."))
    return found


def catalog_wall(tmp: Path, rounds: int) -> None:
    sys.path.insert(0, str(ROOT))
    from labsim.scenario.loader import list_scenarios

    ids = [sid for sid, _, _ in list_scenarios()]
    load0 = os.getloadavg()[0]
    separate: list[list[tuple[float, str, float, int, float]]] = []
    together: list[tuple[float, float, float, int]] = []
    jobs = os.cpu_count() or 1
    parallel: list[float] = []
    for i in range(rounds):  # the ways in turn, so a change in the machine's load hits all alike
        separate.append(_per_process(ids, tmp / f"separate-{i}", tmp))
        wall, peak, rc, cpu = timed(LABSIM + ["run", "--all", "--out", str(tmp / f"together-{i}")], tmp)
        together.append((wall, cpu, peak, rc))
        if jobs > 1:
            parallel.append(timed(LABSIM + ["run", "--all", "--jobs", str(jobs), "--out", str(tmp / f"jobs-{i}")],
                                  tmp)[0])
    load1 = os.getloadavg()[0]
    totals = [sum(r[0] for r in rows) for rows in separate]
    cpus = [sum(r[4] for r in rows) for rows in separate]
    total, cpu_total = statistics.median(totals), statistics.median(cpus)
    rows = separate[0]
    failed = [sid for _, sid, _, rc, _ in rows if rc != 0]
    print(f"catalog: {len(ids)} scenarios ({rounds} round(s), the two ways in turn; load average {load0:.2f} before, "
          f"{load1:.2f} after, {os.cpu_count()} cores)")
    print(f"  one `labsim run` process each: {total:.1f} s of wall in all, {cpu_total:.1f} s of CPU (median of "
          f"the rounds: {', '.join(f'{t:.1f}' for t in totals)} s)")
    print(f"    per scenario: median {statistics.median(r[0] for r in rows):.2f} s, "
          f"peak RSS up to {max(r[2] for r in rows):.0f} MiB; slowest: "
          + ", ".join(f"{sid} {wall:.2f} s" for wall, sid, _, _, _ in sorted(rows, reverse=True)[:5]))
    one = statistics.median(t[0] for t in together)
    one_cpu = statistics.median(t[1] for t in together)
    print(f"  one process, `labsim run --all`: {one:.1f} s of wall, {one_cpu:.1f} s of CPU, peak RSS "
          f"{max(t[2] for t in together):.0f} MiB (rounds: {', '.join(f'{t[0]:.1f}' for t in together)} s) "
          f"(target <= {CATALOG_TARGET:.0f} s: {'met' if one <= CATALOG_TARGET else 'not met'})")
    print(f"  ratio: one process per scenario / one process = {total / one:.1f}x wall, {cpu_total / one_cpu:.1f}x CPU")
    if parallel:
        print(f"  `labsim run --all --jobs {jobs}`: {statistics.median(parallel):.1f} s of wall "
              f"(rounds: {', '.join(f'{w:.1f}' for w in parallel)} s)")
    if failed or any(t[3] != 0 for t in together):
        print(f"  expectations failed in: {', '.join(failed) or '(the one-process run)'}")
    diffs = [d for i in range(rounds) for d in _differences(tmp / f"separate-{i}", tmp / f"together-{i}")]
    diffs += [d for i in range(len(parallel)) for d in _differences(tmp / f"separate-{i}", tmp / f"jobs-{i}")]
    print("  output trees: " + ("byte-identical every way" if not diffs else
                                f"DIFFER in {len(diffs)} path(s): {', '.join(diffs[:5])}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=7, help="counted runs of each command")
    ap.add_argument("--skip-catalog", action="store_true", help="leave out the whole-catalog run")
    ap.add_argument("--catalog-rounds", type=int, default=1, help="rounds of the catalog, each way")
    ap.add_argument("--catalog-only", action="store_true", help="only the whole-catalog comparison")
    a = ap.parse_args()
    # an empty working folder: no ./scenarios beside it, so only the built-in catalog is found
    with tempfile.TemporaryDirectory(prefix="labsim-bench-startup-") as name:
        tmp = Path(name)
        if not a.catalog_only:
            startup(a.runs, tmp)
            import_offenders(["list"], tmp)
            import_offenders(["show", "hybrid-baseline"], tmp)
        if not a.skip_catalog:
            catalog_wall(tmp, a.catalog_rounds)


if __name__ == "__main__":
    main()
