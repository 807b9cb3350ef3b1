"""What a run keeps per message stays bounded however much mail it has seen (issue 8: memory that
follows the mail in flight), and the answers are the same as when everything stayed in memory.

- engine.spill.SpilledMap: at most two generations of `young` entries in memory, the rest in a
  private SQLite database; a lookup of any key written gives the last value written.
- The network-id map (engine.lab_services) and the ledger's lookups (engine.ledger) are such maps:
  a retry of a message seen long ago gets its network id again, a fate is read back whole.
- A loaded scenario's [[message]] rows are packed (scenario.rows): a few dozen bytes a message.
- A whole run whose maps spill at every other entry writes the same bytes as one that never spills.
"""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import scenario_text
from test_ledger_spool import Item, fill

from labsim.engine import spill
from labsim.engine.driver import run_scenario
from labsim.engine.lab_services import LabServices
from labsim.engine.ledger import MessageList
from labsim.engine.spill import SpilledMap
from labsim.ids import IdSource
from labsim.scenario.loader import load_scenario, load_scenario_text
from labsim.scenario.model import Message, MessageRow
from labsim.scenario.rows import PackedRows


def test_a_spilled_map_keeps_two_generations_in_memory_and_answers_like_a_dict() -> None:
    m: SpilledMap[str] = SpilledMap(young=16)
    plain: dict[str, str] = {}
    for i in range(1000):
        key = f"<{i}@x\udce9>"  # a surrogate-escaped byte, as a header's Message-ID may hold
        m[key] = plain[key] = f"id-{i}"
        if i % 7 == 0:  # written again later: the last value wins wherever the first one went
            m[f"<{i // 2}@x\udce9>"] = plain[f"<{i // 2}@x\udce9>"] = f"again-{i}"
        assert m.in_memory <= 32
    assert all(m.get(k) == v for k, v in plain.items())
    assert m.get("<nope@x>") is None and "<nope@x>" not in m and "<3@x\udce9>" in m
    counts: SpilledMap[int] = SpilledMap(young=4)
    for i in range(50):
        counts[str(i)] = i
    assert [counts.get(str(i)) for i in range(50)] == list(range(50)) and counts.get("0") == 0


def _services() -> LabServices:
    svc = LabServices.__new__(LabServices)
    svc._init_services()
    return svc


def test_a_retry_long_after_gets_its_network_id_again_and_memory_stays_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "YOUNG", 64)
    svc, ids = _services(), IdSource(1, "HUB")
    when = datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc)
    first = {i: svc.network_message_id("onprem", f"<{i}@x>", ids, when) for i in range(2000)}
    exo = svc.network_message_id("exo", "<0@x>", ids, when)  # another realm: its own id
    assert svc._network_ids.in_memory <= 128
    assert len(set(first.values())) == 2000 and exo not in first.values()
    # the first message again (a retry, the message back from EXO): the same id, nothing drawn
    assert [svc.network_message_id("onprem", f"<{i}@x>", ids, when) for i in (0, 1, 999, 1999)] == \
        [first[0], first[1], first[999], first[1999]]
    assert svc.network_message_id("exo", "<0@x>", ids, when) == exo
    fresh = IdSource(1, "HUB")
    for _ in range(2001):
        fresh.network_message_id(when)
    assert svc.network_message_id("onprem", "<new@x>", ids, when) == fresh.network_message_id(when)


def test_the_ledgers_lookups_stay_bounded_and_every_fate_reads_back_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    whole = fill(300)
    expected = [f.as_dict() for f in whole.fates.values()]
    monkeypatch.setattr(spill, "YOUNG", 8)
    led = fill(300)
    for m in (led._index, led._by_mid, led._dsn_by_mid, led._notes):
        assert m.in_memory <= 16
    assert [f.as_dict() for f in led.fates.values()] == expected
    assert led.fates.get("m3").as_dict() == expected[3] and "m299" in led.fates and "nope" not in led.fates
    assert led.fates.keys() == [f"m{i}" for i in range(300)] and len(led) == 300
    assert MessageList(led)[0] == expected[0] and MessageList(led)[-1] == expected[-1]
    assert [led.has_outcome(f"m{i}") for i in range(300)] == [whole.has_outcome(f"m{i}") for i in range(300)]
    # a message registered again starts anew: no outcome, notifications numbered from 0
    led.register("m3", "<3@x>", "a@x", ["r3@y"], "again")
    assert not led.has_outcome("m3") and led.has_outcome("m4")
    led.dsn_generated(Item("<3@x>"), "<dsn-again@x>", "failed", "EXO", ["r3@y"])
    led.delivered(Item("<dsn-again@x>"), "a@x", "onprem", "p/again.eml", "HUB")
    note = led.fates.get("m3").notifications
    assert [(n["message_id"], n["delivered_to"]) for n in note] == [("<dsn-again@x>", "a@x")]


ROWS = [
    MessageRow("m1", "+00:00:05", "raghu@cloudmonkeys.xyz", ("ramki@cloudmonkeys.xyz",), "s", "b\n", None),
    MessageRow("é\udce9", "+1.00:00:00", "a@x", ("b@y", "c@z", "b@y"), "", "x" * 300, 0),
    MessageRow("m3", "+00:00:05", "a@x", ("b@y",), "[[message]]", "b\n", 150 * 1024 * 1024),
]


def test_packed_rows_read_and_change_like_the_list_of_rows() -> None:
    rows = PackedRows(ROWS)
    assert list(rows) == ROWS and rows == ROWS and ROWS == rows and rows[1] == ROWS[1] and rows[-1] == ROWS[2]
    assert rows[1:] == ROWS[1:] and len(rows) == 3 and rows != tuple(ROWS) and repr(rows) == repr(ROWS)
    as_list = list(ROWS)
    msg = Message.model_validate({"id": "m4", "from": "a@x", "to": ["b@y"]})
    for seq in (rows, as_list):  # the same changes to both
        seq.append(MessageRow.of(msg) if seq is as_list else msg)
        seq.insert(0, ROWS[2])
        seq[2] = ROWS[0]
        del seq[1]
        seq[1:2] = [ROWS[1], ROWS[1]]
    assert list(rows) == as_list and rows[-1].model() == msg


def _kept_by_loading(n: int) -> int:
    """What a loaded scenario of `n` messages holds: the memory freed when it is dropped."""
    text = scenario_text("".join(
        f'[[message]]\nid = "up-{i}"\nat = "+00:{i // 100:02d}:05"\nfrom = "raghu@cloudmonkeys.xyz"\n'
        f'to = ["ramki@cloudmonkeys.xyz"]\nsubject = "gen bursty {i}"\n\n' for i in range(n)))
    tracemalloc.start()
    try:
        loaded = load_scenario_text(text)
        assert len(loaded.scenario.message) == n and loaded.scenario.message[n - 7].subject == f"gen bursty {n - 7}"
        gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        del loaded
        gc.collect()
        return held - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def test_a_loaded_scenario_keeps_a_few_dozen_bytes_a_message() -> None:
    _kept_by_loading(10)  # (what the first load imports and caches)
    small = _kept_by_loading(1000)
    per_message = (_kept_by_loading(5000) - small) / 4000
    assert per_message < 60  # a list of MessageRows kept ~270 bytes a message


def _run_with_copies(sid: str, out: Path) -> None:
    """The catalog scenario with each message sent five times (so many are in flight at once)."""
    loaded = load_scenario(sid)
    for m in list(loaded.scenario.message):
        for k in range(4):
            loaded.scenario.message.append(replace(m, id=f"{m.id}-copy{k}"))
    run_scenario(loaded, out=out)


@pytest.mark.parametrize("sid", ["route-loop-exo-attr34", "net-reset-mid-session", "queue-retry-until-expiry"])
def test_a_run_whose_maps_spill_writes_the_same_bytes(sid: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Loops, retries after a reset and NDRs ask for network ids and ledger entries of messages
    seen before; with every map spilling at its second entry the tree is byte-identical."""
    _run_with_copies(sid, tmp_path / "kept")
    from_disk = []
    real = SpilledMap.get

    def counting(self: SpilledMap, key: str, default: object = None) -> object:  # type: ignore[type-arg]
        value = real(self, key)
        from_disk.append(value is not None and key not in self._new and key not in self._old)
        return default if value is None else value
    monkeypatch.setattr(SpilledMap, "get", counting)
    monkeypatch.setattr(spill, "YOUNG", 1)
    _run_with_copies(sid, tmp_path / "spilled")
    assert sum(from_disk) >= 10  # answers did come back from disk
    a = sorted(p.relative_to(tmp_path / "kept") for p in (tmp_path / "kept").rglob("*") if p.is_file())
    b = sorted(p.relative_to(tmp_path / "spilled") for p in (tmp_path / "spilled").rglob("*") if p.is_file())
    assert a == b
    assert [p for p in a if (tmp_path / "kept" / p).read_bytes() != (tmp_path / "spilled" / p).read_bytes()] == []
