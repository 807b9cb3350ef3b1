"""manifest.json written a message at a time (labsim.manifest): the bytes of the whole.

write_manifest reads summary.json a message at a time, spools each message's entry and keeps only
the failed hops for the faults. Users rely on the file being exactly what building the whole
manifest in memory and json.dumps gives (the byte-identical trees of a seed, every pointer): the
oracle here is that plain way, summary.json read whole and every message kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import labsim
from labsim import manifest as mf
from labsim.scenario.loader import load_scenario


def _whole(out: Path, loaded: Any, seed: int, outcomes: Any) -> str:
    """The manifest built whole, as labsim wrote it before it streamed."""
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    idx = mf._index(out)
    try:
        messages = [mf._message(idx, m) for m in summary["messages"]]
        scn = loaded.scenario
        data = {
            "schema": "labsim-manifest", "schema_version": mf.SCHEMA_VERSION,
            "scenario": {"id": scn.id, "title": scn.title, "file": loaded.path.name, "seed": seed,
                         "start": summary["start"], "end": summary["end"]},
            "expectations": None if outcomes is None else outcomes,
            "faults": mf._faults(loaded, idx, messages), "messages": messages, "queues": summary.get("queues", []),
            "events": mf._events(idx), "logs": sorted(idx.files, key=lambda f: f["path"]),
            "counts": {"messages": len(messages), "faults": len(scn.change), "sessions": idx.session_count,
                       "log_rows": sum(f["rows"] for f in idx.files)},
        }
    finally:
        idx.db.close()
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# failed, deferred and still-queued hops (faults with effects), several messages and faults
@pytest.mark.parametrize("sid", ["org-two-sites-branch-edge-down", "cert-revoked", "hybrid-baseline"])
def test_the_streamed_manifest_is_the_whole_one_byte_for_byte(tmp_path: Path, sid: str) -> None:
    result = labsim.run(sid, out=tmp_path / sid)
    written = (result.out / mf.MANIFEST_FILE).read_text(encoding="utf-8")
    loaded = load_scenario(sid)
    expectations = json.loads(written)["expectations"]
    assert written == _whole(result.out, loaded, result.seed, expectations)
    assert json.loads(written) == mf.build_manifest(result.out, loaded, seed=result.seed, outcomes=None) | {
        "expectations": expectations}
    assert list(mf.iter_messages(result.out)) == json.loads(written)["messages"]
    if sid != "hybrid-baseline":
        assert any(f["effects"] for f in json.loads(written)["faults"])  # the failed hops reached the faults


def test_summary_messages_are_read_one_at_a_time_as_json_reads_them(tmp_path: Path) -> None:
    result = labsim.run("org-two-sites-branch-edge-down", out=tmp_path / "o")
    path = result.out / "summary.json"
    whole = json.loads(path.read_text(encoding="utf-8"))
    assert list(mf._summary_messages(path)) == whole["messages"]
    assert mf._summary_head(path, "start", "end", "queues") == {k: whole[k] for k in ("start", "end", "queues")}


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf", b"\xe2\x82", b"\xac", b"#x", b"\xff"]),
                    max_size=12).map(b"".join))
def test_log_lines_are_read_one_at_a_time_as_the_whole_file_reads(tmp_path: Path, raw: bytes) -> None:
    """The index reads each log a line at a time: the same lines, numbered alike, as reading the
    whole file (CRLF or LF, the BOM dropped, bad UTF-8 replaced) gives."""
    path = tmp_path / "x.LOG"
    path.write_bytes(raw)
    whole, read = mf._lines(path), list(mf._iter_lines(path))
    while whole and whole[-1] == "":  # an empty last line (after a final LF), which no index counts
        whole.pop()
    while read and read[-1] == "":
        read.pop()
    assert read == whole
