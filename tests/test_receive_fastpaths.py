"""The receive path's shortcuts (wave 6, rcv6) give what the plain way gives, byte for byte.

Each plain way is kept here as it read before the shortcut: the header firewall's split, join and
filters (transport.headers), the regular-expression reading of a plain header block and the
line-by-line count of Received headers (transport.message).
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.transport import headers as H
from labsim.transport.message import _plain_headers, count_received, header_value

# --- the plain ways -------------------------------------------------------------------------------


def plain_split(data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    cut = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if cut < 0 else (data[:cut], data[cut:])
    fields: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "surrogateescape").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name, value))
        elif line:
            fields.append((line, ""))
    return fields, rest


def plain_join(fields: list[tuple[str, str]], rest: bytes) -> bytes:
    head = "\r\n".join(f"{n}:{v}" for n, v in fields)
    return head.encode("utf-8", "surrogateescape") + (rest if rest else b"\r\n\r\n")


def pre(name: str, prefix: str) -> bool:
    return name.lower().startswith(prefix.lower())


def plain_on_receive(data: bytes, trust: H.Trust, *, auth_source: str, default_directionality: str,
                     originator_org: str | None = None) -> tuple[bytes, H.Stamp]:
    fields, rest = plain_split(data)
    if trust.exchange_server:
        kept = fields
    elif trust.cross_premises:
        kept = [(n, v) for n, v in fields if not pre(n, H.ORG)]
        promoted = [(H.ORG + n[len(H.CROSS):], v) for n, v in kept if pre(n, H.CROSS)]
        kept = [(n, v) for n, v in kept if not pre(n, H.CROSS)] + promoted
    else:
        kept = [(n, v) for n, v in fields if not pre(n, H.ORG) and not pre(n, H.CROSS)]
    values = {n.lower(): v.strip() for n, v in kept}
    auth_as = values.get((H.ORG + "AuthAs").lower())
    direction = values.get((H.ORG + "MessageDirectionality").lower())
    if auth_as is None:
        auth_as = "Internal" if (trust.exchange_server or trust.cross_premises) else "Anonymous"
        kept.append((H.ORG + "AuthAs", " " + auth_as))
        kept.append((H.ORG + "AuthSource", " " + auth_source))
    if direction is None:
        direction = default_directionality
        kept.append((H.ORG + "MessageDirectionality", " " + direction))
    if originator_org and direction == "Originating" and H.ORIGINATOR_ORG.lower() not in values:
        kept.append((H.ORIGINATOR_ORG, " " + originator_org))
    return plain_join(kept, rest), H.Stamp(auth_as=auth_as, directionality=direction)


def plain_on_send(data: bytes, *, external: bool, cloud_services_mail: bool, server: str) -> bytes:
    if not external:
        return data
    fields, rest = plain_split(data)
    org = [(n, v) for n, v in fields if pre(n, H.ORG)]
    others = [(n, v) for n, v in fields if not pre(n, H.ORG) and not pre(n, H.CROSS)]
    if cloud_services_mail:
        return plain_join(others + [(H.CROSS + n[len(H.ORG):], v) for n, v in org], rest)
    if org or any(pre(n, H.CROSS) for n, _ in fields):
        others = [(n, v) for n, v in others if n.lower() != H.FILTERED.lower()] + [(H.FILTERED, " " + server)]
    return plain_join(others, rest)


_NAME, _VALUE, _EOL = r"[\x21-\x39\x3b-\x7e]+", r"[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", r"(?:\r\n|\Z)"
_PLAIN_HEADER = re.compile(f"({_NAME}):({_VALUE}){_EOL}")
_PLAIN_LINES = re.compile(f"(?:{_NAME}:{_VALUE}{_EOL})*")


def regex_plain_headers(block: bytes) -> dict[str, str] | None:
    """_plain_headers as it read before: one match over the lines, then findall."""
    if not block.isascii():
        return None
    text = block.decode("ascii")
    lines = _PLAIN_LINES.match(text)
    end = lines.end() if lines is not None else 0
    if end < len(text) and not text.startswith("\r\n", end):
        return None
    headers: dict[str, str] = {}
    for name, value in _PLAIN_HEADER.findall(text, 0, end):
        key = name.lower()
        if key not in headers:
            headers[key] = value.strip()
    return headers


def plain_count_received(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0]
    return sum(1 for line in head.split(b"\r\n") if line[:9].lower() == b"received:")


# --- the inputs ---------------------------------------------------------------------------------

LINES = st.sampled_from([
    b"Subject: a", b"Message-ID: <x@y>", b" folded", b"\tfolded: too", b"no colon here", b"",
    b"X-MS-Exchange-Organization-AuthAs: Internal", b"x-ms-exchange-organization-authas:Anonymous",
    b"X-MS-Exchange-Organization-MessageDirectionality: Originating",
    b"X-MS-Exchange-Organization-AuthSource: a.b", b"X-MS-Exchange-Organization-SCL: -1",
    b"X-MS-Exchange-CrossPremises-AuthAs: Internal", b"x-ms-exchange-crosspremises-messagedirectionality: Incoming",
    b"X-MS-Exchange-CrossPremises-Other: v", b"X-OriginatorOrg: contoso.com", b"x-originatororg:",
    b"X-CrossPremisesHeadersFilteredBySendConnector: edge", b"Received: from a by b", b"RECEIVED:x",
    b" Received: folded", b"Received : spaced", b"X-A: \xe9\xff", b"\xc3\xa9: utf8 name", b"From x",
    b":", b"a:b:c", b"\r", b"\n",
])
ENDS = st.sampled_from([b"\r\n\r\nbody\r\n", b"\r\n\r\n", b"", b"\r\n", b"\n\nbody", b"\r\n\r\nReceived: body\r\n"])
TRUSTS = st.sampled_from([H.Trust(), H.Trust(exchange_server=True), H.Trust(cross_premises=True),
                          H.Trust(exchange_server=True, cross_premises=True)])


def message(lines: list[bytes], end: bytes, lead: bool) -> bytes:
    return (b"\r\n" if lead else b"") + b"\r\n".join(lines) + end


@settings(max_examples=3000, deadline=None)
@given(st.lists(LINES, max_size=12), ENDS, st.booleans(), TRUSTS,
       st.sampled_from(["Incoming", "Originating"]), st.sampled_from([None, "tenant.example"]))
def test_on_receive_gives_what_splitting_and_joining_gives(lines, end, lead, trust, direction, oorg) -> None:
    data = message(lines, end, lead)
    kwargs = dict(auth_source="srv.example", default_directionality=direction, originator_org=oorg)
    assert H.on_receive(data, trust, **kwargs) == plain_on_receive(data, trust, **kwargs)


@settings(max_examples=3000, deadline=None)
@given(st.lists(LINES, max_size=12), ENDS, st.booleans(), st.booleans(), st.booleans())
def test_on_send_gives_what_splitting_and_joining_gives(lines, end, lead, external, cloud) -> None:
    data = message(lines, end, lead)
    assert (H.on_send(data, external=external, cloud_services_mail=cloud, server="edge")
            == plain_on_send(data, external=external, cloud_services_mail=cloud, server="edge"))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=60), TRUSTS)
def test_any_bytes_go_through_the_firewall_as_before(data: bytes, trust: H.Trust) -> None:
    assert (H.on_receive(data, trust, auth_source="s", default_directionality="Incoming")
            == plain_on_receive(data, trust, auth_source="s", default_directionality="Incoming"))
    assert (H.on_send(data, external=True, cloud_services_mail=False, server="e")
            == plain_on_send(data, external=True, cloud_services_mail=False, server="e"))
    assert H.split(data) == plain_split(data)


def test_a_trusted_message_keeps_its_bytes_and_gets_the_stamps_after_its_last_header() -> None:
    data = b"Subject: a\r\n folded\r\nMessage-ID: <m@x>\r\n\r\nbody"
    out, stamp = H.on_receive(data, H.Trust(exchange_server=True), auth_source="s",
                              default_directionality="Originating")
    assert out == (b"Subject: a\r\n folded\r\nMessage-ID: <m@x>\r\nX-MS-Exchange-Organization-AuthAs: Internal\r\n"
                   b"X-MS-Exchange-Organization-AuthSource: s\r\n"
                   b"X-MS-Exchange-Organization-MessageDirectionality: Originating\r\n\r\nbody")
    assert stamp == H.Stamp("Internal", "Originating")
    # a line without a colon comes back with one (as it always did): not the shortcut's case
    assert H.on_send(b"odd line\r\n\r\nbody", external=True, cloud_services_mail=False, server="e") == (
        b"odd line:\r\n\r\nbody")


@settings(max_examples=3000, deadline=None)
@given(st.lists(LINES, max_size=12), ENDS, st.booleans())
def test_the_plain_reading_gives_what_the_regular_expression_gave(lines, end, lead) -> None:
    block = message(lines, end, lead)
    assert _plain_headers(block) == regex_plain_headers(block)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=80))
def test_the_plain_reading_of_any_bytes_is_as_before(block: bytes) -> None:
    assert _plain_headers(block) == regex_plain_headers(block)


@settings(max_examples=2000, deadline=None)
@given(st.lists(LINES, max_size=12), ENDS, st.booleans())
def test_received_headers_counted_in_one_pass_as_line_by_line(lines, end, lead) -> None:
    data = message(lines, end, lead)
    assert count_received(data) == plain_count_received(data)


def test_the_same_message_asked_again_answers_from_what_was_read() -> None:
    one = b"Subject: one\r\nMessage-ID: <1@x>\r\n\r\nbody"
    two = b"Subject: two\r\n\r\nbody"
    assert header_value(one, "Subject") == "one"
    assert header_value(two, "Subject") == "two"
    assert header_value(one, "Message-ID") == "<1@x>"
    assert header_value(one, "Subject") == "one"
    assert header_value(two, "Message-ID") == ""


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(LINES, max_size=6), ENDS, st.booleans()), min_size=1, max_size=80),
       st.lists(st.integers(0, 79), max_size=80))
def test_blocks_read_again_later_answer_as_the_parser_does(messages, order) -> None:
    """The blocks read lately are kept with their headers: any message read again, after any
    others (more than are kept, too), still reads as a first reading does."""
    datas = [message(lines, end, lead) for lines, end, lead in messages]
    for i in list(range(len(datas))) + order:
        data = bytes(datas[i % len(datas)])  # a new object with the same bytes
        for name in ("Subject", "Message-ID", "X-A"):
            assert header_value(data, name) == plain_header_value(data, name)


def plain_header_value(data: bytes, name: str) -> str:
    from email import message_from_bytes
    from email.policy import compat32
    return str(message_from_bytes(data, policy=compat32).get(name, "")).strip()
