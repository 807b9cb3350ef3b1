"""What a server session decides about a command line without doing any I/O (sans-IO, as h11 does).

Theory of operation
-------------------
The session shell (`smtp.server`) reads a line, asks `split_command` which of its handlers the verb
names, and each handler first asks the plain functions here what the arguments mean: `parse_mail`
and `parse_rcpt` return the address (and MAIL's parameters and SIZE) or the refusal to answer;
`parse_bdat` returns the chunk size and LAST or why the command is malformed. `is_protocol_error`
says whether a reply counts against MaxProtocolErrors, `expired` whether a timeout ran out while the
session waited. Nothing here awaits or touches a socket, so every decision can be tested directly
(tests/test_smtp_commands.py) and the shell stays a thin loop of read, decide, write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..rules import replies as R
from .framing import parse_count

# Every verb the server shell answers; anything else is `500 5.3.3 Unrecognized command`. Each is an
# ASCII word (inner hyphens allowed), so a table lookup agrees with framing.command_verb.
VERBS = ("EHLO", "HELO", "STARTTLS", "X-ANONYMOUSTLS", "X-EXPS", "XPROXYFROM", "XSESSIONPARAMS",
         "XSHADOWREQUEST", "XSHADOW", "XQDISCARD", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP",
         "HELP", "VRFY", "EXPN", "AUTH", "QUIT")

_MAIL_RE = re.compile(r"^FROM:\s*<([^<>]*)>\s*(.*)$", re.IGNORECASE)
_RCPT_RE = re.compile(r"^TO:\s*<([^<>]*)>\s*(.*)$", re.IGNORECASE)
# A mailbox: a local part of printable characters (UTF-8 allowed: SMTPUTF8) and a host name. No
# control character (C0, DEL, C1) and no byte that is not UTF-8 (decoded as a lone surrogate) may
# appear: Exchange's RoutingAddress parser refuses them (`501 5.1.7 Invalid address`).
_ADDR_RE = re.compile(r"^[^\s@<>()\[\],;:\"\x00-\x1f\x7f-\x9f\ud800-\udfff]+@[A-Za-z0-9.-]+$")
_PARAM_KEY_RE = re.compile(r"^[A-Za-z0-9-]+$")


def split_command(line: str) -> tuple[str | None, str]:
    """(the verb in upper case when the shell answers it, else None; the argument, stripped).

    `'ſ'.upper() == 'S'`: a verb is upper-cased only once it is known to be ASCII."""
    verb, _, _ = line.partition(" ")
    if not verb.isascii():
        return None, ""
    upper = verb.upper()
    if upper not in _KNOWN:
        return None, ""
    return upper, line[len(verb):].strip()


_KNOWN = frozenset(VERBS)


def is_protocol_error(reply: str) -> bool:
    """Does this reply count against MaxProtocolErrors? Exchange counts the replies its command
    parsers give with ParsingStatus.ProtocolError: syntax, sequence and permission refusals (5xx);
    failed authentication (535, ParsingStatus.Error) is MaxLogonFailures' business instead."""
    return reply[:1] == "5" and not reply.startswith("535")


def parse_params(text: str) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for tok in text.split():
        key, sep, value = tok.partition("=")
        if not key or not _PARAM_KEY_RE.match(key):
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


@dataclass(frozen=True)
class MailArgs:
    """MAIL FROM's argument as the policy sees it."""

    address: str
    params: dict[str, str]
    size: int | None


def parse_mail(arg: str) -> MailArgs | str:
    """MAIL's argument, or the reply that refuses it (syntax, then the address, then SIZE)."""
    m = _MAIL_RE.match(arg)
    params = parse_params(m.group(2)) if m else None
    if m is None or params is None:
        return R.INVALID_ARGS
    if not valid_address(m.group(1)):
        return R.INVALID_SENDER
    size, refusal = mail_size(m.group(2))
    if refusal is not None:
        return refusal
    return MailArgs(m.group(1), params, size)


def parse_rcpt(arg: str) -> tuple[str, str | None]:
    """(the recipient, None), or ("", the reply that refuses RCPT's argument)."""
    m = _RCPT_RE.match(arg)
    if m is None or parse_params(m.group(2)) is None:
        return "", R.INVALID_ARGS
    address = m.group(1)
    if not address or not valid_address(address):
        return "", R.INVALID_RECIPIENT
    return address, None


@dataclass(frozen=True)
class BdatArgs:
    """BDAT's argument: the chunk size and LAST; `count` None when it is malformed, `overflow` when
    the size is 1*DIGIT (up to 20 digits) but too large for a long."""

    count: int | None
    last: bool
    overflow: bool = False


def parse_bdat(arg: str) -> BdatArgs:
    parts = arg.split()
    count = parse_count(parts[0]) if parts else None
    if count is None or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() != "LAST"):
        overflow = count is None and bool(parts) and len(parts[0]) <= 20 and parts[0].isascii() \
            and parts[0].isdigit()
        return BdatArgs(None, False, overflow)
    return BdatArgs(count, len(parts) == 2)


def has_bare_lf(data: bytes) -> bool:
    """Is there an LF not preceded by CR? (Each CR LF holds one LF, and two never overlap.)"""
    return data.count(b"\n") != data.count(b"\r\n")


def header_over(data: bytes, max_header: int) -> bool:
    """Is the header of BDAT content so far longer than MaxHeaderSize (no blank line within it)?"""
    return len(data) > max_header and not data.startswith(b"\r\n") \
        and data.find(b"\r\n\r\n", 0, max_header + 4) < 0


def expired(now: datetime, wait_from: datetime, started: datetime, inactivity: float | None,
            total: float | None, *, data: bool = False) -> tuple[str, datetime] | None:
    """After a read: which timeout ran out meanwhile, in (virtual) time, and when ("inactivity" or
    "session"), or None. Command reads only check inactivity; ConnectionTimeout is checked after
    every read (SmtpInSession.ReadComplete)."""
    if not data and inactivity is not None and (now - wait_from).total_seconds() > inactivity:
        return "inactivity", wait_from + timedelta(seconds=inactivity)
    if total is not None and (now - started).total_seconds() > total:
        return "session", now
    return None
