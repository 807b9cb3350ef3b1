"""Checking a finished run against the scenario's expectations (message fates, log evidence)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ..engine.ledger import Ledger
from .model import Expectations

_SERVICE_DIRS = {"FrontEnd": "FrontEnd", "Hub": "Hub", "Edge": "Edge"}


@dataclass
class Outcome:
    what: str
    ok: bool
    detail: str


def log_folder(out: Path, spec: str) -> Path:
    server, service, kind = spec.split("/")
    if kind == "Connectivity":  # SERVER/Hub|Edge|FrontEnd/Connectivity (logs.connectivity)
        return out / server / "TransportRoles" / "Logs" / _SERVICE_DIRS.get(service, service) / "Connectivity"
    if service == "Mailbox":
        sub = "Delivery" if kind == "SmtpReceive" else "Submission"
        return out / server / "TransportRoles" / "Logs" / "Mailbox" / "ProtocolLog" / kind / sub
    return out / server / "TransportRoles" / "Logs" / _SERVICE_DIRS.get(service, service) / "ProtocolLog" / kind


def log_rows(folder: Path) -> list[list[str]]:
    rows = []
    for f in sorted(folder.glob("*.LOG")):
        text = f.read_bytes().decode("utf-8-sig")
        for line in text.split("\r\n"):
            if line and not line.startswith("#"):
                rows.append(next(csv.reader(io.StringIO(line))))
    return rows


def check(expect: Expectations, ledger: Ledger, out: Path) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for e in expect.message:
        fate = ledger.fates.get(e.id)
        if fate is None:
            outcomes.append(Outcome(f"message {e.id}", False, "was never sent"))
            continue
        if e.fate is not None:
            outcomes.append(Outcome(f"message {e.id} fate", fate.fate == e.fate,
                                    f"expected {e.fate}, got {fate.fate}"))
        if e.mailbox is not None:
            realm, _, address = e.mailbox.partition(":")
            hit = any(d["realm"] == realm and d["recipient"].lower() == address.lower() for d in fate.delivered)
            where = ", ".join(f"{d['realm']}:{d['recipient']}" for d in fate.delivered) or "nowhere"
            outcomes.append(Outcome(f"message {e.id} in {e.mailbox}", hit, f"delivered to {where}"))
        if e.reason_contains is not None:
            reasons = [x["reason"] for x in fate.failed] + [x["last_error"] for x in fate.pending]
            hit = any(e.reason_contains in r for r in reasons)
            outcomes.append(Outcome(f"message {e.id} reason", hit,
                                    f"expected {e.reason_contains!r} in {reasons or 'no reason'}"))
    for le in expect.log:
        rows = log_rows(log_folder(out, le.log))
        n = sum(1 for r in rows if len(r) == 9 and (le.event is None or r[6] == le.event)
                and (le.contains in r[7] or le.contains in r[8]))
        ok = n == 0 if le.absent else n >= le.min_count
        what = f"log {le.log} {'lacks' if le.absent else 'has'} {le.contains!r}"
        outcomes.append(Outcome(what, ok, f"{n} matching row(s) in {len(rows)}"))
    for ev in expect.event:
        from ..engine.eventlog import event_log_folder, read_text_log

        folder = event_log_folder(out, ev.server)  # Application and System (SCM events) logs
        events = read_text_log(folder / "Application.txt") + read_text_log(folder / "System.txt")
        n = sum(1 for x in events if x.get("Event ID") == str(ev.id)
                and (ev.source is None or x.get("Source") == ev.source)
                and (ev.contains is None or ev.contains in x.get("Description", "")))
        ok = n == 0 if ev.absent else n >= ev.min_count
        what = f"event {ev.id} on {ev.server}{' from ' + ev.source if ev.source else ''}" + \
               (f" with {ev.contains!r}" if ev.contains else "") + (" absent" if ev.absent else "")
        outcomes.append(Outcome(what, ok, f"{n} matching event(s) of {len(events)}"))
    if expect.tracking:
        from ..logs.message_tracking import read_tracking

        tracked = read_tracking(out)
        for te in expect.tracking:
            fate = ledger.fates.get(te.message) if te.message else None
            mid = fate.message_id if fate is not None else None
            n = sum(1 for r in tracked if r["EventId"] == te.event_id
                    and (te.server is None or r["Server"].lower() == te.server.lower())
                    and (te.source is None or r["Source"] == te.source)
                    and (mid is None or r["MessageId"] == mid)
                    and (te.recipient is None or te.recipient.lower() in r["Recipients"].lower().split(";"))
                    and (te.contains is None or any(te.contains in str(v) for v in r.values())))
            ok = n == 0 if te.absent else n >= te.min_count
            what = (f"tracking {te.event_id}" + (f" on {te.server}" if te.server else "")
                    + (f" for {te.message}" if te.message else "") + (f" with {te.contains!r}" if te.contains else "")
                    + (" absent" if te.absent else ""))
            outcomes.append(Outcome(what, ok, f"{n} matching row(s) of {len(tracked)}"))
    return outcomes
