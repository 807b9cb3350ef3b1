"""header_value reads only the header block: the same answer as parsing the whole message."""

from email import message_from_bytes
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.transport.message import header_block, header_value

PIECES = st.sampled_from([b"\r\n", b"\n", b"\r", b"Subject: a", b"Message-ID: <x@y>", b" folded", b"\r\n\r\n",
                          b"\n\n", b"body", b":", b"X", b"\xff", b"Subject:\r\n b", b"\r\n.\r\n"])


def whole(data: bytes, name: str) -> str:
    return str(message_from_bytes(data, policy=compat32).get(name, "")).strip()


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=14))
def test_header_value_agrees_with_parsing_the_whole_message(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    for name in ("Subject", "Message-ID"):
        assert header_value(data, name) == whole(data, name)


LINES = st.sampled_from([b"Subject: a", b"SUBJECT:b", b"Message-ID: <x@y>", b"message-id:<z@y>", b" folded",
                         b"\tfolded", b"Subject:", b"Subject:  ", b"X-A: \x1c v \x0b", b"From x", b":", b"no header",
                         b"X: a\xe9", b"Subject : c", b"", b"x" * 3])


@settings(max_examples=600, deadline=None)
@given(st.lists(LINES, max_size=10), st.sampled_from([b"", b"\r\n", b"\r\n\r\nbody"]))
def test_a_block_of_crlf_lines_reads_as_the_parser_reads_it(lines: list[bytes], end: bytes) -> None:
    """The direct reading of plain CRLF header lines (no parser) gives the parser's answer."""
    data = b"\r\n".join(lines) + end
    for name in ("Subject", "Message-ID", "X-A"):
        assert header_value(data, name) == whole(data, name)


def test_the_body_is_not_part_of_the_header_block() -> None:
    data = b"Subject: hi\r\nMessage-ID: <a@b>\r\n\r\n" + b"x" * 100_000
    assert len(header_block(data)) < 64
    assert header_value(data, "Message-ID") == "<a@b>"


ENDS = st.sampled_from([b"\r\n\r\nbody", b"\r\n\r\n", b"", b"\r\n", b"\n\nbody"])


@settings(max_examples=600, deadline=None)
@given(st.lists(LINES, max_size=6), st.lists(LINES, max_size=4), ENDS, ENDS)
def test_a_message_read_again_with_lines_added_reads_as_the_parser_reads_it(
        first: list[bytes], added: list[bytes], end: bytes, end2: bytes) -> None:
    """The receive stamps add header lines to a message already read: the second reading (which
    reads only the added lines when it can) still gives the parser's answer."""
    before = b"\r\n".join(first) + end
    after = b"\r\n".join(first + added) + end2
    for data in (before, after, b"\r\n" + before, b"\r\n" + after):
        for name in ("Subject", "Message-ID", "X-A"):
            assert header_value(data, name) == whole(data, name)
    header_value(before, "Subject")  # the last block read, then the same with lines added
    for name in ("Subject", "Message-ID", "X-A"):
        assert header_value(after, name) == whole(after, name)


def test_the_received_stamps_leave_subject_and_message_id_as_they_were() -> None:
    data = b"Subject: hello\r\nMessage-ID: <m@x>\r\n\r\nbody"
    assert header_value(data, "Subject") == "hello"
    stamped = b"Subject: hello\r\nMessage-ID: <m@x>\r\nX-MS-Exchange-Organization-AuthAs: Internal\r\nSubject: no\r\n\r\nbody"
    assert (header_value(stamped, "Subject"), header_value(stamped, "X-MS-Exchange-Organization-AuthAs")) == (
        "hello", "Internal")
