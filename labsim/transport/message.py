"""Mail items as a transport service holds them, and the headers each hop writes.

Received header form of Exchange (one per hop that stores the message):
`Received: from <helo> (<ip>) by <fqdn> (<ip>) with Microsoft SMTP Server (version=TLS1_2,
cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1544.4; <date>` (the `via Frontend Transport`
suffix when the Front End proxied it).
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.policy import compat32
from functools import lru_cache

# OpenSSL cipher name -> IANA name as Schannel prints it in Received headers.
_IANA = {
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
}


@dataclass
class MailItem:
    """One server's copy of a message."""

    server: str
    internal_id: int
    mail_from: str
    recipients: list[str]
    data: bytes
    message_id: str
    network_message_id: str
    subject: str
    arrived: datetime
    directionality: str = "Incoming"
    client_ip: str = ""
    client_hostname: str = ""
    receive_connector: str = ""
    lab_key: str = ""  # the scenario's message id (ground truth), carried across hops
    # recipient as routed -> as the sender addressed it (a remote mailbox's targetAddress rewrite);
    # DSNs report the latter as Original-Recipient (RFC 3461 ORCPT)
    original_recipients: dict[str, str] = field(default_factory=dict)
    retry_count: int = 0
    last_error: str = ""
    history: list[str] = field(default_factory=list)
    dsn_kind: str = ""  # "failed" / "delayed" when this item is a DSN the lab generated
    dsn_of: str = ""  # the original's Message-ID (tracking `reference`)
    timers_armed: dict[str, list] = field(default_factory=dict)  # per server: its delay/expiry actions
    delay_notified: bool = False  # a delay DSN went out (only one per message)
    received_tls: dict | None = None  # TLS of the session it arrived in (for Received headers)
    session_context: str = ""  # `<session X16>;<session start>;<n>` of the receiving session

    @property
    def size(self) -> int:
        return len(self.data)


def header_block(data: bytes) -> bytes:
    """The message up to and including the first empty line: all the email parser reads headers
    from. A prefix that ends at an empty line parses to the same headers as the whole message
    (an earlier end of the headers lies inside the prefix), so the body is never parsed."""
    crlf = data.find(b"\r\n\r\n")
    # a bare LF pair counts only before it (the body is not scanned for one)
    lf = data.find(b"\n\n", 0, crlf + 1) if crlf >= 0 else data.find(b"\n\n")
    ends = [i for i in (crlf, lf) if i >= 0]
    return data[:min(ends) + 4] if ends else data



def header_value(data: bytes, name: str) -> str:
    """The first `name` header's value, stripped, as the email parser (compat32) reads it.

    Per hop the lab reads Message-ID and Subject of each message; the parser costs ~0.1 ms a call.
    A header block of plain CRLF lines is read here directly (`_plain_headers`; the headers of the
    blocks read lately are kept, `_SEEN`, and the same bytes object asked again skips even finding
    its block); anything else (bare CR or LF, 8-bit bytes, a line that is no header, a leading
    `From `) goes to the parser."""
    global _last
    last = _last  # (one read: the message, its block and its headers belong together)
    if data is not last[0]:  # (bytes are immutable: the same object has the same block)
        block = header_block(data)
        if last[1] != block:
            headers = _SEEN.get(block, _UNSEEN)
            if headers is _UNSEEN:
                headers = _headers_after(last[1:], block)
                if len(block) <= _SEEN_MAX_BLOCK:
                    _SEEN[block] = headers
                    if len(_SEEN) > _SEEN_BLOCKS:
                        del _SEEN[next(iter(_SEEN))]  # the oldest
        else:
            headers = last[2]
        _last = last = (data, block, headers)
    headers = last[2]
    if headers is not None:
        return headers.get(name.lower(), "")
    msg = message_from_bytes(last[1], policy=compat32)
    return str(msg.get(name, "")).strip()


def _headers_after(last: tuple[bytes, dict[str, str] | None], block: bytes) -> dict[str, str] | None:
    """`_plain_headers(block)`, reading only the lines `block` adds after the last block read when it
    is that block with header lines appended (what the receive stamps do to a message, read again for
    its Subject). The first line added is no folded line (the tail would not read), so every header
    of the last block ends where it ended; the names already read keep their first value."""
    prev_block, prev = last
    head = prev_block[:-2]  # its header lines, each with its CRLF, without the empty line that ended them
    if (prev is None or len(block) <= len(prev_block) or not prev_block.endswith(b"\r\n\r\n")
            or prev_block.startswith(b"\r\n") or not block.startswith(head)):
        return _plain_headers(block)
    tail = _plain_headers(block[len(head):])
    if tail is None:
        return _plain_headers(block)
    headers = dict(prev)
    for name, value in tail.items():
        headers.setdefault(name, value)
    return headers


def _plain_headers(block: bytes) -> dict[str, str] | None:
    """compat32's answer for every header of a block made only of CRLF-ended ASCII header lines
    (the first of each name, by lower-case name); None if the block is anything else. The parser
    keeps a header's lines, line ends included, drops the name and colon and strips the ends;
    `str.strip` after it strips the same and more, so a value is the text after the colon, folded
    lines and all, stripped.

    The block's lines up to the first empty one (or its end) must all be header lines (a field
    name of printable ASCII without space or colon, then a colon: the email parser's headerRE),
    each followed by its folded lines (starting with a space or tab); a bare CR or LF, a line that
    is no header (`From ` has a space before any colon), or a folded line with no header before it
    makes the block not plain. Read with C-speed string methods: the header lines end where the
    first empty line starts (the first CRLF CRLF; none when the block starts with CRLF), three
    counts find a bare CR or LF among them, and one split gives the lines."""
    if not block.isascii():
        return None
    text = block.decode("ascii")
    if text.startswith("\r\n"):
        return {}  # an empty first line: no headers, whatever follows
    cut = text.find("\r\n\r\n")
    if cut >= 0:
        text = text[:cut]
    elif text.endswith("\r\n"):
        text = text[:-2]  # the last line's CRLF ends the block
    if not text:
        return {}
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf:
        return None  # a bare CR or LF
    headers: dict[str, str] = {}
    key = ""  # the lower-case name of the header being read; "" before the first one
    parts: list[str] = []
    for line in text.split("\r\n"):  # (no empty line here: the first one ended `text`)
        if line[0] in " \t":
            if not key:
                return None  # a folded line with no header before it
            parts.append(line)
            continue
        colon = line.find(":")
        name = line[:colon]
        if colon <= 0 or " " in name or not name.isprintable():
            return None  # no header line
        if parts and key not in headers:
            headers[key] = "\r\n".join(parts).strip()
        key = name.lower()
        parts = [line[colon + 1:]]
    if key not in headers:
        headers[key] = "\r\n".join(parts).strip()
    return headers


# the last message read, its block and the block's headers
_last: tuple[bytes | None, bytes, dict[str, str] | None] = (None, b"\x00", None)
# The blocks read lately and their headers (`_plain_headers`, None if not plain), oldest first: a
# message submitted from a mailbox is read again, unchanged, by the Transport service it is handed
# to (and an Internet host's by the Edge), usually with other messages read in between.
_SEEN: dict[bytes, dict[str, str] | None] = {}
_SEEN_BLOCKS, _SEEN_MAX_BLOCK = 64, 16384
_UNSEEN: dict[str, str] = {}  # (a sentinel: never a block's headers)


def count_received(data: bytes) -> int:
    """The Received headers of the message (its lines up to the first empty one that start with
    `Received:`, any case): the line starts are the CRLFs, so one count in C over the lower-cased
    block with a CRLF put before its first line."""
    cut = data.find(b"\r\n\r\n")
    return (b"\r\n" + (data if cut < 0 else data[:cut])).lower().count(b"\r\nreceived:")


def received_header(*, helo: str, client_ip: str, by_fqdn: str, by_ip: str, tls: dict | None,
                    version: str, when: datetime, utc_offset_minutes: int, via_frontend: bool = False,
                    product: str = "Microsoft SMTP Server") -> bytes:
    """An Exchange-style Received header line (folded as Exchange folds it)."""
    from ..clock import rfc2822_local

    suite = (tls.get("version", ""), tls["cipher"]) if tls and tls.get("cipher") else None
    head = _received_head(helo, client_ip, by_fqdn, by_ip, suite, version, via_frontend, product)
    return f"{head}{rfc2822_local(when, utc_offset_minutes)}\r\n".encode()


@lru_cache(maxsize=1024)  # one text per sending host and TLS suite: every message of a hop reuses it
def _received_head(helo: str, client_ip: str, by_fqdn: str, by_ip: str, suite: tuple[str, str] | None,
                   version: str, via_frontend: bool, product: str) -> str:
    """The Received header up to its date."""
    ver = ".".join(str(int(p)) for p in version.split("."))
    with_part = f"with {product}"
    if suite is not None:
        proto = {"TLSv1.2": "TLS1_2", "TLSv1.3": "TLS1_3"}.get(suite[0], "TLS1_2")
        with_part += f" (version={proto}, cipher={_IANA.get(suite[1], suite[1])})"
    via = " via Frontend Transport" if via_frontend else ""
    return (f"Received: from {helo} ({client_ip}) by {by_fqdn} ({by_ip})\r\n {with_part}\r\n"
            f" id {ver}{via}; ")


def new_message(*, mail_from: str, to: list[str], subject: str, body: str, message_id: str,
                when: datetime, utc_offset_minutes: int = 0, extra_headers: dict[str, str] | None = None,
                display_from: str | None = None) -> bytes:
    """A plain RFC 5322 message as a mail client would submit it."""
    from ..clock import rfc2822_local

    headers = [
        ("From", email.utils.formataddr((display_from or "", mail_from))),
        ("To", ", ".join(to)),
        ("Subject", subject),
        ("Date", rfc2822_local(when, utc_offset_minutes)),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="us-ascii"'),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    for k, v in (extra_headers or {}).items():
        headers.append((k, v))
    text = "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")
    if not text.endswith("\r\n"):
        text += "\r\n"
    return text.encode("utf-8")
