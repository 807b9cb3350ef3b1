"""Loading scenario files: one clear error naming the file, the key and the problem.

Everything a scenario says is checked before anything starts. First at the boundary, whatever the
file is (`read_scenario_data`): its size, NUL bytes, UTF-8, the TOML syntax, how deeply it nests,
integers beyond Int64, NaN and infinity, NUL characters. Then the schema, every change applied to
a copy of the default organisation (with Exchange's own validation and value ranges), the static
checks of timeline operations, every time reference and every sender. Any problem is one
`ScenarioError(where, problem)` of one printable line; nothing else escapes (tests/
test_scenario_hostile.py throws random files at it).

Scenarios are found by id in LABSIM_SCENARIOS, ./scenarios and the built-in catalog (the package
`labsim.catalog`, which is the repo's scenarios/ folder), in that order.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from ..errors import InputError, ScenarioError, TopologyError
from ..topology.changes import CMDLETS, apply_change
from ..topology.cmdlets_org import SHAPE_CMDLETS
from ..topology.defaults import DEFAULT_START, default_lab
from ..topology.model import Lab
from ..topology.org_file import lab_from_organization
from ..topology.timespec import parse_timespan, resolve_time
from .model import SCENARIO_ID, Scenario, message_row
from .rows import PackedRows


@dataclass
class LoadedScenario:
    path: Path
    scenario: Scenario
    lab: Lab  # the world at the start (timeline changes not yet applied)
    start: datetime


# A training scenario is a few KB (the catalog's largest ~45 KB), but a generated day of mail for an
# analyzer's corpus is ~160 bytes a message: 32 MiB holds 200,000 messages and still parses in seconds.
MAX_FILE_BYTES = 32 << 20
MAX_DEPTH = 16  # tables and arrays inside each other; a scenario needs five
INT_LIMIT = 2**63 - 1  # no number of Exchange's (Int32, Int64, ByteQuantifiedSize) is larger
MAX_OFFSET = timedelta(days=366)  # how far into a run a message, a change or the end may lie
START_YEARS = (1980, 2199)
BUILTIN = "built-in"


@dataclass(frozen=True)
class CatalogEntry:
    """One scenario file found on the search path: its id (the file name for a broken file), its
    title, where it comes from (`built-in` or the folder) and, for a broken file, the one-line
    problem that `labsim run` would report."""

    id: str
    title: str
    path: Path
    source: str
    error: str | None = None
    overrides: bool = False  # a local file that hides the built-in scenario of the same id
    loaded: LoadedScenario | None = field(default=None, repr=False, compare=False)  # (`run --all` runs it)


def builtin_dir() -> Path | None:
    """The scenarios shipped inside the package (`labsim.catalog`, the repo's scenarios/ folder)."""
    try:
        root = resources.files("labsim.catalog")
    except ModuleNotFoundError:
        return None
    path = Path(str(root))
    return path if path.is_dir() else None


def scenario_dirs() -> list[tuple[Path, str]]:
    """(folder, source) in lookup order: LABSIM_SCENARIOS, ./scenarios, then the built-in catalog."""
    builtin = builtin_dir()
    dirs: list[Path] = []
    env = os.environ.get("LABSIM_SCENARIOS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(Path.cwd() / "scenarios")
    if builtin is not None:
        dirs.append(builtin)
    seen, out = set(), []
    for d in dirs:
        try:
            r = d.resolve()
            ok = r.is_dir()
        except OSError:
            continue
        if r not in seen and ok:
            seen.add(r)
            is_builtin = builtin is not None and r == builtin.resolve()
            out.append((r, BUILTIN if is_builtin else str(d)))
    return out


def catalog() -> list[CatalogEntry]:
    """Every scenario file on the search path, sorted by id; the first of an id wins.

    Each file is loaded as `labsim run` would load it, so a broken one is listed with its problem
    instead of being skipped (and still shadows a built-in scenario of the same name, so that
    `labsim run NAME` reports its error rather than silently running another file).
    """
    found: dict[str, CatalogEntry] = {}
    for d, source in scenario_dirs():
        for p in sorted(d.glob("*.toml")):
            if not _is_file(p):
                continue
            try:
                loaded = load_scenario(p)
            except InputError as exc:
                entry = CatalogEntry(p.stem, "", p, source, error=exc.problem)
            else:
                entry = CatalogEntry(loaded.scenario.id, loaded.scenario.title, p, source, loaded=loaded)
            first = found.get(entry.id)
            if first is None:
                found[entry.id] = entry
            elif source == BUILTIN and first.source != BUILTIN:
                found[entry.id] = replace(first, overrides=True)
    return [found[k] for k in sorted(found)]


def list_scenarios() -> list[tuple[str, str, Path]]:
    """(id, title, path) of every scenario that loads, sorted by id (`catalog()` has the broken ones too)."""
    return [(e.id, e.title, e.path) for e in catalog() if e.error is None]


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL in the name
        return False


def find_scenario(ref: str) -> Path:
    p = Path(ref)
    if p.suffix == ".toml" or os.sep in ref or "/" in ref:
        if not _is_file(p):
            raise ScenarioError(ref, "no such scenario file")
        return p
    for d, _ in scenario_dirs():  # by id: cheap first guess, the file named like the id
        guess = d / f"{ref}.toml"
        if SCENARIO_ID.fullmatch(ref) and _is_file(guess):
            try:
                if _peek_id(guess) in (ref, None):
                    return guess
            except ScenarioError:
                return guess  # broken: loading it reports why
    for e in catalog():
        if e.id == ref:
            return e.path
    import difflib

    ids = [e.id for e in catalog()]
    near = difflib.get_close_matches(ref, ids, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(near)}?" if near else "`labsim list` shows every id"
    raise ScenarioError(ref, f"no scenario with this id ({hint})")


def _peek_id(path: Path) -> str | None:
    where = str(path)
    text = _read_text(path)
    split = _split_messages(text, rows=False)
    data = split[0] if split is not None else _parse_text(text, where)
    sid = data.get("id")
    return sid if isinstance(sid, str) else None


def read_scenario_data(path: Path) -> dict[str, Any]:
    """The file as TOML data, after the checks every hostile file meets at the boundary: its size,
    NUL bytes, UTF-8, TOML syntax, nesting depth, integers, NaN/infinity and NUL characters."""
    return _parse_text(_read_text(path), str(path))


def _read_text(path: Path) -> str:
    """The file's text, after the checks of its bytes (size, NUL bytes, UTF-8)."""
    where = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(where, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(where, f"larger than {MAX_FILE_BYTES} bytes ({MAX_FILE_BYTES >> 20} MiB): not a scenario file")
    nul = raw.find(b"\0")
    if nul >= 0:
        raise ScenarioError(where, f"contains a NUL byte at offset {nul}; a scenario is UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScenarioError(where, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    return text


def _parse_text(text: str, where: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(where, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ScenarioError(where, f"arrays or tables nested too deeply (at most {MAX_DEPTH} levels)") from None
    for key, problem in _tree_problems(data):
        raise ScenarioError(f"{where}: {key}", problem)
    return data


# --- [[message]] tables parsed one at a time (issue 8: a working day of mail in one file) ----------
#
# tomllib parses a whole file into dicts (~3.4 KB a message at its height); a file of 50,000
# messages would peak there before its messages are made compact. So the text is cut before every
# line that starts (after blanks) with `[`, and each piece is parsed alone: the `[[message]]`
# pieces one at a time, each checked and kept as a MessageRow at once, the other pieces joined and
# parsed as one document (the file without its messages). Why this is the file's own meaning: the
# first piece starts where the file starts; if a cut lies inside a multi-line string or array, the
# piece before it ends inside that string or array, which tomllib rejects - so when a piece that
# starts at a header parses alone, the cut that ends it is a header too, and the pieces are the
# file's tables. (A piece that does not parse is joined with the next, as a cut inside a string
# would need, within a budget of twice the file, so a broken file costs a few parses at most.)
# A [[message]] table's keys cannot reach beyond its table, and the rest must not name `message`
# at all (a `[message.x]` table, `message = [...]`, a quoted header). Anything else - a piece that
# does not parse, any problem of the tree or of the schema - falls back to parsing the whole file,
# so every error is exactly the one the whole parse gives (tests/test_scenario_lazy.py: the same
# model or the same error for any file).

_CUT = re.compile(r"^[ \t]*\[", re.MULTILINE)
_MESSAGE_HEADER = re.compile(r"[ \t]*\[\[[ \t]*message[ \t]*\]\]")


def _toml(text: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return None


def _split_messages(text: str, *, rows: bool = True) -> tuple[dict[str, Any], PackedRows] | None:
    """(the file without its [[message]] tables, parsed; its messages as rows) or None where the
    whole file must be parsed (see above). `rows=False` parses the messages without keeping them."""
    cuts = [m.start() for m in _CUT.finditer(text)]
    bounds = ([0] if not cuts or cuts[0] else []) + cuts + [len(text)]
    rest: list[str] = []
    kept = PackedRows()  # (each row a few bytes: scenario.rows)
    budget = 2 * len(text) + (64 << 10)  # characters parsed again (bounded work on a hostile file)
    k = 0
    while k + 1 < len(bounds):
        a, k = bounds[k], k + 1
        data = _toml(piece := text[a:bounds[k]])
        while data is None and k + 1 < len(bounds) and budget > 0:  # a cut inside a string: the next
            budget -= len(piece)
            k += 1
            data = _toml(piece := text[a:bounds[k]])
        if data is None:
            return None
        if not _MESSAGE_HEADER.match(piece):
            rest.append(piece)
            continue
        tables = data.get("message")
        if len(data) != 1 or not isinstance(tables, list) or len(tables) != 1 or next(_tree_problems(data), None):
            return None
        if rows:
            try:
                kept.append(message_row(tables[0]))
            except ValidationError:
                return None
    head = _toml("".join(rest))
    if head is None or "message" in head or next(_tree_problems(head), None):
        return None
    return head, kept


def _from_text(path: Path, text: str, where: str) -> LoadedScenario:
    """The scenario of a file's text: its [[message]] tables parsed one at a time where the file
    allows it (see above), the whole file otherwise; the same model or the same error either way."""
    split = _split_messages(text)
    if split is not None:
        head, rows = split
        try:
            scn = Scenario.model_validate({**head, "message": []} if rows else head)
        except ValidationError:
            pass
        else:
            if rows:
                scn.message = rows  # type: ignore[assignment]
            return _from_model(path, scn)
    return _from_data(path, _parse_text(text, where))


def _tree_problems(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, problem) for what no field of a scenario can take, walked without recursion."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            yield _loc(loc[:MAX_DEPTH]), f"arrays or tables nested too deeply (at most {MAX_DEPTH} levels)"
            return
        if isinstance(value, dict):
            for k, v in value.items():
                if "\0" in k:
                    yield _loc(loc) or "(top level)", f"key {k!r} contains a NUL character"
                stack.append((v, (*loc, k)))
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            yield _loc(loc), f"{value} is not a number a scenario can use (NaN and infinity are not)"
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
            yield _loc(loc), f"{value} is out of range (at most {INT_LIMIT})"
        elif isinstance(value, str) and "\0" in value:
            yield _loc(loc), "contains a NUL character"


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_scenario(ref: str | Path) -> LoadedScenario:
    """The scenario, checked completely; any problem is a ScenarioError of one printable line."""
    try:
        return _load(ref)
    except InputError as exc:
        raise ScenarioError(_one_line(exc.where), _one_line(exc.problem)) from None


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(text: str, limit: int = 2000) -> str:
    """Control characters a file smuggled into an error (a cmdlet named "\\n") shown escaped; capped."""
    text = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text if len(text) <= limit else text[:limit] + "..."


def load_scenario_text(text: str, where: str = "<inline scenario>") -> LoadedScenario:
    """A scenario given as TOML text rather than a file (labsim.api): the same checks, the same
    one-line errors, naming `where` instead of a file."""
    try:
        if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
            raise ScenarioError(where, f"larger than {MAX_FILE_BYTES} bytes: not a scenario")
        if "\0" in text:
            raise ScenarioError(where, "contains a NUL character; a scenario is text")
        return _from_text(Path(where), text, where)
    except InputError as exc:
        raise ScenarioError(_one_line(exc.where), _one_line(exc.problem)) from None


def load_scenario_data(data: dict[str, Any], where: str = "<inline scenario>") -> LoadedScenario:
    """A scenario given as data (the dict TOML would parse into): the same checks and errors."""
    try:
        if not isinstance(data, dict):
            raise ScenarioError(where, f"a scenario is a table (a dict), not {type(data).__name__}")
        for key, problem in _tree_problems(data):
            raise ScenarioError(f"{where}: {key}", problem)
        return _from_data(Path(where), data)
    except RecursionError:
        raise ScenarioError(where, f"nested too deeply (at most {MAX_DEPTH} levels)") from None
    except TypeError:  # a key that is not a string: nothing TOML could hold
        raise ScenarioError(where, "every key of a scenario is a string") from None
    except InputError as exc:
        raise ScenarioError(_one_line(exc.where), _one_line(exc.problem)) from None


def _load(ref: str | Path) -> LoadedScenario:
    path = find_scenario(str(ref))
    return _from_text(path, _read_text(path), str(path))


def _from_data(path: Path, data: dict[str, Any]) -> LoadedScenario:
    where = str(path)
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
    return _from_model(path, scn)


def _from_model(path: Path, scn: Scenario) -> LoadedScenario:
    where = str(path)
    for key, problem in scn.reference_errors():
        raise ScenarioError(f"{where}: {key}", problem)
    try:
        start = resolve_time(scn.start, DEFAULT_START) if scn.start else DEFAULT_START
    except ValueError as exc:
        raise ScenarioError(f"{where}: start", str(exc)) from None
    if not START_YEARS[0] <= start.year <= START_YEARS[1]:
        raise ScenarioError(f"{where}: start", f"{scn.start!r} is outside the years {START_YEARS[0]}..{START_YEARS[1]}")
    if scn.organization is None:
        lab = default_lab(start)
    else:
        try:
            lab = lab_from_organization(scn.organization, start)
        except TopologyError as exc:
            raise ScenarioError(f"{where}: {exc.where}", exc.problem) from None
        _check_dns_zones_at(lab, f"{where}: organization.DnsServers")
    for server, build in scn.builds.items():
        try:
            _apply_checked(lab, "Set-LabServerBuild", {"Identity": server, "Build": build})
        except TopologyError as exc:
            raise ScenarioError(f"{where}: builds.{server}", exc.problem) from None
    ops = _operations(scn)
    for i, ch in enumerate(scn.change):
        if ops is not None and ops.is_operation(ch.cmdlet) and ch.at is None:
            raise ScenarioError(f"{where}: change[{i}].at",
                                f"{ch.cmdlet} acts on the running lab and needs a time (at = \"+hh:mm:ss\")")
        if ops is not None and ops.is_operation(ch.cmdlet):
            try:  # the operation's static check (the driver repeats it before a run)
                ops.check_operation(lab, ch.cmdlet, ch.params)
            except TopologyError as exc:
                raise ScenarioError(f"{where}: change[{i}] ({exc.where})", exc.problem) from None
        if ch.at is not None:
            _offset(ch.at, f"{where}: change[{i}].at")
            if ch.cmdlet.lower() in SHAPE_CMDLETS:
                raise ScenarioError(f"{where}: change[{i}].at", f"{ch.cmdlet} changes the lab's shape and applies "
                                    "before the lab starts: remove `at`")
            continue
        try:
            _apply_checked(lab, ch.cmdlet, ch.params)
        except TopologyError as exc:
            raise ScenarioError(f"{where}: change[{i}] ({exc.where})", exc.problem) from None
    # Timeline changes must apply cleanly too, in order, on a scratch copy.
    scratch = lab.model_copy(deep=True)
    for i, ch in enumerate(scn.change):
        if ch.at is None or (ops is not None and ops.is_operation(ch.cmdlet)):
            continue
        try:
            _apply_checked(scratch, ch.cmdlet, ch.params)
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


def _operations(scn: Scenario) -> ModuleType | None:
    """engine.operations, imported only for a scenario with a change that is not a configuration
    cmdlet (an operation on the running lab, or a misspelt name): importing it brings the whole
    engine (sockets, TLS, aiohttp), so `labsim show`/`list` of other scenarios start without it.
    The two tables are disjoint (tests/test_startup.py), so this changes no answer."""
    if all(ch.cmdlet.lower() in CMDLETS for ch in scn.change):
        return None
    from ..engine import operations

    return operations


def _apply_checked(lab: Lab, cmdlet: str, params: dict[str, Any]) -> None:
    """apply_change, then the DNS zones' check when the change touched a DNS server (zones no
    change touched compiled before, or are the default lab's, which compile)."""
    before = [s.model_copy(deep=True) for s in lab.dns_servers]
    apply_change(lab, cmdlet, params)
    if lab.dns_servers != before:
        _check_dns_zones(lab)


def _check_dns_zones(lab: Lab) -> None:
    """Every lab DNS server's zones compile as its server will compile them when the lab starts
    (record names inside their zone, A values that are addresses, host names, no CNAME beside
    other data): a bad record is the change's error at load, not a failure of the running lab."""
    from ..net.dns_server import _compile

    for server in lab.dns_servers:
        _compile(server, 1)


def _check_dns_zones_at(lab: Lab, where: str) -> None:
    """A declared organisation's DNS zones compile (one error naming the key, never a traceback)."""
    try:
        _check_dns_zones(lab)
    except InputError as exc:
        raise ScenarioError(where, exc.problem) from None
    except ValueError as exc:
        raise ScenarioError(where, str(exc)) from None


def _offset(text: str, where: str) -> timedelta:
    """A TimeSpan from the start (or a duration): valid and not negative."""
    try:
        value = parse_timespan(text)
    except ValueError as exc:
        raise ScenarioError(where, str(exc)) from None
    if value < timedelta(0):
        raise ScenarioError(where, f"{text!r} is negative; times count from the start of the scenario (+hh:mm:ss)")
    if value > MAX_OFFSET:
        raise ScenarioError(where, f"{text!r} is more than {MAX_OFFSET.days} days after the start")
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
