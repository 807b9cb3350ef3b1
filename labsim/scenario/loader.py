"""Loading scenario files: one clear error naming the file, the key and the problem.

Everything a scenario says is checked before anything starts: the TOML syntax, the schema, every
change applied to a copy of the default organisation (with Exchange's own validation), every
time reference and every sender.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from ..errors import ScenarioError, TopologyError
from ..topology.changes import apply_change
from ..topology.defaults import DEFAULT_START, default_lab
from ..topology.model import Lab
from ..topology.timespec import parse_timespan, resolve_time
from .model import Scenario


@dataclass
class LoadedScenario:
    path: Path
    scenario: Scenario
    lab: Lab  # the world at the start (timeline changes not yet applied)
    start: datetime


def scenario_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("LABSIM_SCENARIOS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(Path.cwd() / "scenarios")
    dirs.append(Path(__file__).resolve().parents[2] / "scenarios")
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen and r.is_dir():
            seen.add(r)
            out.append(r)
    return out


def list_scenarios() -> list[tuple[str, str, Path]]:
    """(id, title, path) of every scenario file found, sorted by id; broken files are skipped."""
    found: dict[str, tuple[str, str, Path]] = {}
    for d in scenario_dirs():
        for p in sorted(d.glob("*.toml")):
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError):
                continue
            sid = str(data.get("id", p.stem))
            found.setdefault(sid, (sid, str(data.get("title", "")), p))
    return [found[k] for k in sorted(found)]


def find_scenario(ref: str) -> Path:
    p = Path(ref)
    if p.suffix == ".toml" or os.sep in ref or "/" in ref:
        if not p.is_file():
            raise ScenarioError(ref, "no such scenario file")
        return p
    for sid, _, path in list_scenarios():
        if sid == ref:
            return path
    known = ", ".join(s for s, _, _ in list_scenarios()) or "none"
    raise ScenarioError(ref, f"no scenario with this id (known: {known})")


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_scenario(ref: str | Path) -> LoadedScenario:
    path = find_scenario(str(ref))
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(where, f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(where, f"not valid TOML: {exc}") from None
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        raise ScenarioError(f"{where}: {_loc(e['loc'])}", msg) from None
    for key, problem in scn.reference_errors():
        raise ScenarioError(f"{where}: {key}", problem)
    try:
        start = resolve_time(scn.start, DEFAULT_START) if scn.start else DEFAULT_START
    except ValueError as exc:
        raise ScenarioError(f"{where}: start", str(exc)) from None
    lab = default_lab(start)
    from ..engine.operations import is_operation

    for i, ch in enumerate(scn.change):
        if is_operation(ch.cmdlet) and ch.at is None:
            raise ScenarioError(f"{where}: change[{i}].at",
                                f"{ch.cmdlet} acts on the running lab and needs a time (at = \"+hh:mm:ss\")")
        if ch.at is not None:
            _offset(ch.at, f"{where}: change[{i}].at")
            continue
        try:
            apply_change(lab, ch.cmdlet, ch.params)
        except TopologyError as exc:
            raise ScenarioError(f"{where}: change[{i}] ({exc.where})", exc.problem) from None
    # Timeline changes must apply cleanly too, in order, on a scratch copy.
    scratch = lab.model_copy(deep=True)
    for i, ch in enumerate(scn.change):
        if ch.at is None or is_operation(ch.cmdlet):
            continue
        try:
            apply_change(scratch, ch.cmdlet, ch.params)
        except TopologyError as exc:
            raise ScenarioError(f"{where}: change[{i}] ({exc.where})", exc.problem) from None
    senders = sender_realms(lab)
    for i, m in enumerate(scn.message):
        _offset(m.at, f"{where}: message[{i}].at")
        if m.sender.lower() not in senders:
            raise ScenarioError(f"{where}: message[{i}].from",
                                f"{m.sender} is not a mailbox of the lab (senders: {', '.join(sorted(senders))})")
    if scn.duration:
        _offset(scn.duration, f"{where}: duration")
    for i, le in enumerate(scn.expect.log):
        le.log = _log_spec(lab, le.log, f"{where}: expect.log[{i}].log")
    return LoadedScenario(path=path, scenario=scn, lab=lab, start=start)


def _offset(text: str, where: str) -> timedelta:
    """A TimeSpan from the start (or a duration): valid and not negative."""
    try:
        value = parse_timespan(text)
    except ValueError as exc:
        raise ScenarioError(where, str(exc)) from None
    if value < timedelta(0):
        raise ScenarioError(where, f"{text!r} is negative; times count from the start of the scenario (+hh:mm:ss)")
    return value


def _log_spec(lab: Lab, spec: str, where: str) -> str:
    """SERVER/Service/Kind of an on-prem server that has that service; the server name as the lab spells it.

    A misspelt spec would name a folder that never exists, so `absent = true` would hold vacuously.
    """
    server_name, service, kind = spec.split("/")
    servers = lab.organization.servers
    server = next((s for s in servers if s.name.lower() == server_name.lower()), None)
    if server is None:
        raise ScenarioError(where, f"no on-premises server {server_name!r} (servers: "
                                   f"{', '.join(s.name for s in servers)})")
    services = ("Edge",) if server.role == "Edge" else ("FrontEnd", "Hub", "Mailbox")
    if service not in services:
        raise ScenarioError(where, f"{server.name} is {'an Edge' if server.role == 'Edge' else 'a Mailbox'} server "
                                   f"and keeps no {service} logs (services: {', '.join(services)})")
    return f"{server.name}/{service}/{kind}"


def sender_realms(lab: Lab) -> dict[str, tuple[str, str]]:
    """Mailbox address -> (realm, owner): who submits mail sent from it."""
    out: dict[str, tuple[str, str]] = {}
    org = lab.organization
    for mb in org.mailboxes:
        owner = next((s.name for s in org.servers if mb.database in s.databases), "")
        for a in [mb.primary_smtp_address, *mb.email_addresses]:
            out[a.lower()] = ("onprem", owner)
    for xmb in lab.tenant.mailboxes:
        for a in [xmb.primary_smtp_address, *xmb.email_addresses]:
            out[a.lower()] = ("exo", "EXO")
    for h in lab.internet_hosts:
        for a in h.mailboxes:
            out[a.lower()] = ("internet", h.name)
    return out
