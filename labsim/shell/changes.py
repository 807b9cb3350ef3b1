"""How a change the trainee types reaches the running lab.

A change is a scheduler action at the current time built by the timeline's own
`engine.driver.timeline_change`: configuration through `topology.changes.apply_change`, operations
(Retry-Queue, Restart-Service, ...) through `engine.operations`. Shell values become what the
topology cmdlets take (`@{Add=...; Remove=...}` against the current list, script blocks as their
text, objects as their identity, Exchange's ways of naming a certificate). Changes that a running
service only reads at start (topology.restart_rules) are held as pending (Get- shows them, as AD
would) until Start-Service/Restart-Service of that service on that server applies them.

`ChangeDesk` knows the session by `ChangeLab`: the cmdlets' view of it (shell.cmdlets.LabSession,
for the current values) and `act`, which runs an action on the lab's clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..engine.driver import timeline_change
from ..errors import TopologyError
from ..topology.changes import apply_change
from ..topology.restart_rules import split_change
from . import cmdlets
from .errors import ShellError
from .evaluator import Context, ScriptBlock, Spec, enumerate_value
from .objects import PSObject, cell


@dataclass
class PendingChange:
    cmdlet: str
    server: str
    service: str
    params: dict[str, Any]


class ChangeLab(cmdlets.LabSession, Protocol):
    """What the desk uses of the session (shell.session.LabSession)."""

    async def act(self, label: str, fn: Callable[[], Awaitable[Any]]) -> None: ...


def _identity(params: dict[str, Any]) -> str:
    return cell(next((v for k, v in params.items() if k.lower() == "identity"), ""))


class ChangeDesk:
    """The trainee's changes and operations, and the changes waiting for a service restart."""

    def __init__(self, lab: ChangeLab) -> None:
        self.lab = lab
        self.pending: list[PendingChange] = []

    def overlay(self, cmdlet: str, identity: str, props: dict[str, Any]) -> dict[str, Any]:
        """What Active Directory holds: the pending values on top of what the service runs with."""
        for p in self.pending:
            if p.cmdlet.lower() == cmdlet.lower() and p.server.lower() == identity.lower():
                for k, v in p.params.items():
                    if k.lower() == "identity":
                        continue
                    key = next((x for x in props if x.lower() == k.lower()), k)
                    props[key] = v
        return props

    # --- shell values -> the topology cmdlets' parameters ---------------------------------------------
    def _current(self, cmdlet: str, identity: str, prop: str) -> list[Any]:
        lab = self.lab
        getters: dict[str, Callable[[], list[PSObject]]] = {
            "set-sendconnector": lambda: cmdlets.send_connector_objects(lab),
            "set-receiveconnector": lambda: cmdlets.receive_connector_objects(lab),
            "set-transportservice": lambda: cmdlets.transport_service_objects(lab, False),
            "set-frontendtransportservice": lambda: cmdlets.transport_service_objects(lab, True),
        }
        get = getters.get(cmdlet.lower())
        if get is None:
            raise ShellError(f"-{prop}: @{{Add=...; Remove=...}} is not supported by {cmdlet} in the lab; "
                             "give the whole list.", "InvalidArgument")
        for o in get():
            if cell(o.get("Identity")).lower() == identity.lower() or cell(o.get("Name")).lower() == identity.lower():
                return list(enumerate_value(o.get(prop)))
        raise ShellError(f"The operation couldn't be performed because object '{identity}' couldn't be found on "
                         f"'{lab.domain_controller}'.", "NotSpecified")

    def values(self, cmdlet: str, params: dict[str, Any]) -> dict[str, Any]:
        """Shell values as the topology cmdlets take them: @{Add=..;Remove=..} against the current
        list, script blocks as their text, objects as their identity."""
        out: dict[str, Any] = {}
        identity = _identity(params)
        for k, v in params.items():
            if isinstance(v, dict) and {x.lower() for x in v} <= {"add", "remove"}:
                current = self._current(cmdlet, identity, k)
                add = [cell(x) for x in enumerate_value(next((x for y, x in v.items() if y.lower() == "add"), None))]
                rem = {cell(x).lower() for x in
                       enumerate_value(next((x for y, x in v.items() if y.lower() == "remove"), None))}
                v = [x for x in current if cell(x).lower() not in rem] + [a for a in add if a not in current]
            elif isinstance(v, ScriptBlock):
                v = "{" + v.text + "}"
            elif isinstance(v, PSObject):
                v = cell(v)
            elif isinstance(v, list):
                v = [cell(x) if isinstance(x, PSObject) else x for x in v]
            if not isinstance(v, list) and v is not None and cmdlets.is_list_param(cmdlet, k):
                v = [v]  # PowerShell binds one value to a multi-valued parameter as a list of one
            out[k] = v
        return out

    def certificate_params(self, cmdlet: str, params: dict[str, Any]) -> dict[str, Any]:
        """Exchange's ways of naming a certificate, as the lab's cmdlets take it (-Server,
        -Certificate NAME): -Thumbprint, an -Identity SERVER\\THUMBPRINT (a piped
        Get-ExchangeCertificate), and for Import- a -FileName whose name is the lab certificate's
        (NAME.pfx brings the private key, NAME.cer does not)."""
        out = dict(params)
        low = {k.lower(): k for k in out}
        server = cell(out.pop(low["server"])) if "server" in low else self.lab.local
        thumb = None
        if "thumbprint" in low:
            thumb = cell(out.pop(low["thumbprint"]))
        elif "identity" in low and "\\" in cell(out[low["identity"]]):
            server, _, thumb = cell(out.pop(low["identity"])).partition("\\")
        elif "identity" in low:
            thumb = cell(out.pop(low["identity"]))
        if thumb is not None:
            srv = self.lab.server(server)
            names = [e.certificate for e in srv.certificates
                     if self.lab.rt.pki.issued(e.certificate).thumbprint.lower() == thumb.lower()]
            if not names:
                raise ShellError(f"The certificate with thumbprint {thumb} was not found.", "ObjectNotFound")
            out["Certificate"] = names[0]
        if "filename" in low and cmdlet.lower() == "import-exchangecertificate":
            path = cell(out.pop(low["filename"])).replace("\\", "/")
            stem, _, ext = path.rsplit("/", 1)[-1].rpartition(".")
            out["Certificate"] = stem
            out["HasPrivateKey"] = ext.lower() == "pfx"
            for k in ("password", "privatekeyexportable"):
                if k in low:
                    out.pop(low[k])
        out["Server"] = server
        return out

    # --- acting on the lab -----------------------------------------------------------------------------
    async def change(self, cmdlet: str, params: dict[str, Any]) -> None:
        lab = self.lab
        params = self.values(cmdlet, params)
        if cmdlet.lower().endswith("-exchangecertificate"):
            params = self.certificate_params(cmdlet, params)
        now, later = split_change(cmdlet, params)
        if later:
            try:  # refused now if it would be refused at the restart
                apply_change(lab.rt.model.model_copy(deep=True), cmdlet, dict(params))
            except TopologyError as exc:
                raise ShellError(exc.problem, "InvalidArgument") from None
            server = lab.server(_identity(params)).name
            for service in sorted(set(later.values())):
                held = {k: v for k, v in params.items() if later.get(k) == service}
                self.pending.append(PendingChange(cmdlet, server, service, {"Identity": server, **held}))
            if not [k for k in now if k.lower() != "identity"]:
                return
        await lab.act(f"shell {cmdlet}", timeline_change(lab.rt, cmdlet, now))

    async def operation(self, name: str, params: dict[str, Any]) -> None:
        await self.lab.act(f"shell {name}", timeline_change(self.lab.rt, name, self.values(name, params)))

    async def service(self, verb: str, service: str, server: str) -> None:
        lab = self.lab
        srv = lab.server(server)
        due = [p for p in self.pending if verb != "Stop-Service" and p.server == srv.name
               and p.service.lower() == service.lower()]
        run = timeline_change(lab.rt, verb, {"Name": service, "Server": srv.name})

        async def action() -> None:
            for p in due:
                apply_change(lab.rt.model, p.cmdlet, dict(p.params))
            await run()

        await lab.act(f"shell {verb}", action)
        for p in due:
            self.pending.remove(p)

    def register(self, ctx: Context) -> None:
        async def pending(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            return [PSObject("LabPendingChange", {"Server": x.server, "Service": x.service, "Cmdlet": x.cmdlet,
                                                  "Parameters": [k for k in x.params if k != "Identity"]})
                    for x in self.pending]

        ctx.register(Spec("Get-LabPendingChange", pending, (), (), (), "Changes waiting for a service restart."))


__all__ = ["ChangeDesk", "ChangeLab", "PendingChange"]
