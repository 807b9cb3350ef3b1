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


def test_the_body_is_not_part_of_the_header_block() -> None:
    data = b"Subject: hi\r\nMessage-ID: <a@b>\r\n\r\n" + b"x" * 100_000
    assert len(header_block(data)) < 64
    assert header_value(data, "Message-ID") == "<a@b>"
