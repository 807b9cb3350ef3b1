"""Benchmark: how `labsim run` scales with the amount of mail (wall, CPU, peak RSS, log lines/min).

Usage: .venv/bin/python benchmarks/bench_scale.py [--sizes 1000,2000,5000,10000]
                                                  [--patterns spread,bursty] [--timeout 1800]

For each size and pattern, benchmarks/gen_traffic.py writes a scenario; one fresh `labsim run`
subprocess runs it, and this prints its wall time, its CPU time (user + system of that process,
from os.wait4: on a shared machine the figure to read), its own peak resident set size (so each
run is measured alone), the Exchange log lines it wrote and their rate per minute of CPU (one
core: a run is one process doing its work on one asyncio event loop, no --jobs workers, so its CPU
time is one core's), and the size of the queue evidence (queues.json plus the queue history
file) and of the whole output tree. Log lines are the rows of every Exchange log in the tree: the protocol and
message tracking logs under each server's TransportRoles/Logs (header lines starting with `#`
not counted) and the rows of EXO's Get-MessageTrace / Get-MessageTraceDetail exports. When a
pattern ran at 5,000 and 50,000 messages the table ends with the ratio of their peak RSS (target:
within 1.5x). A run that exceeds --timeout is killed and
reported as such; --max-gib caps a run's address space so a runaway run fails instead of
starving the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_traffic import scenario_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABSIM = [sys.executable, "-m", "labsim.cli"]
QUEUE_FILES = ("queues.json", "queue-history.jsonl")
TRACE_CSVS = ("Get-MessageTrace.csv", "Get-MessageTraceDetail.csv")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def log_lines(out: Path) -> int:
    """Rows of every Exchange log the run wrote (see the module docstring)."""
    n = 0
    for f in out.glob("*/TransportRoles/Logs/**/*"):
        if f.is_file() and f.suffix.upper() == ".LOG":
            with open(f, "rb") as fh:
                n += sum(1 for line in fh if line.strip() and not line.startswith((b"#", b"\xef\xbb\xbf#")))
    for name in TRACE_CSVS:
        f = out / "EXO" / "MessageTrace" / name
        if f.is_file():
            with open(f, "rb") as fh:
                n += max(sum(1 for line in fh if line.strip()) - 1, 0)  # less the header row
    return n


def measure(scenario: Path, out: Path, timeout: float, src: Path = ROOT, max_gib: float = 0) -> dict[str, object]:
    def limit() -> None:
        if max_gib:
            cap = int(max_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    t0 = time.perf_counter()
    proc = subprocess.Popen(LABSIM + ["run", str(scenario), "--out", str(out)], cwd=src,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=limit)
    status, rusage = 0, None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, rusage = os.wait4(proc.pid, 0)
            return {"wall": time.perf_counter() - t0, "cpu": rusage.ru_utime + rusage.ru_stime,
                    "rss_mib": rusage.ru_maxrss / 1024, "result": "timeout"}
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    cpu = rusage.ru_utime + rusage.ru_stime
    lines = log_lines(out)
    return {"wall": wall, "cpu": cpu, "rss_mib": rusage.ru_maxrss / 1024, "result": f"exit {code}",
            "lines": lines, "lines_min": lines / cpu * 60 if cpu else float("nan"),
            "queue_mib": sum(_size(out / f) for f in QUEUE_FILES) / 2**20, "tree_mib": _size(out) / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,2000,5000,10000")
    ap.add_argument("--patterns", default="spread,bursty")
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep", help="keep output trees under this folder")
    ap.add_argument("--src", default=str(ROOT), help="run the labsim package found in this folder (a before/after "
                    "comparison: an export of another commit)")
    ap.add_argument("--max-gib", type=float, default=0, help="cap each run's address space (0: no cap)")
    a = ap.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    # the interpreter's build moves every figure (a PGO/LTO build, a shared libpython): say which one ran
    print(f"python {platform.python_version()} at {sys.executable} "
          f"(libpython {'shared' if sysconfig.get_config_var('Py_ENABLE_SHARED') else 'linked in'}; "
          f"configured {sysconfig.get_config_var('CONFIG_ARGS') or '?'})")
    print("one core: each run is one labsim process working on one asyncio event loop (no --jobs workers): "
          "CPU s is time on one core, lines/min per minute of one core")
    print(f"{'pattern':8} {'messages':>8} {'wall s':>8} {'CPU s':>8} {'peak RSS MiB':>13} {'log lines':>10} "
          f"{'lines/min':>10} {'queue MiB':>10} {'tree MiB':>9}  result", flush=True)
    rss: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(a.keep) if a.keep else Path(tmp)
        for pattern in a.patterns.split(","):
            for n in (int(x) for x in a.sizes.split(",")):
                scn = Path(tmp) / f"gen-{pattern}-{n}.toml"
                scn.write_text(scenario_text(n, pattern, a.burst), encoding="utf-8")
                r = measure(scn, base / f"{pattern}-{n}", a.timeout, Path(a.src), a.max_gib)
                nan = float("nan")
                print(f"{pattern:8} {n:>8} {r['wall']:>8.1f} {r['cpu']:>8.1f} {r['rss_mib']:>13.1f} "
                      f"{r.get('lines', 0):>10} {r.get('lines_min', nan):>10,.0f} "
                      f"{r.get('queue_mib', nan):>10.2f} {r.get('tree_mib', nan):>9.1f}  {r['result']}", flush=True)
                if r["result"] == "exit 0":
                    rss[(pattern, n)] = float(r["rss_mib"])  # type: ignore[arg-type]
        for pattern in a.patterns.split(","):
            if (pattern, 5000) in rss and (pattern, 50000) in rss:
                ratio = rss[(pattern, 50000)] / rss[(pattern, 5000)]
                print(f"{pattern}: peak RSS at 50k / at 5k = {ratio:.2f} (target <= 1.5: "
                      f"{'met' if ratio <= 1.5 else 'not met'})")
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
