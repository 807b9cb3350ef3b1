"""Judging a fuzz run: the properties, the accounting of accepted mail, the printed summary.

Properties (each a list of findings; empty means it holds):
  crash      no session made the lab log an ERROR (a traceback), and the lab stopped cleanly
  internal   the lab's summary.json records no internal error (e.g. a scheduler action waiting out
             its settle timeout because sessions stay open)
  hang       every reply that was due came, every session ended within its bound
  sync       every reply answers a command the client sent (nothing read content as commands)
  form       every reply line is an SMTP reply line
  refuse     non-ASCII verbs and numbers are refused (5xx), never obeyed or waited upon
  bounded    no transaction takes more recipients than the lab's most generous server (1000); a
             BDAT chunk over the advertised SIZE is refused, not waited for
  normal     before and after the fuzz, each entry serves an ordinary session and its mail is delivered
  resources  RSS and open fds are back near where they were before the fuzz; nothing of the lab
             still runs after it stopped
  logs       the Exchange logs pass shared/tools/exlog_check.py
  log-control  no raw control byte (NUL, ESC, DEL...) reached a log file: what a client sent is escaped
  lost       every accepted message is delivered, queued or returned (an NDR)
  extra      nothing is delivered that no end of data accepted (e.g. a smuggled message)
  duplicate  no mailbox holds the same accepted message twice
  truncated  a delivered message holds everything the client sent as its content
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from .inputs import FUZZ_DOMAIN, end_marker
from .lab import Usage
from .sessions import MessageBook, Sent, Session

PROPS = ["crash", "internal", "hang", "sync", "form", "refuse", "bounded", "normal", "resources", "logs",
         "log-control", "lost", "extra", "duplicate", "truncated"]
# RSS may grow by a base plus a share per session: the lab keeps its evidence (queue history, ledger,
# tracking, queued mail) in memory until it stops - about 35 KB of Python heap per fuzz session,
# measured with tracemalloc over 1500 sessions. Leaked sessions show up first as fds and as tasks
# still running after the stop, which are checked exactly.
RSS_SLACK_KB = 96 * 1024
RSS_PER_SESSION_KB = 48
FD_SLACK = 8


@dataclass
class Accounting:
    accepted: int = 0
    delivered: int = 0  # accepted messages with at least one mailbox copy
    queued: int = 0
    returned: int = 0  # failed with a DSN to the sender
    fates: Counter = field(default_factory=Counter)
    eml_fuzz: int = 0  # .eml files whose Message-ID is a fuzz id


@dataclass
class FuzzReport:
    seed: int
    book: MessageBook
    sessions: list[Session]
    out: Path
    findings: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PROPS})
    crashes: list[str] = field(default_factory=list)  # crash signatures, with the input that caused them
    tracebacks: int = 0
    usage_before: Usage | None = None
    usage_after: Usage | None = None
    logs_note: str = ""
    account: Accounting = field(default_factory=Accounting)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    def add(self, prop: str, text: str) -> None:
        self.findings[prop].append(text)

    def session_findings(self) -> None:
        for s in self.sessions:
            for f in s.findings:
                self.add(f.prop, describe(s, f.detail, self.seed))

    def failed(self) -> list[str]:
        return [p for p in PROPS if self.findings[p]]

    def explain(self, prop: str, limit: int = 4) -> str:
        items = self.findings[prop]
        head = f"property '{prop}' fails {len(items)} time(s)"
        shown = "\n\n".join(items[:limit])
        more = f"\n\n... and {len(items) - limit} more" if len(items) > limit else ""
        return f"{head}:\n\n{shown}{more}"

    def summary(self) -> str:
        t = Counter[str]()
        kinds = Counter(s.kind.split(":")[0] for s in self.sessions)
        commands = sum(s.transcript.commands for s in self.sessions)
        sent = sum(s.transcript.bytes_sent for s in self.sessions)
        for s in self.sessions:
            t.update(s.transcript.codes)
        a = self.account
        lines = [
            f"labsim SMTP fuzz: seed {self.seed}, {len(self.sessions)} sessions in {self.seconds:.1f}s "
            f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})",
            f"  phases: {', '.join(f'{k} {v:.1f}s' for k, v in self.phases.items())}",
            f"  inputs: {commands} command lines, {sent} bytes sent",
            f"  replies by code: {', '.join(f'{k}: {n}' for k, n in sorted(t.items()))}",
            f"  ends: {', '.join(f'{k} {n}' for k, n in sorted(Counter(s.end for s in self.sessions).items()))}",
            f"  messages: {len(self.book.sent)} written, {a.accepted} accepted; of those {a.delivered} delivered, "
            f"{a.queued} queued, {a.returned} returned; fates {dict(a.fates)}; {a.eml_fuzz} fuzz .eml files",
            f"  crashes: {len(self.crashes)} kind(s), {self.tracebacks} traceback(s) logged",
            f"  resources: before {self.usage_before}, after {self.usage_after}",
            f"  logs: {self.logs_note}",
            f"  output: {self.out}",
        ]
        for c in self.crashes:
            lines.append(f"  crash: {c.splitlines()[0]}")
        for p in PROPS:
            lines.append(f"  {p:<11} {'FAIL ' + str(len(self.findings[p])) if self.findings[p] else 'ok'}")
        return "\n".join(lines + self.corpus_table())

    def corpus_table(self) -> list[str]:
        """Which properties each corpus case breaks, at which entries (from session findings and
        from the accounting of the messages it wrote)."""
        broken: dict[str, dict[str, set[str]]] = {}
        for s in self.sessions:
            if s.kind.startswith("corpus:"):
                row = broken.setdefault(s.kind.removeprefix("corpus:"), {})
                for f in s.findings:
                    row.setdefault(f.prop, set()).add(s.entry.name)
        for prop in ("lost", "extra", "duplicate", "truncated", "log-control"):
            for text in self.findings[prop]:
                for s in self.sessions:
                    if s.kind.startswith("corpus:") and f"session #{s.index} " in text:
                        broken[s.kind.removeprefix("corpus:")].setdefault(prop, set()).add(s.entry.name)
        out = ["  corpus (minimal inputs; which properties break, at which entries):"]
        for name, props in broken.items():
            desc = "; ".join(f"{p} at {', '.join(sorted(e))}" for p, e in sorted(props.items())) or "ok"
            out.append(f"    {name:<28} {desc}")
        return out if broken else []


def describe(s: Session, detail: str, seed: int) -> str:
    return (f"session #{s.index} ({s.kind} at {s.entry.name}: {s.entry.what}; replay: LABSIM_FUZZ_SEED={seed} "
            f"LABSIM_FUZZ_ONLY={s.index}): {detail}\n  transcript (C client, S server):\n{s.transcript.render()}")


# --- accounting ------------------------------------------------------------------------------------
def eml_by_message_id(out: Path) -> dict[str, list[Path]]:
    """Every delivered .eml whose Message-ID is a fuzz id, by Message-ID."""
    found: dict[str, list[Path]] = {}
    parser = BytesHeaderParser()
    for path in sorted((out / "mailboxes").rglob("*.eml")):
        with path.open("rb") as fh:
            mid = str(parser.parse(fh).get("Message-ID", "")).strip()
        if mid.endswith(f"@{FUZZ_DOMAIN}>"):
            found.setdefault(mid, []).append(path)
    return found


def account(report: FuzzReport, summary: dict[str, Any]) -> None:
    """Every accepted message delivered, queued or returned exactly once; nothing else delivered."""
    for err in summary.get("internal_errors", []):
        report.add("internal", f"summary.json internal_errors: {err}")
    fates = {m["message_id"]: m for m in summary.get("messages", [])}
    emls = eml_by_message_id(report.out)
    a = report.account
    a.eml_fuzz = sum(len(v) for v in emls.values())
    by_session = {s.index: s for s in report.sessions}
    for sent in report.book.sent.values():
        where = where_from(sent, by_session, report.seed)
        copies = emls.get(sent.mid, [])
        fate = fates.get(sent.mid, {})
        if not sent.accepted:
            taken = [f"{h['server']} {h['event']}" for h in fate.get("hops", [])]
            if copies or taken:
                why = "it was smuggled inside another message's content" if sent.smuggled else \
                    "no end of data of it was answered 250"
                report.add("extra", f"{sent.mid} was taken in by the lab (ledger: {', '.join(taken[:6]) or '-'}; "
                                    f"delivered: {rel(copies, report.out) or '-'}) but {why}; {where}")
            continue
        a.accepted += 1
        owner = by_session.get(sent.session)
        if owner is not None and owner.kind == "normal" and not copies:
            report.add("normal", f"{sent.mid}, written by an ordinary session at {owner.entry.name}, was accepted "
                                 f"but not delivered (fate {fate.get('fate', 'unknown')!r})")
        state = fate.get("fate", "lost")
        a.fates[state] += 1
        a.delivered += bool(copies)
        a.queued += bool(fate.get("pending"))
        returned = bool(fate.get("failed")) and (bool(fate.get("notifications")) or sent.sender == "")
        a.returned += returned
        if not copies and not fate.get("pending") and not returned:
            detail = f"fate {state!r}, failed {fate.get('failed')}" if fate else "the ledger never saw it"
            report.add("lost", f"{sent.mid} was accepted ({sent.reply[:100]!r}) but is neither delivered nor "
                               f"queued nor returned: {detail}; {where}")
        named = Counter(r.lower() for r in sent.recipients)  # a mailbox named twice may get two copies
        for folder, n in Counter(p.parent for p in copies).items():
            if n > max(1, named[folder.name.lower()]):
                report.add("duplicate", f"{sent.mid} is in {folder.relative_to(report.out)} {n} times, the "
                                        f"envelope named it {named[folder.name.lower()]} time(s); {where}")
        if sent.intact:
            for p in copies:
                if end_marker(sent.mid) not in p.read_bytes():
                    report.add("truncated", f"{sent.mid} was delivered to {p.relative_to(report.out)} without "
                                            f"its last line {end_marker(sent.mid)!r}: the server ended its content "
                                            f"early; {where}")
    for mid, copies in emls.items():
        if mid not in report.book.sent:
            report.add("extra", f"{mid} was delivered ({rel(copies, report.out)}) but the fuzzer never wrote it")


def where_from(sent: Sent, by_session: dict[int, Session], seed: int) -> str:
    s = by_session.get(sent.session)
    if s is None:
        return f"written by session #{sent.session} at {sent.entry}"
    return describe(s, "", seed).replace(": \n", "\n", 1)


def rel(paths: list[Path], out: Path) -> str:
    return ", ".join(str(p.relative_to(out)) for p in paths[:3])


def read_summary(out: Path, rt: Any) -> dict[str, Any]:
    path = out / "summary.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    rt.collect_pending()  # the lab did not stop cleanly (a crash finding says why): ask it directly
    return rt.summary()


# --- logs ------------------------------------------------------------------------------------------
def exlog_checker() -> Path | None:
    """shared/tools/exlog_check.py beside the repository, or $EXLOG_CHECK."""
    env = os.environ.get("EXLOG_CHECK")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "tools" / "exlog_check.py"
    return path if path.is_file() else None


def check_logs(report: FuzzReport) -> None:
    checker = exlog_checker()
    if checker is None:
        report.logs_note = "not checked: shared/tools/exlog_check.py is not beside the repository (set EXLOG_CHECK)"
        return
    res = subprocess.run([sys.executable, str(checker), str(report.out)], capture_output=True, text=True, timeout=300)
    lines = (res.stdout + res.stderr).strip().splitlines()
    report.logs_note = lines[-1] if lines else f"exit {res.returncode}"
    if res.returncode != 0:
        errors = [ln for ln in lines if ln != report.logs_note]
        report.add("logs", f"exlog_check exit {res.returncode}: {report.logs_note}\n  " + "\n  ".join(errors[:12])
                   + (f"\n  ... {len(errors) - 12} more" if len(errors) > 12 else ""))


_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_log_bytes(report: FuzzReport) -> None:
    """No raw control byte (C0 but TAB/CR/LF, and DEL) in a log: what a client sent is escaped, so
    a log viewer or parser sees the text the server saw, never a NUL or a terminal escape. Rows are
    tied to the fuzz session by their remote endpoint (the session's client address)."""
    by_port = {s.local[1]: s for s in report.sessions if s.local is not None}
    hits: dict[tuple[Path, int | None], list[str]] = {}
    for path in sorted(report.out.rglob("*.LOG")):
        for n, line in enumerate(path.read_bytes().split(b"\r\n"), start=1):
            m = _CONTROL.search(line)
            if m is None:
                continue
            port = re.search(rb",127\.0\.0\.1:(\d+),", line)
            key = (path, int(port.group(1)) if port else None)
            lo = max(0, m.start() - 60)
            hits.setdefault(key, []).append(f"line {n}: raw byte {m.group()!r} in ...{line[lo:m.start() + 40]!r}...")
    for (path, port), rows in hits.items():
        s = by_port.get(port) if port is not None else None
        where = describe(s, "", report.seed).replace(": \n", "\n", 1) if s else "no fuzz session matched"
        report.add("log-control", f"{path.relative_to(report.out)}: {len(rows)} row(s), first {rows[0]}; {where}")


# --- resources -------------------------------------------------------------------------------------
def check_usage(report: FuzzReport) -> None:
    before, after = report.usage_before, report.usage_after
    if before is None or after is None:
        return
    if after.fds > before.fds + FD_SLACK:
        report.add("resources", f"open fds {before.fds} before the fuzz, {after.fds} after (allowed +{FD_SLACK}): "
                                "sessions or files were left open")
    slack = RSS_SLACK_KB + RSS_PER_SESSION_KB * len(report.sessions)
    if after.rss_kb > before.rss_kb + slack:
        report.add("resources", f"RSS {before.rss_kb // 1024} MB before the fuzz, {after.rss_kb // 1024} MB after "
                                f"(allowed +{slack // 1024} MB for {len(report.sessions)} sessions)")
