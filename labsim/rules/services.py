"""Whether a Windows service of an Exchange server can start, and what the SCM records when not.

Plain functions over the topology (no engine): `start_plan` says, for `Start-Service NAME`, which
services the Service Control Manager starts (its stopped dependencies first, then the service)
and which System-log events it writes when one of them cannot run.

Sources (docs/event-logs.md):
- Dependencies: Microsoft Learn "Exchange services" / "Overview of services installed by Exchange
  Setup", Edge Transport table: Microsoft Exchange Transport (MSExchangeTransport) depends on
  Microsoft Exchange ADAM (ADAM_MSExchange); ADAM depends on COM+ Event System only.
- Starting a service starts its stopped dependencies first; when a dependency fails the SCM logs
  7001 for the dependent service, which is not started (Windows SCM, event 7001's own text).
- A service that stops with a non-zero exit code is logged as 7023 (KB133010). Seed 001 error 3:
  the ADAM service whose database files were deleted ends with 0xC000000F (STATUS_NO_SUCH_FILE),
  quoted as `%%3221225487` - the form the SCM stores the code in (an insertion the parameter
  message file resolves; Event Viewer showed it unresolved in the seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..topology.model import ExchangeServer

__all__ = ["STATUS_NO_SUCH_FILE", "StartPlan", "dependencies", "exit_error", "start_plan"]

STATUS_NO_SUCH_FILE = 0xC000000F  # ntstatus.h; seed 001 error 3 "(0xC000000F)"

# (role, service) -> services it depends on, among those the lab runs (Learn's Dependencies column).
_DEPENDS_ON: dict[tuple[str, str], tuple[str, ...]] = {
    ("Edge", "MSExchangeTransport"): ("ADAM_MSExchange",),
}


def dependencies(server: ExchangeServer, service: str) -> tuple[str, ...]:
    return _DEPENDS_ON.get((str(server.role), service), ())


def exit_error(server: ExchangeServer, service: str) -> int | None:
    """The exit code a service stops with when it cannot run on this server as the world is, or
    None when it starts. The only such fault the lab knows: AD LDS without its database."""
    if service == "ADAM_MSExchange" and server.adam_database_missing:
        return STATUS_NO_SUCH_FILE
    return None


def _insertion(code: int) -> str:
    """How the SCM stores an error code in 7023/7001: `%%` + the code as an unsigned decimal."""
    return f"%%{code}"


@dataclass
class StartPlan:
    """What Start-Service does: the services that start (dependencies first), and the SCM failure
    events as (event id, [service key names..., error insertion]); logs.scm words them."""

    started: list[str] = field(default_factory=list)
    events: list[tuple[int, list[str]]] = field(default_factory=list)
    failed: bool = False


def start_plan(server: ExchangeServer, service: str, running: set[str]) -> StartPlan:
    """Start `service` (not running) on `server`; `running` = services running now. 7036 events of
    the services that start are the caller's (it writes them as the state really changes); this
    plan carries the failure events: 7023 (the failing service) and 7001 (its dependent)."""
    plan = StartPlan()
    for dep in dependencies(server, service):
        if dep in running:
            continue
        err = exit_error(server, dep)
        if err is not None:
            plan.events.append((7023, [dep, _insertion(err)]))
            plan.events.append((7001, [service, dep, _insertion(err)]))
            plan.failed = True
            return plan
        plan.started.append(dep)
    err = exit_error(server, service)
    if err is not None:
        plan.events.append((7023, [service, _insertion(err)]))
        plan.failed = True
        return plan
    plan.started.append(service)
    return plan
