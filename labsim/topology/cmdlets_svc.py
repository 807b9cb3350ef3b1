"""Lab verbs for faults of a Windows host that Exchange's services run on.

Seed 001 error 3: "ADAM Service Fails to Start After Database Deletion - EventID 7023: ADAM service
terminated with error %%3221225487 (0xC000000F) ... ADAM database files were deleted"; fix: reinstall
the AD LDS instance with Exchange's answer file (adamuninstall.exe /instancename:MSExchange, then
adaminstall.exe /answer:AdamInstallAnswer.ini).

    Remove-LabAdamDatabase -Server <edge>    the instance's database files are deleted
    Install-LabAdamInstance -Server <edge>   the instance is reinstalled (a new, empty database)

Only the world changes here; what follows from it (ADAM_MSExchange ends with 0xC000000F at its next
start, the Edge's Transport service cannot start without it, EdgeSync cannot reach the Edge) is
rules.services and engine.service_ops. A running AD LDS keeps its open database until it stops
[INFERRED: Windows does not delete files a process holds open; the fault shows at the next start].
"""

from __future__ import annotations

from typing import Any

from ..errors import TopologyError
from .cmdlet_kit import _server, cmdlet
from .model import ExchangeServer, Lab

__all__: list[str] = []


def _edge(lab: Lab, params: dict[str, Any], where: str) -> ExchangeServer:
    name = None
    for k in list(params):
        if k.lower() in ("server", "identity", "computername"):
            name = params.pop(k)
        elif k.lower() != "at":
            raise TopologyError(where, f"unknown parameter -{k} (known: Server)")
    if name is None:
        raise TopologyError(where, "-Server is required (the Edge Transport server)")
    server = _server(lab, str(name), where)
    if server.role != "Edge":
        raise TopologyError(where, f"{server.name} is not an Edge Transport server (AD LDS runs on Edge servers)")
    return server


@cmdlet("Remove-LabAdamDatabase")
def remove_adam_database(lab: Lab, params: dict[str, Any]) -> str:
    """The Edge's AD LDS database files (TransportRoles\\data\\Adam\\adamntds.dit, logs) are deleted."""
    server = _edge(lab, params, "Remove-LabAdamDatabase")
    server.adam_database_missing = True
    return server.name


@cmdlet("Install-LabAdamInstance")
def install_adam_instance(lab: Lab, params: dict[str, Any]) -> str:
    """adamuninstall /instancename:MSExchange + adaminstall /answer:AdamInstallAnswer.ini: a new database."""
    server = _edge(lab, params, "Install-LabAdamInstance")
    server.adam_database_missing = False
    return server.name
