"""Mail carried from one run into the next (engine.carry: labsim generate's hours, run_loaded's
carry_out / carry_in): what one run leaves queued is taken up by the next at the moment the first
stopped, goes on to its recipients, and is reported there under its own scenario id."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from labsim.engine.carry import HANDOVER_FILE, carried_count
from labsim.engine.driver import run_loaded
from labsim.scenario.loader import load_scenario
from labsim.scenario.model import Message


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def _tracking(out: Path, server: str = "*") -> list[str]:
    return [line for p in sorted(out.glob(f"{server}/TransportRoles/Logs/MessageTracking/*.LOG"))
            for line in p.read_text(encoding="utf-8-sig").splitlines() if line and not line.startswith("#")]


def _healthy() -> Any:
    """hybrid-baseline, its messages' ids its own (a corpus's hours never share one)."""
    loaded = load_scenario("hybrid-baseline")
    loaded.scenario.message = [Message.model_validate({**m.model_dump(by_alias=True, exclude_none=True),
                                                       "id": f"next-{m.id}"}) for m in loaded.scenario.message]
    return loaded


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cert-expired (mail to and from EXO deferred: the Hub's certificate expired) hands its queues to
    a healthy hybrid-baseline run (another seed, as each hour of a corpus has its own); the same
    healthy run without them is the yardstick."""
    import asyncio

    tmp = tmp_path_factory.mktemp("carry")

    async def go() -> None:
        await run_loaded(load_scenario("cert-expired"), out=tmp / "fault", carry_out=tmp / "fault.carry")
        await run_loaded(_healthy(), out=tmp / "plain", seed=2)
        await run_loaded(_healthy(), out=tmp / "next", seed=2, carry_in=tmp / "fault.carry")
    asyncio.run(go())
    return {"fault": tmp / "fault", "carry": tmp / "fault.carry", "plain": tmp / "plain", "next": tmp / "next"}


def test_what_one_run_leaves_queued_is_delivered_by_the_next(runs: dict[str, Path]) -> None:
    fault = _summary(runs["fault"])
    pending = {m["id"]: m for m in fault["messages"] if m["fate"] == "pending"}
    assert pending and carried_count(runs["carry"]) >= len(pending)
    handover = json.loads((runs["carry"] / HANDOVER_FILE).read_text(encoding="utf-8"))["at"]
    carried = {m["id"]: m for m in _summary(runs["next"])["messages"] if m.get("carried_in")}
    assert set(carried) == set(pending)
    for key, m in carried.items():
        assert m["message_id"] == pending[key]["message_id"] and m["fate"] == "delivered"
        (taken,) = m["carried_in"]  # where it waited, with the InternalId it had there
        held = [h for h in pending[key]["hops"] if h["event"] == "RECEIVE" and h["server"] == taken["server"]]
        assert held and held[-1]["internal_id"] == taken["internal_id"]
        # taken up when the first run stopped: everything it does now comes after what that run logged
        assert _t(taken["time"]) == _t(handover)
        assert all(h["time"] >= taken["time"] for h in m["hops"])
        assert all(h["time"] < taken["time"] for h in pending[key]["hops"])


def test_taking_up_is_not_a_restart(runs: dict[str, Path]) -> None:
    """No second AGENTINFO row for a carried message where it waited (it was categorised there when it
    arrived), and the
    run's own ids are as without the carried mail (the counters are the run's own: continuing after
    the other run's ids would hand out that run's later ids again)."""
    carried = [m for m in _summary(runs["next"])["messages"] if m.get("carried_in")]
    rows = _tracking(runs["next"])
    for m in carried:  # (a server it reaches afterwards categorises it as any new arrival)
        (taken,) = m["carried_in"]
        assert not [r for r in rows if ",AGENTINFO," in r and _iid(r) == taken["internal_id"]]
        if taken["server"] != "EXO":  # (EXO keeps a message trace, not tracking logs)
            assert any(r for r in rows if _iid(r) == taken["internal_id"])  # it left from there
    own = _tracking(runs["plain"])
    handover = json.loads((runs["carry"] / HANDOVER_FILE).read_text(encoding="utf-8"))["at"][:19]
    before = sorted(r for r in rows if r[:19] < handover)
    assert own and before == sorted(own)  # the run's own mail, before the take-up, byte for byte the same
    # the Hub's InternalIds (14 digits; not the Mailbox Transport Submission's) after the take-up go on from its own last one (a restart's rule, "continue
    # after the ids read back", would have jumped past the carried message's id from the other run)
    hub_own = {int(_iid(r)) for r in _tracking(runs["plain"], "CMHYBD01") if len(_iid(r)) == 14}
    carried_ids = {m["carried_in"][0]["internal_id"] for m in carried}
    hub_later = {int(_iid(r)) for r in _tracking(runs["next"], "CMHYBD01")
                 if r[:19] >= handover and len(_iid(r)) == 14 and _iid(r) not in carried_ids}
    assert hub_own and hub_later and min(hub_later) == max(hub_own) + 1


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iid(row: str) -> str:
    import csv

    return next(csv.reader([row]))[9]  # internal-message-id
