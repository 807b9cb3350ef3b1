"""labsim: a simulated Exchange hybrid mail-flow lab on loopback.

Layers, in the order data flows: scenario -> topology -> pki / dns / net -> smtp sessions ->
transport decisions (rules) -> logs -> cli.

The public API (labsim.api, docs/api.md) is re-exported here lazily, so `import labsim` stays as
cheap as it was: `labsim.run`, `labsim.run_async`, `labsim.Lab`, `labsim.read_result`, the result
types, and the errors a caller catches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = ["Evidence", "Fault", "Hop", "InputError", "Lab", "LabsimError", "Listener", "Message", "Queue",
           "Recipient", "Result", "ScenarioError", "__version__", "read_result", "run", "run_async"]

_API = {"Evidence", "Fault", "Hop", "Lab", "Listener", "Message", "Queue", "Recipient", "Result", "read_result",
        "run", "run_async"}
_ERRORS = {"InputError", "LabsimError", "ScenarioError"}

if TYPE_CHECKING:  # pragma: no cover
    from .api import (
        Evidence,
        Fault,
        Hop,
        Lab,
        Listener,
        Message,
        Queue,
        Recipient,
        Result,
        read_result,
        run,
        run_async,
    )
    from .errors import InputError, LabsimError, ScenarioError


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'labsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
