"""The pure framing rules: where DATA ends, dot unstuffing, numbers, verbs, log escaping, limits."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.logs.protocol_text import byte_quantified_size, escape_controls
from labsim.rules import replies as R
from labsim.rules.receive import check_recipient_count, connection_limit_reply
from labsim.smtp.framing import (
    ExchangeDataParser,
    PostfixDataParser,
    command_verb,
    parse_count,
)
from labsim.topology.model import ReceiveConnector

SMUGGLE_ENDS = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r\n\x00.\r\n"]


def feed_all(parser, data: bytes, cuts: list[int]) -> tuple[bytes, int, bool]:  # noqa: ANN001
    """Feed `data` in pieces cut at `cuts`, as the socket would deliver it."""
    text, consumed = bytearray(), 0
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in zip(bounds, bounds[1:]):
        piece = data[a:b]
        while piece and not parser.done:
            fed = parser.feed(piece)
            text += fed.text
            consumed += fed.consumed
            piece = piece[fed.consumed:]
        if parser.done:
            break
    return bytes(text), consumed, parser.done


def stuff(lines: list[bytes]) -> bytes:
    """A message as a client sends it: CRLF lines, dot-stuffed, then <CRLF>.<CRLF>."""
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) + b".\r\n"


line_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=200, deadline=None)
@given(st.lists(line_bytes, max_size=12), st.lists(st.integers(min_value=0, max_value=600), max_size=8),
       st.binary(max_size=20))
def test_exchange_parser_unstuffs_and_ends_only_at_crlf_dot_crlf(lines, cuts, after):
    wire = stuff(lines)
    text, consumed, done = feed_all(ExchangeDataParser(), wire + after, cuts)
    assert done and consumed == len(wire)  # what follows the end belongs to the next command
    assert text == b"".join(ln + b"\r\n" for ln in lines)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_exchange_parser_finds_the_first_crlf_dot_crlf_and_nothing_else(body, cuts):
    wire = body + b"\r\n.\r\n"
    _, consumed, done = feed_all(ExchangeDataParser(), wire, cuts)
    first = (b"\r\n" + wire).find(b"\r\n.\r\n")  # DATA starts at the beginning of a line
    assert done and consumed == first + 3


@pytest.mark.parametrize("end", SMUGGLE_ENDS)
def test_no_smuggling_sequence_ends_exchange_data(end):
    data = b"Subject: a\r\n\r\nfirst" + end + b"MAIL FROM:<x@y.z>\r\nDATA\r\nspoofed\r\n.\r\n"
    parser = ExchangeDataParser()
    fed = parser.feed(data)
    assert fed.eod and fed.consumed == len(data)
    assert b"MAIL FROM:<x@y.z>" in fed.text and b"spoofed" in fed.text


def test_exchange_parser_drops_a_stuffed_dot_even_before_a_bare_lf_and_flags_bare_lf():
    parser = ExchangeDataParser()
    fed = parser.feed(b"a\r\n.\nb\r\n..c\r\n.\rd\r\n.\r\n")
    assert fed.text == b"a\r\n\nb\r\n.c\r\n\rd\r\n"  # SmtpInDataParser: the dot after CRLF goes
    assert parser.bare_lf


def test_exchange_parser_measures_the_header():
    parser = ExchangeDataParser()
    parser.feed(b"Subject: x\r\nFrom: y\r\n\r\nbody\r\n.\r\n")
    assert parser.header_bytes == len(b"Subject: x\r\nFrom: y\r\n\r\n") and not parser.bare_lf


@pytest.mark.parametrize("end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n"])
def test_postfix_reject_mode_never_ends_at_a_bare_lf_dot_and_flags_the_message(end):
    data = b"Subject: a\r\n\r\nfirst" + end + b"MAIL FROM:<x@y.z>\r\nspoofed\r\n.\r\n"
    parser = PostfixDataParser()
    fed = parser.feed(data)
    assert fed.eod and fed.consumed == len(data) and parser.bare_lf
    assert b"spoofed" in fed.text


@settings(max_examples=150, deadline=None)
@given(st.lists(line_bytes, max_size=12), st.lists(st.integers(min_value=0, max_value=600), max_size=8))
def test_postfix_parser_agrees_with_exchange_on_clean_input(lines, cuts):
    wire = stuff(lines)
    a = feed_all(ExchangeDataParser(), wire, cuts)
    p = PostfixDataParser()
    b = feed_all(p, wire, cuts)
    assert a == b and not p.bare_lf


# --- numbers -----------------------------------------------------------------------------------------
@given(st.integers(min_value=0, max_value=10**18))
def test_parse_count_reads_ascii_decimals(n):
    assert parse_count(str(n)) == n


@given(st.text(max_size=30))
def test_parse_count_accepts_only_ascii_digits(text):
    value = parse_count(text)
    if value is not None:
        assert re.fullmatch(r"[0-9]{1,19}", text) and value == int(text)


@pytest.mark.parametrize("text", ["\u00b2", "\u0661\u0662", "9" * 5000, "", "-1", "+5", " 5", "1_000", "12 "])
def test_parse_count_refuses_what_is_not_a_plain_number(text):
    assert parse_count(text) is None


def test_parse_count_respects_a_maximum():
    assert parse_count("100", maximum=99) is None and parse_count("99", maximum=99) == 99


# --- verbs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, verb", [("EHLO x", "EHLO"), ("starttls", "STARTTLS"), ("\u017fTARTTLS", None),
                                        ("HELP-ME", "HELP-ME"), ("X-ANONYMOUSTLS", "X-ANONYMOUSTLS"),
                                        ("x-exps EXCHANGEAUTH", "X-EXPS"), ("-X", None), ("", None),
                                        ("NOOP\x00", None), ("M\u0410IL FROM:<>", None)])
def test_command_verbs_are_ascii_words(line, verb):
    assert command_verb(line) == verb


@pytest.mark.parametrize("line", ["A-", "-X", "X--EXPS", "X-", "- NOOP"])
def test_a_hyphen_only_joins_letters_in_a_verb(line):
    assert command_verb(line) is None
    assert command_verb("x-anonymoustls") == "X-ANONYMOUSTLS"


@given(st.text(max_size=20))
def test_a_recognised_verb_is_plain_ascii_upper_case(line):
    verb = command_verb(line)
    if verb is not None:
        # ASCII letters, with inner hyphens only (Exchange's X-ANONYMOUSTLS, X-EXPS)
        assert re.fullmatch(r"[A-Z]+(-[A-Z]+)*", verb) and line.upper().startswith(verb)


# --- log escaping ------------------------------------------------------------------------------------
def test_nul_and_other_controls_are_escaped_for_the_log():
    assert escape_controls("NOOP\x00x\x1b[0m\x7f") == "NOOP\\x00x\\x1b[0m\\x7f"
    assert escape_controls("tab\tand CRLF\r\n stay") == "tab\tand CRLF\r\n stay"


@given(st.text(max_size=60))
def test_escaped_text_has_no_raw_control_bytes(text):
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", escape_controls(text))


def test_byte_quantified_size_prints_like_exchange():
    assert byte_quantified_size(262144) == "256 KB (262,144 bytes)"
    assert byte_quantified_size(37748736) == "36 MB (37,748,736 bytes)"
    assert byte_quantified_size(250000) == "244.1 KB (250,000 bytes)"


# --- connector limits (rules.receive) ------------------------------------------------------------------
def rc(**kw) -> ReceiveConnector:  # noqa: ANN003
    return ReceiveConnector(name="t", **kw)


def test_defaults_follow_new_receive_connector():
    c = rc()
    assert (c.max_recipients_per_message, c.max_inbound_connection, c.max_inbound_connection_per_source,
            c.max_inbound_connection_percentage_per_source, c.max_header_size) == (200, 5000, 20, 2, 262144)
    assert (c.connection_timeout_seconds, c.inactivity_seconds) == (600, 300)


def test_recipient_limit():
    assert check_recipient_count(rc(), 199) is None
    assert check_recipient_count(rc(), 200) == R.TOO_MANY_RECIPIENTS


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.one_of(st.none(), st.integers(1, 30)), st.integers(1, 100),
       st.integers(1, 80), st.integers(1, 80))
def test_connection_limits_follow_the_connector_stub(limit, per_source, pct, total, from_source):
    from_source = min(from_source, total)
    c = rc(max_inbound_connection=limit, max_inbound_connection_per_source=per_source,
           max_inbound_connection_percentage_per_source=pct)
    reply = connection_limit_reply(c, total=total, from_source=from_source)
    if total > limit:
        assert reply == R.TOO_MANY_CONNECTIONS
    elif (per_source is not None and from_source > per_source) or \
            (pct < 100 and from_source > math.ceil((limit - total) * pct / 100)):
        assert reply == R.TOO_MANY_CONNECTIONS_PER_SOURCE
    else:
        assert reply is None


def test_unlimited_connections():
    c = rc(max_inbound_connection="unlimited", max_inbound_connection_per_source="unlimited")
    assert connection_limit_reply(c, total=10**6, from_source=10**6) is None


@pytest.mark.parametrize("field, value", [("connection_inactivity_timeout", "00:10:00"),
                                          ("connection_timeout", "2.00:00:00"), ("connection_timeout", "00:00:00"),
                                          ("max_recipients_per_message", 0), ("max_inbound_connection_per_source", 10001),
                                          ("max_inbound_connection_percentage_per_source", 101)])
def test_out_of_range_settings_are_refused(field, value):
    with pytest.raises(ValueError):
        rc(**{field: value})
