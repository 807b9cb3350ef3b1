"""One fuzz client connection: bytes out, SMTP replies in, both kept in a transcript.

The transcript is the fuzzer's evidence: every byte the client wrote (`C`), every reply the server
gave (`S`) and what the client did besides (`.`: stalls, TLS, closes). A failing property names the
session and prints its transcript, so the input that broke the lab is on the screen.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

# Exchange may tarpit a 5xx (TarpitInterval, 5 s by default), so both bounds leave room for it.
REPLY_TIMEOUT = 8.0  # a reply that is due and has not come by then is a hang
REFUSAL_TIMEOUT = 6.0  # a command that must be refused is refused, never taken for a wait
QUIET = 0.6  # reading whatever comes: stop after this long without a byte
READ_LIMIT = 1 << 20  # reply lines longer than this are themselves a finding
_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$", re.DOTALL)


class Closed(Exception):
    """The server closed the connection."""


class NoReply(Exception):
    """A reply was due and did not come within its timeout."""


class Abandon(Exception):
    """The client gives up on the session (after a finding that makes going on pointless)."""


@dataclass
class Reply:
    code: int | None  # None: a line that does not start with three digits and a space or dash
    lines: list[str]

    @property
    def text(self) -> str:
        return " | ".join(self.lines)

    def __str__(self) -> str:
        return self.text


def show(data: bytes, limit: int = 220) -> str:
    """bytes as a short Python literal: runs of one byte folded (b'A'*70000), long tails cut."""
    parts: list[str] = []
    i = 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] == data[i]:
            j += 1
        if j - i >= 12:
            parts.append(f"{bytes([data[i]])!r}*{j - i}")
            i = j
            continue
        k = i
        while k < len(data) and not (k + 12 <= len(data) and data[k:k + 12] == bytes([data[k]]) * 12):
            k += 1
        parts.append(repr(data[i:k]))
        i = k
    text = " + ".join(parts) or "b''"
    return text if len(text) <= limit else text[:limit] + f"... ({len(data)} bytes)"


KEEP_EVENTS = 160  # a transcript keeps its first and last KEEP_EVENTS // 2 events


@dataclass
class Transcript:
    events: list[tuple[str, str]] = field(default_factory=list)
    dropped: int = 0  # events left out of the middle
    commands: int = 0  # command lines written (CRLF-terminated lines outside message content)
    bytes_sent: int = 0
    codes: Counter = field(default_factory=Counter)

    def client(self, data: bytes, *, lines: int) -> None:
        self.events.append(("C", show(data, 700)))
        self._trim()
        self.commands += lines
        self.bytes_sent += len(data)

    def server(self, reply: Reply) -> None:
        self.events.append(("S", reply.text[:300]))
        self._trim()
        self.codes[str(reply.code) if reply.code is not None else "malformed"] += 1

    def note(self, text: str) -> None:
        self.events.append((".", text))

    def _trim(self) -> None:
        if len(self.events) > KEEP_EVENTS:
            del self.events[KEEP_EVENTS // 2]
            self.dropped += 1

    def forget(self) -> None:
        """Drop the events (a session with nothing to report); the counters stay."""
        self.dropped += len(self.events)
        self.events = []

    def render(self, limit: int = 40) -> str:
        if not self.events:
            return "    (not kept: the session looked clean when it ended; replay it to see it)"
        rows = [f"    {k} {v}" for k, v in self.events]
        if self.dropped and self.events:
            rows.insert(KEEP_EVENTS // 2, f"    ... {self.dropped} events not kept ...")
        if len(rows) > limit:
            rows = rows[:limit // 2] + [f"    ... {len(rows) - limit} more ..."] + rows[-limit // 2:]
        return "\n".join(rows)


class Wire:
    """The client side of one SMTP connection (plain, or TLS after `start_tls`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transcript: Transcript) -> None:
        self.reader = reader
        self.writer = writer
        self.t = transcript
        self.malformed: list[str] = []  # reply lines that are not SMTP replies

    @classmethod
    async def open(cls, host: str, port: int, transcript: Transcript) -> "Wire":
        reader, writer = await asyncio.open_connection(host, port, limit=READ_LIMIT)
        return cls(reader, writer, transcript)

    # --- writing ---------------------------------------------------------------------------------
    async def send(self, data: bytes, *, per_byte: float = 0.0, lines: int | None = None) -> None:
        """Write `data` (one byte at a time with `per_byte` seconds between, for a slow client)."""
        self.t.client(data, lines=data.count(b"\r\n") if lines is None else lines)
        try:
            if per_byte <= 0:
                self.writer.write(data)
                await self.writer.drain()
                return
            for i in range(len(data)):
                self.writer.write(data[i:i + 1])
                await self.writer.drain()
                await asyncio.sleep(per_byte)
        except (ConnectionError, OSError) as exc:
            self.t.note(f"write failed: {exc.__class__.__name__}")
            raise Closed() from None

    # --- reading ---------------------------------------------------------------------------------
    async def reply(self, timeout: float = REPLY_TIMEOUT, *, due: str = "") -> Reply:
        """The next reply (all its lines); Closed at end of stream; NoReply after `timeout`."""
        lines: list[str] = []
        code: int | None = None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                raw = await asyncio.wait_for(self.reader.readline(), max(left, 0.001))
            except asyncio.TimeoutError:
                self.t.note(f"no reply within {timeout:.1f}s" + (f" to {due}" if due else ""))
                raise NoReply(due) from None
            except (ConnectionError, OSError, ssl.SSLError, ValueError) as exc:
                self.t.note(f"read failed: {exc.__class__.__name__}")
                raise Closed() from None
            if not raw:
                self.t.note("server closed the connection")
                raise Closed()
            m = _REPLY_LINE.match(raw.rstrip(b"\r\n"))
            text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
            if m is None or not raw.endswith(b"\r\n"):
                self.malformed.append(text[:200])
                reply = Reply(None, [text])
                self.t.server(reply)
                return reply
            lines.append(text)
            this = int(m.group(1))
            if code is not None and this != code:
                self.malformed.append(f"multi-line reply changes code: {' | '.join(lines)[:200]}")
            code = this
            if m.group(2) == b" ":
                reply = Reply(code, lines)
                self.t.server(reply)
                return reply

    async def command(self, line: bytes, *, timeout: float = REPLY_TIMEOUT, per_byte: float = 0.0) -> Reply:
        """Write one command line (CRLF added) and read its reply."""
        await self.send(line + b"\r\n", per_byte=per_byte)
        return await self.reply(timeout, due=show(line, 80))

    async def drain(self, quiet: float = QUIET, cap: float = 5.0) -> list[Reply]:
        """Every reply that comes until the server is quiet for `quiet` s or closes (bounded by `cap`)."""
        got: list[Reply] = []
        end = time.monotonic() + cap
        while time.monotonic() < end:
            try:
                got.append(await self.reply(min(quiet, max(end - time.monotonic(), 0.001)), due=""))
            except (NoReply, Closed):
                break
        if self.t.events and self.t.events[-1][1].startswith("no reply within"):
            self.t.events.pop()  # silence is what a drain waits for, not a finding
        return got

    # --- TLS and endings -------------------------------------------------------------------------
    async def start_tls(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the fuzzer is a stranger; it judges no certificate
        self.t.note("TLS handshake")
        try:
            await asyncio.wait_for(self.writer.start_tls(ctx), REPLY_TIMEOUT)
        except asyncio.TimeoutError:
            self.t.note("TLS handshake: no answer")
            raise NoReply("TLS handshake") from None
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            self.t.note(f"TLS handshake failed: {exc.__class__.__name__}")
            raise Closed() from None

    async def stall(self, seconds: float) -> None:
        self.t.note(f"stall {seconds:.2f}s")
        await asyncio.sleep(seconds)

    def abort(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a crashed client would."""
        self.t.note("reset")
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.writer.transport.abort()

    async def close(self) -> None:
        if self.writer.transport.is_closing():
            return
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
        except (asyncio.TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass
