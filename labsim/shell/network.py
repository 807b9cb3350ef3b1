"""What the shell's network cmdlets see from the local server: Resolve-DnsName, Test-NetConnection
and Validate-OutboundConnector, run on the lab itself (its DNS as that host does it, its routes and
link rules, a real TCP connect, the lab's connector test).

Plain async functions over `ProbeLab`, the few things they use of the session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import LabsimError
from ..net.vnet import ConnectionInfo
from . import cmdlets, views
from .errors import ShellError
from .objects import PSObject, cell

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.runtime import LabRuntime


class ProbeLab(Protocol):
    """What the network views use of the session (shell.session.LabSession)."""

    rt: LabRuntime
    local: str
    notes: list[str]  # WARNING: lines of the command being run

    async def act(self, label: str, fn: Callable[[], Awaitable[Any]]) -> None: ...


async def resolve(s: ProbeLab, name: str, qtype: str, server: Any) -> list[PSObject]:
    """Resolve-DnsName from the local server: its DNS servers (or -Server), through the OS's cache."""
    rt = s.rt
    host = rt.net.host(s.local)
    servers = rt.host_dns(host)
    if server is not None:
        name_or_ip = cell(server)
        d = next((x for x in rt.model.dns_servers if x.name.lower() == name_or_ip.lower() or x.ip == name_or_ip),
                 None)
        servers = [d.ip if d is not None else name_or_ip]
    qtype = qtype.upper()
    try:
        if qtype == "MX":
            answers = await rt.resolver(host, servers, "Dnscache").resolve_mx(name)
            return [PSObject("Microsoft.DnsClient.Commands.DnsRecord_MX",
                             {"Name": name, "Type": "MX", "TTL": 3600, "Section": "Answer",
                              "NameExchange": host_, "Preference": pref}, views.DNS_MX) for pref, host_ in answers]
        if qtype != "A":
            raise ShellError(f"Resolve-DnsName: the lab answers -Type A and MX, not {qtype}.", "InvalidArgument")
        ips = await rt.resolve_a(host, servers, name, service="Dnscache")
    except ShellError:
        raise
    except LabsimError as exc:
        text = next((t for cls, t in cmdlets.DNS_ERRORS if isinstance(exc, cls)), str(exc))
        raise ShellError(f"{name} : {text}", "ResourceUnavailable") from None
    except ValueError as exc:
        raise ShellError(f"{name} : {exc}", "InvalidArgument") from None
    return [PSObject("Microsoft.DnsClient.Commands.DnsRecord_A",
                     {"Name": name, "Type": "A", "TTL": 3600, "Section": "Answer", "IPAddress": ip},
                     views.DNS_A) for ip in ips]


async def test_connection(s: ProbeLab, target: str, port: int, source: str) -> PSObject:
    """Test-NetConnection: the lab's route from -Source, then a real TCP connect to the target."""
    rt = s.rt
    try:
        src = rt.net.host(source)
    except KeyError:
        raise ShellError(f"-Source {source!r} is not a host of the lab.", "InvalidArgument") from None
    ip = target
    if not all(p.isdigit() for p in target.split(".")) or target.count(".") != 3:
        if target.lower() in rt.net.by_name:
            ip = rt.net.host(target).ip
        else:
            found = await resolve(s, target, "A", None)
            ip = cell(found[0].get("IPAddress"))
    plan = rt.net.plan(src, ip, port)
    ok = False
    if plan.failure is None and rt.book.knows(plan.dial_ip):
        real_dst = (rt.book.real_ip(plan.dial_ip), rt.book.real_port(port))
        real_src = rt.book.real_ip(plan.seen_src_ip)

        info = ConnectionInfo(src_virtual=(plan.seen_src_ip, rt.source_port(src.name)), dst_virtual=(ip, port),
                              context={"client_host": src.name})

        async def probe() -> None:
            nonlocal ok
            ok = await cmdlets.tcp_probe(real_dst, real_src, 5.0,
                                         announce=lambda real: rt.registry.announce(real, info))

        await s.act("shell Test-NetConnection", probe)
    if not ok:
        s.notes.append(f"WARNING: TCP connect to ({ip} : {port}) failed")
    return PSObject("TestNetConnectionResult",
                    {"ComputerName": target, "RemoteAddress": ip, "RemotePort": port, "InterfaceAlias": "Ethernet",
                     "SourceAddress": src.ip, "TcpTestSucceeded": ok}, views.NET_CONNECTION)


async def validate_outbound(s: ProbeLab, identity: str, recipients: list[str]) -> PSObject:
    """Validate-OutboundConnector: the lab's connector test (engine.validate_connectors) on the
    running lab: a real test message through the connector's smart hosts and TLS plan."""
    from ..engine.validate_connectors import validate_connectors

    rt = s.rt
    conns = [c for c in rt.model.tenant.outbound_connectors if c.name.lower() == identity.lower()]
    if not conns:
        raise ShellError(f"The operation couldn't be performed because object '{identity}' couldn't be found.",
                         "ObjectNotFound")
    found: list[Any] = []

    async def run() -> None:
        found.extend(r for r in await validate_connectors(rt)
                     if r.side == "Exchange Online" and r.connector == conns[0].name)

    await s.act("shell Validate-OutboundConnector", run)
    r = found[0] if found else None
    if r is None:
        raise ShellError(f"The connector '{identity}' is disabled.", "InvalidOperation")
    return PSObject("ValidationResult", {
        "Identity": r.connector, "Target": r.target, "Recipient": r.recipient, "IsTaskSuccessful": r.ok,
        "Status": r.status, "TlsStatus": r.tls.get("status", "") if r.tls else ""},
        views.VALIDATION)


__all__ = ["ProbeLab", "resolve", "test_connection", "validate_outbound"]
