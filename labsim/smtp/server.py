"""The SMTP server shell: reads commands, asks its policy what to answer, writes the reply.

Why not aiosmtpd: every reply of an Exchange session must be Exchange's own text (`503 5.5.2 Send
hello first`, `500 5.3.3 Unrecognized command`, the 2.6.0 queued line, PRX errors...), EHLO is
logged flattened, BDAT/CHUNKING is advertised and must work, and the command loop must log every
line with a virtual timestamp. aiosmtpd hard-codes its own texts in its command loop and every
smtp_* method, so using it would mean overriding nearly all of it. Python 3.11's streams give us
the rest (`StreamWriter.start_tls` does STARTTLS in place).

All decisions are the policy's (`smtp.policy`): this module only does I/O, line framing, dot
unstuffing and the bookkeeping of virtual time for the session's log rows.

Virtual time: a server session never moves the lab clock by itself except for processing it
models. Its rows are stamped with `cursor`, which it sets to the clock's value each time it reads a
line (the client advanced the clock by the link latency before yielding). So rows written after the
peer has moved on still carry the time at which the server acted.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..rules import replies as R

if TYPE_CHECKING:  # pragma: no cover
    from .policy import ReceivePolicy

MAX_LINE = 4096
_MAIL_RE = re.compile(r"^FROM:\s*<([^<>]*)>\s*(.*)$", re.IGNORECASE)
_RCPT_RE = re.compile(r"^TO:\s*<([^<>]*)>\s*(.*)$", re.IGNORECASE)
_ADDR_RE = re.compile(r"^[^\s@<>()\[\],;:\"]+@[A-Za-z0-9.-]+$")


@dataclass
class Envelope:
    mail_from: str = ""
    mail_params: dict[str, str] = field(default_factory=dict)
    recipients: list[str] = field(default_factory=list)
    data: bytes = b""
    declared_size: int | None = None


TOO_LONG = "\x00too long\x00"  # read_line's sentinel for a line over MAX_COMMAND_LENGTH


def is_protocol_error(reply: str) -> bool:
    """Does this reply count against MaxProtocolErrors? Exchange counts the replies its command
    parsers give with ParsingStatus.ProtocolError: syntax, sequence and permission refusals (5xx);
    failed authentication (535, ParsingStatus.Error) is MaxLogonFailures' business instead."""
    return reply[:1] == "5" and not reply.startswith("535")


def parse_params(text: str) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for tok in text.split():
        key, sep, value = tok.partition("=")
        if not key or not re.match(r"^[A-Za-z0-9-]+$", key):
            return None
        params[key.upper()] = value if sep else ""
    return params


def valid_address(addr: str) -> bool:
    return addr == "" or bool(_ADDR_RE.match(addr))


class ServerSession:
    """One inbound SMTP connection, driven by a policy."""

    def __init__(self, policy: "ReceivePolicy", reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, now: datetime, context: dict[str, Any]) -> None:
        self.policy = policy
        self.reader = reader
        self.writer = writer
        self.cursor = now
        self.context = context  # what the client announced (virtual endpoints, causal context)
        self.envelope = Envelope()
        self.tls_active = False
        self.ssl_object: ssl.SSLObject | None = None
        self.closed = False
        self.messages = 0
        self.log: Any = None  # a logs.SessionWriter, set by the policy when the session opens
        self.state: Any = None  # the policy's own session state
        self.extra: Any = None  # the service's own per-session data
        self.session_id = 0
        self.started = now
        self.data_started: datetime | None = None
        self.errors = 0  # protocol errors so far (MaxProtocolErrors)
        self.disconnect_reason: str | None = None
        self.committing = False  # between a message's end and the reply that acknowledges it
        self.stopping = False  # the service is stopping: no new message is committed (shutdown)
        self._counting = False  # the next reply answers a command (not message content)

    # --- time -------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.cursor

    def touch(self) -> None:
        self.cursor = max(self.cursor, self.policy.clock_now())

    # --- wire -------------------------------------------------------------------------------
    async def reply(self, text: str | list[str], *, log_as: str | None = None) -> None:
        lines = text if isinstance(text, list) else [text]
        if self._counting:  # the first reply to a command; message content replies do not count
            self._counting = False
            if is_protocol_error(lines[-1]):
                # MaxProtocolErrors: the error that goes over the limit is answered with 421 and
                # the session dropped (SmtpInSessionUtils.IsMaxProtocolErrorsExceeded: errors > limit).
                self.errors += 1
                limit = self.policy.max_protocol_errors(self)
                if limit is not None and self.errors > limit:
                    lines, log_as = [R.TOO_MANY_ERRORS], None
                    self.closed = True
                    self.disconnect_reason = "TooManyErrors"
        if self.log is not None:
            self.log.sent(log_as if log_as is not None else "\r\n".join(lines))
        self.writer.write("".join(f"{ln}\r\n" for ln in lines).encode("utf-8", "surrogateescape"))
        await self.writer.drain()

    async def read_line(self) -> str | None:
        """One command line; None when the peer is gone; TOO_LONG for a line over the limit."""
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            try:  # throw the rest of the overlong line away
                await self.reader.readexactly(exc.consumed)
                while True:
                    try:
                        await self.reader.readuntil(b"\n")
                        break
                    except asyncio.LimitOverrunError as more:
                        await self.reader.readexactly(more.consumed)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            self.touch()
            return TOO_LONG
        except ConnectionResetError:
            self.disconnect_reason = "Remote(ConnectionReset)"
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.touch()
        if len(raw) > R.MAX_COMMAND_LENGTH:
            return TOO_LONG
        return raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")

    # --- the command loop -------------------------------------------------------------------
    async def run(self) -> None:
        policy = self.policy
        disconnect = "Remote"
        try:
            if not await policy.open(self):
                return
            if self.log is not None:
                self.log.connect()
            await self.reply(policy.banner(self))
            while not self.closed:
                line = await self.read_line()
                if line is None:
                    disconnect = self.disconnect_reason or "Remote"
                    break
                self._counting = True
                if line is TOO_LONG:
                    await self.reply(R.COMMAND_TOO_LONG)
                    continue
                if self.log is not None:
                    self.log.received(line)
                verb, _, arg = line.partition(" ")
                handler = getattr(self, "cmd_" + verb.upper(), None) if verb.isalpha() else None
                if handler is None:
                    await self.reply(R.UNRECOGNIZED)
                    continue
                await handler(arg.strip())
                self._counting = False
            if self.closed:
                disconnect = self.disconnect_reason or "Local"
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            disconnect = self.disconnect_reason or "Remote(ConnectionReset)"
        finally:
            if self.log is not None and policy.opened(self):
                self.log.disconnect(disconnect)
            await self._close()
            policy.closed(self)

    async def _close(self) -> None:
        self.closed = True
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 0.5)
        except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError):
            pass

    # --- commands ---------------------------------------------------------------------------
    async def cmd_EHLO(self, arg: str) -> None:
        await self.policy.ehlo(self, arg, extended=True)

    async def cmd_HELO(self, arg: str) -> None:
        await self.policy.ehlo(self, arg, extended=False)

    async def cmd_STARTTLS(self, arg: str) -> None:
        await self.policy.starttls(self, arg)

    async def cmd_MAIL(self, arg: str) -> None:
        m = _MAIL_RE.match(arg)
        params = parse_params(m.group(2)) if m else None
        if not m or params is None:
            await self.reply(R.INVALID_ARGS)
            return
        if not valid_address(m.group(1)):
            await self.reply(R.INVALID_SENDER)
            return
        size = None
        if "SIZE" in params:
            if not params["SIZE"].isdigit():
                await self.reply(R.INVALID_ARGS)
                return
            size = int(params["SIZE"])
        reply = await self.policy.mail(self, m.group(1), params, size)
        if reply.startswith("250"):
            self.envelope = Envelope(mail_from=m.group(1), mail_params=params, declared_size=size)
        await self.reply(reply)

    async def cmd_RCPT(self, arg: str) -> None:
        m = _RCPT_RE.match(arg)
        if not m or parse_params(m.group(2)) is None:
            await self.reply(R.INVALID_ARGS)
            return
        if not valid_address(m.group(1)) or not m.group(1):
            await self.reply(R.INVALID_RECIPIENT)
            return
        reply = await self.policy.rcpt(self, m.group(1))
        if reply.startswith("250"):
            self.envelope.recipients.append(m.group(1))
        await self.reply(reply)

    async def cmd_DATA(self, arg: str) -> None:
        reply = self.policy.data_start(self)
        await self.reply(reply)
        if not reply.startswith("354"):
            return
        self.data_started = self.cursor
        limit = self.policy.max_size(self)
        chunks: list[bytes] = []
        size = 0
        too_big = False
        while True:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                raw = await self.reader.read(exc.consumed)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.closed = True
                raise ConnectionResetError("connection lost during DATA")
            if raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b"."):
                raw = raw[1:]
            size += len(raw)
            if size > limit:
                too_big = True
            elif not too_big:
                chunks.append(raw)
        self.touch()
        if too_big:
            await self.reply(R.TOO_LARGE)
            self.envelope = Envelope()
            return
        self.envelope.data = b"".join(chunks)
        await self._deliver()

    async def cmd_BDAT(self, arg: str) -> None:
        parts = arg.split()
        if not parts or not parts[0].isdigit() or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() != "LAST"):
            await self.reply(R.INVALID_ARGS)
            return
        count, last = int(parts[0]), len(parts) == 2
        try:
            chunk = await self.reader.readexactly(count)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = True
            raise ConnectionResetError("connection lost during BDAT")
        if not self.envelope.data:
            self.data_started = self.cursor
        self.touch()
        reply = self.policy.data_start(self)
        if not reply.startswith("354"):
            await self.reply(reply)
            return
        self.envelope.data += chunk
        if len(self.envelope.data) > self.policy.max_size(self):
            self.envelope = Envelope()
            await self.reply(R.TOO_LARGE)
            return
        if not last:
            await self.reply(R.BDAT_OK)
            return
        await self._deliver()

    async def _deliver(self) -> None:
        self.messages += 1
        envelope, self.envelope = self.envelope, Envelope()
        if self.stopping:
            return  # the service stopped while the message came in: not accepted, shutdown() answers 421
        self.committing = True
        try:
            reply = await self.policy.deliver(self, envelope)
            self.touch()
            await self.reply(reply)
        finally:
            self.committing = False

    async def shutdown(self, reply: str, *, grace: float = 0.5) -> None:
        """The service is stopping: answer `reply` (421 4.3.2), log it and close, as a local disconnect.

        A session that is committing a message first finishes that message's own reply (up to
        `grace` seconds), so an accepted message is never left without its 250 - the sender would
        send it again. Mid-DATA the message is simply not accepted and stays with the sender. The
        command loop then ends and writes the disconnect row.
        """
        self.stopping = True
        self.disconnect_reason = "Local"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.committing and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self.writer.is_closing():
            return
        self.closed = True
        self.touch()
        if self.log is not None and self.policy.opened(self):
            self.log.sent(reply)
        try:
            self.writer.write(f"{reply}\r\n".encode())
            await asyncio.wait_for(self.writer.drain(), 0.3)
        except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError):
            pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 0.3)
        except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError):
            self.writer.transport.abort()  # a TLS peer that never answers close_notify

    async def cmd_RSET(self, arg: str) -> None:
        self.envelope = Envelope()
        await self.reply(R.RESETTING)

    async def cmd_NOOP(self, arg: str) -> None:
        await self.reply(R.OK)

    async def cmd_VRFY(self, arg: str) -> None:
        await self.reply(R.CANNOT_VRFY)

    cmd_EXPN = cmd_VRFY

    async def cmd_AUTH(self, arg: str) -> None:
        await self.policy.auth(self, arg)

    async def cmd_QUIT(self, arg: str) -> None:
        await self.reply(R.CLOSING)
        self.closed = True
