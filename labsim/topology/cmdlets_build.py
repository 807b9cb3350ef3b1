"""Set-LabServerBuild: which Exchange build a server runs (docs/transport-fidelity.md §6).

A lab verb, not an Exchange cmdlet (a build is installed, not set): `-Identity CMHYBD01 -Build
2016-early`. The server's version (Received-header ids, log headers) follows the build unless
`-Version` names one.
"""

from __future__ import annotations

from typing import Any

from ..errors import TopologyError
from .cmdlet_kit import _pop_identity, _server, cmdlet, set_fields
from .model import EXCHANGE_BUILD_VERSIONS, Lab


@cmdlet("Set-LabServerBuild")
def set_lab_server_build(lab: Lab, params: dict[str, Any]) -> str:
    """-Identity <server> -Build 2013|2016-early|2016|2019 [-Version 15.01.xxxx.xxx]."""
    where = "Set-LabServerBuild"
    server = _server(lab, _pop_identity(params, where), where)
    build = next((params.pop(k) for k in list(params) if k.lower() == "build"), None)
    version = next((params.pop(k) for k in list(params) if k.lower() == "version"), None)
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: Identity, Build, Version)")
    if build is None:
        raise TopologyError(where, f"-Build is required (one of {', '.join(EXCHANGE_BUILD_VERSIONS)})")
    if str(build) not in EXCHANGE_BUILD_VERSIONS:
        raise TopologyError(where, f"-Build {build!r} is not one of {', '.join(EXCHANGE_BUILD_VERSIONS)}")
    set_fields(server, {"build": str(build), "version": str(version or EXCHANGE_BUILD_VERSIONS[str(build)])},
               f"{where} {server.name}")
    return f"{server.name}: Exchange {server.build} ({server.version})"
