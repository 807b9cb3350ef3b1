"""The seed corpus: the smallest known hostile inputs, each played at every entry of every run.

The random sessions find things; these name them. Each case is the minimal input of one class of
finding (a crash on '²', a look-alike verb obeyed, a message smuggled behind a bare LF...), so a run
always probes every known class however the random plan falls, and a failure of a corpus case reads
as its name. Corpus sessions are numbered from CORPUS_BASE (LABSIM_FUZZ_ONLY replays them too).
"""

from __future__ import annotations

import re
from typing import Awaitable, Callable

from .inputs import LOOKALIKE_MAIL, dot_stuff, message
from .sessions import MAX_RECIPIENTS, Ctx, huge_chunk, rcpt_flood

CORPUS_BASE = 1_000_000


async def _greet(c: Ctx, name: bytes = b"fuzz.example") -> None:
    await c.cmd(b"EHLO " + name)


def refused(line: str, why: str, *, envelope: bool = False) -> Callable[[Ctx], Awaitable[None]]:
    async def case(c: Ctx) -> None:
        await _greet(c)
        if envelope:
            await c.envelope(1, first=True)
        await c.must_refuse(line.replace("{sender}", c.e.sender).encode(), why)
        await c.cmd(b"RSET")  # the session goes on normally afterwards
        await c.quit()
    return case


def smuggled(seq: bytes) -> Callable[[Ctx], Awaitable[None]]:
    async def case(c: Ctx) -> None:
        await _greet(c)
        rcpts = await c.envelope(1, first=True)
        if not rcpts:
            await c.quit()
            return
        hidden = c.book.new(c.s.index, c.e, c.e.sender, rcpts, smuggled=True)
        c.s.transcript.note(f"smuggling sequence {seq!r} hides {hidden.mid}")
        inner = (f"MAIL FROM:<{c.e.sender}>\r\nRCPT TO:<{rcpts[0]}>\r\nDATA\r\n"
                 f"Message-ID: {hidden.mid}\r\n\r\nsmuggled\r\n").encode()
        await c.data(rcpts, b"", smuggle=b"x" + seq + inner)
        await c.quit()
    return case


async def rset_then_message(c: Ctx) -> None:
    """RSET discards sender and recipients (RFC 5321 4.1.1.5): DATA after it must be refused; if it
    is not, the message goes on to show what becomes of mail with an emptied envelope."""
    await _greet(c)
    rcpts = await c.envelope(1, first=True)
    await c.cmd(b"RSET")
    if (await c.must_refuse(b"DATA", "DATA right after RSET", go_on=True)).code == 354:
        sent = c.book.new(c.s.index, c.e, c.e.sender, rcpts or c.rcpts()[:1])
        await c.w.send(dot_stuff(message(sent.mid, c.e.sender, sent.recipients[0], b"after RSET")) + b".\r\n",
                       lines=0)
        await c.end_of_data(sent)
    await c.quit()


async def helo_not_utf8(c: Ctx) -> None:
    """A greeting name that is not UTF-8, then an ordinary message."""
    await _greet(c, b"\xff\xfe.example")
    rcpts = await c.envelope(1, first=True)
    await c.data(rcpts, b"hello")
    await c.quit()


async def nul_in_sender(c: Ctx) -> None:
    """A NUL inside the sender's local part, then an ordinary message."""
    await _greet(c)
    if (await c.cmd(f"MAIL FROM:<al\x00ex@{c.e.sender.split('@')[1]}>".encode())).code == 250:
        await c.cmd(f"RCPT TO:<{c.rcpts()[0]}>".encode())
        await c.data(c.took, b"hello")
    await c.quit()


async def control_bytes(c: Ctx) -> None:
    """NUL, ESC and DEL in commands: answered, logged escaped, and the session goes on."""
    await _greet(c, b"fu\x00zz.example")
    await c.cmd(b"NOOP \x00\x1b[2J\x7f")
    await c.cmd(b"RCPT TO:<a\x00b@example.com>")
    await c.cmd(b"\x00")
    await c.quit()


async def overlong_then_message(c: Ctx) -> None:
    """A 70000-byte command (over asyncio's 64 KB line limit), then a message in the same session."""
    await _greet(c)
    await c.cmd(b"EHLO " + b"A" * 70000)
    await c.cmd(b"EHLO fuzz.example")
    rcpts = await c.envelope(1, first=True)
    await c.data(rcpts, b"after a long line")
    await c.quit()


async def bare_cr_lf_body(c: Ctx) -> None:
    """Bare CR, bare LF and NUL inside body lines: the message arrives whole."""
    await _greet(c)
    rcpts = await c.envelope(1, first=True)
    await c.data(rcpts, b"one\rtwo\nthree\x00four\r\n.leading dot\r\n..two dots\r\n\n\r\nend")
    await c.quit()


async def bdat_over_size(c: Ctx) -> None:
    """BDAT 99999999999999999999 LAST and 64 KB of it: over any SIZE, refused before it is taken in."""
    size = re.search(r"\bSIZE (\d+)", (await c.cmd(b"EHLO fuzz.example")).text)
    await c.envelope(1, first=True)
    await huge_chunk(c, 99999999999999999999, int(size.group(1)) if size else 0, 65536)


async def rcpt_over_limit(c: Ctx) -> None:
    """MAX_RECIPIENTS + 1 recipients in one transaction."""
    await rcpt_flood(c, MAX_RECIPIENTS + 1)


CORPUS: dict[str, Callable[[Ctx], Awaitable[None]]] = {
    "mail-size-superscript-two": refused("MAIL FROM:<{sender}> SIZE=\u00b2", "SIZE=²"),
    "mail-size-arabic-indic": refused("MAIL FROM:<{sender}> SIZE=\u0661\u0662\u0663", "SIZE=١٢٣"),
    "bdat-superscript-two": refused("BDAT \u00b2", "BDAT ²", envelope=True),
    "bdat-arabic-indic-last": refused("BDAT \u0661\u0660 LAST", "BDAT ١٠ LAST", envelope=True),
    "lookalike-starttls": refused("\u017fTARTTLS", "ſTARTTLS"),
    "lookalike-mail": refused(LOOKALIKE_MAIL + " FROM:<{sender}>", "MAıL"),
    "lookalike-rset": refused("R\u017fET", "RſET"),
    "smuggle-lf-dot-lf": smuggled(b"\n.\n"),
    "smuggle-crlf-dot-lf": smuggled(b"\r\n.\n"),
    "smuggle-lf-dot-crlf": smuggled(b"\n.\r\n"),
    "smuggle-cr-dot-cr": smuggled(b"\r.\r"),
    "rset-then-data": rset_then_message,
    "helo-not-utf8": helo_not_utf8,
    "nul-in-sender": nul_in_sender,
    "control-bytes": control_bytes,
    "overlong-70000": overlong_then_message,
    "bare-cr-lf-body": bare_cr_lf_body,
    "bdat-over-size": bdat_over_size,
    "rcpt-over-limit": rcpt_over_limit,
}
