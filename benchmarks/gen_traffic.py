"""Generate a scenario with N messages of mixed traffic over the default lab, for scale benchmarks.

Usage: .venv/bin/python benchmarks/gen_traffic.py N [--pattern spread|bursty] [--burst 100] [-o FILE]

The scenario is hybrid-baseline's lab (its header and protocol-logging changes) with N messages
that cycle through the four mail-flow directions using the default lab's mailboxes:

- on-prem -> EXO        raghu/priya@cloudmonkeys.xyz -> ramki@cloudmonkeys.xyz
- EXO -> on-prem        ramki@cloudmonkeys.xyz -> raghu/priya@cloudmonkeys.xyz
- on-prem -> Internet   raghu/priya@cloudmonkeys.xyz -> alex@fabrikam.com
- Internet -> on-prem   alex@fabrikam.com -> raghu/priya@cloudmonkeys.xyz

Patterns: `spread` sends one message per second; `bursty` sends bursts of `--burst` messages at
the same instant, one burst a minute (many messages in the queues at once).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONPREM = ("raghu@cloudmonkeys.xyz", "priya@cloudmonkeys.xyz")
EXO = "ramki@cloudmonkeys.xyz"
INTERNET = "alex@fabrikam.com"


def _timespan(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"+{days}.{h:02d}:{m:02d}:{s:02d}" if days else f"+{h:02d}:{m:02d}:{s:02d}"


def message(i: int) -> tuple[str, str, str]:
    """(direction, sender, recipient) of the i-th message: the four directions in turn."""
    user = ONPREM[(i // 4) % len(ONPREM)]
    return [("up", user, EXO), ("down", EXO, user), ("out", user, INTERNET), ("in", INTERNET, user)][i % 4]


def scenario_text(n: int, pattern: str = "spread", burst: int = 100) -> str:
    if pattern not in ("spread", "bursty"):
        raise ValueError(f"pattern must be spread or bursty, not {pattern!r}")
    base = (ROOT / "scenarios" / "hybrid-baseline.toml").read_text(encoding="utf-8")
    head = base.split("[[message]]", 1)[0]
    head = head.replace('id = "hybrid-baseline"', f'id = "gen-{pattern}-{n}"', 1)
    parts = [head]
    for i in range(n):
        at = i if pattern == "spread" else 60 * (i // burst)
        direction, sender, rcpt = message(i)
        parts.append(f'[[message]]\nid = "{direction}-{i}"\nat = "{_timespan(5 + at)}"\nfrom = "{sender}"\n'
                     f'to = ["{rcpt}"]\nsubject = "gen {pattern} {i}"\n\n')
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("n", type=int, help="number of messages")
    ap.add_argument("--pattern", choices=("spread", "bursty"), default="spread")
    ap.add_argument("--burst", type=int, default=100, help="messages per burst (bursty)")
    ap.add_argument("-o", "--out", help="scenario file to write (default: stdout)")
    a = ap.parse_args(argv)
    text = scenario_text(a.n, a.pattern, a.burst)
    if a.out:
        Path(a.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
