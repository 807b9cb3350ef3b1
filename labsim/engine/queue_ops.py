"""Queue and message cmdlets on the running lab, usable as scenario timeline steps.

```toml
[[change]]
at = "+01:00:00"
cmdlet = "Retry-Queue"
Identity = 'CMHYBD01\\Unreachable'
Resubmit = true
```

Exchange's semantics (Microsoft Learn "Procedures for queues" / "Procedures for messages in
queues", ExchangeServer mail-flow/queues/*.md):

- `Retry-Queue -Identity S\\Q` forces an immediate connection attempt; it only has an effect on a
  queue in Retry. `-Resubmit $true` sends the queue's messages (not the suspended ones) back to
  the categorizer, which routes them with the *current* configuration (so a message in Unreachable
  finds a send connector added since). `-Filter "Status -eq 'Retry'" [-Server S]` selects queues.
- `Suspend-Queue` / `Resume-Queue`: new messages still enter; nothing leaves until resumed.
  Suspending Unreachable stops its automatic resubmission on configuration changes.
- `Suspend-Message` / `Resume-Message` / `Remove-Message` take `-Identity S\\Q\\n` (n = the
  message's InternalId) or `-Filter {FromAddress -like '*contoso.com'}`; the lab also accepts
  `-Queue S\\Q` as shorthand for `Get-Message -Queue S\\Q | ...`. `Remove-Message -WithNDR`
  defaults to `$true` (NDR `550 4.3.2 QUEUE.Admin; message deleted by administrative action`).
  Messages can't be removed from the Submission queue.

Bad parameters raise `TopologyError(where, problem)` naming the cmdlet and the parameter.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING, Any, Callable

from ..errors import TopologyError
from ..transport.queues import Queue, QueuedMessage, message_row
from .op_registry import OPERATION_CHECKS, operation

# QueueingParty is only named in annotations: importing it would bring the engine (SMTP, TLS,
# aiohttp) into `labsim list`, which loads every scenario and so checks its queue operations.
if TYPE_CHECKING:  # pragma: no cover
    from .queueing import QueueingParty
    from .runtime import LabRuntime


# --- parameters ------------------------------------------------------------------------------------
def _pop(params: dict[str, Any], name: str) -> Any:
    for k in list(params):
        if k.lower() == name.lower():
            return params.pop(k)
    return None


def parse_bool(value: Any, where: str, name: str) -> bool:
    """`true`, `"$true"`, `"True"`, 1 -> True (PowerShell accepts all of them)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower().lstrip("$")
    if text in ("true", "false"):
        return text == "true"
    raise TopologyError(where, f"-{name} must be $true or $false, not {value!r}")


def _no_more(params: dict[str, Any], where: str, known: str) -> None:
    params.pop("at", None)
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: {known})")


# --- filters (the OPATH subset admins type in these cmdlets) ----------------------------------------
_CLAUSE = re.compile(r"""^\s*(\w+)\s+-(eq|ne|like|notlike|gt|ge|lt|le)\s+(?:'([^']*)'|"([^"]*)"|(\S+))\s*$""",
                     re.IGNORECASE)


def compile_filter(text: str, where: str) -> Callable[[dict[str, Any]], bool]:
    """`Status -eq 'Retry' -and MessageCount -gt 5` -> a predicate over a Get-Queue/Get-Message row."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    clauses = []
    for part in re.split(r"\s+-and\s+", body, flags=re.IGNORECASE):
        m = _CLAUSE.match(part)
        if not m:
            raise TopologyError(where, f"-Filter: cannot read {part.strip()!r} (use Property -eq 'value', "
                                       "joined with -and)")
        prop, op = m.group(1), m.group(2).lower()
        value = next(v for v in m.group(3, 4, 5) if v is not None)
        clauses.append((prop, op, value))

    def match(row: dict[str, Any]) -> bool:
        for prop, op, value in clauses:
            key = next((k for k in row if k.lower() == prop.lower()), None)
            if key is None:
                raise TopologyError(where, f"-Filter: unknown property {prop!r} (known: {', '.join(row)})")
            actual = row[key]
            if isinstance(actual, list):
                actual = ";".join(str(a) for a in actual)
            if not _compare(actual, op, value):
                return False
        return True
    return match


def _compare(actual: Any, op: str, value: str) -> bool:
    if op in ("gt", "ge", "lt", "le"):
        try:
            fa, fb = float(actual), float(value)
        except (TypeError, ValueError):
            return False
        return {"gt": fa > fb, "ge": fa >= fb, "lt": fa < fb, "le": fa <= fb}[op]
    a = str(actual).lower()
    v = value.lower()
    if op in ("like", "notlike"):
        hit = fnmatch.fnmatchcase(a, v)
        return hit if op == "like" else not hit
    return (a == v) if op == "eq" else (a != v)


# --- lookups -------------------------------------------------------------------------------------------
def _party(rt: "LabRuntime", server: str, where: str) -> QueueingParty:
    for name, party in rt.servers.items():
        if name.lower() == server.lower():
            return party
    raise TopologyError(where, f"no transport server {server!r} (servers: {', '.join(rt.servers)})")


def resolve_queue(rt: "LabRuntime", identity: str, where: str) -> tuple[QueueingParty, Queue]:
    server, sep, name = str(identity).partition("\\")
    if not sep or not name:
        raise TopologyError(where, f"-Identity {identity!r} is not SERVER\\Queue (e.g. CMHYBD01\\Unreachable)")
    party = _party(rt, server, where)
    q = party.queues.get(name)
    if q is None:
        known = ", ".join(x.identity for x in party.queues.all())
        raise TopologyError(where, f"no queue {identity!r} (queues on {party.name}: {known})")
    return party, q


def resolve_message(rt: "LabRuntime", identity: str, where: str) -> tuple[QueueingParty, Queue, QueuedMessage]:
    head, sep, number = str(identity).rpartition("\\")
    if not sep or not number.isdigit():
        raise TopologyError(where, f"-Identity {identity!r} is not SERVER\\Queue\\MessageId "
                                   "(e.g. CMHYBD01\\Unreachable\\64087808581640)")
    party, q = resolve_queue(rt, head, where)
    qm = q.find(int(number))
    if qm is None:
        known = ", ".join(str(m.number) for m in q.messages) or "none"
        raise TopologyError(where, f"no message {number} in {q.identity} (messages: {known})")
    return party, q, qm


def _all_queues(rt: "LabRuntime", server: str | None, where: str) -> list[tuple[QueueingParty, Queue]]:
    parties = [_party(rt, server, where)] if server else list(rt.servers.values())
    return [(p, q) for p in parties for q in p.queues.all()]


def select_queues(rt: "LabRuntime", params: dict[str, Any], where: str) -> list[tuple[QueueingParty, Queue]]:
    identity = _pop(params, "Identity")
    flt = _pop(params, "Filter")
    server = _pop(params, "Server")
    if identity is not None and flt is not None:
        raise TopologyError(where, "give -Identity or -Filter, not both")
    if identity is not None:
        return [resolve_queue(rt, str(identity), where)]
    if flt is None:
        raise TopologyError(where, "-Identity (SERVER\\Queue) or -Filter is required")
    pred = compile_filter(str(flt), where)
    return [(p, q) for p, q in _all_queues(rt, str(server) if server else None, where) if pred(q.row())]


def select_messages(rt: "LabRuntime", params: dict[str, Any],
                    where: str) -> list[tuple[QueueingParty, Queue, QueuedMessage]]:
    identity = _pop(params, "Identity")
    flt = _pop(params, "Filter")
    queue = _pop(params, "Queue")
    server = _pop(params, "Server")
    given = [n for n, v in (("Identity", identity), ("Filter", flt), ("Queue", queue)) if v is not None]
    if len(given) != 1:
        raise TopologyError(where, "give exactly one of -Identity (SERVER\\Queue\\MessageId), -Filter or -Queue"
                            + (f" (got {', '.join('-' + g for g in given)})" if given else ""))
    if identity is not None:
        return [resolve_message(rt, str(identity), where)]
    if queue is not None:
        party, q = resolve_queue(rt, str(queue), where)
        return [(party, q, qm) for qm in list(q.messages)]
    pred = compile_filter(str(flt), where)
    out = []
    for party, q in _all_queues(rt, str(server) if server else None, where):
        for qm in list(q.messages):
            if pred(message_row(q, qm, party.expiration_of(qm.item))):
                out.append((party, q, qm))
    return out


# --- the cmdlets --------------------------------------------------------------------------------------
@operation("Retry-Queue")
async def retry_queue(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Retry-Queue -Identity SERVER\\Queue (or -Filter/-Server) [-Resubmit $true]: connect now; resubmit routes again."""
    where = "Retry-Queue"
    resubmit_value = _pop(params, "Resubmit")
    resubmit = parse_bool(resubmit_value, where, "Resubmit") if resubmit_value is not None else False
    targets = select_queues(rt, params, where)
    _no_more(params, where, "Identity, Filter, Server, Resubmit")
    done = []
    for party, q in targets:
        if resubmit:
            if q.name in ("Poison", "Submission"):
                raise TopologyError(where, f"{q.identity} can't be resubmitted (resume its messages instead)")
            n = party.resubmit(q)
            done.append(f"{q.identity}: {n} message(s) resubmitted")
        else:
            if q.delivery_type == "Unreachable":
                done.append(f"{q.identity}: no effect without -Resubmit $true")
                continue
            party.retry_now(q)
            done.append(f"{q.identity}: " + ("retrying now" if q.status == "Retry" else f"no effect ({q.shown_status})"))
    return "; ".join(done) or "no queue matched"


@operation("Suspend-Queue")
async def suspend_queue(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Suspend-Queue -Identity SERVER\\Queue: no deliveries until resumed."""
    where = "Suspend-Queue"
    targets = select_queues(rt, params, where)
    _no_more(params, where, "Identity, Filter, Server")
    for party, q in targets:
        if q.name == "Poison":
            raise TopologyError(where, "the Poison queue can't be suspended")
        party.suspend_queue(q)
    return ", ".join(q.identity for _, q in targets) or "no queue matched"


@operation("Resume-Queue")
async def resume_queue(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Resume-Queue -Identity SERVER\\Queue: deliveries go on."""
    where = "Resume-Queue"
    targets = select_queues(rt, params, where)
    _no_more(params, where, "Identity, Filter, Server")
    for party, q in targets:
        party.resume_queue(q)
    return ", ".join(q.identity for _, q in targets) or "no queue matched"


@operation("Suspend-Message")
async def suspend_message(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Suspend-Message -Identity SERVER\\Queue\\n."""
    where = "Suspend-Message"
    targets = select_messages(rt, params, where)
    _no_more(params, where, "Identity, Filter, Queue, Server")
    for party, q, qm in targets:
        party.suspend_message(q, qm)
    return f"{len(targets)} message(s) suspended"


@operation("Resume-Message")
async def resume_message(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Resume-Message -Identity SERVER\\Queue\\n."""
    where = "Resume-Message"
    targets = select_messages(rt, params, where)
    _no_more(params, where, "Identity, Filter, Queue, Server")
    n = 0
    for party, q, qm in targets:
        if qm.suspended or q.name == "Poison":
            party.resume_message(q, qm)
            n += 1
    return f"{n} message(s) resumed"


@operation("Remove-Message")
async def remove_message(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Remove-Message -Identity SERVER\\Queue\\n (or -Queue SERVER\\Queue) [-WithNDR $true|$false]."""
    where = "Remove-Message"
    ndr_value = _pop(params, "WithNDR")
    with_ndr = parse_bool(ndr_value, where, "WithNDR") if ndr_value is not None else True
    _pop(params, "Confirm")
    targets = select_messages(rt, params, where)
    _no_more(params, where, "Identity, Filter, Queue, Server, WithNDR, Confirm")
    for party, q, qm in targets:
        if q.name == "Submission":
            raise TopologyError(where, "messages can't be removed from the Submission queue")
    for party, q, qm in targets:
        party.remove_message(q, qm, with_ndr=with_ndr)
    return f"{len(targets)} message(s) removed {'with' if with_ndr else 'without'} NDR"


# --- static checks (before the lab starts; engine.operations.check_operation) ------------------------
_QUEUE_PARAMS = {"Retry-Queue": ("Identity", "Filter", "Server", "Resubmit"),
                 "Suspend-Queue": ("Identity", "Filter", "Server"),
                 "Resume-Queue": ("Identity", "Filter", "Server")}
_MESSAGE_PARAMS = {"Suspend-Message": ("Identity", "Filter", "Queue", "Server"),
                   "Resume-Message": ("Identity", "Filter", "Queue", "Server"),
                   "Remove-Message": ("Identity", "Filter", "Queue", "Server", "WithNDR", "Confirm")}


def _check_server(lab: Any, name: str, where: str) -> None:
    names = [s.name for s in lab.organization.servers]
    if name.lower() not in {n.lower() for n in names}:
        raise TopologyError(where, f"no transport server {name!r} (servers: {', '.join(names)})")


def _check_identity(lab: Any, identity: str, where: str, *, message: bool) -> None:
    parts = str(identity).split("\\")
    shape = "SERVER\\Queue\\MessageId" if message else "SERVER\\Queue"
    if len(parts) != (3 if message else 2) or not all(parts) or (message and not parts[2].isdigit()):
        raise TopologyError(where, f"-Identity {identity!r} is not {shape}")
    _check_server(lab, parts[0], where)


def _static_check(cmdlet: str) -> Callable[[Any, dict[str, Any]], None]:
    message = cmdlet in _MESSAGE_PARAMS
    allowed = (_MESSAGE_PARAMS if message else _QUEUE_PARAMS)[cmdlet]

    def check(lab: Any, params: dict[str, Any]) -> None:
        where = cmdlet
        given = {k.lower(): v for k, v in params.items() if k.lower() != "at"}
        unknown = [k for k in params if k.lower() not in {a.lower() for a in allowed} | {"at"}]
        if unknown:
            raise TopologyError(where, f"unknown parameter -{unknown[0]} (known: {', '.join(allowed)})")
        for flag in ("resubmit", "withndr", "confirm"):
            if flag in given:
                parse_bool(given[flag], where, flag)
        if "server" in given:
            _check_server(lab, str(given["server"]), where)
        selectors = [k for k in ("identity", "filter", "queue") if k in given]
        if message and len(selectors) != 1:
            raise TopologyError(where, "give exactly one of -Identity (SERVER\\Queue\\MessageId), -Filter or -Queue")
        if not message and len(selectors) != 1:
            raise TopologyError(where, "-Identity (SERVER\\Queue) or -Filter is required (not both)")
        if "identity" in given:
            _check_identity(lab, given["identity"], where, message=message)
        if "queue" in given:
            _check_identity(lab, given["queue"], where, message=False)
        if "filter" in given:
            compile_filter(str(given["filter"]), where)
    return check


def _register_checks() -> None:
    for name in (*_QUEUE_PARAMS, *_MESSAGE_PARAMS):
        OPERATION_CHECKS[name.lower()] = _static_check(name)


_register_checks()
