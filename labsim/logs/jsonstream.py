"""json.dump(obj, fh, indent=2) for a document whose one big list is produced item by item.

summary.json and EXO's trace.json hold one entry per message; a working day of mail makes that
list large. `dump_streamed` writes the same bytes json.dump would, encoding one item at a time:
json's indented form of a nested value is its own indented form with every line after the
first shifted by the nesting depth, so each item is encoded alone and shifted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

from .jsonfast import dumps_indented

_MARKER = "\x00labsim-streamed-list\x00"


def dump_streamed(obj: dict[str, Any], key: str, items: Iterable[Any], fh: IO[str]) -> None:
    """Write json.dump({**obj, key: list(items)}, fh, indent=2) without building the list.

    `key` must be a top-level key of `obj` (its value there is ignored; its place is kept)."""
    head, tail = json.dumps({**obj, key: [_MARKER]}, indent=2).split("    " + json.dumps(_MARKER) + "\n", 1)
    first = True
    for item in items:
        fh.write(head if first else ",\n")
        first = False
        fh.write("    " + dumps_indented(item, 2, level=2))
    if first:  # no items: json.dump writes an empty list as []
        json.dump({**obj, key: []}, fh, indent=2)
        return
    fh.write("\n" + tail)
