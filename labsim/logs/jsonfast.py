"""json.dumps(obj, indent=N) for plain data, without json's pure-Python indenting encoder.

json's C encoder does not indent, so every indented file (summary.json, trace.json, manifest.json)
went through json.encoder's generator-based `_iterencode`, a few generator frames per value. This
writes the same bytes from one recursive function that appends to a list, with json's own C string
escaping (`encode_basestring` / `encode_basestring_ascii`), `int.__repr__` and json's float text.
Anything but the plain types (str, int, float, bool, None, list, tuple, dict with str keys) is
handed to json.dumps itself and shifted to its depth (json's indented form of a nested value is
its own indented form with every line after the first shifted), so subclasses, other key types,
`default` errors and the like come out exactly as json gives them. tests/test_jsonfast.py compares
the two on random data (hypothesis). Data must not refer to itself (json raises on a cycle; this
is for trees built from JSON and plain values).
"""

from __future__ import annotations

import json
from json.encoder import (  # the C functions where built
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any

_INF = float("inf")


def _floatstr(o: float) -> str:
    if o != o:
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return float.__repr__(o)


def dumps_indented(obj: Any, indent: int, *, sort_keys: bool = False, ensure_ascii: bool = True,
                   level: int = 0) -> str:
    """json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii), as it would
    print at nesting depth `level` (every line after the first shifted by indent * level)."""
    enc = encode_basestring_ascii if ensure_ascii else encode_basestring
    parts: list[str] = []
    append = parts.append
    newlines: list[str] = []

    def nl(depth: int) -> str:
        while len(newlines) <= depth:
            newlines.append("\n" + " " * (indent * len(newlines)))
        return newlines[depth]

    def value(o: Any, depth: int) -> None:
        t = type(o)
        if t is str:
            append(enc(o))
        elif o is None:
            append("null")
        elif o is True:
            append("true")
        elif o is False:
            append("false")
        elif t is int:
            append(int.__repr__(o))
        elif t is float:
            append(_floatstr(o))
        elif t is list or t is tuple:
            if not o:
                append("[]")
                return
            inner = nl(depth + 1)
            sep = "[" + inner
            for x in o:
                append(sep)
                sep = "," + inner
                value(x, depth + 1)
            append(nl(depth) + "]")
        elif t is dict and all(type(k) is str for k in o):
            if not o:
                append("{}")
                return
            inner = nl(depth + 1)
            sep = "{" + inner
            for k, v in (sorted(o.items()) if sort_keys else o.items()):
                append(sep)
                sep = "," + inner
                append(enc(k))
                append(": ")
                value(v, depth + 1)
            append(nl(depth) + "}")
        else:
            append(json.dumps(o, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
                   .replace("\n", nl(depth)))

    value(obj, level)
    return "".join(parts)
