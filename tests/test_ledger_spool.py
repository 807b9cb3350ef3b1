"""The ledger keeps its facts in a spool file, not in memory (issue 8): what it reads back is what
was reported, in order, however many messages there are."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from labsim.engine import ledger as ledger_mod
from labsim.engine.ledger import Ledger, MessageList, dump_summary


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        self.t += timedelta(milliseconds=7)
        return self.t


@dataclass
class Item:
    message_id: str
    internal_id: int = 1
    lab_key: str = ""


def fill(n: int) -> Ledger:
    led = Ledger(Clock())
    for i in range(n):
        led.register(f"m{i}", f"<{i}@x>", "a@x", [f"r{i}@y", "s@y"], f"subject {i} \u00e9")
    for i in range(n):  # interleaved, as a run reports them
        item = Item(f"<{i}@x>")
        led.received(item, "HUB")
        led.sent(item, [f"r{i}@y"], "HUB", "EXO")
        if i % 3 == 0:
            led.failed(item, ["s@y"], "550 5.1.1 no", "EXO")
            led.dsn_generated(item, f"<dsn{i}@x>", "failed", "EXO", ["s@y"])
            led.delivered(Item(f"<dsn{i}@x>"), "a@x", "onprem", f"p/dsn{i}.eml", "HUB")
        led.delivered(item, f"r{i}@y", "exo", f"p/{i}.eml", "EXO")
        if i % 5 == 0:
            led.pending(item, ["s@y"], "HUB", "HUB\\3", "451 later")
    led.submit_failed(b"Message-ID: <1@x>\r\n\r\n", ["z@y"], "no mailbox", "MBX")
    return led


def test_facts_read_back_per_message_in_order_with_notification_updates():
    led = fill(7)
    f = led.fates.get("m3")
    assert f is not None and f.fate == "partial"
    assert [h["event"] for h in f.hops] == ["RECEIVE", "SEND", "FAIL", "DELIVER"]
    assert f.notifications == [{"time": f.notifications[0]["time"], "action": "failed", "server": "EXO",
                                "message_id": "<dsn3@x>", "about": "s@y", "delivered_to": "a@x",
                                "realm": "onprem", "path": "p/dsn3.eml"}]
    assert led.fates.get("m1").failed[-1]["reason"] == "no mailbox"
    assert led.fates.get("m5").fate == "pending" and led.fates.get("nope") is None
    assert led.has_outcome("m2") and not led.has_outcome("nope")


def test_reading_back_in_buckets_gives_what_one_pass_gives(monkeypatch: pytest.MonkeyPatch):
    led = fill(23)
    whole = [f.as_dict() for f in led.fates.values()]
    monkeypatch.setattr(ledger_mod, "BUCKET", 4)
    assert [f.as_dict() for f in led.fates.values()] == whole
    assert [m["id"] for m in whole] == [f"m{i}" for i in range(23)]


def test_a_registered_message_keeps_its_place_and_starts_over():
    led = fill(3)
    led.register("m0", "<again@x>", "b@x", ["q@y"], "again")
    assert [m["id"] for m in MessageList(led)] == ["m0", "m1", "m2"]
    assert MessageList(led)[0]["message_id"] == "<again@x>" and MessageList(led)[0]["hops"] == []


@pytest.mark.parametrize("n", [0, 1, 9])
def test_summary_json_is_the_bytes_json_dump_writes(n: int):
    led = fill(n)
    summary = {"start": "s", "messages": MessageList(led), "queues": [{"a": [1, {"b": None}]}], "events": []}
    out = io.StringIO()
    dump_summary(summary, out)
    plain = json.dumps({**summary, "messages": [f.as_dict() for f in led.fates.values()]}, indent=2)
    assert out.getvalue() == plain
    assert len(summary["messages"]) == n and list(summary["messages"]) == json.loads(plain)["messages"]


def test_a_message_list_pickles_as_the_list_it_reads():
    import pickle

    led = fill(4)
    messages = MessageList(led)
    assert pickle.loads(pickle.dumps(messages)) == list(messages) and len(list(messages)) == 4
