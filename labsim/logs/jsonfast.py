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
    c_make_encoder,
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any

_INF = float("inf")
_STR = {str}
_SHAPES_KEPT = 512
# a small dict's keys (in order) -> its keys in print order, each with its text and ": " (dicts of one
# kind share their keys: a manifest's pointers, hops), by (sort_keys, ensure_ascii)
_SHAPES: dict[tuple[bool, bool], dict[tuple[str, ...], list[tuple[str, str]]]] = {
    (sort, ascii_only): {} for sort in (False, True) for ascii_only in (False, True)}


def _floatstr(o: float) -> str:
    if o != o:
        return "NaN"
    if o == _INF:
        return "Infinity"
    if o == -_INF:
        return "-Infinity"
    return float.__repr__(o)


_FLAT = frozenset({str, int, float, bool, type(None)})  # the leaves json's C encoder prints as json.dumps does


def _refuse(o: Any) -> Any:  # (never called: flat containers hold only _FLAT leaves)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def dumps_indented(obj: Any, indent: int, *, sort_keys: bool = False, ensure_ascii: bool = True,
                   level: int = 0) -> str:
    """json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii), as it would
    print at nesting depth `level` (every line after the first shifted by indent * level).

    A list or dict whose members are all leaves (str, int, float, bool, None; a dict's keys str) is
    printed by json's C encoder in one call: without indent it takes any item separator, so with
    "," and the newline and indent of the members' depth it prints them as the indenting encoder
    does; only the brackets' own lines are added."""
    enc = encode_basestring_ascii if ensure_ascii else encode_basestring
    parts: list[str] = []
    append = parts.append
    newlines: list[str] = []
    flat: dict[int, Any] = {}  # depth of the members -> json's C encoder with that item separator

    def nl(depth: int) -> str:
        while len(newlines) <= depth:
            newlines.append("\n" + " " * (indent * len(newlines)))
        return newlines[depth]

    def flat_text(o: Any, depth: int) -> str:
        """The members of a flat list or dict (at `depth`), as json prints them between its brackets."""
        encoder = flat.get(depth)
        if encoder is None:
            encoder = flat[depth] = c_make_encoder(None, _refuse, enc, None, ": ", "," + nl(depth), sort_keys, False,
                                                   True)
        return "".join(encoder(o, 0))[1:-1]

    shapes = _SHAPES[(sort_keys, ensure_ascii)]
    if len(shapes) > _SHAPES_KEPT:
        shapes.clear()

    def leaf(o: Any) -> str | None:
        """A str, None or int's text (the leaves most members are); None for anything else."""
        t = type(o)
        if t is str:
            return enc(o)  # type: ignore[no-any-return]
        if o is None:
            return "null"
        if t is int:
            return int.__repr__(o)
        return None

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
            if len(o) == 1:
                text = leaf(o[0])
                if text is not None:
                    append("[" + inner + text + nl(depth) + "]")
                    return
            elif c_make_encoder is not None and set(map(type, o)) <= _FLAT:
                append("[" + inner + flat_text(o, depth + 1) + nl(depth) + "]")
                return
            sep = "[" + inner
            for x in o:
                text = leaf(x)
                if text is None:
                    append(sep)
                    value(x, depth + 1)
                else:
                    append(sep + text)
                sep = "," + inner
            append(nl(depth) + "]")
        elif t is dict and o:
            shape = o.keys() if len(o) > 8 else tuple(o)  # (a small dict's keys: one of a few shapes)
            order = shapes.get(shape) if type(shape) is tuple else None
            if order is None:
                if set(map(type, o)) != _STR:
                    other(o, depth)
                    return
                order = [(k, enc(k) + ": ") for k in (sorted(o) if sort_keys else o)]
                if type(shape) is tuple:
                    shapes[shape] = order
            inner = nl(depth + 1)
            sep = "{" + inner
            for k, key in order:
                v = o[k]
                tv = type(v)
                if tv is str:
                    append(sep + key + enc(v))
                elif v is None:
                    append(sep + key + "null")
                elif tv is int:
                    append(sep + key + int.__repr__(v))
                else:
                    append(sep + key)
                    value(v, depth + 1)
                sep = "," + inner
            append(nl(depth) + "}")
        elif t is dict:
            append("{}")
        else:
            other(o, depth)

    def other(o: Any, depth: int) -> None:
        append(json.dumps(o, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii).replace("\n", nl(depth)))

    value(obj, level)
    return "".join(parts)
