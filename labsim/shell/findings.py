"""Diagnosis objectives: `Submit-LabFinding -Cause ... -Evidence ... [-Link A,B]`, graded against
what the lab itself knows (docs/shell.md, "Findings").

Nothing here knows a scenario. The cause must be the one the exercise names; the evidence must be
a session in the exercise's protocol log whose rows match the exercise's patterns (the session id
the trainee found, or the whole log line); the link, when asked for, must be two lab hosts between
which one of the lab's network rules does what the cause says (a Reset rule for ConnectionReset,
Latency/Bandwidth/SlowClose for SlowLink, Refuse for ConnectionRefused, Drop for ConnectionTimedOut).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rules.network import lab_hosts, spec_matches
from ..scenario.expect import log_folder, log_rows
from ..scenario.model import Finding

# Which link rule actions show each cause; a cause without actions is not a link fault.
CAUSE_ACTIONS: dict[str, frozenset[str]] = {
    "ConnectionReset": frozenset({"Reset"}),
    "ConnectionRefused": frozenset({"Refuse"}),
    "ConnectionTimedOut": frozenset({"Drop"}),
    "SlowLink": frozenset({"Latency", "Bandwidth", "SlowClose"}),
    "ClientProtocolErrors": frozenset(),
    "DnsNonExistentDomain": frozenset(),
    "DnsServerFailure": frozenset(),
}


@dataclass
class Submitted:
    cause: str
    evidence: str
    link: list[str] = field(default_factory=list)


def session_id_of(evidence: str, connectivity: bool = False) -> str:
    """The session id in what the trainee gave: the id itself, or a log line (a protocol log's 3rd
    column, a connectivity log's 2nd)."""
    text = evidence.strip()
    if "," in text:
        row = next(csv.reader(io.StringIO(text)), [])
        col = 1 if connectivity else 2
        return row[col].strip() if len(row) > col else ""
    return text


def _session_rows(out: Path, log: str, session_id: str) -> list[list[str]]:
    col = 1 if log.endswith("/Connectivity") else 2
    try:
        rows = log_rows(log_folder(out, log))
    except (OSError, ValueError):
        return []
    return [r for r in rows if len(r) > col and r[col].lower() == session_id.lower()]


def check_evidence(out: Path, spec: Finding, evidence: str) -> tuple[bool, str]:
    connectivity = spec.log.endswith("/Connectivity")
    sid = session_id_of(evidence, connectivity)
    if not sid:
        return False, "the evidence names no session (give a session id or a protocol log line)"
    rows = _session_rows(out, spec.log, sid)
    if not rows:
        return False, f"there is no session {sid} in the {spec.log} log"
    # protocol log: event,data,context; connectivity log: direction,description
    texts = [",".join(r[4:6]) if connectivity else ",".join(r[6:9]) for r in rows]
    missing = [m for m in spec.matches if not any(re.search(m, t) for t in texts)]
    if missing:
        return False, f"session {sid} does not show it"
    return True, ""


def check_link(lab: Any, cause: str, link: list[str]) -> tuple[bool, str]:
    if len(link) != 2:
        return False, "name the link as two lab hosts: -Link HOST1,HOST2"
    hosts = {h.name.lower(): h for h in lab_hosts(lab)}
    unknown = [x for x in link if x.lower() not in hosts]
    if unknown:
        return False, f"{unknown[0]!r} is not a lab host"
    a, b = (hosts[x.lower()] for x in link)
    actions = CAUSE_ACTIONS.get(cause, frozenset())
    for rule in lab.network.rules:
        if rule.action not in actions:
            continue
        for src, dst in ((a, b), (b, a)):
            if spec_matches(rule.source, [src.name], [src.ip]) and spec_matches(rule.destination, [dst.name], [dst.ip]):
                return True, ""
    return False, f"nothing on the link between {a.name} and {b.name} explains it"


def grade_finding(out: Path, lab: Any, spec: Finding, got: Submitted | None) -> list[tuple[str, bool, str]]:
    """(what, ok, detail) rows for the grade; never says what the expected cause is."""
    if got is None:
        hint = "no finding submitted (Submit-LabFinding -Cause <cause> -Evidence <session id or log line>)"
        rows = [("the cause is named", False, hint), (f"the evidence is a session in {spec.log}", False, hint)]
        if spec.link:
            rows.append(("the faulty link is named", False, hint))
        return rows
    ok = got.cause.lower() == spec.cause.lower()
    rows = [("the cause is named", ok, "" if ok else f"{got.cause!r} is not what the lab shows")]
    ok, detail = check_evidence(out, spec, got.evidence)
    rows.append((f"the evidence is a session in {spec.log}", ok, detail))
    if spec.link:
        ok, detail = check_link(lab, spec.cause, got.link)
        rows.append(("the faulty link is named", ok, detail))
    return rows


__all__ = ["CAUSE_ACTIONS", "Submitted", "check_evidence", "check_link", "grade_finding", "session_id_of"]
