"""A hand-typed SMTP session from a lab host (telnet/swaks style), as a timeline step.

Exchange's replies to bad client behaviour (`503 5.5.2 Send hello first`, `500 5.3.3 Unrecognized
command`, `504 5.7.4 Unrecognized authentication type`, two STARTTLS, MaxProtocolErrors) only
show when a client misbehaves, and the lab's own parties never do. This operation is that client:
it dials from a virtual host over the virtual network (routes, NAT and link rules apply; the
server sees the host's address) and sends the given lines one by one, waiting for each reply.

```toml
[[change]]
at = "+00:05:00"
cmdlet = "Send-LabSmtpCommands"
Source = "FABRIKAM-MX"            # a lab host
Target = "27.7.57.242"            # a virtual address (or a host name)
Port = 25
Commands = ["MAIL FROM:<a@fabrikam.com>", "EHLO mx.fabrikam.com", "STARTTLS", "STARTTLS", "QUIT"]
```

`STARTTLS` answered with 220 upgrades the connection (no certificate checks, like swaks
--tls-verify off); `<BODY n>` sends n bytes of message text and the final dot; `<WAIT hh:mm:ss>`
sends nothing for that long (virtual time in `run`, wall time in `up`), as a stalled client does. The transcript
goes to summary.json (`services.smtp_sessions`, kept in engine.services.ServiceState); the evidence is the server's own protocol log.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import TopologyError
from ..net.streams import start_tls
from ..net.vnet import ConnectionInfo, open_socket
from ..topology.timespec import format_timespan, parse_timespan
from .op_registry import OPERATION_CHECKS, operation

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import LabRuntime

REAL_TIMEOUT = 5.0
FILLER = b"labsim filler text for a message body that is larger than the connector allows...\r\n"


def _pop(params: dict[str, Any], name: str) -> Any:
    for k in list(params):
        if k.lower() == name.lower():
            return params.pop(k)
    return None


async def _read_reply(reader: asyncio.StreamReader) -> list[str]:
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(reader.readline(), REAL_TIMEOUT)
        if not raw:
            return lines
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


def _check(lab: Any, params: dict[str, Any]) -> None:
    """Static check (before the lab starts): hosts exist, commands are text."""
    from ..rules.network import all_virtual_ips, lab_hosts

    where = "Send-LabSmtpCommands"
    source, target, commands = _pop(params, "Source"), _pop(params, "Target"), _pop(params, "Commands")
    port = _pop(params, "Port")
    params.pop("at", None)
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: Source, Target, Port, Commands)")
    if source is None or target is None or not commands:
        raise TopologyError(where, "-Source, -Target and -Commands are required")
    names = {h.name.lower() for h in lab_hosts(lab)}
    if str(source).lower() not in names:
        raise TopologyError(where, f"-Source {source!r} is not a lab host ({', '.join(sorted(names))})")
    if str(target).lower() not in names and str(target) not in all_virtual_ips(lab):
        raise TopologyError(where, f"-Target {target!r} is not an address or host of the lab")
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise TopologyError(where, "-Commands must be a list of command lines")
    for c in commands:
        if c.upper().startswith("<WAIT ") and c.endswith(">"):
            try:
                if parse_timespan(c[6:-1]).total_seconds() < 0:
                    raise ValueError("a wait cannot be negative")
            except ValueError as exc:
                raise TopologyError(where, f"-Commands {c!r}: {exc}") from None
    if port is not None and not (isinstance(port, int) and 0 < port < 65536):
        raise TopologyError(where, f"-Port {port!r} is not a TCP port")


OPERATION_CHECKS["send-labsmtpcommands"] = _check


@operation("Send-LabSmtpCommands")
async def send_lab_smtp_commands(rt: "LabRuntime", params: dict[str, Any]) -> str:
    """Type SMTP commands by hand from a lab host: -Source HOST -Target ADDRESS [-Port 25] -Commands [...]."""
    where = "Send-LabSmtpCommands"
    source = _pop(params, "Source")
    target = _pop(params, "Target")
    port = int(_pop(params, "Port") or 25)
    commands = _pop(params, "Commands")
    params.pop("at", None)
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: Source, Target, Port, Commands)")
    if source is None or target is None or not commands:
        raise TopologyError(where, "-Source, -Target and -Commands are required")
    try:
        src = rt.net.host(str(source))
    except KeyError:
        raise TopologyError(where, f"-Source {source!r} is not a lab host") from None
    dst_ip = str(target)
    if dst_ip.lower() in rt.net.by_name:
        dst_ip = rt.net.host(dst_ip).ip
    if not rt.book.knows(dst_ip):
        raise TopologyError(where, f"-Target {target!r} is not an address or host of the lab")
    transcript: list[str] = []
    record = {"source": src.name, "target": f"{dst_ip}:{port}", "transcript": transcript}
    rt.service_state.raw_sessions.append(record)
    plan = rt.net.plan(src, dst_ip, port)
    if plan.failure is not None:
        transcript.append(f"connect failed: {plan.failure}")
        return "failed"
    real_dst = (rt.book.real_ip(plan.dial_ip), rt.book.real_port(port))
    try:
        sock = await open_socket(real_dst, rt.book.real_ip(plan.seen_src_ip), REAL_TIMEOUT)
    except OSError as exc:
        transcript.append(f"connect failed: {exc.__class__.__name__}")
        return "failed"
    rt.registry.announce(sock.getsockname()[:2], ConnectionInfo(
        src_virtual=(plan.seen_src_ip, rt.source_port(src.name)), dst_virtual=(dst_ip, port),
        context={"client_host": src.name}))
    # Virtual time: the client is the active party; it moves the clock before it yields, so the
    # server stamps each line at the time it arrives (see smtp.client).
    rt.clock.advance(plan.latency)
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        transcript += await _read_reply(reader)
        rt.clock.advance(plan.latency)
        for cmd in commands:
            cmd = str(cmd)
            if cmd.upper().startswith("<WAIT ") and cmd.endswith(">"):  # the client says nothing for a while
                pause = parse_timespan(cmd[6:-1]).total_seconds()
                if rt.clock.live:
                    await asyncio.sleep(pause)
                else:
                    rt.clock.advance(pause)
                transcript.append(f"C: <silent for {format_timespan(timedelta(seconds=pause))}>")
                continue
            rt.clock.advance(plan.latency)
            if cmd.upper().startswith("<BODY ") and cmd.endswith(">"):
                n = int(cmd[6:-1])
                writer.write((FILLER * (n // len(FILLER) + 1))[:n] + b"\r\n.\r\n")
                transcript.append(f"C: <{n} bytes of message text>")
            else:
                writer.write(cmd.encode() + b"\r\n")
                transcript.append(f"C: {cmd}")
            await writer.drain()
            reply = await _read_reply(reader)
            rt.clock.advance(plan.latency)
            transcript += [f"S: {ln}" for ln in reply]
            if not reply:
                transcript.append("connection closed by the server")
                break
            if cmd.upper() == "STARTTLS" and reply[-1].startswith("220"):
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                await start_tls(writer, ctx)
                rt.clock.advance(2 * plan.latency)
                transcript.append("TLS started")
    except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        transcript.append(f"session ended: {exc.__class__.__name__}")
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError):
            pass
    return "ok"
