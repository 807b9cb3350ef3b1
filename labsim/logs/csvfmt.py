"""Exchange's CSV dialect for transport logs (`Utf8Csv.Escape`), reference log-formats.md §1.5.

Why not the `csv` module: Python's writer also quotes on CR/LF (and, with QUOTE_MINIMAL, writes
the line break raw inside the quotes), while Exchange never lets a line break into a row: it
writes CR and LF as the two characters `\\r` / `\\n` and quotes only for `,` and `"`. Every real
sample agrees with that rule (the banner and the TLS context are quoted for their commas; the
connector id `SERVER\\Default Frontend SERVER`, `;`, `<`, `'` and non-ASCII text are written raw).
Reading is unaffected: `csv.reader` parses our rows back (tests/test_logs_csvfmt.py checks it).

This is the hot path of every log row, so `escape` does a few substring scans in C and returns
the value itself in the common case.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["escape", "join"]


def escape(value: str) -> str:
    """One field as Exchange writes it: line breaks as `\\r`/`\\n`, quoted only for `,` or `"`."""
    if "\r" in value or "\n" in value:
        value = value.replace("\r", "\\r").replace("\n", "\\n")
    if '"' in value:
        return '"' + value.replace('"', '""') + '"'
    if "," in value:
        return '"' + value + '"'
    return value


def join(fields: Sequence[str]) -> str:
    """A row without its line ending: escaped fields separated by commas (empty fields stay empty).

    Most rows need no escaping at all: joined once, a row with no CR, LF or `"` and no comma but
    its separators is already the escaped row."""
    row = ",".join(fields)
    if row.count(",") == len(fields) - 1 and '"' not in row and "\r" not in row and "\n" not in row:
        return row
    return ",".join([escape(f) for f in fields])
