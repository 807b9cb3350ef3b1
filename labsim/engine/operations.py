"""Operations on the running lab (not on its configuration): queue commands, service control.

Some things an admin does act on state that only exists while the lab runs: `Retry-Queue
-Resubmit`, `Suspend-Queue`, `Remove-Message`. A scenario timeline step names them like any
cmdlet; the driver looks here first and falls back to configuration changes
(`topology.changes`). Each operation is `async fn(runtime, params) -> str` and raises
`TopologyError(where, problem)` on bad parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import LabRuntime

Operation = Callable[["LabRuntime", dict[str, Any]], Awaitable[str]]
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


async def run_operation(rt: "LabRuntime", name: str, params: dict[str, Any]) -> str:
    return await OPERATIONS[name.lower()](rt, dict(params))
