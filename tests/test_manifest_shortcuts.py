"""The manifest's cheaper ways (issue 8, CPU per message) give what the plain ways give, so
manifest.json's bytes do not depend on them: entries printed from templates of their shapes are
dumps_indented's text; the index's rows come back as they went in; one query per message answers
as the separate queries did."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim import manifest as mf
from labsim._evidence_index import EvidenceIndex, Row, Session
from labsim.logs.jsonfast import dumps_indented

_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_value = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                         max_size=3), max_leaves=8)
# mostly the types _message gives each member, sometimes anything (a summary.json written by hand)
_text_or_none = st.one_of(st.none(), st.text(max_size=10), _value)
_pointer = st.fixed_dictionaries({
    "file": st.one_of(st.text(max_size=10), _value), "lines": st.one_of(st.lists(st.integers(0, 10**6), max_size=3),
                                                                        _value),
    "record_id": st.one_of(st.none(), st.integers()), "session_id": _text_or_none, "shows": st.text(max_size=10)})
_hop = st.fixed_dictionaries({
    "time": st.text(max_size=24), "server": st.text(max_size=8), "event": st.sampled_from(["RECEIVE", "FAIL"]),
    "internal_id": _text_or_none, "connector": _text_or_none, "session_id": _text_or_none,
    "recipients": st.one_of(st.lists(st.text(max_size=6), max_size=3), _value), "next_hop": _text_or_none,
    "reply": _text_or_none, "evidence": st.one_of(st.lists(_pointer | _value, max_size=3), _value)})
_entry = st.fixed_dictionaries({
    "id": _text_or_none, "message_id": st.text(max_size=12), "network_message_ids": st.lists(st.text(max_size=6)),
    "internal_ids": st.dictionaries(st.text(max_size=6), st.lists(st.text(max_size=6), max_size=2), max_size=2),
    "from": _text_or_none, "to": st.one_of(st.lists(st.text(max_size=6), max_size=3), _value),
    "subject": _text_or_none, "injected": _text_or_none, "fate": st.text(max_size=8),
    "recipients": st.lists(st.dictionaries(st.text(max_size=6), _leaf, max_size=4), max_size=2),
    "hops": st.lists(_hop | _value, max_size=3), "notifications": st.lists(_value, max_size=2)})


@settings(max_examples=300, deadline=None)
@given(_entry | st.dictionaries(st.text(max_size=5), _value, max_size=3))
def test_an_entry_from_templates_is_dumps_indented_text(entry: Any) -> None:
    assert mf._entry_text(entry) == dumps_indented(entry, 1, sort_keys=True, ensure_ascii=False, level=2)


def test_a_whole_entry_as_the_manifest_holds_it() -> None:
    entry = {"id": "m1", "message_id": "<a@x>", "network_message_ids": ["n1"], "internal_ids": {"S1": ["1", "2"]},
             "from": "a@x", "to": ["b@y"], "subject": "é \u2028 \"q\"", "injected": "t", "fate": "delivered",
             "recipients": [{"recipient": "b@y", "fate": "delivered", "server": "S1", "reply": None, "mailbox": "p"}],
             "notifications": [],
             "hops": [{"time": "t", "server": "S1", "event": "RECEIVE", "internal_id": "1", "connector": None,
                       "session_id": "08DE", "recipients": [], "next_hop": None, "reply": None,
                       "evidence": [mf._pointer("f.LOG", [3, 4], shows="<a@x>", session_id="08DE"),
                                    mf._pointer("e.xml", [9], shows=">7036</EventID>", record_id=12)]}]}
    whole = json.dumps({"messages": [entry]}, indent=1, sort_keys=True, ensure_ascii=False)
    assert "  " + mf._entry_text(entry) in whole


@pytest.mark.parametrize("values", [
    {"a": "1", "b": ""}, {}, {"only": "x"}, {"a": "has \x1f inside", "b": "y"}, {"n": 3, "s": "x"},
    {"none": None}, {"é": "\u2028"},
])
def test_index_rows_come_back_as_they_went_in(values: dict[str, Any]) -> None:
    with EvidenceIndex() as idx:
        idx.add_tracking("<m@x>", Row("f.LOG", 3, "text", dict(values)))
        idx.add_trace("<m@x>", Row("t.csv", 2, "row", dict(values)))
        idx.set_queued("<m@x>", Row("q.jsonl", 5, "", dict(values)))
        idx.finish()
        for row in (idx.tracking("<m@x>")[0], idx.trace("<m@x>")[0], idx.queued("<m@x>")):
            assert row is not None and row.values == values and list(row.values) == list(values)


def _session(server: str, sid: str, lines: list[int], texts: list[str]) -> Session:
    return Session(server, "Hub/SmtpReceive", sid, "C", f"{server}.LOG", first="2026-05-01T06:00:00.000Z",
                   last="2026-05-01T06:00:01.000Z", lines=lines, times=["2026-05-01T06:00:00.000Z"] * len(lines),
                   texts=texts)


def test_one_query_per_message_answers_as_the_separate_queries() -> None:
    """prefetch fills what tracking / trace / queued / replies then give: the same as asking each."""
    def fill(idx: EvidenceIndex) -> None:
        a = _session("S1", "A", [5, 9], ["x", "250 2.6.0 <m@x> [InternalId=7, Hostname=h]"])
        b = _session("S2", "B", [4], ["250 2.6.0 <m@x> [InternalId=8, Hostname=h]"])
        idx.add_sessions([a, b], [("mid", "<m@x>", a, 1), ("iid", "7", a, 1), ("mid", "<m@x>", b, 0),
                                  ("iid", "8", b, 0), ("iid", "7", b, 0)], {})
        for n in (1, 2):
            idx.add_tracking("<m@x>", Row("t.LOG", n, "", {"event-id": "RECEIVE", "n": str(n)}))
        idx.add_tracking("<o@x>", Row("t.LOG", 3, "", {"event-id": "SEND"}))
        idx.add_trace("<m@x>", Row("d.csv", 2, "r", {"Event": "Receive"}))
        idx.set_queued("<m@x>", Row("q.jsonl", 4, "", {"error": "451"}))
        idx.finish()

    def answers(idx: EvidenceIndex) -> Any:
        def parts(found: list[tuple[Session, int]]) -> list[Any]:
            return [(s.session_id, s.lines, s.texts, i) for s, i in found]
        return ([(r.line, r.values) for r in idx.tracking("<m@x>")], [(r.line, r.values) for r in idx.trace("<m@x>")],
                idx.queued("<m@x>"), parts(idx.replies("mid", "<m@x>")), parts(idx.replies("iid", "7")),
                parts(idx.replies("iid", "8")), parts(idx.replies("iid", "9")))

    with EvidenceIndex() as plain, EvidenceIndex() as fetched:
        fill(plain)
        fill(fetched)
        fetched.prefetch("<m@x>", ["7", "8", "9", "7"])
        assert answers(fetched) == answers(plain)
        assert answers(fetched)[4] == [("A", [5, 9], ["x", "250 2.6.0 <m@x> [InternalId=7, Hostname=h]"], 1),
                                       ("B", [4], ["250 2.6.0 <m@x> [InternalId=8, Hostname=h]"], 0)]
