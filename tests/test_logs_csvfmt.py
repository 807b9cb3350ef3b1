"""Exchange's Utf8Csv escaping: unit cases, real samples, and csv.reader round-trips."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim.logs.csvfmt import escape, join

GOLDEN = Path(__file__).parent / "golden" / "logs"


@pytest.mark.parametrize(("value", "expected"), [
    ("", ""),
    ("plain text", "plain text"),
    (r"SERVER\Default Frontend SERVER", r"SERVER\Default Frontend SERVER"),  # [REAL] unquoted
    ("354 Start mail input; end with <CRLF>.<CRLF>", "354 Start mail input; end with <CRLF>.<CRLF>"),
    ("TlsDomainCapabilities='None'; Status='x'", "TlsDomainCapabilities='None'; Status='x'"),
    ("a,b", '"a,b"'),
    ('say "hi"', '"say ""hi"""'),
    ('"', '""""'),
    ("line1\r\nline2", r"line1\r\nline2"),
    ("cr\ronly", r"cr\ronly"),
    ("lf\nonly,comma", '"lf\\nonly,comma"'),
    ("  leading spaces", "  leading spaces"),  # the csv module would not quote these either, but
    ("组织内 SMTP 发送连接器", "组织内 SMTP 发送连接器"),  # non-ASCII is raw [REAL: CN]
])
def test_escape(value: str, expected: str) -> None:
    assert escape(value) == expected


def test_join_keeps_empty_trailing_fields() -> None:
    # [REAL] `...,+,,` : a connect row ends with two empty fields
    assert join(["x", "+", "", ""]) == "x,+,,"


def _sample_rows() -> list[tuple[str, str]]:
    rows = []
    for path in sorted(GOLDEN.glob("*.log")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                if path.name.startswith("kinesistap"):
                    line = line.replace('""', '"')  # C# verbatim string: "" is one " (see its header)
                rows.append((path.name, line))
    return rows


@pytest.mark.parametrize(("name", "line"), _sample_rows())
def test_real_sample_rows_rebuild_byte_for_byte(name: str, line: str) -> None:
    """Every row of every real sample: parse it, re-escape the values, get the same text."""
    (fields,) = list(csv.reader([line]))
    assert join(fields) == line


_CRLF_AS_TEXT = str.maketrans({"\r": "\\r", "\n": "\\n"})


@given(st.lists(st.text(), min_size=2, max_size=12))
def test_csv_reader_round_trip(fields: list[str]) -> None:
    (parsed,) = list(csv.reader([join(fields)]))
    assert parsed == [f.translate(_CRLF_AS_TEXT) for f in fields]


@given(st.lists(st.text(alphabet=st.sampled_from(',"\r\n \\ab'), max_size=8), min_size=2, max_size=6))
def test_csv_reader_round_trip_on_special_characters(fields: list[str]) -> None:
    (parsed,) = list(csv.reader([join(fields)]))
    assert parsed == [f.translate(_CRLF_AS_TEXT) for f in fields]


@given(st.text())
def test_escape_never_emits_a_line_break(value: str) -> None:
    out = escape(value)
    assert "\r" not in out and "\n" not in out
    if out.startswith('"'):
        assert out.endswith('"') and ('"' in value or "," in value)
    else:
        assert out == value.translate(_CRLF_AS_TEXT)
