"""`labsim generate`: the command line of labsim.corpus (its own module, so cli.py gains one block)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from .errors import InputError


def add_parser(sub: Any, jobs: Any) -> None:
    sp = sub.add_parser("generate", help="write a corpus of realistic traffic with catalog faults scheduled into it")
    sp.add_argument("--out", required=True, help="output folder (replaced when the corpus is complete)")
    sp.add_argument("--days", type=int, default=1, help="days of traffic (default 1)")
    sp.add_argument("--mailboxes", type=int, default=100, help="mailboxes of the organisation (default 100)")
    sp.add_argument("--faults", help="catalog scenario ids, comma-separated, or `all`: one an hour, spread evenly")
    sp.add_argument("--seed", type=int, default=1,
                    help="seed of the corpus: the same seed gives a byte-identical corpus for any --jobs (default 1)")
    sp.add_argument("--jobs", type=jobs, default=1, metavar="J",
                    help="run the hourly shards in J processes (the corpus is the same for any J)")
    sp.add_argument("--executor", metavar="dask://HOST:PORT",
                    help="send the shards to a Dask cluster instead (pip install 'labsim[dask]'; the workers "
                         "must see --out's file system)")
    sp.set_defaults(fn=cmd_generate)


def _executor(args: argparse.Namespace) -> tuple[Executor | None, Any]:
    if args.executor:
        if not args.executor.startswith("dask://"):
            raise InputError("--executor", f"{args.executor!r} is not dask://HOST:PORT")
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--executor", "Dask is not installed: pip install 'labsim[dask]'") from None
        client = Client(f"tcp://{args.executor.removeprefix('dask://')}", timeout=30)
        return client.get_executor(pure=False), client
    if args.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=args.jobs)
        return pool, pool
    return None, None


def cmd_generate(args: argparse.Namespace) -> int:
    from .corpus import CorpusSpec, corpus_faults, generate, plan

    spec = CorpusSpec(days=args.days, mailboxes=args.mailboxes, faults=corpus_faults(args.faults), seed=args.seed)
    shards = plan(spec)
    bar: Any = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        size = shutil.get_terminal_size((100, 24))  # (a terminal that reports no size, 0x0, gets 100x24)
        bar = tqdm(total=len(shards), unit="hour", desc="labsim generate", file=sys.stderr, ncols=size.columns,
                   nrows=size.lines)
    started = time.perf_counter()
    sent, carried = [0], [0]

    def progress(done: dict[str, Any]) -> None:
        if done.get("rerun"):  # an hour run again with the mail the hour before left queued
            carried[0] += done["carried_in"]
            if bar is not None:
                bar.set_postfix(messages=sent[0], carried=carried[0])
            return
        sent[0] += done["messages"]
        if bar is not None:
            bar.update(1)
            bar.set_postfix(messages=sent[0], **({"carried": carried[0]} if carried[0] else {}))

    executor, owner = _executor(args)
    try:
        counts = generate(spec, Path(args.out), executor=executor, progress=progress)
    finally:
        if bar is not None:
            bar.close()
        if owner is not None:
            owner.close() if hasattr(owner, "close") else owner.shutdown()
    wall = time.perf_counter() - started
    print(f"labsim generate: {counts['messages']} messages, {counts['sessions']} SMTP sessions, "
          f"{counts['log_rows']} log rows, {counts['faults']} fault change(s) in {len(shards)} hour(s) of traffic; "
          f"wall {wall:.1f} s ({counts['log_rows'] / wall:.0f} log rows/s); manifest: {Path(args.out) / 'manifest.json'}")
    return 0
