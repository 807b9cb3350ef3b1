"""`labsim`: list, show, run and serve scenarios; export the lab's certificates.

Exit codes of `run`: 0 every expectation holds, 1 one fails, 2 bad input (a scenario that does
not load, an unknown id). Bad input is reported as one line naming the file, the key and the
problem, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from .errors import InputError, LabsimError, ScenarioError
from .scenario.loader import BUILTIN, LoadedScenario, catalog, load_scenario


def _print_summary(result) -> None:  # noqa: ANN001 - engine.driver.RunResult
    s = result.summary
    print(f"labsim run {result.scenario}: {len(s['messages'])} message(s), virtual time {s['start']} .. {s['end']}, "
          f"wall {result.wall_seconds:.2f} s")
    for m in s["messages"]:
        print(f"  {m['id']}: {m['from']} -> {', '.join(m['to'])}  [{m['fate']}]")
        for d in m["delivered"]:
            print(f"      delivered  {d['realm']}:{d['recipient']}  ({d['path']})")
        for f in m["failed"]:
            print(f"      failed     {f['recipient']} at {f['server']}: {f['reason']}")
        for p in m["pending"]:
            print(f"      pending    {p['recipient']} in {p['queue']}: {p['last_error']}")
    folders = sorted({f.parent for f in result.log_files})
    if folders:
        print("  logs:")
        for folder in folders:
            n = sum(1 for f in result.log_files if f.parent == folder)
            print(f"      {folder.relative_to(result.out)}  ({n} file{'s' if n != 1 else ''})")
    print(f"  summary: {result.out / 'summary.json'}")
    if result.outcomes:
        failed = [o for o in result.outcomes if not o.ok]
        print(f"  expectations: {len(result.outcomes) - len(failed)}/{len(result.outcomes)} hold")
        for o in failed:
            print(f"      FAILED {o.what}: {o.detail}")


def _print_json(result) -> None:  # noqa: ANN001 - engine.driver.RunResult
    """`run --json`: one line of JSON per run (JSON Lines with several), read from its manifest.json."""
    import json

    from .manifest import MANIFEST_FILE, read_manifest

    manifest = read_manifest(result.out)
    print(json.dumps({
        "scenario": result.scenario, "seed": manifest["scenario"]["seed"], "out": str(result.out), "ok": result.ok,
        "wall_seconds": round(result.wall_seconds, 3), "manifest": str(result.out / MANIFEST_FILE),
        "expectations": manifest["expectations"],
        "messages": [{k: m[k] for k in ("id", "message_id", "from", "to", "fate", "recipients")}
                     for m in manifest["messages"]],
    }, ensure_ascii=False), flush=True)


def cmd_list(args: argparse.Namespace) -> int:
    """id and title of every scenario, and where it comes from once any is not built-in; a file
    that does not load is listed with its problem (marked BROKEN), never skipped."""
    rows = catalog()
    width = max((len(e.id) for e in rows), default=10)
    local = any(e.source != BUILTIN for e in rows)
    title_width = max((len(e.title) for e in rows if not e.error), default=10) if local else 0
    for e in rows:
        title = f"BROKEN: {e.error}" if e.error else e.title
        if not local:
            print(f"{e.id:<{width}}  {title}")
            continue
        source = "built-in" if e.source == BUILTIN else str(e.path)
        if e.overrides:
            source += " (overrides built-in)"
        print(f"{e.id:<{width}}  {title:<{title_width}}  {source}" if not e.error else
              f"{e.id:<{width}}  {title}  ({source})")
    broken = sum(1 for e in rows if e.error)
    if broken:
        print(f"labsim: {broken} scenario file(s) do not load (marked BROKEN above)", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    loaded = load_scenario(args.scenario)
    s = loaded.scenario
    print(f"{s.id}: {s.title}\n")
    for head, text in (("Symptom", s.training.symptom), ("What to look at", s.training.evidence),
                       ("Root cause", s.training.root_cause), ("Fix", s.training.fix)):
        print(f"{head}:")
        for para in text.strip().split("\n\n"):
            print(textwrap.fill(" ".join(para.split()), width=100, initial_indent="  ", subsequent_indent="  "))
        print()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Ctrl-C or SIGTERM: one line on stderr, exit 130 / 143, the previous output left as it was.

    Several scenarios (`run A B`, `run --all`) run one after another in this process: see _run_many."""
    from .engine.interrupt import Interrupted, SignalGuard

    refs: list[str] = list(args.scenario)
    if args.all and refs:
        raise InputError("labsim run", "give scenario ids or --all, not both")
    if not args.all and not refs:
        raise InputError("labsim run", "name a scenario (or several, or --all)")
    if args.all or len(refs) > 1:
        return _run_many(args, refs)
    with SignalGuard() as guard:
        try:
            # importing the engine takes a second on a busy machine: inside the guard
            from .engine.driver import run_loaded
            from .engine.outdir import default_out

            loaded = load_scenario(refs[0])
            out = Path(args.out) if args.out else default_out(loaded.scenario.id, where=str(loaded.path))
            guard.notice = f"labsim: {out}: run interrupted by {{signal}}; the previous output is left as it was"
            guard.notice_finished = f"labsim: {out}: interrupted by {{signal}} after the run had finished"
            result = guard.run(run_loaded, loaded, out=out, seed=args.seed)
            _print_json(result) if args.json else _print_summary(result)
        except Interrupted as exc:
            print(guard.line(exc), file=sys.stderr)
            return exc.exit_code
    return 0 if result.ok else 1


def _run_many(args: argparse.Namespace, refs: list[str]) -> int:
    """Run several scenarios in this process, one after another, each on its own event loop with its
    own LabRuntime, into its own folder through engine.outdir.RunOutput (`--out DIR` is the parent:
    DIR/<id>; without it labsim-out/<id>). Every scenario is loaded and checked before the first
    run starts, so a bad file stops everything with nothing written. A run whose output folder is
    refused is reported in one line and the others still run. Exit: 2 if a run could not start
    for bad input, else 1 if an expectation failed, else 0. A signal stops the run under way (its
    folder keeps its previous output), keeps what the finished runs wrote, and exits 130 / 143."""
    import time

    from .engine.interrupt import Interrupted, SignalGuard

    started = time.perf_counter()
    outer = SignalGuard(notice="labsim: interrupted by {signal} before the first run started",
                        notice_finished="labsim: interrupted by {signal}")
    current = outer
    with outer:
        try:
            from .engine.driver import check_timeline_operations, run_loaded
            from .engine.outdir import default_out

            if args.all:
                entries = catalog()
                broken = next((e for e in entries if e.error), None)
                if broken is not None:
                    raise ScenarioError(str(broken.path), broken.error or "does not load")
                refs = [str(e.path) for e in entries]
            ready = {str(e.path): e.loaded for e in entries} if args.all else {}  # loaded by catalog()
            runs: list[tuple[LoadedScenario, Path]] = []
            seen: dict[str, str] = {}
            for ref in refs:
                loaded = ready.get(ref) or load_scenario(ref)
                sid = loaded.scenario.id
                if sid in seen:
                    raise ScenarioError(ref, f"scenario {sid!r} is named twice (also {seen[sid]})")
                seen[sid] = ref
                check_timeline_operations(loaded)
                out = default_out(sid, where=str(loaded.path), root=Path(args.out)) if args.out else \
                    default_out(sid, where=str(loaded.path))
                runs.append((loaded, out))
            rows: list[tuple[str, str, str, float, int]] = []  # id, messages, expectations, wall, code
            if args.jobs > 1:
                rows = _run_in_workers(args, runs, outer)
                runs = []  # done
            for i, (loaded, out) in enumerate(runs):
                done = f"{i} earlier run(s) finished, their output is in place"
                outer.notice = outer.notice_finished = f"labsim: interrupted by {{signal}}; {done}"
                t0 = time.perf_counter()
                current = SignalGuard(
                    notice=f"labsim: {out}: run interrupted by {{signal}}; the previous output is left as "
                           f"it was; {done}",
                    notice_finished=f"labsim: {out}: interrupted by {{signal}} after the run had finished; {done}")
                try:
                    with current:
                        result = current.run(run_loaded, loaded, out=out, seed=args.seed)
                except LabsimError as exc:
                    current = outer
                    code = 2 if isinstance(exc, InputError) else 1
                    text = f"{exc.where}: {exc.problem}" if isinstance(exc, InputError) else str(exc)
                    print(f"labsim: {text}", file=sys.stderr)
                    rows.append((loaded.scenario.id, "-", "error", time.perf_counter() - t0, code))
                    continue
                current = outer
                rows.append(_row(result, time.perf_counter() - t0, args.json))
            outer.notice = outer.notice_finished = "labsim: interrupted by {signal}; every run had finished"
        except Interrupted as exc:
            print(current.line(exc), file=sys.stderr)
            return exc.exit_code
    if not args.json:
        _print_table(rows, time.perf_counter() - started)
    codes = {r[4] for r in rows}
    return 2 if 2 in codes else 1 if 1 in codes else 0


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"--jobs takes a whole number from 1 to 64, not {text!r}")
    return n


def _row(result, wall: float, as_json: bool = False) -> tuple[str, str, str, float, int]:  # noqa: ANN001
    """Print a finished run's summary (engine.driver.RunResult); its line of the closing table."""
    _print_json(result) if as_json else _print_summary(result)
    held = sum(1 for o in result.outcomes if o.ok)
    return (result.scenario, str(len(result.summary["messages"])), f"{held}/{len(result.outcomes)}", wall,
            0 if result.ok else 1)


def _run_in_workers(args: argparse.Namespace, runs: list[tuple[LoadedScenario, Path]],
                    outer) -> list[tuple[str, str, str, float, int]]:  # noqa: ANN001 - interrupt.SignalGuard
    """`--jobs N`: the runs in N worker processes (engine.driver.run_parallel); summaries and rows
    in the order of the scenarios, whatever order they finish in."""
    import contextlib

    from .engine.driver import run_parallel

    rows: list[tuple[str, str, str, float, int]] = []
    outer.notice = outer.notice_finished = "labsim: interrupted by {signal}; 0 run(s) finished, their output is in place"
    with contextlib.closing(run_parallel(runs, seed=args.seed, jobs=args.jobs)) as finished:
        for index, result, error, code, wall in finished:
            if result is None:
                print(f"labsim: {error}", file=sys.stderr)
                rows.append((runs[index][0].scenario.id, "-", "error", wall, code))
            else:
                rows.append(_row(result, wall, args.json))
            outer.notice = outer.notice_finished = (f"labsim: interrupted by {{signal}}; {len(rows)} run(s) "
                                                    "finished, their output is in place")
    return rows


def _print_table(rows: list[tuple[str, str, str, float, int]], elapsed: float) -> None:
    width = max([len("scenario")] + [len(r[0]) for r in rows])
    print(f"\n{'scenario':<{width}}  {'messages':>8}  {'expectations':>12}  {'wall s':>7}  result")
    for sid, messages, expectations, wall, code in rows:
        result = ("ok", "FAILED", "ERROR")[code]
        print(f"{sid:<{width}}  {messages:>8}  {expectations:>12}  {wall:7.2f}  {result}")
    failed = sum(1 for r in rows if r[4] == 1)
    errors = sum(1 for r in rows if r[4] == 2)
    print(f"total: {len(rows)} scenario(s), {len(rows) - failed - errors} hold, {failed} failed, "
          f"{errors} error(s); wall {sum(r[3] for r in rows):.2f} s in the runs, {elapsed:.2f} s in all "
          "(loading every scenario first included)")


def cmd_up(args: argparse.Namespace) -> int:
    import asyncio  # here, not at the top: `labsim list` and `show` start without asyncio
    import signal

    from .engine.driver import serve
    from .engine.outdir import default_out

    loaded = load_scenario(args.scenario)
    out = Path(args.out) if args.out else default_out(loaded.scenario.id, where=str(loaded.path), suffix="-live")
    web = _web_address(args.web) if args.web is not None else None

    def ready(rt) -> None:  # noqa: ANN001
        print(f"labsim up {loaded.scenario.id}: serving on wall-clock time; logs under {out}/ (Ctrl-C to stop)")
        print(f"  {'host':<14} {'virtual address':<22} {'real address':<24} service")
        for host, vaddr, real_ip, real_port, what in rt.listen_table:
            print(f"  {host:<14} {vaddr:<22} {real_ip + ':' + str(real_port):<24} {what}")
        if rt.taken_up:
            print(f"  {rt.taken_up} queued message(s) taken up again from {out}/ (delivered or retried now)")
        _up_ready_extras(rt, out, web)
        sys.stdout.flush()

    caught: list[int] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: int) -> None:
            caught.append(sig)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        extras = await _up_start_extras(args, out, web)
        try:
            rt = await serve(loaded, out=out, seed=args.seed, traffic=args.traffic, ready=ready, stop=stop,
                             clients=True)
        finally:
            await _up_stop_extras(extras)
        from .engine.durable import still_queued

        name = signal.Signals(caught[0]).name if caught else "stop"
        print(f"labsim up: stopped ({name}); logs flushed, {still_queued(rt)} message(s) kept queued under {out}/",
              file=sys.stderr)

    asyncio.run(main())
    # the shell's convention for a process ended by a signal: 128 + its number (130 SIGINT, 143 SIGTERM)
    return 128 + caught[0] if caught else 0


# --- `up`: certificates, transcript and web view (issue 14) ----------------------------------------
WEB_DEFAULT = "127.0.0.1:8025"


def _web_address(text: str) -> list:
    """`--web [ADDR:PORT]`: a loopback address only (net.vnet.guard_real), port 0 = any free one."""
    from .errors import NetworkGuardError
    from .net.vnet import guard_real

    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError("--web", f"{text!r} is not ADDR:PORT (e.g. {WEB_DEFAULT})")
    try:
        guard_real(host)
    except NetworkGuardError:
        raise InputError("--web", f"{host!r}: the web view is served on a loopback address (127.0.0.0/8) "
                                  "only") from None
    return [host, int(port)]


def _up_ready_extras(rt, out: Path, web: list | None) -> None:  # noqa: ANN001 - LabRuntime
    """The running lab's certificates exported beside its logs, and how to talk to it."""
    certs = out / "certs"
    rt.pki.write_certs(certs)
    print(f"\n  this lab's certificates: {certs}/ (trust {certs / 'lab-roots.pem'}; client certificates "
          "as <name>.crt + <name>.key)")
    front = next((r for r in rt.listen_table if r[4] == "SMTP FrontEnd"), None)
    edge = next((r for r in rt.listen_table if r[4] == "SMTP Edge"), None)
    # org: the lab's own people (an Internet sender, an on-premises mailbox), not seed 001's
    sender = next((a for h in rt.model.internet_hosts for a in h.mailboxes), "someone@example.com")
    to = next((m.primary_smtp_address for m in rt.model.organization.mailboxes), "postmaster")
    if front:
        print(f"  try: swaks --server {front[2]}:{front[3]} --from {sender} --to {to}")
    if edge:
        print(f"       swaks --server {edge[2]}:{edge[3]} --from {sender} --to {to} "
              f"--tls --tls-verify --tls-ca-path {certs / 'lab-roots.pem'}")
    if web:
        print(f"  web view: http://{web[0]}:{web[1]}/")
    print("  sessions (one line each as it ends; -q: none, -v: every protocol log row):")


async def _up_start_extras(args: argparse.Namespace, out: Path, web: list | None) -> list:
    """The transcript follower and the web server, beside the lab, reading only its output folder."""
    import asyncio

    from .web.protolog import SessionFollower

    extras: list = []
    if web is not None:
        from .web.app import start_web

        runner, port = await start_web(out, web[0], web[1], live=True)
        web[1] = port  # the port chosen when 0 was asked for, for the ready lines
        extras.append(runner)
    if not args.quiet:
        follower = SessionFollower(out)

        async def follow() -> None:
            while True:
                await asyncio.sleep(0.5)
                rows, ended = await asyncio.to_thread(follower.poll)
                if args.verbose:
                    for r in rows:
                        print(f"  {r.time[11:23]} {r.key} {r.event} {r.data} {r.context}".rstrip(), flush=True)
                for s in ended:
                    print("  " + s.line(shutil_width()), flush=True)

        extras.append(asyncio.create_task(follow()))
    return extras


async def _up_stop_extras(extras: list) -> None:
    import asyncio

    for x in extras:
        if isinstance(x, asyncio.Task):
            x.cancel()
            try:
                await x
            except asyncio.CancelledError:
                pass
        else:
            await x.cleanup()


def shutil_width() -> int:
    """The terminal's width for lines cut to fit; a pipe or a file gets whole lines."""
    import shutil

    if not sys.stdout.isatty():
        return 100_000
    return max(80, shutil.get_terminal_size((200, 40)).columns - 2)


def cmd_view(args: argparse.Namespace) -> int:
    """Serve the web view of an output folder until Ctrl-C (web/app.py)."""
    import asyncio

    from .web.app import serve_view

    out = Path(args.out)
    if not out.is_dir():
        raise InputError(args.out, "not an output folder of labsim (no such directory)")
    host, port = _web_address(args.web)
    try:
        asyncio.run(serve_view(out, host, port))
    except KeyboardInterrupt:
        return 130
    return 0


def _claim_certs_folder(out: Path, scenario: str, seed: int) -> None:
    """`certs --out` follows the output-safety rule of `run` (engine.outdir): a folder that exists,
    is not empty and has no `.labsim-output` marker is refused and left as it was; a new or empty
    one is created and marked (mode `certs`); a marked one is written over."""
    import json

    from . import __version__
    from .engine.outdir import MARKER, read_marker

    if out.exists() and not out.is_dir():
        raise InputError(str(out), "is a file, not a folder; labsim writes the certificates into a folder")
    try:
        if out.is_dir() and read_marker(out) is None and any(out.iterdir()):
            raise InputError(str(out), f"exists, is not empty and was not written by labsim (no {MARKER} marker); "
                                       "refusing to write into it: choose an empty or new folder")
        out.mkdir(parents=True, exist_ok=True)
        if read_marker(out) is None:
            (out / MARKER).write_text(json.dumps({"labsim": __version__, "mode": "certs", "scenario": scenario,
                                                  "seed": seed}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputError(str(out), f"cannot be used: {exc.strerror or exc}") from None


def cmd_certs(args: argparse.Namespace) -> int:
    from .pki.authority import LabPki

    loaded = load_scenario(args.scenario)
    seed = args.seed if args.seed is not None else loaded.scenario.seed
    pki = LabPki(loaded.lab, seed)
    _claim_certs_folder(Path(args.out), loaded.scenario.id, seed)
    paths = pki.write_certs(Path(args.out))
    print(f"wrote {len(paths)} files to {args.out}/ (trust the lab with {Path(args.out) / 'lab-roots.pem'})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate-OutboundConnector for every hybrid connector (engine.validate_connectors)."""
    import json

    from .engine.validate_connectors import format_report, san_as_dict, validate_report
    from .errors import ScenarioError
    from .topology.timespec import parse_timespan

    loaded = load_scenario(args.scenario)
    if args.at:
        try:
            parse_timespan(args.at)
        except ValueError as exc:
            raise ScenarioError("--at", str(exc)) from None
    report = validate_report(loaded, at=args.at, seed=args.seed)  # org3: + the hybrid certificate's names
    if args.json:
        print(json.dumps({"scenario": loaded.scenario.id, "at": report.when,
                          "connectors": [r.as_dict() for r in report.connectors],
                          "certificates": [san_as_dict(c) for c in report.certificates]}, indent=2))
    else:
        print(format_report(loaded.scenario.id, report))
    return 0 if report.ok else 1


def cmd_cmdlets(args: argparse.Namespace) -> int:
    import inspect

    from .engine import operations
    from .topology import changes

    def described(name: str, fn: object) -> str:
        """The name and the docstring's whole first paragraph (never cut mid-sentence), wrapped."""
        para = " ".join((inspect.getdoc(fn) or "").split("\n\n", 1)[0].split())
        width = min(shutil_width(), 160)
        return textwrap.fill(para, width=width, initial_indent=f"  {name:<36} ",
                             subsequent_indent=" " * 39) if para else f"  {name}"

    print("Changes to the lab's world (a [[change]], before the start or at a time):")
    for key in sorted(changes.CMDLETS):
        print(described(changes.CMDLET_NAMES[key], changes.CMDLETS[key]))
    print("\nOperations on the running lab (a [[change]] with `at`):")
    for key in sorted(operations.OPERATIONS):
        print(described(operations.OPERATION_NAMES[key], operations.OPERATIONS[key]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="labsim", description="A simulated Exchange hybrid mail-flow lab.")
    p.add_argument("--version", action="version", version=f"labsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("list", help="id and title of every scenario")
    sp.set_defaults(fn=cmd_list)
    sp = sub.add_parser("show", help="the training text of a scenario")
    sp.add_argument("scenario", help="scenario id (see `labsim list`) or TOML file")
    sp.set_defaults(fn=cmd_show)
    sp = sub.add_parser("run", help="run a scenario to completion on virtual time")
    sp.add_argument("scenario", nargs="*", help="scenario id or TOML file (several: run each, one after another)")
    sp.add_argument("--all", action="store_true", help="run every scenario of `labsim list`")
    sp.add_argument("--out", help="output folder (default labsim-out/<id>/); with several scenarios the "
                                  "parent folder: each run writes OUT/<id>/")
    sp.add_argument("--seed", type=int, help="override the scenario's seed (of every scenario run)")
    sp.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                    help="with several scenarios: run them in N worker processes (default 1: one after another "
                         "in this process); what each run writes is the same for any N")
    sp.add_argument("--json", action="store_true",  # (api) for scripts
                    help="print each run's result as one line of JSON (from its manifest.json) instead of the summary")
    sp.set_defaults(fn=cmd_run)
    sp = sub.add_parser("up", help="serve the lab on wall-clock time until interrupted")
    sp.add_argument("scenario", help="scenario id (see `labsim list`) or TOML file")
    sp.add_argument("--out", help="output folder (default labsim-out/<id>-live/)")
    sp.add_argument("--seed", type=int, help="override the scenario's seed (ids, keys and certificates derive from it)")
    sp.add_argument("--web", nargs="?", const=WEB_DEFAULT, metavar="ADDR:PORT",
                    help=f"also serve the web view of the running lab (default {WEB_DEFAULT}; loopback only)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no line per SMTP session")
    sp.add_argument("-v", "--verbose", action="store_true", help="print every protocol log row as it is written")
    sp.add_argument("--traffic", action="store_true", help="also send the scenario's messages and apply its timeline (changes with at=)")
    sp.set_defaults(fn=cmd_up)
    sp = sub.add_parser("cmdlets", help="every cmdlet and operation a scenario can use")
    sp.set_defaults(fn=cmd_cmdlets)
    sp = sub.add_parser("certs", help="write the lab's CA and leaf certificates (PEM) for real clients "
                                      "(of `run`; `up` exports its own to OUT/certs/)")
    sp.add_argument("--scenario", default="hybrid-baseline", help="whose lab (default hybrid-baseline)")
    sp.add_argument("--out", default="certs", help="folder to write (default certs/; new, empty or labsim's own)")
    sp.add_argument("--seed", type=int, help="override the scenario's seed (keys and serials derive from it)")
    sp.set_defaults(fn=cmd_certs)
    sp = sub.add_parser("validate", help="test each hybrid connector (like Validate-OutboundConnector)")
    sp.add_argument("scenario", help="scenario id or TOML file")
    sp.add_argument("--at", help="apply the scenario's timeline changes up to this offset (+hh:mm:ss)")
    sp.add_argument("--seed", type=int, help="override the scenario's seed")
    sp.add_argument("--json", action="store_true", help="machine-readable result")
    sp.set_defaults(fn=cmd_validate)
    from ._cli_generate import (
        add_parser as add_generate,  # `labsim generate` (api): a corpus for analyzers
    )

    add_generate(sub, _jobs)
    from .cli_views import add_parsers  # queue, track, trace: views over a run's output

    add_parsers(sub)
    sp = sub.add_parser("view", help="the web view of an output folder (finished or live) in a browser")
    sp.add_argument("out", help="output folder of `labsim run` or `labsim up`")
    sp.add_argument("--web", default=WEB_DEFAULT, metavar="ADDR:PORT",
                    help=f"where to serve it (default {WEB_DEFAULT}; loopback only)")
    sp.set_defaults(fn=cmd_view)

    # `labsim shell`: a trainee's Exchange Management Shell on the live lab
    from .shell.cli import add_parser as add_shell_parser

    add_shell_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.fn(args))
    except InputError as exc:
        print(f"labsim: {exc.where}: {exc.problem}", file=sys.stderr)
        return 2
    except LabsimError as exc:
        print(f"labsim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C in a command that has no handler of its own (list, show, validate, the views):
        # nothing of the lab's is half-written there, so one line and the shell's 130.
        print("labsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `labsim ... | head`: the reader went away; that is not an error of the lab.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
