"""What a hostile SMTP client writes: mutated commands, hostile message content, TLS junk.

Everything is drawn from one `random.Random`, so a session is a pure function of (seed, index)
and of the server's replies. The mutations aim at the places a line-based server gets wrong:
framing (bare CR, bare LF, NUL, lines over 4 KB / 32 KB / 64 KB, a dot after a bare LF), numbers
(huge, negative, non-ASCII digits such as '²' or '١٢٣' that `str.isdigit` accepts), verbs (Unicode
letters whose upper case is ASCII: 'ſ' -> 'S', 'ı' -> 'I', 'ﬆ' -> 'ST') and addresses.
"""

from __future__ import annotations

import random
import ssl

FUZZ_DOMAIN = "fuzz.labsim.test"  # every Message-ID the fuzzer writes ends with @FUZZ_DOMAIN

# Sequences a sloppy server takes for the end of DATA; only CRLF.CRLF ends it (RFC 5321 4.1.1.4).
SMUGGLE = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n.\r", b"\r\n.\x00\r\n"]

# Verbs that are not SMTP verbs, though `str.upper()` or `str.isalpha()` may say they are.
LOOKALIKE_VERBS = [
    "\u017fTARTTLS",  # ſTARTTLS: 'ſ'.upper() == 'S'
    "\ufb06ARTTLS",  # ﬆARTTLS: 'ﬆ'.upper() == 'ST'
    "QU\u0131T",  # QUıT
    "R\u017fET",  # RſET
    "NOOP\u0131",  # NOOPı -> NOOPI (unknown either way)
    "\u0415HLO",  # Cyrillic Е
    "\uff2e\uff2f\uff2f\uff30",  # fullwidth ＮＯＯＰ
    "VRF\u0178",  # Ÿ
]
LOOKALIKE_MAIL = "MA\u0131L"  # MAıL FROM:<...>: 'ı'.upper() == 'I'
# Digits that str.isdigit() accepts and an ASCII-only SMTP parser must not.
NON_ASCII_NUMBERS = ["\u00b2", "\u0661\u0662\u0663", "\u00b9\u2070", "\uff11\uff10", "1\u00b2", "\u0967\u0966"]
BAD_NUMBERS = ["99999999999999999999999999", "-1", "0x10", "1e3", "", " ", "12 34", "+5", "\x00", "07"]
VERBS = [b"EHLO", b"HELO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"BDAT", b"RSET", b"NOOP", b"VRFY", b"EXPN",
         b"HELP", b"QUIT", b"AUTH", b"STARTTLS", b"XEXCH50", b"X-ANONYMOUSTLS", b"TURN", b"ETRN"]


class Gen:
    """The session's random source with the fuzzer's vocabulary."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.r = random.Random(seed)

    # --- small helpers ---------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def pick(self, items):  # noqa: ANN001, ANN201 - any sequence
        return items[self.r.randrange(len(items))]

    def int(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def pause(self, lo: float, hi: float) -> float:
        return round(self.r.uniform(lo, hi), 3)

    def junk(self, lo: int = 0, hi: int = 200) -> bytes:
        return bytes(self.r.getrandbits(8) for _ in range(self.int(lo, hi)))

    def text(self, lo: int = 1, hi: int = 60) -> bytes:
        alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_=<>@[]()"
        return bytes(alphabet[self.r.randrange(len(alphabet))] for _ in range(self.int(lo, hi)))

    def long_run(self) -> bytes:
        """A run that crosses one of the line limits: 1000 (RFC), 4096, 32768 (Exchange), 65536 (asyncio)."""
        n = self.pick([1001, 4097, 32769, 65537, 70000, 140000])
        return self.pick([b"A", b"x", b"\x00", b" ", b"."]) * n

    def hostile_bytes(self) -> bytes:
        """A short run of what breaks line framing and logs."""
        return self.pick([b"\x00", b"\r", b"\n", b"\r\r\n", b"\n\r", b"\x1b[2J", b"\xff\xfe", b"\xc3\x28", b",\"\r\n",
                          "\u2028".encode(), "é".encode(), b"\x7f", b"\t", b"%n%s", b"\"", b","])

    # --- command arguments -----------------------------------------------------------------------
    def helo_arg(self) -> bytes:
        return self.pick([b"fuzz.example", b"[127.0.0.1]", b"", b"fuzz..example", b"-bad-", b"[]",
                          "exämple.test".encode(), b"a" * 300, b"fu\x00zz", b"fuzz.example extra words",
                          b"[IPv6:::1]", self.text(), self.junk(1, 40).replace(b"\r", b"").replace(b"\n", b"")])

    def address(self, good: list[str]) -> bytes:
        if self.chance(0.6):
            return self.pick(good).encode()
        base = self.pick(good)
        local, _, dom = base.partition("@")
        return self.pick([b"", (local + "@").encode(), ("@" + dom).encode(), b"a" * 70 + b"@" + dom.encode(),
                          (local + "\x00@" + dom).encode(), ("ål" + local + "@" + dom).encode(),
                          (local + "@" + dom + ".").encode(), ("\"" + local + " x\"@" + dom).encode(),
                          (local + "@[127.0.0.1]").encode(), ("@relay.example:" + base).encode(),
                          b"x" * 1100 + b"@" + dom.encode(), (local + "@" + dom + ">").encode()])

    def number(self) -> tuple[str, bool]:
        """(text, must_refuse): a size or chunk count; non-ASCII digits must be refused."""
        if self.chance(0.25):
            return self.pick(NON_ASCII_NUMBERS), True
        if self.chance(0.4):
            return self.pick(BAD_NUMBERS), False
        return str(self.int(0, 50_000_000)), False

    def mail_params(self) -> tuple[bytes, bool]:
        params: list[str] = []
        refuse = False
        for _ in range(self.int(0, 3)):
            kind = self.pick(["SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH", "FOO"])
            if kind == "SIZE":
                value, bad = self.number()
                refuse = refuse or bad
                params.append(f"SIZE={value}")
            elif kind == "BODY":
                params.append("BODY=" + self.pick(["8BITMIME", "7BIT", "BINARYMIME", "BOGUS"]))
            elif kind == "SMTPUTF8":
                params.append("SMTPUTF8")
            else:
                params.append(f"{kind}={self.text(0, 20).decode()}")
        return (" " + " ".join(params)).encode() if params else b"", refuse

    # --- message content -------------------------------------------------------------------------
    def body_lines(self, n: int | None = None, *, hostile: bool = True) -> bytes:
        """Body text: CRLF lines, some hostile (bare CR/LF inside, NUL, 8-bit, dots, very long)."""
        out: list[bytes] = []
        for _ in range(self.int(0, 20) if n is None else n):
            roll = self.r.random()
            if not hostile or roll < 0.55:
                out.append(self.text(0, 76))
            elif roll < 0.65:
                out.append(self.pick([b".", b"..", b". ", b".x", b"...", b".\x00"]))
            elif roll < 0.8:
                out.append(self.text(0, 20) + self.hostile_bytes() + self.text(0, 20))
            elif roll < 0.9:
                out.append(self.junk(0, 120).replace(b"\r\n", b"\n\r"))
            else:
                out.append(self.long_run())
        return b"\r\n".join(out)

    def tls_junk(self) -> bytes:
        return self.pick([self.junk(1, 3000), b"\x16\x03\x01\xff\xff" + self.junk(0, 500),
                          b"\x16\x03\x03\x00\x05\x01\x00\x00\x01\x00", b"EHLO fuzz.example\r\n",
                          b"\x80\x80\x01\x03\x01" + self.junk(0, 100), b"\x15\x03\x03\x00\x02\x02\x28"])


def client_hello() -> bytes:
    """The first flight of a real TLS client (a ClientHello), for half handshakes."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=None)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2: a line that starts with '.' gets one more. Lines are CRLF lines only, so a
    dot after a bare LF is left alone on purpose (that is the smuggling probe)."""
    out = data.replace(b"\r\n.", b"\r\n..")
    return b"." + out if out.startswith(b".") else out


def message(mid: str, sender: str, rcpt: str, body: bytes, *, subject: str = "labsim fuzz") -> bytes:
    """A message the fuzzer can find again: its Message-ID and, as its last line, an end marker."""
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\n"
            "Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    return head + body + b"\r\n" + end_marker(mid) + b"\r\n"


def end_marker(mid: str) -> bytes:
    return f"fuzz-end {mid}".encode()
