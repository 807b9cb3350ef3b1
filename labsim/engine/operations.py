"""Operations on the running lab (not on its configuration): queue commands, service control.

Some things an admin does act on state that only exists while the lab runs: `Retry-Queue
-Resubmit`, `Suspend-Queue`, `Remove-Message`, `Stop-Service`. A scenario timeline step names them
like any cmdlet; the driver looks here first and falls back to configuration changes
(`topology.changes`). Each operation is `async fn(runtime, params) -> str` and raises
`TopologyError(where, problem)` on bad parameters.

The registry is engine.op_registry; importing this module registers every operation (the queue
cmdlets, service control and EdgeSync, hand-typed SMTP sessions). It stays light: `labsim list`
imports it to check a scenario's timeline without loading the SMTP engine.
"""

from __future__ import annotations

from . import queue_ops, raw_session, service_ops
from .op_registry import (
    OPERATION_CHECKS,
    OPERATION_NAMES,
    OPERATIONS,
    Operation,
    check_operation,
    is_operation,
    operation,
    run_operation,
)

__all__ = ["OPERATIONS", "OPERATION_NAMES", "OPERATION_CHECKS", "Operation", "operation", "is_operation",
           "check_operation", "run_operation", "queue_ops", "raw_session", "service_ops"]
