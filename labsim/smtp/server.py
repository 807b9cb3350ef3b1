"""The SMTP server shell: reads commands, asks its policy what to answer, writes the reply.

Why not aiosmtpd: every reply of an Exchange session must be Exchange's own text (`503 5.5.2 Send
hello first`, `500 5.3.3 Unrecognized command`, the 2.6.0 queued line, PRX errors...), EHLO is
logged flattened, BDAT/CHUNKING is advertised and must work, and the command loop must log every
line with a virtual timestamp. aiosmtpd hard-codes its own texts in its command loop and every
smtp_* method, so using it would mean overriding nearly all of it. Python 3.11's streams give us
the rest (`StreamWriter.start_tls` does STARTTLS in place).

All decisions are the policy's (`smtp.policy`) or plain functions (`smtp.commands`: what a
command's arguments mean, which verb is answered, what counts as a protocol error, which timeout
ran out): this module only does I/O, the bookkeeping of virtual time for the session's log rows,
and the limits every receiver has (line length, bounded reads, timeouts). Where message data ends
is `smtp.framing`'s business: the session's input (`smtp.wire`) reads the socket in pieces of at
most READ_CHUNK bytes into one buffer, and DATA and BDAT (`smtp.content`) feed them to the
policy's data parser, so no command, DATA or BDAT payload is ever read whole before its size is
checked.

Virtual time: a server session never moves the lab clock by itself except for processing it
models. Its rows are stamped with `cursor`, which it sets to the clock's value each time it reads a
line (the client advanced the clock by the link latency before yielding). So rows written after the
peer has moved on still carry the time at which the server acted.

Timeouts (ConnectionInactivityTimeout, ConnectionTimeout): in `up` (live clock) a read waits at
most the time left, on the wall clock. In `run` the clock is virtual: a lab client that was silent
for longer than the inactivity timeout (its next command arrives that much later in virtual time)
finds the session already timed out, at the virtual time it happened; a client that sends nothing
at all for RUN_WALL_IDLE real seconds is treated the same way, so a stuck peer never holds the lab.
One watchdog timer per session enforces the wall-clock part (`smtp.wire`).
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..rules import replies as R
from ..rules.verbs import logged_command
from .commands import (
    VERBS,
    expired,
    is_protocol_error,
    mail_size,
    parse_params,
    split_command,
    valid_address,
)
from .content import ContentCommands
from .verbs import EnvelopeCommands
from .wire import READ_CHUNK, TOO_LONG_LINE, SessionInput

if TYPE_CHECKING:  # pragma: no cover
    from .policy import ReceivePolicy

__all__ = ["MAX_LINE", "READ_CHUNK", "RUN_WALL_IDLE", "TOO_LONG", "ServerSession", "is_protocol_error",
           "mail_size", "parse_params", "valid_address"]

MAX_LINE = 4096
RUN_WALL_IDLE = 10.0  # run mode: real seconds of silence that count as an expired inactivity timeout
TOO_LONG = "\x00too long\x00"  # read_line's sentinel for a line over MAX_COMMAND_LENGTH

Handler = Callable[[Any, str], Awaitable[None]]

# RFC 2920's commands that need not end a pipelined group: while the client has already sent the
# next command, their replies are held and go out with the group's last reply. Exchange logs them
# then, after the commands they answer: `<,MAIL FROM`, `<,RCPT TO`, `>,250 2.1.0 Sender OK`,
# `>,250 2.1.5 Recipient OK` (docs/transport-fidelity.md §1.6a).
GROUPED = frozenset({"MAIL", "RCPT", "RSET"})


class _TimedOut(Exception):
    """A read outlived a timeout; `reply` is what the policy says, `at` when it happened."""

    def __init__(self, reply: str, at: datetime) -> None:
        super().__init__(reply)
        self.reply = reply
        self.at = at


class ServerSession(EnvelopeCommands, ContentCommands):
    """One inbound SMTP connection, driven by a policy."""

    _handlers: dict[str, Handler]  # verb -> cmd_ method (smtp.commands.VERBS)

    def __init__(self, policy: ReceivePolicy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, now: datetime, context: dict[str, Any]) -> None:
        super().__init__(policy, reader, writer, now=now, context=context)
        self.input = SessionInput(reader, self)
        self._verb: str | None = None  # the command being answered
        self._held: list[tuple[str, bytes]] = []  # replies of a pipelined group not yet sent: (logged, wire)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = _handler_table(cls)

    # --- time -------------------------------------------------------------------------------
    def wall_timeout(self) -> float | None:
        """How long (real seconds) the next read may wait for the client: the inactivity timeout.
        ConnectionTimeout is not a read timeout: Exchange checks it when a read completes."""
        inactivity = self.policy.timeouts(self)[0]
        if inactivity is None:
            return None
        return inactivity if self.live else RUN_WALL_IDLE

    def silence_is_expected(self) -> bool:
        """Run mode: silence while the lab client holds the connection is the lab's, not a timeout."""
        return self.held and not self.live

    def waited_too_long(self) -> _TimedOut:
        inactivity = self.policy.timeouts(self)[0] or 0.0
        return _TimedOut(self.policy.timeout_reply(self, "inactivity"), self._wait_from + timedelta(seconds=inactivity))

    def _check_expired(self, *, data: bool = False) -> None:
        """After a read: raise the timeout that ran out meanwhile, in (virtual) time (smtp.commands.expired)."""
        inactivity, total = self.policy.timeouts(self)
        found = expired(self.policy.clock_now(), self._wait_from, self.started, inactivity, total, data=data)
        if found is not None:
            raise _TimedOut(self.policy.timeout_reply(self, found[0]), found[1])

    # --- wire -------------------------------------------------------------------------------
    async def reply(self, text: str | list[str], *, log_as: str | None = None) -> None:
        if self._counting:  # the first reply to a command; message content replies do not count
            self._counting = False
            if is_protocol_error(text if isinstance(text, str) else text[-1]):
                # MaxProtocolErrors: the error that goes over the limit is answered with 421 and
                # the session dropped (SmtpInSessionUtils.IsMaxProtocolErrorsExceeded: errors > limit).
                self.errors += 1
                limit = self.policy.max_protocol_errors(self)
                if limit is not None and self.errors > limit:
                    text, log_as = R.TOO_MANY_ERRORS, None
                    self.closed = True
                    self.disconnect_reason = "TooManyErrors"
        if isinstance(text, str):
            shown, wire = text, text + "\r\n"
        else:
            shown, wire = "\r\n".join(text), "".join([ln + "\r\n" for ln in text])
        if log_as is not None:
            shown = log_as
        data = wire.encode("utf-8", "surrogateescape")
        self._wait_from = self.cursor
        if self._verb in GROUPED and not self.closed and self.input.has_line():
            self._held.append((shown, data))  # the client pipelined: answer the group at its end
            return
        if self._held:
            data = self._release_held() + data
        if self.log is not None:
            self.log.sent(shown)
        self.writer.write(data)
        await self.writer.drain()

    def _release_held(self) -> bytes:
        """The held replies of a pipelined group, logged now (when Exchange writes them), as bytes to send."""
        held, self._held = self._held, []
        if self.log is not None:
            for shown, _ in held:
                self.log.sent(shown)
        return b"".join([data for _, data in held])

    def before_wait(self) -> None:
        """The input is about to wait for the client: what is held goes out first (it may be all the
        client waits for)."""
        if self._held:
            data = self._release_held()
            if not self.writer.is_closing():
                self.writer.write(data)

    async def read_line(self) -> str | None:
        """One command line; None when the peer is gone; TOO_LONG for a line over the limit."""
        inp = self.input
        raw = inp.next_line() if inp.buffer else None  # an empty buffer holds no line: read first
        while raw is None:
            if not await inp.fill():
                inp.forget_line()
                return None
            raw = inp.next_line()
        policy = self.policy
        inactivity, total = policy.timeouts(self)
        now = policy.clock_now()
        found = expired(now, self._wait_from, self.started, inactivity, total)
        if found is not None:  # before the cursor moves: a timeout is stamped when it happened
            raise _TimedOut(policy.timeout_reply(self, found[0]), found[1])
        if now > self.cursor:
            self.cursor = now
        if raw is TOO_LONG_LINE:
            return TOO_LONG
        self.line_bare_lf = not raw.endswith(b"\r\n")
        return raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")

    # --- the command loop -------------------------------------------------------------------
    async def run(self) -> None:
        policy = self.policy
        handlers = self._handlers
        disconnect = "Remote"
        try:
            if not await policy.open(self):
                return
            if self.log is not None:
                self.log.connect()
            refusal = policy.refusal(self)
            if refusal is not None:  # a connection limit: the 421 instead of the banner
                await self.reply(refusal)
                self.closed = True
                self.disconnect_reason = "Local"
            else:
                await self.reply(policy.banner(self))
            while not self.closed:
                line = await self.read_line()
                if line is None:
                    disconnect = self.disconnect_reason or "Remote"
                    break
                self._counting = True
                self._verb = None
                if line is TOO_LONG:
                    await self.reply(R.COMMAND_TOO_LONG)
                    continue
                if self.log is not None:
                    self.log.received(logged_command(line))
                if self.line_bare_lf:
                    refused = policy.bare_lf_command_reply(self)
                    if refused is not None:  # a receiver that will not take bare LF line endings
                        self._counting = False
                        await self.reply(refused)
                        self.closed = True
                        self.disconnect_reason = "Local"
                        break
                verb, arg = split_command(line)
                if verb is None:
                    await self.reply(R.UNRECOGNIZED)
                    continue
                self._verb = verb
                await handlers[verb](self, arg)
                self._counting = False
            if self.closed:
                disconnect = self.disconnect_reason or "Local"
        except _TimedOut as timeout:
            disconnect = await self._time_out(timeout)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            disconnect = self.disconnect_reason or "Remote(ConnectionReset)"
        finally:
            if self._held:  # the session ended inside a pipelined group: its replies were still owed
                self.before_wait()
            self.input.close()
            if self.log is not None and policy.opened(self) and not self._disconnect_logged:
                self._disconnect_logged = True
                self.log.disconnect(disconnect)
            await self._close()
            policy.closed(self)

    async def _time_out(self, timeout: _TimedOut) -> str:
        """Exchange writes the timeout reply, then shuts the session down (reason Local)."""
        self.cursor = max(self.cursor, timeout.at)
        self._counting = False
        self.closed = True
        try:
            await asyncio.wait_for(self.reply(timeout.reply), 5.0)
        except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError):
            pass
        return "Local"

    async def _close(self) -> None:
        self.closed = True
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 0.5)
        except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError):
            pass

    async def shutdown(self, reply: str = R.SERVICE_SHUTTING_DOWN, *, grace: float = 0.5) -> None:
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
        if self._held:
            self.before_wait()
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


def _handler_table(cls: type) -> dict[str, Handler]:
    """Each verb the shell answers (smtp.commands.VERBS) -> its `cmd_` method."""
    return {verb: getattr(cls, "cmd_" + verb.replace("-", "_")) for verb in VERBS}


ServerSession._handlers = _handler_table(ServerSession)
