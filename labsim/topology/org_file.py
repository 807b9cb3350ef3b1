"""An organisation as data: the `[organization]` table of a scenario file, turned into a Lab.

The table is the on-premises organisation (Get-OrganizationConfig's name, the AD sites, the
Exchange servers, accepted domains, send connectors, mailboxes, DAGs, the public address) plus the
rest of the world it lives in, each under its own key: `Tenant` (the Exchange Online tenant),
`DnsServers`, `InternetHosts`, `CertificateAuthorities`, `Certificates` and `Network` (NAT, load
balancers, link rules, CDP hosts). Keys are the model's (snake_case or Exchange's PascalCase).

What Exchange itself creates is not repeated: a server that declares no receive connectors gets
setup's (five on a Mailbox server, one on an Edge), and every Edge server gets the two send
connectors its Edge subscription creates for its AD site (unless the file names them itself).
Everything is then validated as one Lab: any problem is a `TopologyError` naming the key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..errors import TopologyError
from .defaults import edgesync_send_connectors, setup_receive_connectors
from .model import Lab

__all__ = ["lab_from_organization", "WORLD_KEYS"]

# The world's parts besides the on-premises organisation: (Lab field, the two spellings accepted).
WORLD_KEYS = {
    "tenant": ("tenant", "Tenant"),
    "internet_hosts": ("internet_hosts", "InternetHosts"),
    "dns_servers": ("dns_servers", "DnsServers"),
    "certificate_authorities": ("certificate_authorities", "CertificateAuthorities"),
    "certificates": ("certificates", "Certificates"),
    "network": ("network", "Network"),
}


def _pop(table: dict[str, Any], spellings: tuple[str, ...], where: str) -> Any:
    found = [k for k in spellings if k in table]
    if len(found) > 1:
        raise TopologyError(f"{where}.{found[1]}", f"given twice (also as {found[0]})")
    return table.pop(found[0]) if found else None


def _get(table: dict[str, Any], *spellings: str) -> Any:
    return next((table[k] for k in spellings if k in table), None)


def lab_from_organization(data: Any, start: datetime, where: str = "organization") -> Lab:
    """The Lab a scenario's `[organization]` table declares, fully validated."""
    if not isinstance(data, dict):
        raise TopologyError(where, f"must be a table, not {type(data).__name__}")
    table = dict(data)
    world: dict[str, Any] = {}
    for field, spellings in WORLD_KEYS.items():
        value = _pop(table, spellings, where)
        if value is not None:
            world[field] = value
    if "tenant" not in world:
        raise TopologyError(f"{where}.Tenant", "required key is missing (the Exchange Online tenant)")
    servers = _get(table, "servers", "Servers")
    if isinstance(servers, list):
        table_key = "servers" if "servers" in table else "Servers"
        table[table_key] = [_with_setup_connectors(s) for s in servers]
        _add_edgesync(table, table[table_key])
    try:
        return Lab.model_validate({"start": start, "organization": table, **world})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _where(where, err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        raise TopologyError(loc, msg) from None
    except (TypeError, AttributeError) as exc:  # a validator meeting a value of a type it never takes
        raise TopologyError(where, f"a value has the wrong type ({exc})") from None


def _where(where: str, loc: tuple[Any, ...]) -> str:
    """A pydantic location inside the Lab, as the key the file spells."""
    parts = list(loc)
    if parts and parts[0] == "organization":
        parts = parts[1:]
    out = where
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _with_setup_connectors(server: Any) -> Any:
    if not isinstance(server, dict):
        return server
    if _get(server, "receive_connectors", "ReceiveConnectors") is not None:
        return server
    name, role = _get(server, "name", "Name"), _get(server, "role", "Role") or "Mailbox"
    if not isinstance(name, str) or role not in ("Mailbox", "Edge"):
        return server  # the model names the problem
    return {**server, "ReceiveConnectors": [rc.model_dump(by_alias=True) for rc in setup_receive_connectors(name, role)]}


def _add_edgesync(table: dict[str, Any], servers: list[Any]) -> None:
    """Each Edge's subscription connectors for its site (two Edges of one site share them)."""
    key = "send_connectors" if "send_connectors" in table else "SendConnectors"
    declared = table.get(key)
    if declared is not None and not isinstance(declared, list):
        return  # the model names the problem
    connectors = list(declared or [])
    names = {str(_get(c, "name", "Name")).lower(): i for i, c in enumerate(connectors) if isinstance(c, dict)}
    default_site = _get(table, "ad_site", "AdSite") or "Default-First-Site-Name"
    made: set[int] = set()  # connectors created here (a second Edge of the site joins them)
    for s in servers:
        if not isinstance(s, dict) or _get(s, "role", "Role") != "Edge" or not isinstance(_get(s, "name", "Name"), str):
            continue
        edge, site = str(_get(s, "name", "Name")), str(_get(s, "site", "Site") or default_site)
        for sc in edgesync_send_connectors(site, edge):
            i = names.get(sc.name.lower())
            if i is None:
                names[sc.name.lower()] = len(connectors)
                made.add(len(connectors))
                connectors.append(sc.model_dump(by_alias=True))
            elif i in made:
                connectors[i]["SourceTransportServers"].append(edge)
    table[key] = connectors
