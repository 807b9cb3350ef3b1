"""Evidence that streams: logs on disk while a run goes on, the queue history as a change log that
replays to the snapshots an admin saw, and byte-identical trees run after run."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from labsim import cli_views as V
from labsim.engine.driver import run_scenario
from labsim.engine.evidence import TrackingHub
from labsim.logs.queue_history import (
    QUEUE_HISTORY_FILE,
    QueueHistoryWriter,
    messages_at,
    read_lines,
)
from labsim.scenario.loader import load_scenario
from labsim.transport.queues import message_row

QUEUE_SCENARIOS = ("queue-retry-until-expiry", "unreachable-resubmit", "svc-transport-stopped")


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _admin(rows: list[dict[str, Any]]) -> tuple[Any, ...]:
    return tuple((m["Identity"], m["Status"], m["LastError"], tuple(m["Recipients"])) for m in rows)


class Snapshots:
    """What a queue looked like at every change, the way the history was kept before it streamed:
    the whole Get-Message list of a queue whenever what an admin reads changed."""

    def __init__(self) -> None:
        self.snaps: list[tuple[str, str, str, list[dict[str, Any]]]] = []
        self._last: dict[str, tuple[Any, ...]] = {}

    def record(self, now: str, server: str, queue: str, rows: list[dict[str, Any]]) -> None:
        sig = _admin(rows)
        if self._last.get(queue) != sig:
            self._last[queue] = sig
            self.snaps.append((now, server, queue, [dict(r) for r in rows]))

    def at(self, servers: set[str], at: datetime) -> list[dict[str, Any]]:
        latest: dict[str, list[dict[str, Any]]] = {}
        for now, server, queue, rows in self.snaps:
            if server in servers and _iso(now) <= at:
                latest[queue] = rows
        return [m for rows in latest.values() for m in rows]


# --- the change log, unit ---------------------------------------------------------------------------
def test_replaying_the_change_log_gives_every_snapshot(tmp_path: Path) -> None:
    rng = random.Random(3)
    writer = QueueHistoryWriter(tmp_path / QUEUE_HISTORY_FILE)
    snaps = Snapshots()
    queues: dict[str, list[dict[str, Any]]] = {"S\\1": [], "S\\2": [], "T\\1": []}
    number = 0
    times = []
    for step in range(600):
        now = f"2026-05-01T06:{step // 60:02d}:{step % 60:02d}.000Z"
        times.append(now)
        q = rng.choice(list(queues))
        rows = queues[q]
        op = rng.random()
        if op < 0.4 or not rows:
            number += 1
            rows.append({"Identity": f"{q}\\{number}", "Queue": q, "Status": "Ready", "LastError": "",
                         "Recipients": [f"u{number}@x"], "RetryCount": 0})
        elif op < 0.7:
            rows.pop(rng.randrange(len(rows)))
        elif op < 0.85:
            m = rng.choice(rows)
            m.update(Status="Retry", LastError=f"451 4.4.0 try {step}")
        else:
            rng.choice(rows)["RetryCount"] += 1  # not what an admin reads: no new snapshot
        server = q.split("\\")[0]
        current = [dict(r) for r in rows]
        writer.messages(now, server, q, current)
        snaps.record(now, server, q, current)
    writer.close()
    for servers in ({"S"}, {"T"}, {"S", "T"}):
        for now in times[::7] + times[-1:]:
            assert messages_at(read_lines(writer.path), servers, _iso(now)) == snaps.at(servers, _iso(now))


def test_a_queue_reordered_behind_the_writers_back_replays_in_its_real_order(tmp_path: Path) -> None:
    writer = QueueHistoryWriter(tmp_path / QUEUE_HISTORY_FILE)
    a = {"Identity": "S\\1\\1", "Status": "Ready", "LastError": "", "Recipients": ["a@x"]}
    b = {"Identity": "S\\1\\2", "Status": "Ready", "LastError": "", "Recipients": ["b@x"]}
    writer.messages("2026-05-01T06:00:00.000Z", "S", "S\\1", [a, b])
    writer.messages("2026-05-01T06:00:01.000Z", "S", "S\\1", [{**b, "Status": "Retry"}, a])
    writer.close()
    got = messages_at(read_lines(writer.path), {"S"}, _iso("2026-05-01T06:00:01.000Z"))
    assert [m["Identity"] for m in got] == ["S\\1\\2", "S\\1\\1"] and got[0]["Status"] == "Retry"


def test_the_history_file_exists_even_when_no_queue_changed(tmp_path: Path) -> None:
    path = QueueHistoryWriter(tmp_path / QUEUE_HISTORY_FILE).close()
    assert path.read_text() == "" and list(read_lines(path)) == []


# --- the catalog's queue scenarios ------------------------------------------------------------------
@pytest.fixture(scope="module")
def queue_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Snapshots]]:
    """Each queue scenario run once, with the old snapshots recorded beside the change log."""
    runs: dict[str, tuple[Path, Snapshots]] = {}
    original = TrackingHub.queue_snapshot
    for sid in QUEUE_SCENARIOS:
        snaps = Snapshots()

        def spy(hub: TrackingHub, party: Any, q: Any, snaps: Snapshots = snaps) -> None:
            original(hub, party, q)
            if party.name in hub.lab.servers or party.name == "EXO":
                from labsim.clock import iso_ms

                rows = [message_row(q, qm, party.expiration_of(qm.item)) for qm in q.messages]
                snaps.record(iso_ms(hub.lab.clock.now()), party.name, q.identity, rows)

        TrackingHub.queue_snapshot = spy  # type: ignore[method-assign]
        try:
            out = tmp_path_factory.mktemp(sid) / "out"
            run_scenario(load_scenario(sid), out=out)
        finally:
            TrackingHub.queue_snapshot = original  # type: ignore[method-assign]
        runs[sid] = (out, snaps)
    return runs


@pytest.mark.parametrize("sid", QUEUE_SCENARIOS)
def test_queue_messages_at_any_moment_equal_the_snapshot_then(queue_runs, sid: str) -> None:
    out, snaps = queue_runs[sid]
    assert snaps.snaps, "the scenario changed no queue"
    data = V.load_queues(out)
    for server in [None, "EXO", *(s for s in data["servers"] if data["servers"][s]["admin_visible"])]:
        servers = set(V._servers(data, server))
        for now in sorted({s[0] for s in snaps.snaps}):
            at = _iso(now)
            assert V.message_rows(data, server=server, at=at) == snaps.at(servers, at), (server, now)


@pytest.mark.parametrize("sid", QUEUE_SCENARIOS)
def test_queues_json_is_the_small_final_state(queue_runs, sid: str) -> None:
    out, _ = queue_runs[sid]
    data = V.load_queues(out)
    assert set(data) == {"time", "servers", "history_file", "_out"}
    assert (out / data["history_file"]).is_file()
    # the final Get-Message view is also what replaying the whole history gives
    for server in (s for s in data["servers"] if data["servers"][s]["admin_visible"]):
        final = [m for m in data["servers"][server]["messages"]]
        replayed = V.message_rows(data, server=server, at=_iso(data["time"]))
        assert [m["Identity"] for m in replayed] == [m["Identity"] for m in final]


# --- streaming while the run goes on ----------------------------------------------------------------
def test_logs_and_queue_history_reach_the_disk_while_a_long_run_goes_on(tmp_path: Path) -> None:
    """Two virtual days of retries: rows are written as the run goes, the buffer stays small."""
    seen: list[tuple[int, int, int]] = []  # (rows buffered, log bytes on disk, history bytes on disk)
    original = TrackingHub.settled

    def spy(hub: TrackingHub) -> None:
        original(hub)
        logs = hub.lab.registered_logs()
        on_disk = sum(p.stat().st_size for p in hub.lab.out.rglob("*.LOG"))
        history = hub.queue_history.path
        seen.append((sum(len(log.stream) for log in logs), on_disk,
                     history.stat().st_size if history.exists() else 0))

    TrackingHub.settled = spy  # type: ignore[method-assign]
    try:
        out = tmp_path / "out"
        result = run_scenario(load_scenario("queue-retry-until-expiry"), out=out)
    finally:
        TrackingHub.settled = original  # type: ignore[method-assign]
    assert result.ok and not result.summary["internal_errors"]
    total_rows = sum(len([ln for ln in p.read_bytes().split(b"\r\n") if ln and not ln.lstrip(b"\xef\xbb\xbf").startswith(b"#")])
                     for p in out.rglob("*.LOG"))
    middle = seen[len(seen) // 2]
    assert middle[1] > 0 and middle[2] > 0, "nothing was on disk half-way through the run"
    assert max(s[0] for s in seen) < total_rows / 4, "the writer held most rows until the end"
    assert result.log_files and all(p.is_file() for p in result.log_files)
    assert set(result.log_files) == set(out.rglob("*.LOG"))


def test_two_runs_give_byte_identical_trees_with_the_queue_history(tmp_path: Path) -> None:
    trees = []
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        run_scenario(load_scenario("queue-retry-until-expiry"), out=out)
        trees.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1]
    assert Path(QUEUE_HISTORY_FILE) in trees[0] and trees[0][Path(QUEUE_HISTORY_FILE)]


def test_event_logs_are_written_as_events_are_raised_in_wevtutil_order(tmp_path: Path) -> None:
    """cert-untrusted-root raises events all through the run: they are on disk before it ends,
    and the files are what rendering every event at the end, oldest first, gives."""
    from labsim.engine.eventlog import (
        computer_name,
        event_log_folder,
        render_text,
        render_xml,
    )

    labs: list[Any] = []
    on_disk: list[int] = []
    original = TrackingHub.settled

    def spy(hub: TrackingHub) -> None:
        original(hub)
        labs[:] = [hub.lab]
        on_disk.append(sum(p.stat().st_size for p in hub.lab.out.glob("*/EventLog/Application.txt")))

    TrackingHub.settled = spy  # type: ignore[method-assign]
    try:
        result = run_scenario(load_scenario("cert-untrusted-root"), out=tmp_path / "out")
    finally:
        TrackingHub.settled = original  # type: ignore[method-assign]
    assert not result.summary["internal_errors"]
    assert on_disk[len(on_disk) // 2] > 0, "no event was on disk half-way through the run"
    rt = labs[0]
    for name, srv in sorted(rt.servers.items()):
        events = sorted((e for e in rt.events.events if e.server == name), key=lambda e: e.time)
        computer = computer_name(name, srv.model.fqdn)
        folder = event_log_folder(result.out, name)  # rt.out was the run's staging folder (engine.outdir)
        xml = folder.joinpath("Application.xml").read_bytes().decode("utf-8")
        text = folder.joinpath("Application.txt").read_bytes().decode("utf-8")
        assert text == "".join(render_text(e, i, computer, srv.model.utc_offset_minutes) for i, e in enumerate(events))
        lines = xml.split("\r\n")[:-1]
        assert len(lines) == len(events)
        records = [int(line.split("<EventRecordID>")[1].split("<")[0]) for line in lines]
        assert records == list(range(records[0], records[0] + len(events))) if events else not records
        assert lines == [render_xml(e, r, computer) for e, r in zip(events, records)]
