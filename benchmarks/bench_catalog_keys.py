"""Benchmark: the whole catalog (`labsim run --all`, one process) with the lab's RSA 2048 keys
against the same catalog with every key ECDSA P-256 (issue 10: RSA may cost at most 10 % over the
ECDSA figure).

Usage: .venv/bin/python benchmarks/bench_catalog_keys.py [--rounds 5] [--src DIR]

The two are taken in turn (RSA, ECDSA, RSA, ECDSA ...), each a fresh process after one warm-up of
each (the RSA keys come from the on-disk key cache, as in any run after the first). The ECDSA run
is the same command with `labsim.pki.authority.LabPki._key` asked for ECDSA whatever the
certificate says (the certificates, so thumbprints and the ECDHE-ECDSA cipher, change; the
catalog's expectations are reported, not required). Printed: wall and CPU (user + system of the
process) medians with min-max, and the RSA/ECDSA ratio taken pair by pair. `--src` runs the labsim
package found in another folder (an export of another commit), for a before/after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECDSA = ("import sys, labsim.pki.authority as a, labsim.cli as c\n"
         "real = a.LabPki._key\n"
         "a.LabPki._key = lambda self, kind, name, algorithm: real(self, kind, name, 'ECDSA')\n"
         "sys.exit(c.main(sys.argv[1:]))\n")
RSA = "import sys, labsim.cli as c\nsys.exit(c.main(sys.argv[1:]))\n"


def run(code: str, out: Path, src: Path) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "--all", "--out", str(out)], cwd=src,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--src", default=str(ROOT), help="run the labsim package found in this folder")
    a = ap.parse_args()
    src = Path(a.src)
    load0 = os.getloadavg()[0]
    figures: dict[str, list[tuple[float, float, int]]] = {"RSA": [], "ECDSA": []}
    with tempfile.TemporaryDirectory(prefix="labsim-bench-keys-") as tmp:
        for i in range(a.rounds + 1):
            for name, code in (("RSA", RSA), ("ECDSA", ECDSA)):
                r = run(code, Path(tmp) / f"{name}-{i}", src)
                if i:  # round 0 is the warm-up
                    figures[name].append(r)
    print(f"the catalog in one process, RSA 2048 keys vs ECDSA P-256 ({a.rounds} rounds in turn; median (min-max); "
          f"load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} cores)")
    for name, rows in figures.items():
        walls, cpus = [r[0] for r in rows], [r[1] for r in rows]
        codes = sorted({r[2] for r in rows})
        print(f"  {name:<6} wall {statistics.median(walls):6.2f} s ({min(walls):.2f}-{max(walls):.2f})  "
              f"CPU {statistics.median(cpus):6.2f} s ({min(cpus):.2f}-{max(cpus):.2f})  exit {codes}")
    for k, label in ((0, "wall"), (1, "CPU")):
        ratios = [r[k] / e[k] for r, e in zip(figures["RSA"], figures["ECDSA"])]
        med = statistics.median(ratios)
        print(f"  RSA/ECDSA {label:<4} {med:.3f} ({min(ratios):.3f}-{max(ratios):.3f})  "
              f"target <= 1.10: {'met' if med <= 1.10 else 'not met'}")


if __name__ == "__main__":
    main()
