"""`labsim generate` (labsim.corpus, labsim._corpus_merge): a corpus with faults scheduled into it.

A small corpus is generated twice (one process, two processes) and must be byte-identical; its
manifest's counts must match the files, and every evidence pointer must land on a line that shows it.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
from conftest import exlog_check, run_cli

from labsim.corpus import CorpusSpec, plan, population, traffic
from labsim.manifest import check_pointers, read_manifest, schema

ARGS = ["--days", "1", "--mailboxes", "12", "--faults", "cert-expired", "--seed", "3"]


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "one"
    rc, stdout, err = run_cli(["generate", "--out", str(out), *ARGS])
    assert rc == 0, err
    assert "labsim generate:" in stdout and "messages" in stdout
    return out


def test_same_seed_same_corpus_for_any_jobs(corpus: Path, tmp_path: Path) -> None:
    rc, _, err = run_cli(["generate", "--out", str(tmp_path / "two"), *ARGS, "--jobs", "2"])
    assert rc == 0, err
    one, two = _tree(corpus), _tree(tmp_path / "two")
    assert sorted(one) == sorted(two)
    assert [k for k in one if one[k] != two[k]] == []


def test_manifest_counts_match_the_files(corpus: Path) -> None:
    manifest = read_manifest(corpus)
    jsonschema.validate(manifest, schema())
    summary_ids = [m["id"] for m in manifest["messages"]]
    assert manifest["counts"]["messages"] == len(summary_ids) == len(set(summary_ids)) > 50
    logs = {f["path"]: f for f in manifest["logs"]}
    total_sessions = 0
    for path in sorted(corpus.glob("*/TransportRoles/Logs/*/ProtocolLog/*/*.LOG")):
        rows = [next(csv.reader(io.StringIO(line))) for line in path.read_text(encoding="utf-8-sig").splitlines()
                if line and not line.startswith("#")]
        entry = logs[path.relative_to(corpus).as_posix()]
        assert entry["rows"] == len(rows)
        assert entry["sessions"] == len({r[2] for r in rows})
        total_sessions += entry["sessions"]
    assert manifest["counts"]["sessions"] == total_sessions  # no session id in two files of one log
    tracking = sum(1 for p in corpus.glob("*/TransportRoles/Logs/MessageTracking/*.LOG")
                   for line in p.read_text(encoding="utf-8-sig").splitlines() if line and not line.startswith("#"))
    assert tracking == sum(f["rows"] for f in manifest["logs"] if f["log_type"] == "Message Tracking Log")
    delivered = sum(1 for m in manifest["messages"] for r in m["recipients"] if r["fate"] == "delivered")
    assert delivered == len(list((corpus / "mailboxes").rglob("*.eml")))


def test_faults_are_windows_with_their_evidence(corpus: Path) -> None:
    manifest = read_manifest(corpus)
    (fault,) = manifest["faults"]  # cert-expired has one change
    assert fault["scenario"] == "cert-expired" and fault["cmdlet"] == "Set-LabCertificate"
    start, end = fault["window"]["start"], fault["window"]["end"]
    assert manifest["scenario"]["start"] <= start < end <= manifest["scenario"]["end"]
    assert fault["effects"] and fault["evidence"]
    for e in fault["effects"]:
        hop = next(m for m in manifest["messages"] if m["id"] == e["message"])["hops"][e["hop"]]
        assert start <= hop["time"] <= end and hop["event"] in ("DEFER", "FAIL", "SUBMITFAIL", "PENDING")
    outside = [h for m in manifest["messages"] for h in m["hops"]
               if h["event"] in ("DEFER", "FAIL", "PENDING") and not start <= h["time"] <= end]
    assert outside == []  # without the fault, the corpus's mail flows
    assert manifest["corpus"]["faults"] == ["cert-expired"] and manifest["corpus"]["shards"] == 24


def test_mail_queued_at_the_end_of_an_hour_is_delivered_in_the_next(corpus: Path) -> None:
    """Queues across hours: cert-expired's hour ends with mail deferred in its queues; the next hour's
    lab takes it up (engine.carry) and delivers it. Each such message is one manifest entry (one
    summary entry) with its DEFER in the fault hour, its DELIVER in the next, and fate delivered."""
    import json
    from datetime import datetime

    manifest = read_manifest(corpus)
    (fault,) = manifest["faults"]
    start, end = fault["window"]["start"], fault["window"]["end"]
    nxt = (datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(hours=1))
    assert end > nxt.strftime("%Y-%m-%dT%H")  # the fault hour's run went on past the hour's end
    carried = [m for m in manifest["messages"]
               if any(h["event"] == "DEFER" and start <= h["time"] <= end for h in m["hops"])
               and any(h["event"] == "DELIVER" and h["time"] > end for h in m["hops"])]
    assert len(carried) >= 2, [m["id"] for m in manifest["messages"] if m["fate"] != "delivered"]
    ids = [m["id"] for m in manifest["messages"]]
    summary = json.loads((corpus / "summary.json").read_text(encoding="utf-8"))
    for m in carried:
        assert ids.count(m["id"]) == 1 and [s["id"] for s in summary["messages"]].count(m["id"]) == 1
        assert m["fate"] == "delivered" and {r["fate"] for r in m["recipients"]} == {"delivered"}
        assert "PENDING" not in [h["event"] for h in m["hops"]]
        assert [h["time"] for h in m["hops"]] == sorted(h["time"] for h in m["hops"])
        for h in m["hops"]:
            if h["event"] == "DELIVER":
                assert h["time"].startswith(nxt.strftime("%Y-%m-%dT%H")) and h["evidence"]
                if h["server"] != "EXO":  # on-prem: the next hour's tracking log shows it
                    assert any("/MessageTracking/MSGTRK" in p["file"] and nxt.strftime("%Y%m%d%H-") in p["file"]
                               for p in h["evidence"])
        # one message: categorised once where it arrived (taking it up again writes no second AGENTINFO)
        agentinfo = [line for p in corpus.glob("*/TransportRoles/Logs/MessageTracking/*.LOG")
                     for line in p.read_text(encoding="utf-8-sig").splitlines()
                     if m["message_id"] in line and ",AGENTINFO," in line]
        assert len(agentinfo) == len({line.split(",")[3] for line in agentinfo})
    assert all(m["fate"] == "delivered" for m in manifest["messages"])  # nothing left behind at an hour's end


def test_every_pointer_lands_on_a_line_that_shows_it(corpus: Path) -> None:
    manifest = read_manifest(corpus)
    assert check_pointers(corpus, manifest) == []
    failed = [h for m in manifest["messages"] for h in m["hops"] if h["event"] in ("DEFER", "FAIL")]
    assert failed and all(h["evidence"] for h in failed)


def test_the_logs_pass_the_independent_checker(corpus: Path) -> None:
    tool = exlog_check()
    proc = subprocess.run([sys.executable, str(tool), str(corpus)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_hourly_files_and_event_log_renumbered(corpus: Path) -> None:
    names = [p.name for p in (corpus / "CMHYBD01/TransportRoles/Logs/Hub/ProtocolLog/SmtpSend").glob("*.LOG")]
    assert len({n[4:14] for n in names}) > 12  # one file per hour with traffic
    xml = (corpus / "CMHYBD01/EventLog/Application.xml").read_text(encoding="utf-8").splitlines()
    ids = [int(line.split("<EventRecordID>")[1].split("<")[0]) for line in xml]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


# --- the traffic plan (no lab run) ---------------------------------------------------------------------

def test_plan_spreads_faults_and_does_not_depend_on_anything_but_the_spec() -> None:
    spec = CorpusSpec(days=2, mailboxes=50, faults=("cert-expired", "cert-revoked", "dns-cache-stale-record"), seed=9)
    shards = plan(spec)
    assert len(shards) == 48 and plan(spec) == shards
    assert [s.index for s in shards if s.faults] == [8, 24, 40]
    assert len({s.seed for s in shards}) == 48
    assert all(b.start - a.start == timedelta(hours=1) for a, b in zip(shards, shards[1:]))


def test_traffic_has_the_four_directions_a_working_day_and_realistic_shapes() -> None:
    spec = CorpusSpec(days=1, mailboxes=300, seed=4)
    people = population(spec)
    realm = {p.address: p.realm for p in people}
    shards = plan(spec)
    per_hour = [traffic(s, people) for s in shards]
    msgs = [m for hour in per_hour for m in hour]
    directions = Counter((realm[m["from"]], realm[m["to"][0]]) for m in msgs)
    assert set(directions) == {("onprem", "exo"), ("exo", "onprem"), ("onprem", "internet"), ("internet", "onprem")}
    assert all(n > len(msgs) * 0.1 for n in directions.values()), directions
    counts = [len(h) for h in per_hour]  # UTC hours: the organisation's day (+05:30) peaks at 04-11 UTC
    assert max(counts[4:12]) > 5 * min(counts[19:23])
    assert Counter(len(m["to"]) for m in msgs)[1] > len(msgs) / 2 and max(len(m["to"]) for m in msgs) >= 4
    sizes = sorted(m["size"] for m in msgs)
    assert 10_000 < sizes[len(sizes) // 2] < 60_000 and sizes[-1] <= 10 * 1024 * 1024
    assert any(m["subject"].startswith("RE: ") for m in msgs) and any(m["subject"].startswith("FW: ") for m in msgs)
    weekend = plan(CorpusSpec(days=1, mailboxes=300, seed=4, start=shards[0].start + timedelta(days=5)))
    assert sum(len(traffic(s, people)) for s in weekend) < len(msgs) / 4  # a Saturday


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    rc, _, err = run_cli(["generate", "--out", str(tmp_path / "x"), "--faults", "no-such-fault"])
    assert rc == 2 and "no-such-fault" in err and err.count("\n") == 1
    rc, _, err = run_cli(["generate", "--out", str(tmp_path / "x"), "--days", "1", "--faults", "all"])
    assert rc == 2 and "give more --days" in err
    # a scenario on its own organisation cannot be scheduled into the default organisation's traffic
    rc, _, err = run_cli(["generate", "--out", str(tmp_path / "x"), "--faults", "org-two-cas-cdp-offline"])
    assert rc == 2 and "declares its own organisation" in err and err.count("\n") == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    rc, _, err = run_cli(["generate", "--out", str(tmp_path / "mine"), "--mailboxes", "2"])
    assert rc == 2 and "not written by labsim" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_shards_on_a_local_dask_cluster_give_the_same_corpus(corpus: Path, tmp_path: Path) -> None:
    """`--executor dask://HOST:PORT`: a Dask cluster on loopback (scheduler, nannies and workers on
    127.0.0.1, no dashboard) runs the shards; the corpus is byte-identical to the one of one process."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        rc, _, err = run_cli(["generate", "--out", str(tmp_path / "dask"), *ARGS,
                              "--executor", "dask://" + address.removeprefix("tcp://")])
    assert rc == 0, err
    one, dask = _tree(corpus), _tree(tmp_path / "dask")
    assert sorted(one) == sorted(dask) and [k for k in one if one[k] != dask[k]] == []


def test_executor_must_be_a_dask_address(tmp_path: Path) -> None:
    rc, _, err = run_cli(["generate", "--out", str(tmp_path / "x"), "--executor", "spark://h:1"])
    assert rc == 2 and "is not dask://HOST:PORT" in err


def test_merge_stops_when_two_shards_share_an_id(tmp_path: Path) -> None:
    import json

    from labsim._corpus_merge import merge
    from labsim.errors import LabRuntimeError

    for name, mid in (("shard-00000", "<a@x>"), ("shard-00001", "<b@x>"), ("shard-00002", "<a@x>")):
        (tmp_path / name).mkdir()
        hops = [{"event": "RECEIVE", "server": "CMHYBD01", "internal_id": name[-1]}]
        (tmp_path / name / "manifest.json").write_text(json.dumps({"messages": [
            {"message_id": mid, "hops": hops, "internal_ids": {}}]}))
    shards = [tmp_path / f"shard-0000{i}" for i in range(3)]
    with pytest.raises(LabRuntimeError, match="<a@x> appears in shard-00000 and shard-00002"):
        merge(shards, tmp_path / "out")


def test_merge_stops_when_a_small_counter_repeats_across_shards(tmp_path: Path) -> None:
    """A Mailbox Transport Submission mail item id (a tracking row's internal-message-id) is an id too."""
    import json

    from labsim._corpus_merge import merge
    from labsim.errors import LabRuntimeError

    for name, mid in (("shard-00000", "<a@x>"), ("shard-00001", "<b@x>")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps({"messages": [
            {"message_id": mid, "hops": [], "internal_ids": {"CMHYBD01": ["4242"]}}]}))
    with pytest.raises(LabRuntimeError, match="id CMHYBD01/4242 appears in shard-00000 and shard-00001"):
        merge([tmp_path / "shard-00000", tmp_path / "shard-00001"], tmp_path / "out")


def _summary(folder: Path, messages: list[dict[str, object]]) -> None:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"start": "s", "end": "e", "messages": messages}))


def _entry(key: str, hops: list[str], *, delivered: tuple[str, ...] = (), failed: tuple[str, ...] = (),
           pending: tuple[str, ...] = (), carried: bool = False) -> dict[str, object]:
    m: dict[str, object] = {
        "id": key, "message_id": f"<{key}@x>", "from": "a@x", "to": ["b@y", "c@y"], "subject": "s",
        "injected": "t0", "fate": "?", "delivered": [{"recipient": r} for r in delivered],
        "failed": [{"recipient": r} for r in failed], "pending": [{"recipient": r} for r in pending],
        "hops": [{"time": t, "event": e} for t, e in (h.split(" ") for h in hops)], "notifications": []}
    if carried:
        m["carried_in"] = [{"time": hops[0].split(" ")[0] if hops else "", "server": "CMHYBD01", "internal_id": "1"}]
    return m


def test_a_message_carried_over_two_hours_is_joined_into_one(tmp_path: Path) -> None:
    """The merge's join (labsim._corpus_merge.join_carried): hops and outcomes of every hour in the
    entry of the hour that sent it, pending as the last hour left it, the later hours no longer list it."""
    import json

    from labsim._corpus_merge import join_carried

    shards = [tmp_path / f"shard-0000{i}" for i in range(3)]
    _summary(shards[0], [_entry("m1", ["10:00 RECEIVE", "10:00 DELIVER", "10:01 DEFER"], delivered=("b@y",),
                                pending=("c@y",)), _entry("m2", ["10:02 RECEIVE"], delivered=("b@y",))])
    _summary(shards[1], [_entry("n1", ["11:05 RECEIVE"], delivered=("b@y",)),
                         _entry("m1", ["11:30 DEFER"], pending=("c@y",), carried=True)])
    _summary(shards[2], [_entry("m1", ["12:30 FAIL"], failed=("c@y",), carried=True)])
    join_carried(shards)
    first, second, third = (json.loads((s / "summary.json").read_text())["messages"] for s in shards)
    m1 = first[0]
    assert [h["time"] for h in m1["hops"]] == ["10:00", "10:00", "10:01", "11:30", "12:30"]
    assert m1["pending"] == [] and [d["recipient"] for d in m1["delivered"]] == ["b@y"]
    assert [f["recipient"] for f in m1["failed"]] == ["c@y"] and m1["fate"] == "partial"
    assert "carried_in" not in m1 and first[1]["id"] == "m2"
    assert [m["id"] for m in second] == ["n1"] and third == []

    _summary(shards[1], [_entry("m9", ["11:30 DELIVER"], delivered=("b@y",), carried=True)])
    from labsim.errors import LabRuntimeError

    with pytest.raises(LabRuntimeError, match="m9 was carried into an hour, but no earlier hour sent it"):
        join_carried(shards)


def test_a_carried_message_may_keep_its_ids_in_the_next_hour_and_nothing_else(tmp_path: Path) -> None:
    """The disjoint-ids check lets a message carried into the next hour keep its Message-ID and
    InternalId there (same scenario key, marked carried in), and still stops any other repeat."""
    import json

    from labsim._corpus_merge import _check_disjoint
    from labsim.errors import LabRuntimeError

    hop = [{"event": "RECEIVE", "server": "CMHYBD01", "internal_id": "77"}]
    shards = [tmp_path / "shard-00000", tmp_path / "shard-00001"]
    _summary(shards[0], [_entry("m1", [], pending=("b@y",))])
    _summary(shards[1], [_entry("m1", [], delivered=("b@y",), carried=True)])
    for shard in shards:
        (shard / "manifest.json").write_text(json.dumps({"messages": [
            {"id": "m1", "message_id": "<m1@x>", "hops": hop, "internal_ids": {"CMHYBD01": ["77"]}}]}))
    _check_disjoint(shards)
    _summary(shards[1], [_entry("m2", [], delivered=("b@y",), carried=True)])
    (shards[1] / "manifest.json").write_text(json.dumps({"messages": [
        {"id": "m2", "message_id": "<m2@x>", "hops": hop, "internal_ids": {}}]}))
    with pytest.raises(LabRuntimeError, match="id CMHYBD01/77 appears in shard-00000 and shard-00001"):
        _check_disjoint(shards)


def test_small_counters_draw_from_the_shards_own_block() -> None:
    """In a corpus hour (labsim.ids.ID_SPACE) a small counter's ids lie in that hour's block, so the
    hours never repeat one and the ids grow with time; outside a corpus the counter is as it was."""
    from labsim.ids import ID_SPACE, Counter

    plain = Counter(7, "CMHYBD01/mts", 100, 99999).upcoming
    assert 100 <= plain <= 99999
    blocks = []
    for index in (0, 1, 2, 500):
        token = ID_SPACE.set(index)
        try:
            c = Counter(7, "CMHYBD01/mts", 100, 99999)
            wide = Counter(7, "CMHYBD01", 10**13, 10**14 - 10**9).upcoming
        finally:
            ID_SPACE.reset(token)
        first = c.upcoming
        for _ in range(40_000):  # an hour's worth and far more: still inside the block
            last = c.next()
        lo, hi = 100 + index * 99900, 100 + (index + 1) * 99900
        assert lo <= first and last < hi
        assert 10**13 <= wide <= 10**14  # the wide counters keep their random 14-digit start
        blocks.append((first, last))
    assert all(a[1] < b[0] for a, b in zip(blocks, blocks[1:]))
    assert Counter(7, "CMHYBD01/mts", 100, 99999).upcoming == plain


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal (here a pty that reports no size, as some do) a bar counts the hours with rate and ETA."""
    import os
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: labsim generate with the pty as its terminal
        os.execv(sys.executable, [sys.executable, "-m", "labsim.cli", "generate", "--out", str(tmp_path / "c"),
                                  "--days", "1", "--mailboxes", "2"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert "labsim generate: 100%" in text and "24/24" in text and "hour/s" in text


@pytest.mark.parametrize("indent,sort_keys,ensure_ascii", [(2, False, True), (1, True, False)])
def test_streamed_json_is_the_same_bytes_as_one_dump(tmp_path: Path, indent: int, sort_keys: bool,
                                                     ensure_ascii: bool) -> None:
    import json

    from labsim._corpus_merge import write_streamed

    for items in ([], [{"x": [1, {"y": "é"}]}, {"b": []}]):
        head = {"start": "s", "messages": None, "z": {"k": [1, 2]}}
        write_streamed(tmp_path / "a.json", head, "messages", iter(items), indent=indent, sort_keys=sort_keys,
                       ensure_ascii=ensure_ascii)
        want = json.dumps({**head, "messages": items}, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
        assert (tmp_path / "a.json").read_text(encoding="utf-8") == want + "\n"


def test_merge_refuses_a_file_it_does_not_know(tmp_path: Path) -> None:
    from labsim._corpus_merge import merge
    from labsim.errors import LabRuntimeError

    (tmp_path / "shard-00000" / "CMHYBD01" / "EventLog").mkdir(parents=True)
    (tmp_path / "shard-00000" / "CMHYBD01" / "EventLog" / "Security.evtx").write_bytes(b"x")
    with pytest.raises(LabRuntimeError, match="CMHYBD01/EventLog/Security.evtx, which the corpus merge does not know"):
        merge([tmp_path / "shard-00000"], tmp_path / "out")


@pytest.fixture(scope="module")
def all_faults(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "all"
    rc, _, err = run_cli(["generate", "--out", str(out), "--days", "2", "--mailboxes", "3", "--faults", "all",
                          "--seed", "3", "--jobs", "2"])
    assert rc == 0, err
    return out


def test_every_fault_of_the_catalog_points_at_lines_that_show_it(all_faults: Path) -> None:
    """Each change of each catalog scenario, scheduled into a corpus, has evidence in its window, and
    every pointer lands on a line that shows what it says (the changes that fail nothing included)."""
    manifest = read_manifest(all_faults)
    jsonschema.validate(manifest, schema())
    assert len({f["scenario"] for f in manifest["faults"]}) == len(manifest["corpus"]["faults"]) > 20
    # A read-only check (Test-EdgeSynchronization, ...) writes no log of its own, on a real server as in
    # the lab: it has evidence only when something was logged after it in its window.
    missing = [(f["scenario"], f["cmdlet"]) for f in manifest["faults"] if not f["evidence"]]
    assert [m for m in missing if not m[1].lower().startswith(("test-", "get-", "validate-"))] == []
    assert len(missing) <= 2, missing
    assert check_pointers(all_faults, manifest) == []


def test_a_slow_link_shows_in_the_protocol_log_timestamps(all_faults: Path) -> None:
    """net-slow-link fails nothing: its evidence is the session lines that came long after the one before."""
    manifest = read_manifest(all_faults)
    slow = [f for f in manifest["faults"] if f["scenario"] == "net-slow-link"]
    assert slow
    for fault in slow:
        logs = [p for p in fault["evidence"] if "/ProtocolLog/" in p["file"]]
        assert logs
        for p in logs:
            rows = (all_faults / p["file"]).read_text(encoding="utf-8-sig").splitlines()
            for n in p["lines"]:
                this = next(csv.reader([rows[n - 1]]))
                before = next(next(csv.reader([r])) for r in reversed(rows[:n - 1])
                              if not r.startswith("#") and next(csv.reader([r]))[2] == this[2])
                assert _seconds(before[0], this[0]) >= 0.5, (p["file"], n)
                assert fault["window"]["start"] <= this[0] <= fault["window"]["end"]


def test_a_stopped_service_points_at_the_service_control_manager_event(all_faults: Path) -> None:
    manifest = read_manifest(all_faults)
    (stop,) = [f for f in manifest["faults"] if f["scenario"] == "svc-submission-stopped" and f["cmdlet"] == "Stop-Service"]
    (event,) = [p for p in stop["evidence"] if p["file"].endswith("EventLog/System.xml")]
    line = (all_faults / event["file"]).read_text(encoding="utf-8").splitlines()[event["lines"][0] - 1]
    assert ">7036</EventID>" in line and "Microsoft Exchange Mailbox Transport Submission" in line
    assert "<Data Name='param2'>stopped</Data>" in line


def _seconds(a: str, b: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(b.replace("Z", "+00:00")) - datetime.fromisoformat(a.replace("Z", "+00:00"))
            ).total_seconds()


def test_the_evidence_index_lives_in_a_private_temp_file_removed_after(tmp_path: Path) -> None:
    """labsim._evidence_index: on disk while the manifest is written, gone afterwards, nothing in the output."""
    import tempfile

    from labsim._evidence_index import EvidenceIndex, Row

    with EvidenceIndex() as idx:
        folder = Path(idx._dir)
        assert folder.is_dir() and folder.parent == Path(tempfile.gettempdir())
        idx.add_tracking("<a@x>", Row("f.LOG", 3, "", {"event-id": "RECEIVE"}))
        idx.add_tracking("<a@x>", Row("f.LOG", 9, "", {"event-id": "DELIVER"}))
        idx.finish()
        assert [r.line for r in idx.tracking("<a@x>")] == [3, 9] and idx.tracking("<b@x>") == []
    assert not folder.exists()


def test_a_shard_never_deletes_a_carry_folder_labsim_did_not_write(tmp_path):
    """run_shard replaces only its own earlier hand-over (handover.json); a folder of the same name
    that labsim did not write is refused with one clear error and left as it was."""
    from labsim.corpus import carry_folder, run_shard
    from labsim.engine.outdir import OutputFolderError

    shard = plan(CorpusSpec(days=1, mailboxes=12, seed=4))[0]
    out = tmp_path / "shard"
    foreign = carry_folder(out)
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputFolderError, match="not a hand-over labsim wrote"):
        run_shard(shard, str(out))
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "mine"
