"""SMTP framing as pure functions: where DATA ends, what the numbers and verbs of a command are.

Theory of operation
-------------------
The session shell (`smtp.server`) reads the socket in bounded pieces and hands each piece to a
*data parser*; the parser says how many bytes it consumed, what message text they carry (dot
unstuffed) and whether the end of data was seen. Bytes after the end of data stay with the shell:
they are the next command (pipelining). Nothing here does I/O, so every byte sequence can be
tested directly (tests/test_smtp_framing.py, with hypothesis).

Two parsers, one per kind of receiver (docs/smtp-limits.md has the sources):

* `ExchangeDataParser` is Exchange's own `SmtpInDataParser` (Microsoft.Exchange.Transport,
  decompiled): the only end of data is `<CR><LF>.<CR><LF>` (the start of DATA counts as a line
  start); a bare LF or a bare CR is ordinary message text, so `<LF>.<LF>`, `<CR><LF>.<LF>` and
  `<LF>.<CR><LF>` never end a message. A dot after `<CR><LF>` that is not followed by `<CR><LF>`
  is removed (dot unstuffing), including the dot of `<CR><LF>.<LF>`.
* `PostfixDataParser` is Postfix >= 3.9 with `smtpd_forbid_bare_newline = reject` (a hardened
  Postfix): lines end at LF, a line that ended in a bare LF marks the message for rejection, and a
  lone "." ends the data only when neither it nor the line before it ended in a bare LF.

Both bound what they hold: the caller decides how much of the returned text it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

CR, LF, DOT = 13, 10, 46

# SmtpInDataParser's states (ParserState): NONE, CR1, LF1, DOT, CR2, EOD, EOHCR2.
_NONE, _CR1, _LF1, _DOT, _CR2, _EOD, _EOHCR2 = range(7)


@dataclass
class Fed:
    """What one `feed` call found: message text, bytes consumed, end of data seen."""

    text: bytes
    consumed: int
    eod: bool


class ExchangeDataParser:
    """Exchange's end-of-data state machine (SmtpInDataParser.Write), bytes in, message text out.

    Also tracks what Exchange's MIME layer would flag: `bare_lf` (an LF not preceded by CR in the
    message text) and the end of the header block (`header_bytes`: the size of the header up to
    and including the blank line, None while it has not been seen), used for MaxHeaderSize.
    """

    def __init__(self) -> None:
        self.state = _LF1  # the start of DATA counts as the start of a line
        self.bare_lf = False
        self.size = 0  # message text produced so far
        self.header_bytes: int | None = None
        self._last = -1  # last byte of message text produced (for bare LF detection)

    @property
    def done(self) -> bool:
        return self.state == _EOD

    def feed(self, data: bytes) -> Fed:
        if self.state == _EOD:
            raise ValueError("data after the end of data")
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            b = data[i]
            st = self.state
            if st == _NONE:
                j = data.find(b"\r", i)
                if j < 0:
                    out += data[i:]
                    i = n
                    continue
                out += data[i:j + 1]
                self.state = _CR1
                i = j + 1
                continue
            if st == _CR1:
                self.state = _LF1 if b == LF else _CR1 if b == CR else _NONE
                out.append(b)
            elif st == _LF1:
                if b == DOT:
                    self.state = _DOT  # held back until we know what follows
                elif b == CR:
                    self.state = _CR1 if self.header_bytes is not None else _EOHCR2
                    out.append(b)
                else:
                    self.state = _NONE
                    out.append(b)
            elif st == _DOT:
                if b == CR:
                    self.state = _CR2
                else:  # dot unstuffing: the dot is dropped, the byte is text
                    self.state = _NONE
                    out.append(b)
            elif st == _CR2:
                if b == LF:
                    self.state = _EOD
                    i += 1
                    break
                # "<CR><LF>.<CR>" + something else: the dot is dropped, the CR and the byte are text
                out.append(CR)
                out.append(b)
                self.state = _CR1 if b == CR else _NONE
            elif st == _EOHCR2:
                if b == LF:
                    self.state = _LF1
                    self.header_bytes = self.size + len(out) + 1
                elif b == CR:
                    self.state = _CR1
                else:
                    self.state = _NONE
                out.append(b)
            i += 1
        # In _DOT / _CR2 the dot (and CR) are held back: they become text, or vanish, later.
        self._account(out)
        return Fed(bytes(out), i, self.state == _EOD)

    def _account(self, out: bytearray) -> None:
        if not out:
            return
        if not self.bare_lf:
            prev = self._last
            start = 0
            while True:
                j = out.find(b"\n", start)
                if j < 0:
                    break
                before = out[j - 1] if j > 0 else prev
                if before != CR:
                    self.bare_lf = True
                    break
                start = j + 1
        self._last = out[-1]
        self.size += len(out)


class PostfixDataParser:
    """Postfix's DATA reader (smtpd.c receive_data) with `smtpd_forbid_bare_newline = reject`."""

    def __init__(self) -> None:
        self.bare_lf = False
        self.size = 0
        self.done = False
        self.header_bytes: int | None = None  # MaxHeaderSize is Exchange's; Postfix has no such check here
        self._line = bytearray()
        self._prev_bare = False

    def feed(self, data: bytes) -> Fed:
        if self.done:
            raise ValueError("data after the end of data")
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            j = data.find(b"\n", i)
            if j < 0:
                self._line += data[i:]
                i = n
                break
            self._line += data[i:j]
            i = j + 1
            line = bytes(self._line)
            self._line.clear()
            bare = not line.endswith(b"\r")
            if not bare:
                line = line[:-1]
            if bare:
                self.bare_lf = True
            if line.startswith(b"."):
                if line == b"." and (bare or self._prev_bare):
                    self._prev_bare = bare
                    continue  # not an end of data; not stored either
                if line == b".":
                    self.done = True
                    break
                line = line[1:]
            self._prev_bare = bare
            out += line + b"\r\n"
        self.size += len(out)
        return Fed(bytes(out), i, self.done)


# --- command arguments ------------------------------------------------------------------------------

MAX_DIGITS = 10  # Exchange parses SIZE= and BDAT counts as Int64 but sizes stay far below 10 digits


def parse_count(text: str, maximum: int = 2**63 - 1) -> int | None:
    """A decimal number as SMTP writes it (RFC 5321 / RFC 3030 `1*DIGIT`): ASCII digits only.

    `str.isdigit()` is not enough (it accepts '²' and other Unicode digits) and `int()` of an
    unbounded string costs time; anything else, or a value above `maximum`, is None.
    """
    if not text or len(text) > 19 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= maximum else None


def command_verb(line: str) -> str | None:
    """The verb of a command line in upper case, or None when it is not a plain ASCII word.

    `'ſ'.upper() == 'S'`, so a verb is upper-cased only after it is known to be ASCII letters.
    """
    verb = line.split(" ", 1)[0]
    # letters, and inner hyphens for Exchange's own verbs (X-ANONYMOUSTLS, X-EXPS): never a leading,
    # trailing or doubled hyphen
    if not verb.isascii() or not all(part.isalpha() for part in verb.split("-")):
        return None
    return verb.upper()
