"""labsim.logs.jsonfast writes the bytes json.dumps(indent=...) writes (summary.json, trace.json and
manifest.json go through it)."""

from __future__ import annotations

import json
from collections import OrderedDict
from enum import IntEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.logs.jsonfast import dumps_indented

_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text())
_trees = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_trees, st.integers(min_value=0, max_value=4), st.booleans(), st.booleans())
def test_same_text_as_json(obj: object, indent: int, sort_keys: bool, ensure_ascii: bool) -> None:
    assert dumps_indented(obj, indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii) == \
        json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)


@settings(max_examples=100, deadline=None)
@given(_trees, st.integers(min_value=1, max_value=3))
def test_nested_at_a_depth_is_the_shifted_text(obj: object, depth: int) -> None:
    """What write_streamed relies on: an item encoded at its depth is the item's text shifted."""
    whole = json.dumps([[obj]] if depth == 2 else [obj] if depth == 1 else [[[obj]]], indent=2)
    item = dumps_indented(obj, 2, level=depth)
    assert (" " * 2 * depth + item) in whole.split("\n", depth)[-1]


class _Level(IntEnum):
    LOW = 1


@pytest.mark.parametrize("obj", [
    {1: "int key", 2: [True]},  # keys that are not str: json's own conversion
    {"a": _Level.LOW, "b": OrderedDict(z=1, a=2)},  # subclasses: as json prints them
    {"s": "é\u2028\x00\"\\"},
])
def test_other_types_as_json_gives_them(obj: object) -> None:
    for sort_keys in (False, True):
        assert dumps_indented({"x": obj}, 1, sort_keys=sort_keys, ensure_ascii=False) == \
            json.dumps({"x": obj}, indent=1, sort_keys=sort_keys, ensure_ascii=False)


def test_what_json_refuses_it_refuses() -> None:
    with pytest.raises(TypeError):
        dumps_indented({"x": {1, 2}}, 1)
