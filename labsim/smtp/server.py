"""The SMTP server shell: reads commands, asks its policy what to answer, writes the reply.

Why not aiosmtpd: every reply of an Exchange session must be Exchange's own text (`503 5.5.2 Send
hello first`, `500 5.3.3 Unrecognized command`, the 2.6.0 queued line, PRX errors...), EHLO is
logged flattened, BDAT/CHUNKING is advertised and must work, and the command loop must log every
line with a virtual timestamp. aiosmtpd hard-codes its own texts in its command loop and every
smtp_* method, so using it would mean overriding nearly all of it. Python 3.11's streams give us
the rest (`StreamWriter.start_tls` does STARTTLS in place).

All decisions are the policy's (`smtp.policy`): this module only does I/O, the bookkeeping of
virtual time for the session's log rows, and the limits every receiver has (line length, bounded
reads, timeouts). Where message data ends is `smtp.framing`'s business: the shell reads the socket
in pieces of at most READ_CHUNK bytes into its own buffer and feeds them to the policy's data
parser, so no command, DATA or BDAT payload is ever read whole before its size is checked.

Virtual time: a server session never moves the lab clock by itself except for processing it
models. Its rows are stamped with `cursor`, which it sets to the clock's value each time it reads a
line (the client advanced the clock by the link latency before yielding). So rows written after the
peer has moved on still carry the time at which the server acted.

Timeouts (ConnectionInactivityTimeout, ConnectionTimeout): in `up` (live clock) a read waits at
most the time left, on the wall clock. In `run` the clock is virtual: a lab client that was silent
for longer than the inactivity timeout (its next command arrives that much later in virtual time)
finds the session already timed out, at the virtual time it happened; a client that sends nothing
at all for RUN_WALL_IDLE real seconds is treated the same way, so a stuck peer never holds the lab.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..rules import replies as R
from ..rules.verbs import logged_command
from .framing import command_verb, parse_count
from .session_api import Envelope

if TYPE_CHECKING:  # pragma: no cover
    from .policy import ReceivePolicy

MAX_LINE = 4096
READ_CHUNK = 64 * 1024  # the most the shell reads from the socket at once
RUN_WALL_IDLE = 10.0  # run mode: real seconds of silence that count as an expired inactivity timeout
_MAIL_RE = re.compile(r"^FROM:\s*<([^<>]*)>\s*(.*)$", re.IGNORECASE)
_RCPT_RE = re.compile(r"^TO:\s*<([^<>]*)>\s*(.*)$", re.IGNORECASE)
# A mailbox: a local part of printable characters (UTF-8 allowed: SMTPUTF8) and a host name. No
# control character (C0, DEL, C1) and no byte that is not UTF-8 (decoded as a lone surrogate) may
# appear: Exchange's RoutingAddress parser refuses them (`501 5.1.7 Invalid address`).
_ADDR_RE = re.compile(r"^[^\s@<>()\[\],;:\"\x00-\x1f\x7f-\x9f\ud800-\udfff]+@[A-Za-z0-9.-]+$")
_BARE_LF = re.compile(rb"(?<!\r)\n")


TOO_LONG = "\x00too long\x00"  # read_line's sentinel for a line over MAX_COMMAND_LENGTH


class _TimedOut(Exception):
    """A read outlived a timeout; `reply` is what the policy says, `at` when it happened."""

    def __init__(self, reply: str, at: datetime) -> None:
        super().__init__(reply)
        self.reply = reply
        self.at = at


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


def mail_size(params: str) -> tuple[int | None, str | None]:
    """(SIZE, None) from MAIL's parameters, or (None, the refusal). Every SIZE counts, as in Exchange's
    MailSmtpCommandParser.ParseSizeArg: a SIZE after a non-zero one, or one that is not 1*DIGIT in
    ASCII, is 501 5.5.4; up to 20 ASCII digits that overflow a long are 552 5.3.4 (MessageTooLarge)."""
    size: int | None = None
    for tok in params.split():
        key, _, value = tok.partition("=")
        if key.upper() != "SIZE":
            continue
        if size or len(value) > 20:
            return None, R.INVALID_ARGS
        size = parse_count(value)
        if size is None:
            return None, R.TOO_LARGE if value.isascii() and value.isdigit() else R.INVALID_ARGS
    return size, None


def valid_address(addr: str) -> bool:
    """The null path or a plain mailbox: `local@domain` with no control character or raw byte."""
    return addr == "" or _ADDR_RE.fullmatch(addr) is not None


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
        self._buf = bytearray()  # bytes read from the socket and not yet consumed
        self._eof = False
        self.line_bare_lf = False  # the last command line ended in LF without CR
        self._wait_from = now  # when the session began waiting for the client (inactivity)
        self._disconnect_logged = False
        self.held = False  # run mode: the lab client keeps the connection for its next message

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
        self._wait_from = self.cursor

    def _wall_timeout(self) -> float | None:
        """How long (real seconds) the next read may wait for the client: the inactivity timeout.
        ConnectionTimeout is not a read timeout: Exchange checks it when a read completes."""
        inactivity, _ = self.policy.timeouts(self)
        if inactivity is None:
            return None
        return inactivity if self.policy.live else RUN_WALL_IDLE

    def _expired(self, *, data: bool = False) -> _TimedOut | None:
        """After a read: did a timeout expire meanwhile, in (virtual) time? Command reads only check
        inactivity; ConnectionTimeout is checked after every read (SmtpInSession.ReadComplete)."""
        inactivity, total = self.policy.timeouts(self)
        now = self.policy.clock_now()
        if not data and inactivity is not None and (now - self._wait_from).total_seconds() > inactivity:
            return _TimedOut(self.policy.timeout_reply(self, "inactivity"),
                             self._wait_from + timedelta(seconds=inactivity))
        if total is not None and (now - self.started).total_seconds() > total:
            return _TimedOut(self.policy.timeout_reply(self, "session"), now)
        return None

    async def _fill(self) -> bool:
        """Read the next piece from the socket into the buffer; False when the peer is gone."""
        if self._eof:
            return False
        timeout = self._wall_timeout()
        try:
            async with asyncio.timeout(timeout):  # no task per read, unlike wait_for
                piece = await self.reader.read(READ_CHUNK)
        except asyncio.TimeoutError:
            if self.held and not self.policy.live:  # silence while the client holds the connection is the lab's, not a timeout
                return await self._fill()
            inactivity = self.policy.timeouts(self)[0] or 0.0
            at = self._wait_from + timedelta(seconds=inactivity)
            raise _TimedOut(self.policy.timeout_reply(self, "inactivity"), at) from None
        except ConnectionResetError:
            self.disconnect_reason = "Remote(ConnectionReset)"
            self._eof = True
            return False
        except (ConnectionError, OSError):
            self._eof = True
            return False
        if not piece:
            self._eof = True
            return False
        self._buf += piece
        return True

    async def read_line(self) -> str | None:
        """One command line; None when the peer is gone; TOO_LONG for a line over the limit."""
        skipping = False
        scanned = 0
        while True:
            j = self._buf.find(b"\n", scanned)
            if j >= 0:
                raw = bytes(self._buf[:j + 1])
                del self._buf[:j + 1]
                break
            if len(self._buf) > R.MAX_COMMAND_LENGTH:  # throw the rest of the overlong line away
                skipping = True
                self._buf.clear()
            scanned = len(self._buf)
            if not await self._fill():
                return None
        expired = self._expired()  # before touch(): a timeout is stamped when it happened
        if expired is not None:
            raise expired
        self.touch()
        if skipping or len(raw) > R.MAX_COMMAND_LENGTH:
            return TOO_LONG
        self.line_bare_lf = not raw.endswith(b"\r\n")
        return raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")

    async def _read_exactly(self, count: int, keep: bool) -> bytes | None:
        """The next `count` bytes (BDAT), read in bounded pieces; dropped as they come unless `keep`."""
        kept = bytearray()
        left = count
        while left:
            if not self._buf and not await self._fill():
                return None
            take = min(left, len(self._buf))
            if keep:
                kept += self._buf[:take]
            del self._buf[:take]
            left -= take
        return bytes(kept)

    def discard_pending_input(self) -> None:
        """Forget what the client sent after a command that changes the stream (STARTTLS)."""
        self._buf.clear()

    # --- the command loop -------------------------------------------------------------------
    async def run(self) -> None:
        policy = self.policy
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
                if line is TOO_LONG:
                    await self.reply(R.COMMAND_TOO_LONG)
                    continue
                if self.log is not None:
                    self.log.received(logged_command(line))
                refused = policy.bare_lf_command_reply(self) if self.line_bare_lf else None
                if refused is not None:  # a receiver that will not take bare LF line endings
                    self._counting = False
                    await self.reply(refused)
                    self.closed = True
                    self.disconnect_reason = "Local"
                    break
                verb = command_verb(line)
                handler = getattr(self, "cmd_" + verb.replace("-", "_"), None) if verb is not None else None
                if handler is None:
                    await self.reply(R.UNRECOGNIZED)
                    continue
                await handler(line[len(verb or ""):].strip())
                self._counting = False
            if self.closed:
                disconnect = self.disconnect_reason or "Local"
        except _TimedOut as timeout:
            disconnect = await self._time_out(timeout)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            disconnect = self.disconnect_reason or "Remote(ConnectionReset)"
        finally:
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

    # --- commands ---------------------------------------------------------------------------
    async def cmd_EHLO(self, arg: str) -> None:
        await self.policy.ehlo(self, arg, extended=True)

    async def cmd_HELO(self, arg: str) -> None:
        await self.policy.ehlo(self, arg, extended=False)

    async def cmd_STARTTLS(self, arg: str) -> None:
        before = self.writer.get_extra_info("ssl_object")
        await self.policy.starttls(self, arg)
        if before is None and self.writer.get_extra_info("ssl_object") is not None:
            self.discard_pending_input()  # nothing sent in the clear may count after the handshake

    async def cmd_X_ANONYMOUSTLS(self, arg: str) -> None:
        before = self.writer.get_extra_info("ssl_object")
        await self.policy.anonymous_tls(self, arg)
        if before is None and self.writer.get_extra_info("ssl_object") is not None:
            self.discard_pending_input()

    async def cmd_X_EXPS(self, arg: str) -> None:
        await self.policy.exchange_auth(self, arg)

    async def cmd_XPROXYFROM(self, arg: str) -> None:
        await self.reply(await self.policy.xproxyfrom(self, arg))

    async def cmd_XSESSIONPARAMS(self, arg: str) -> None:
        await self.reply(await self.policy.xsessionparams(self, arg))

    # org3: shadow redundancy's verbs (rules.shadow_redundancy, engine.shadow)
    async def cmd_XSHADOWREQUEST(self, arg: str) -> None:
        await self.reply(await self.policy.xshadowrequest(self, arg))

    async def cmd_XSHADOW(self, arg: str) -> None:
        await self.reply(await self.policy.xshadow(self, arg))

    async def cmd_XQDISCARD(self, arg: str) -> None:
        await self.reply(await self.policy.xqdiscard(self, arg))

    async def cmd_MAIL(self, arg: str) -> None:
        m = _MAIL_RE.match(arg)
        params = parse_params(m.group(2)) if m else None
        if not m or params is None:
            await self.reply(R.INVALID_ARGS)
            return
        if not valid_address(m.group(1)):
            await self.reply(R.INVALID_SENDER)
            return
        size, refusal = mail_size(m.group(2))
        if refusal is not None:
            await self.reply(refusal)
            return
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
        over = self.policy.recipient_limit_reply(self, len(self.envelope.recipients))
        if over is not None:
            await self.reply(over)
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
        max_header = self.policy.max_header_size(self)
        parser = self.policy.data_parser(self)
        chunks: list[bytes] = []
        too_big = header_too_big = header_checked = False
        while not parser.done:
            if not self._buf:
                if not await self._fill():
                    self.closed = True
                    raise ConnectionResetError("connection lost during DATA")
                expired = self._expired(data=True)
                if expired is not None:
                    raise expired
            fed = parser.feed(bytes(self._buf[:READ_CHUNK]))
            del self._buf[:fed.consumed]
            if parser.size > limit:
                too_big = True
            if max_header is not None and not header_too_big and not header_checked:
                # the header so far: all text until the blank line is seen (the check stops after it)
                header = parser.header_bytes if parser.header_bytes is not None else parser.size
                header_checked = parser.header_bytes is not None
                if header > max_header:
                    header_too_big = True
                    self.policy.header_too_large(self, header, max_header)
            if not (too_big or header_too_big):
                chunks.append(fed.text)
        self.touch()
        refusal = (R.HEADERS_TOO_LARGE if header_too_big else R.TOO_LARGE if too_big
                   else self.policy.content_reply(self, bare_lf=parser.bare_lf))
        if refusal is not None:
            self.policy.abort_transaction(self)
            self.envelope = Envelope()
            await self.reply(refusal)
            return
        self.envelope.data = b"".join(chunks)
        await self._deliver()

    async def cmd_BDAT(self, arg: str) -> None:
        parts = arg.split()
        count = parse_count(parts[0]) if parts else None
        if count is None or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() != "LAST"):
            overflow = count is None and bool(parts) and len(parts[0]) <= 20 and parts[0].isascii() \
                and parts[0].isdigit()
            await self._refuse_chunk(self.policy.bdat_malformed_reply(self, overflow=overflow))
            return
        last = len(parts) == 2
        at_once = self.policy.bdat_refusal(self, len(self.envelope.data), count)
        if at_once is not None:  # refused before a byte of it is read; the session ends
            await self._refuse_chunk(at_once)
            return
        if not self.envelope.data:
            self.data_started = self.cursor
        reply = self.policy.data_start(self)
        # The chunk is judged before it is read: a refused chunk is read and dropped piecewise.
        fits = len(self.envelope.data) + count <= self.policy.max_size(self)
        chunk = await self._read_exactly(count, keep=reply.startswith("354") and fits)
        if chunk is None:
            self.closed = True
            raise ConnectionResetError("connection lost during BDAT")
        self.touch()
        if not reply.startswith("354"):
            await self.reply(reply)
            return
        data = self.envelope.data + chunk
        max_header = self.policy.max_header_size(self)
        refusal = None
        if not fits:  # MessageTooLarge; the transaction is over (a new MAIL starts again)
            refusal = self.policy.bdat_too_large_reply(self)
        elif max_header is not None and len(data) > max_header and not data.startswith(b"\r\n") \
                and b"\r\n\r\n" not in data[:max_header + 4]:
            self.policy.header_too_large(self, len(data), max_header)
            refusal = R.HEADERS_TOO_LARGE
        elif last:
            refusal = self.policy.content_reply(self, bare_lf=_BARE_LF.search(data) is not None)
        if refusal is not None:
            self.policy.abort_transaction(self)
            self.envelope = Envelope()
            await self.reply(refusal)
            return
        self.envelope.data = data
        if not last:
            await self.reply(R.BDAT_OK)
            return
        await self._deliver()

    async def _refuse_chunk(self, reply: str) -> None:
        """A BDAT command refused before its chunk is read: the reply, then the session ends (the
        chunk's bytes would otherwise be read as commands). Exchange: BdatSmtpInCommand.Parse fails
        with disconnectClient; Postfix: 521 or skip_bdat's shutdown of the input."""
        self.policy.abort_transaction(self)
        self.envelope = Envelope()
        await self.reply(reply)
        self.closed = True
        self.disconnect_reason = "Local"

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
        # RSET ends the mail transaction on both sides: the envelope here and the policy's state
        # (sender, recipients), so a DATA after it is a sequence error (503 5.5.2 Need mail command).
        self.policy.abort_transaction(self)
        self.envelope = Envelope()
        await self.reply(R.RESETTING)

    async def cmd_NOOP(self, arg: str) -> None:
        await self.reply(R.OK)

    async def cmd_HELP(self, arg: str) -> None:
        await self.policy.help(self, arg)

    async def cmd_VRFY(self, arg: str) -> None:
        await self.reply(R.CANNOT_VRFY)

    cmd_EXPN = cmd_VRFY

    async def cmd_AUTH(self, arg: str) -> None:
        await self.policy.auth(self, arg)

    async def cmd_QUIT(self, arg: str) -> None:
        await self.policy.quit(self)
        await self.reply(R.CLOSING)
        self.closed = True
