"""The registry of operations on the running lab (engine.operations lists what registers here).

Some things an admin does act on state that only exists while the lab runs: `Retry-Queue
-Resubmit`, `Suspend-Queue`, `Remove-Message`. A scenario timeline step names them like any
cmdlet; the driver looks here first and falls back to configuration changes
(`topology.changes`). Each operation is `async fn(runtime, params) -> str` and raises
`TopologyError(where, problem)` on bad parameters.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

# An operation takes the running lab (engine.runtime.LabRuntime); it is named `Any` here because
# this registry lies below the runtime (the runtime never needs to know its operations).
Operation = Callable[[Any, dict[str, Any]], Awaitable[str]]
OPERATIONS: dict[str, Operation] = {}
OPERATION_NAMES: dict[str, str] = {}


def operation(name: str) -> Callable[[Operation], Operation]:
    def register(fn: Operation) -> Operation:
        OPERATIONS[name.lower()] = fn
        OPERATION_NAMES[name.lower()] = name
        return fn
    return register


def is_operation(name: str) -> bool:
    return name.lower() in OPERATIONS


# Optional static checks, run before the lab starts: `check(lab, params)` raises TopologyError for
# parameters that can never work (a bad -Identity shape, an unknown server, a bad -Filter), so a
# typo in a timeline step fails on load instead of in the middle of a run.
OPERATION_CHECKS: dict[str, Callable[[Any, dict[str, Any]], None]] = {}


def check_operation(lab: Any, name: str, params: dict[str, Any]) -> None:
    fn = OPERATION_CHECKS.get(name.lower())
    if fn is not None:
        fn(lab, dict(params))


async def run_operation(rt: Any, name: str, params: dict[str, Any]) -> str:
    return await OPERATIONS[name.lower()](rt, dict(params))
