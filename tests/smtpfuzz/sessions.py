"""The fuzz sessions: each kind is a small async script over a `Wire`, drawn from a `Gen`.

Scripts go in lock step wherever the protocol says a reply is due (one reply per command line,
one after the CRLF.CRLF of DATA, one after each BDAT chunk), so each reply is attributed to the
command it answers; a due reply that does not come is a hang, a reply nobody asked for is a
desynchronisation (the server saw a command where the client sent message content). Where the
client itself breaks the framing (random lines, a BDAT count shorter than its chunk) the script
only drains what comes and judges nothing about order.

Every message the fuzzer sends carries a unique Message-ID (`MessageBook.new`) that is registered
with the lab's ledger before the first byte of content is written; a 250 to its end of data makes
it *accepted*. A smuggled message (a second message hidden in the first one's content) gets an
id of its own, marked smuggled: it must never be delivered.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .inputs import (
    FUZZ_DOMAIN,
    LOOKALIKE_MAIL,
    LOOKALIKE_VERBS,
    NON_ASCII_NUMBERS,
    SMUGGLE,
    VERBS,
    Gen,
    client_hello,
    dot_stuff,
    message,
)
from .wire import (
    REFUSAL_TIMEOUT,
    Abandon,
    Closed,
    NoReply,
    Reply,
    Transcript,
    Wire,
    show,
)


@dataclass(frozen=True)
class Entry:
    """A listener the fuzzer attacks, with the addresses that make a transaction go through."""

    name: str  # FrontEnd | Edge | EOP | MTA | Hub
    host: str
    port: int
    what: str
    sender: str
    recipients: tuple[str, ...]  # mailboxes behind this entry (some valid, one unknown)
    names_message_id: bool  # Exchange and EOP quote the Message-ID in the 250 to end of data


@dataclass
class Sent:
    mid: str
    session: int
    entry: str
    sender: str
    recipients: list[str]
    smuggled: bool = False
    intact: bool = True  # the whole message was inside what the client declared as content
    accepted: bool = False
    reply: str = ""


class MessageBook:
    """Every Message-ID the fuzzer wrote, and which of them a server accepted."""

    def __init__(self, tag: str, register: Callable[[str, str, list[str]], None]) -> None:
        self.tag = tag
        self.register = register
        self.sent: dict[str, Sent] = {}
        self.writers: set[int] = set()  # sessions that wrote a message

    def new(self, session: int, entry: Entry, sender: str, recipients: list[str], *, smuggled: bool = False) -> Sent:
        kind = "smuggled" if smuggled else "fuzz"
        mid = f"<{kind}.{self.tag}.{session}.{len(self.sent)}@{FUZZ_DOMAIN}>"
        sent = Sent(mid, session, entry.name, sender, list(recipients), smuggled=smuggled)
        self.sent[mid] = sent
        self.writers.add(session)
        self.register(mid, sender, list(recipients))
        return sent

    def accepted(self) -> list[Sent]:
        return [s for s in self.sent.values() if s.accepted]


@dataclass
class Finding:
    prop: str  # one of verdict.PROPS
    detail: str


@dataclass
class Session:
    """One fuzz session: its plan, its transcript and what it found."""

    index: int
    kind: str
    entry: Entry
    seed: str
    transcript: Transcript = field(default_factory=Transcript)
    findings: list[Finding] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    end: str = ""  # quit | server-closed | client-closed | hang | bound
    local: tuple[str, int] | None = None  # the client's address (the server's peer)

    def find(self, prop: str, detail: str) -> None:
        self.findings.append(Finding(prop, detail))


class Ctx:
    """What a session script gets: the wire, the random source, the entry, the book, the record."""

    def __init__(self, wire: Wire, gen: Gen, entry: Entry, book: MessageBook, session: Session,
                 per_byte: float = 0.0) -> None:
        self.w = wire
        self.g = gen
        self.e = entry
        self.book = book
        self.s = session
        self.per_byte = per_byte
        self.took: list[str] = []  # recipients of the open transaction (RCPTs answered 250)

    async def cmd(self, line: bytes) -> Reply:
        reply = await self.w.command(line, per_byte=self.per_byte)
        self.follow(line, reply)
        return reply

    def follow(self, line: bytes, reply: Reply) -> None:
        """Keep the recipients of the open transaction as the server took them."""
        verb = line[:4].upper()
        if verb in (b"MAIL", b"RSET", b"EHLO", b"HELO") and reply.code in (250, None) or reply.code == 421:
            self.took = []
        elif verb == b"RCPT" and reply.code in (250, 251):
            self.took.append(line[8:].split(b">")[0].lstrip(b"<").decode("utf-8", "replace").lower())

    async def must_refuse(self, line: bytes, why: str, *, go_on: bool = False) -> Reply:
        """A command the server must refuse (5xx, or 421 when it drops the session) without waiting.
        If it is obeyed instead, the session's state is no longer known: the client gives up, unless
        `go_on` (to show what the obeyed command leads to)."""
        await self.w.send(line + b"\r\n", per_byte=self.per_byte)
        try:
            reply = await self.w.reply(REFUSAL_TIMEOUT, due=show(line, 80))
        except NoReply:
            self.s.find("refuse", f"{show(line, 100)} ({why}): no reply within {REFUSAL_TIMEOUT}s "
                                  "- the server took it for something to wait on")
            raise Abandon() from None
        if reply.code is None or not (500 <= reply.code < 600 or reply.code == 421):
            self.s.find("refuse", f"{show(line, 100)} ({why}) was answered {reply.text[:120]!r}, not refused")
            if not go_on:
                raise Abandon()
        return reply

    def rcpts(self) -> list[str]:
        return list(self.e.recipients)

    # --- a whole transaction ---------------------------------------------------------------------
    async def envelope(self, n_rcpt: int | None = None, *, first: bool = False) -> list[str]:
        """MAIL + RCPTs with good addresses (`first`: the entry's first mailboxes, no draw); returns
        the recipients the server took."""
        reply = await self.cmd(f"MAIL FROM:<{self.e.sender}>".encode())
        if reply.code != 250:
            return []
        pool = self.rcpts()
        n = min(len(pool), self.g.int(1, 3) if n_rcpt is None else n_rcpt)
        for rcpt in (pool[:n] if first else self.g.r.sample(pool, n)):
            await self.cmd(f"RCPT TO:<{rcpt}>".encode())
        return list(self.took)

    async def data(self, rcpts: list[str], body: bytes, *, smuggle: bytes | None = None) -> Sent | None:
        """DATA with a fuzz message; `smuggle` is written, unstuffed, in the middle of its content."""
        reply = await self.cmd(b"DATA")
        if reply.code != 354:
            return None
        sent = self.book.new(self.s.index, self.e, self.e.sender, list(self.took) or rcpts or self.rcpts()[:1])
        content = dot_stuff(message(sent.mid, self.e.sender, sent.recipients[0], body))
        if smuggle is not None:
            cut = content.index(b"\r\n\r\n") + 4
            content = content[:cut] + smuggle + content[cut:]
        await self.w.send(content + b".\r\n", per_byte=self.per_byte, lines=0)
        await self.end_of_data(sent)
        return sent

    async def end_of_data(self, sent: Sent, reply: Reply | None = None) -> None:
        reply = reply or await self.w.reply(due=f"end of data of {sent.mid}")
        self.took = []
        if reply.code == 250:
            sent.accepted = True
            sent.reply = reply.text
            if self.e.names_message_id and sent.mid not in reply.text:
                self.s.find("sync", f"the 250 to the end of data of {sent.mid} names another message: "
                                    f"{reply.text[:160]!r}")

    async def quit(self) -> None:
        """QUIT, then nothing more may come: anything the server still says answers no command."""
        reply = await self.cmd(b"QUIT")
        extra = await self.w.drain()
        if reply.code != 221 or extra:
            got = [reply.text] + [r.text for r in extra]
            self.s.find("sync", f"after QUIT the server said {len(got)} thing(s), want one 221: "
                                f"{[g[:80] for g in got[:6]]}")
        self.s.end = "quit"


# --- the session kinds ----------------------------------------------------------------------------
async def s_grammar(c: Ctx) -> None:
    """Commands from the SMTP grammar with mutated arguments, in lock step, often a whole message."""
    g = c.g
    verb = b"EHLO" if g.chance(0.8) else g.pick([b"HELO", b"ehlo", b"EhLo"])
    await c.cmd(verb + b" " + (b"fuzz.example" if g.chance(0.6) else g.helo_arg()))
    for _ in range(g.int(1, 10)):
        roll = g.r.random()
        if roll < 0.3:
            rcpts = await c.envelope()
            if g.chance(0.7):
                await c.data(rcpts, g.body_lines())
            elif g.chance(0.5):
                await bdat_chunks(c, rcpts)
        elif roll < 0.45:
            params, refuse = g.mail_params()
            line = b"MAIL FROM:<" + g.address([c.e.sender]) + b">" + params
            if refuse:
                await c.must_refuse(line, "a non-ASCII digit in SIZE")
            else:
                await c.cmd(line)
        elif roll < 0.55:
            await c.cmd(b"RCPT TO:<" + g.address(c.rcpts()) + b">" + (b" NOTIFY=NEVER" if g.chance(0.1) else b""))
        elif roll < 0.65:
            look = g.pick(LOOKALIKE_VERBS + [LOOKALIKE_MAIL + f" FROM:<{c.e.sender}>"])
            await c.must_refuse(look.encode(), "a verb that is not ASCII")
        elif roll < 0.72:
            arg = g.pick([b"", b" " + g.text(), b" " + g.junk(0, 30).replace(b"\r", b"").replace(b"\n", b"")])
            await c.cmd(g.pick(VERBS[5:12]) + arg)
        elif roll < 0.78:
            await c.cmd(g.pick([b"", b" ", b"\x00", b"\t", g.text(), b"X" * g.int(1, 600)]))
        elif roll < 0.84:
            await c.cmd(g.pick(VERBS[:3]) + b" " + g.long_run())  # a command line over a limit
        elif roll < 0.9:
            await auth(c)
        elif roll < 0.95:
            await c.cmd(b"RSET")
        else:
            await c.cmd(b"NOOP" + (b" " + g.text() if g.chance(0.3) else b""))
    if g.chance(0.85):
        await c.quit()


async def auth(c: Ctx) -> None:
    """AUTH with a mechanism, then answers to its 334 prompts (junk, '*' to cancel, empty)."""
    g = c.g
    reply = await c.cmd(b"AUTH " + g.pick([b"LOGIN", b"PLAIN", b"NTLM", b"GSSAPI", b"XEXCH50", b"", b"login",
                                           b"LOGIN " + g.text(), b"PLAIN AGZvbwBiYXI="]))
    for _ in range(3):
        if reply.code != 334:
            return
        reply = await c.cmd(g.pick([b"*", b"", b"Zm9v", b"!!!not base64", g.text(0, 200), b"=" * 70000]))


async def bdat_chunks(c: Ctx, rcpts: list[str]) -> None:
    """A message in BDAT chunks with correct counts, cut at random places (CRLF split included)."""
    if not rcpts:
        return
    sent = c.book.new(c.s.index, c.e, c.e.sender, rcpts)
    content = message(sent.mid, c.e.sender, rcpts[0], c.g.body_lines())
    cuts = sorted({c.g.int(1, max(1, len(content) - 1)) for _ in range(c.g.int(0, 3))})
    chunks = [content[a:b] for a, b in zip([0, *cuts], [*cuts, len(content)]) if b > a]
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        await c.w.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk, lines=1)
        reply = await c.w.reply(due=f"BDAT chunk {i + 1}/{len(chunks)} of {sent.mid}")
        if last:
            await c.end_of_data(sent, reply)
        elif reply.code != 250:
            return


async def s_bdat(c: Ctx) -> None:
    """BDAT with wrong, huge and non-ASCII counts, or chunks whose count lies about their length."""
    g = c.g
    size = re.search(r"\bSIZE (\d+)", (await c.cmd(b"EHLO fuzz.example")).text)
    rcpts = await c.envelope() if g.chance(0.8) else []
    mode = g.pick(["good", "short", "long", "non-ascii", "bad", "huge", "no-mail"])
    if mode == "good":
        await bdat_chunks(c, rcpts)
    elif mode == "non-ascii":
        await c.must_refuse(f"BDAT {g.pick(NON_ASCII_NUMBERS)}{g.pick(['', ' LAST'])}".encode(),
                            "a non-ASCII digit in the chunk size")
    elif mode == "bad":
        count = g.pick(["-5", "0x10", "1e3", "", "10 LAST FOO", "LAST", "+3 LAST", "3 FIRST"])
        await c.cmd(f"BDAT {count}".encode())  # none of these is a chunk size: a reply is due at once
    elif mode == "no-mail":  # whether the chunk is read before the refusal is the server's business
        await c.cmd(b"RSET")
        await c.w.send(b"BDAT 5 LAST\r\nhello", lines=1)
        await c.w.drain(cap=2.0)
        c.s.end = "client-closed"
        return
    elif mode == "short":  # the count is shorter than what follows: the rest must read as commands
        sent = c.book.new(c.s.index, c.e, c.e.sender, rcpts or c.rcpts()[:1])
        sent.intact = False
        content = message(sent.mid, c.e.sender, sent.recipients[0], g.body_lines(3, hostile=False))
        keep = content.index(b"\r\n", content.index(b"Message-ID:")) + 2  # the message keeps its id
        await c.w.send(f"BDAT {g.int(keep, len(content) - 1)} LAST\r\n".encode() + content + b"\r\nQUIT\r\n",
                       lines=2)
        for reply in await c.w.drain(cap=4.0):
            if reply.code == 250 and ("2.6.0" in reply.text or "queued as" in reply.text):
                await c.end_of_data(sent, reply)
        return
    elif mode == "long":  # fewer bytes than the count, then silence: no reply is due
        sent = c.book.new(c.s.index, c.e, c.e.sender, rcpts or c.rcpts()[:1])
        content = message(sent.mid, c.e.sender, sent.recipients[0], g.body_lines(2, hostile=False))
        await c.w.send(f"BDAT {len(content) + g.int(1, 5000)} LAST\r\n".encode() + content, lines=1)
        await c.w.drain(quiet=g.pause(0.2, 1.0))
        c.s.end = "client-closed"
        return
    else:  # huge: a chunk over the SIZE the server advertised, then some of it
        await huge_chunk(c, int(g.pick(["99999999999999999999", "4294967296", "157286401", "37748737"])),
                         int(size.group(1)) if size else None, g.pick([1000, 65536, 1 << 20]))
        return
    if g.chance(0.8):
        await c.quit()


EXCHANGE_CHUNK_LIMIT = 2**31 - 1  # BdatSmtpCommandParser.ValidateChunkSizeLimits: Int32.MaxValue
WHOLE_CHUNK_CAP = 40 * 1024 * 1024  # the most this client sends to see a chunk refused at its end


async def huge_chunk(c: Ctx, count: int, limit: int | None, send: int) -> None:
    """BDAT `count` LAST and `send` bytes of it, over the SIZE the server advertised (RFC 1870).

    When the refusal comes differs by server, and each is held to its own (docs/smtp-limits.md §4):
    - Postfix (the MTA) answers a chunk over 1.5 times message_size_limit at once and reads no more
      (smtpd.c skip_bdat); a 5xx must come without the rest.
    - Exchange refuses at once only a chunk that takes the message over Int32.MaxValue (or a count
      that overflows a long) (BdatSmtpCommandParser); a smaller chunk over MaxMessageSize is read to
      its end and dropped as it comes (DataBdatCommandBase: StartDiscardingMessage, then the reply
      after the last byte). So: the whole chunk is sent (when it is at most WHOLE_CHUNK_CAP) and the
      refusal must come when it ends; a bigger one is only checked not to be accepted. Memory stays
      bounded either way (the `resources` property)."""
    await c.w.send(f"BDAT {count} LAST\r\n".encode(), lines=1)
    await c.w.send(b"Z" * send, lines=0)
    if limit is None or count <= limit:
        await c.w.drain(quiet=0.3, cap=2.0)
        c.s.end = "client-closed"
        return
    read_whole = c.e.name != "MTA" and count <= EXCHANGE_CHUNK_LIMIT
    if read_whole:
        if count > WHOLE_CHUNK_CAP:
            for reply in await c.w.drain(quiet=0.3, cap=2.0):
                if reply.code is not None and 200 <= reply.code < 300:
                    c.s.find("bounded", f"BDAT {count} LAST over SIZE {limit}: {reply.text[:120]!r} before "
                                        "the chunk ended")
            c.s.end = "client-closed"
            return
        left = count - send
        try:
            while left > 0:
                piece = min(left, 1 << 20)
                await c.w.send(b"Z" * piece, lines=0)
                left -= piece
        except Closed:
            c.s.end = "client-closed"
            return
    try:
        while True:
            reply = await c.w.reply(REFUSAL_TIMEOUT, due=f"BDAT {count} LAST over SIZE {limit}")
            if reply.code is not None and (500 <= reply.code < 600 or reply.code == 421):
                break
    except NoReply:
        what = "the end of the chunk" if read_whole else f"{send} bytes"
        c.s.find("bounded", f"BDAT {count} LAST is over the SIZE {limit} the server advertised, yet nothing "
                            f"refused it within {REFUSAL_TIMEOUT}s of {what}")
    c.s.end = "client-closed"


async def s_smuggle(c: Ctx) -> None:
    """A message whose content hides a second transaction behind a sequence that is not CRLF.CRLF."""
    g = c.g
    await c.cmd(b"EHLO fuzz.example")
    rcpts = await c.envelope(1)
    if not rcpts:
        return
    seq = g.pick(SMUGGLE)
    hidden = c.book.new(c.s.index, c.e, c.e.sender, rcpts, smuggled=True)
    inner = message(hidden.mid, c.e.sender, rcpts[0], b"smuggled")
    payload = (b"text before" + seq + f"MAIL FROM:<{c.e.sender}>\r\nRCPT TO:<{rcpts[0]}>\r\nDATA\r\n".encode()
               + inner.replace(b"\r\n.", b"\r\n..") + b"\r\n")
    c.s.transcript.note(f"smuggling sequence {seq!r} hides {hidden.mid}")
    await c.data(rcpts, g.body_lines(g.int(0, 3), hostile=False), smuggle=payload)
    await c.quit()


async def s_random_lines(c: Ctx) -> None:
    """Lines of random bytes and hostile fragments in one write, then QUIT; only what comes is read."""
    g = c.g
    lines = []
    for _ in range(g.int(1, 40)):
        roll = g.r.random()
        if roll < 0.3:
            lines.append(g.junk(0, 300))
        elif roll < 0.6:
            lines.append(g.pick(VERBS) + g.pick([b"", b" "]) + g.text(0, 40) + g.hostile_bytes() + g.text(0, 10))
        elif roll < 0.8:
            lines.append(g.hostile_bytes() * g.int(1, 5))
        else:
            lines.append(g.long_run())
    blob = b"\r\n".join(lines) + b"\r\nQUIT\r\n"
    await c.w.send(blob, lines=len(lines) + 1)
    await c.w.drain(cap=4.0)
    c.s.end = "client-closed"


async def s_flood(c: Ctx) -> None:
    """Hundreds of commands in one write (PIPELINING); exactly one reply each must come back, in order."""
    g = c.g
    await c.cmd(b"EHLO fuzz.example")
    cmds: list[bytes] = []
    for _ in range(g.int(30, 400)):
        roll = g.r.random()
        if roll < 0.5:
            cmds.append(b"NOOP")
        elif roll < 0.7:
            cmds.append(b"RSET")
        elif roll < 0.8:
            cmds.append(f"MAIL FROM:<{c.e.sender}>".encode())
        elif roll < 0.97:
            cmds.append(f"RCPT TO:<{g.pick(c.rcpts())}>".encode())
        else:
            cmds.append(g.pick([b"VRFY x", b"HELP", b"FOO"]))
    with_data = g.chance(0.5)
    if with_data:
        cmds += [b"RSET", f"MAIL FROM:<{c.e.sender}>".encode(), f"RCPT TO:<{c.rcpts()[0]}>".encode(), b"DATA"]
    await c.w.send(b"".join(x + b"\r\n" for x in cmds))
    replies = []
    for i, line in enumerate(cmds):
        replies.append(await c.w.reply(due=f"command {i + 1}/{len(cmds)} of the flood ({show(line, 40)})"))
        if replies[-1].code == 421:
            return
    if with_data and replies[-1].code == 354:
        sent = c.book.new(c.s.index, c.e, c.e.sender, [c.rcpts()[0]])
        content = dot_stuff(message(sent.mid, c.e.sender, c.rcpts()[0], g.body_lines()))
        await c.w.send(content + b".\r\n", lines=0)
        await c.end_of_data(sent)
    await c.quit()


MAX_RECIPIENTS = 1000  # the largest default of the lab's servers: EXO 1000, Postfix 1000, Exchange 200


async def s_rcpt_flood(c: Ctx) -> None:
    """One transaction with more recipients than any of the lab's servers takes, in one write."""
    await rcpt_flood(c, c.g.int(MAX_RECIPIENTS + 1, MAX_RECIPIENTS + 400))


async def rcpt_flood(c: Ctx, n: int) -> None:
    await c.cmd(b"EHLO fuzz.example")
    if (await c.cmd(f"MAIL FROM:<{c.e.sender}>".encode())).code != 250:
        await c.quit()
        return
    await c.w.send(f"RCPT TO:<{c.rcpts()[0]}>\r\n".encode() * n)
    took = 0
    for i in range(n):
        reply = await c.w.reply(due=f"RCPT {i + 1}/{n} of the recipient flood")
        took += reply.code == 250
        if reply.code == 421:
            break
    if took > MAX_RECIPIENTS:
        c.s.find("bounded", f"one transaction took {took} recipients of {n} (no server of the lab takes more "
                            f"than {MAX_RECIPIENTS}; Exchange answers 452 4.5.3 Too many recipients)")
    if reply.code != 421:
        await c.cmd(b"RSET")
        await c.quit()


async def s_starttls(c: Ctx) -> None:
    """STARTTLS, then TLS junk, half a handshake, plain text, or a real handshake and a message."""
    g = c.g
    await c.cmd(b"EHLO fuzz.example")
    reply = await c.cmd(b"STARTTLS" if g.chance(0.9) else b"starttls")
    if reply.code != 220:
        await c.quit()
        return
    mode = g.pick(["full", "full", "junk", "half", "plain", "silent"])
    c.s.transcript.note(f"after 220: {mode}")
    if mode == "full":
        await c.w.start_tls()
        await c.cmd(b"EHLO fuzz.example")
        rcpts = await c.envelope()
        await c.data(rcpts, g.body_lines())
        await c.quit()
        return
    if mode == "junk":
        await c.w.send(g.tls_junk(), lines=0)
    elif mode == "half":
        hello = client_hello()
        await c.w.send(hello[:g.int(1, len(hello) - 1)], lines=0)
    elif mode == "plain":
        await c.w.send(b"EHLO fuzz.example\r\nMAIL FROM:<" + c.e.sender.encode() + b">\r\n")
    await c.w.drain(quiet=g.pause(0.2, 1.2), cap=2.0)
    c.s.end = "client-closed"


async def s_half_open(c: Ctx) -> None:
    """A client that connects and says nothing, stops in mid-line or in mid-message, or resets."""
    g = c.g
    mode = g.pick(["silent", "half-line", "half-data", "reset"])
    c.s.transcript.note(mode)
    if mode == "silent":
        await c.w.stall(g.pause(0.2, 2.0))
    elif mode == "half-line":
        await c.w.reply(due="banner")
        await c.w.send(g.pick([b"EHLO fuzz.exa", b"MAIL FROM:<", b"E", b"\r", b"QUIT"]), lines=0)
        await c.w.stall(g.pause(0.2, 2.0))
    else:
        await c.w.reply(due="banner")
        await c.cmd(b"EHLO fuzz.example")
        rcpts = await c.envelope(1)
        if (await c.cmd(b"DATA")).code == 354:
            sent = c.book.new(c.s.index, c.e, c.e.sender, rcpts or c.rcpts()[:1])
            content = dot_stuff(message(sent.mid, c.e.sender, sent.recipients[0], g.body_lines(3)))
            await c.w.send(content[:g.int(0, len(content))], lines=0)  # never the CRLF.CRLF
            if mode == "reset":
                c.w.abort()
                c.s.end = "client-reset"
                return
            await c.w.stall(g.pause(0.2, 2.0))
    c.s.end = "client-closed"


async def s_slow(c: Ctx) -> None:
    """An ordinary message, written one byte at a time."""
    c.per_byte = c.g.pause(0.0005, 0.004)
    await c.cmd(b"EHLO fuzz.example")
    rcpts = await c.envelope(1)
    await c.data(rcpts, c.g.body_lines(c.g.int(0, 4), hostile=False))
    await c.quit()


async def normal(c: Ctx) -> Sent | None:
    """What a well-behaved client does: EHLO, MAIL, RCPT, DATA, QUIT; no randomness."""
    await c.cmd(b"EHLO normal.example")
    if c.e.name == "Hub":  # an anonymous stranger may not send through the Hub: greeting and QUIT only
        await c.quit()
        return None
    rcpt = c.e.recipients[0]
    if (await c.cmd(f"MAIL FROM:<{c.e.sender}>".encode())).code != 250:
        return None
    if (await c.cmd(f"RCPT TO:<{rcpt}>".encode())).code != 250:
        return None
    sent = await c.data([rcpt], b"An ordinary message.")
    await c.quit()
    return sent


KINDS: dict[str, tuple[float, Callable[[Ctx], Awaitable[None]], float]] = {
    # kind: (weight, script, bound in seconds)
    "grammar": (34, s_grammar, 40.0),
    "bdat": (12, s_bdat, 20.0),
    "smuggle": (12, s_smuggle, 20.0),
    "random-lines": (10, s_random_lines, 15.0),
    "flood": (8, s_flood, 40.0),
    "rcpt-flood": (3, s_rcpt_flood, 40.0),
    "starttls": (10, s_starttls, 20.0),
    "half-open": (8, s_half_open, 15.0),
    "slow": (6, s_slow, 40.0),
}


def choose_kind(gen: Gen) -> str:
    names = list(KINDS)
    return gen.r.choices(names, weights=[KINDS[k][0] for k in names])[0]


async def play(session: Session, book: MessageBook, script: Callable[[Ctx], Awaitable[None]], bound: float,
               *, read_banner: bool = True) -> Session:
    """Run one session within `bound` seconds; whatever happens is recorded, never raised."""
    import asyncio

    session.started = time.time()
    t = session.transcript
    wire: Wire | None = None

    async def body() -> None:
        nonlocal wire
        wire = await Wire.open(session.entry.host, session.entry.port, t)
        sock = wire.writer.get_extra_info("sockname")
        session.local = (sock[0], sock[1]) if sock else None
        ctx = Ctx(wire, Gen(session.seed + "/script"), session.entry, book, session)
        if read_banner and script is not s_half_open:
            await wire.reply(due="banner")
        await script(ctx)

    try:
        await asyncio.wait_for(body(), bound)
        session.end = session.end or "client-closed"
    except NoReply as exc:
        session.end = "hang"
        session.find("hang", f"no reply within the timeout to {exc.args[0] or 'a command'}")
    except Closed:
        session.end = "server-closed"
    except Abandon:
        session.end = "abandoned"
    except asyncio.TimeoutError:
        session.end = "bound"
        session.find("hang", f"the session did not end within its {bound:.0f}s bound")
    except OSError as exc:
        session.end = "connect-failed"
        session.find("hang", f"could not connect: {exc}")
    finally:
        if wire is not None:
            if wire.malformed:
                session.find("form", f"reply lines that are not SMTP replies: {wire.malformed[:3]}")
            await wire.close()
        session.ended = time.time()
    return session
