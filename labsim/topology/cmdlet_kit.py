"""What every cmdlet module shares: the cmdlet registry and the New-X / Set-X / Remove-X helpers.

`topology.changes` (Exchange's connector, domain and DNS cmdlets), `topology.cmdlets_pki` and
`topology.cmdlets_net` all register their cmdlets here and word their errors with these helpers;
this module imports none of them, so the three only look down at it.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from ..errors import TopologyError
from .model import ExchangeServer, Lab, LabModel, ReceiveConnector

Handler = Callable[[Lab, dict[str, Any]], str]
CMDLETS: dict[str, Handler] = {}
CMDLET_NAMES: dict[str, str] = {}


def cmdlet(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        CMDLETS[name.lower()] = fn
        CMDLET_NAMES[name.lower()] = name
        return fn
    return register


def _field_name(model: type[BaseModel], key: str) -> str:
    for fname, info in model.model_fields.items():
        if key == fname or key.lower() == (info.alias or "").lower() or key.lower() == fname.replace("_", "").lower():
            return fname
    raise KeyError(key)


def _field_name_or_none(model: type[BaseModel], key: str) -> str | None:
    try:
        return _field_name(model, key)
    except KeyError:
        return None


def _error_text(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"] if p != "__root__")
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def set_fields(obj: LabModel, params: dict[str, Any], where: str) -> None:
    """Assign parameters one by one with validation; all or nothing."""
    cls = type(obj)
    updates: dict[str, Any] = {}
    for key, value in params.items():
        try:
            updates[_field_name(cls, key)] = value
        except KeyError:
            known = ", ".join(sorted(info.alias or f for f, info in cls.model_fields.items()))
            raise TopologyError(where, f"unknown parameter -{key} (known: {known})") from None
    try:
        # Validate by Exchange names so that an error names the parameter as the admin wrote it
        # (`RemoteIPRanges`, not `remote_ip_ranges`).
        by_alias = {cls.model_fields[f].alias or f: _cleared(cls, f, v) for f, v in updates.items()}
        merged = cls.model_validate({**obj.model_dump(by_alias=True), **by_alias})
    except ValidationError as exc:
        raise TopologyError(where, _error_text(exc)) from None
    for fname in updates:
        object.__setattr__(obj, fname, getattr(merged, fname))
    # model-level normalisations (e.g. DNS routing off with smart hosts) come from the merged copy
    for fname in cls.model_fields:
        object.__setattr__(obj, fname, getattr(merged, fname))


def _cleared(cls: type[BaseModel], fname: str, value: Any) -> Any:
    """`-SmartHosts $null` empties a multi-valued property, as in Exchange's Set- cmdlets."""
    if value is None and str(cls.model_fields[fname].annotation).lower().startswith("list["):
        return []
    return value


def _pop_identity(params: dict[str, Any], where: str) -> str:
    for k in list(params):
        if k.lower() == "identity":
            return str(params.pop(k))
    raise TopologyError(where, "-Identity is required")


def _server(lab: Lab, name: str, where: str) -> ExchangeServer:
    try:
        return lab.organization.server(name)
    except KeyError:
        names = ", ".join(s.name for s in lab.organization.servers)
        raise TopologyError(where, f"no server {name!r} (servers: {names})") from None


def _receive_connector(lab: Lab, identity: str, where: str) -> tuple[ExchangeServer, ReceiveConnector]:
    server_name, sep, name = identity.partition("\\")
    candidates = []
    for s in lab.organization.servers:
        if sep and s.name.lower() != server_name.lower():
            continue
        for rc in s.receive_connectors:
            if rc.name.lower() == (name if sep else identity).lower():
                candidates.append((s, rc))
    if not candidates:
        raise TopologyError(where, f"no receive connector {identity!r}")
    if len(candidates) > 1:
        raise TopologyError(where, f"receive connector {identity!r} is ambiguous; use SERVER\\Name")
    return candidates[0]


def _by_name(items: list[Any], identity: str, attr: str, what: str, where: str) -> Any:
    for it in items:
        if str(getattr(it, attr)).lower() == identity.lower():
            return it
    raise TopologyError(where, f"no {what} {identity!r}")


# The shapes most cmdlets share: New-X, Set-X and Remove-X over a list of named items. Each takes the
# cmdlet's name as `where` and the item's noun as `what` ("send connector"), which word its errors.
def _validate(model: type[BaseModel], params: dict[str, Any], where: str) -> Any:
    """The parameters as a new `model`, or a TopologyError naming the bad parameter."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise TopologyError(where, _error_text(exc)) from None


def _refuse_duplicate(items: list[Any], name: str, where: str, what: str, exact_case: bool = False) -> None:
    if any((x.name == name) if exact_case else (x.name.lower() == name.lower()) for x in items):
        raise TopologyError(where, f"a {what} named {name!r} exists")


def _new_in(items: list[Any], model: type[BaseModel], params: dict[str, Any], where: str, what: str,
            exact_case: bool = False) -> Any:
    """New-X: validate, refuse a second item of the same name, append; returns the new item."""
    item = _validate(model, params, where)
    _refuse_duplicate(items, item.name, where, what, exact_case)
    items.append(item)
    return item


def _find_in(items: list[Any], params: dict[str, Any], where: str, what: str) -> tuple[Any, str]:
    """Pop -Identity and find that item by name; returns it and "Cmdlet identity" for later errors."""
    identity = _pop_identity(params, where)
    at = f"{where} {identity}"
    return _by_name(items, identity, "name", what, at), at


def _set_in(items: list[Any], params: dict[str, Any], where: str, what: str) -> Any:
    """Set-X: find the item named by -Identity and set the other parameters on it; returns the item."""
    item, at = _find_in(items, params, where, what)
    set_fields(item, params, at)
    return item


def _remove_in(items: list[Any], params: dict[str, Any], where: str, what: str) -> str:
    """Remove-X: find the item named by -Identity and remove it; returns the identity as given."""
    identity = _pop_identity(params, where)
    items.remove(_by_name(items, identity, "name", what, f"{where} {identity}"))
    return identity
