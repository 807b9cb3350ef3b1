"""transport.message._plain_headers: one regular-expression match over the block gives what reading
it line by line gives (the reading it replaced), for every header name, and the same refusals."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.transport.message import _plain_headers, header_block

_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def line_by_line(block: bytes) -> dict[str, str] | None:
    """The per-line reading (labsim before this change): first value per lower-case name."""
    if not block.isascii():
        return None
    headers: dict[str, str] = {}
    name: str | None = None
    value: list[bytes] = []
    for line in block.split(b"\r\n"):
        if not line:
            break
        if b"\r" in line or b"\n" in line:
            return None
        if line[0] in (0x20, 0x09):
            if name is None:
                return None
            value.append(line)
            continue
        if line.startswith(b"From ") or not _FIELD_NAME.match(line):
            return None
        if name is not None and name not in headers:
            headers[name] = b"\r\n".join(value).decode("ascii").strip()
        colon = line.index(b":")
        name, value = line[:colon].decode("ascii").lower(), [line[colon + 1:]]
    if name is not None and name not in headers:
        headers[name] = b"\r\n".join(value).decode("ascii").strip()
    return headers


PIECES = st.sampled_from([b"\r\n", b"\r\n\r\n", b"\r", b"\n", b" ", b"\t", b":", b"Subject", b"Subject: a",
                          b"message-id:<x@y>", b"From ", b"From: z", b"X-A: \x1c v \x0b", b"\xe9", b"body",
                          b"a b", b"\x7f", b"\x20:", b"Received: from x\r\n by y", b"\r\n\tmore"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(PIECES, max_size=16))
def test_the_match_reads_what_the_lines_read(pieces: list[bytes]) -> None:
    block = b"".join(pieces)
    assert _plain_headers(block) == line_by_line(block)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_read_the_same(block: bytes) -> None:
    assert _plain_headers(block) == line_by_line(block)


def test_a_stamped_block_reads_each_header_once() -> None:
    block = (b"Received: from a (1.2.3.4) by b (5.6.7.8)\r\n with SMTP\r\n id 15.2; Fri, 1 May 2026\r\n"
             b"Subject: first\r\nsubject: second\r\nMessage-ID: <m@x>\r\n\r\n")
    assert _plain_headers(block) == {"received": "from a (1.2.3.4) by b (5.6.7.8)\r\n with SMTP\r\n id 15.2; Fri, 1 May 2026",
                                     "subject": "first", "message-id": "<m@x>"}
    assert _plain_headers(b"Subject: a\r\nno header line\r\n\r\n") is None
    assert _plain_headers(b" folded first\r\nSubject: a\r\n") is None


BLOCK_PIECES = st.sampled_from([b"\r\n", b"\n", b"\r", b"\n\n", b"\r\n\r\n", b"A: b", b" ", b"x"])


def whole_block(data: bytes) -> bytes:
    """header_block as it read before: both ends searched over the whole message."""
    ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    return data[:min(ends) + 4] if ends else data


@settings(max_examples=2000, deadline=None)
@given(st.lists(BLOCK_PIECES, max_size=14))
def test_the_header_block_ends_where_it_ended(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert header_block(data) == whole_block(data)
