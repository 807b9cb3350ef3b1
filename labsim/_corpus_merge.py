"""Merging a corpus's shard folders into one output tree, as the servers would have written it.

Each shard is a complete run of one hour. The merge streams: every log is a k-way merge of the
shards' rows by (timestamp, shard), written back through logs.logfile.LogStream (hourly files,
10 MB rollover, the same header), flushed behind a watermark so memory holds a few thousand rows
whatever the corpus's size. The event logs are merged by time and their EventRecordIDs (and the
text export's Event[n]) renumbered from the first shard's first record; the mailboxes' messages
are renumbered in order; the queue history is merged by time; EXO's message trace and summary.json
are concatenated, a message carried from one hour into the next (engine.carry) joined into one entry
first; queues.json is the last shard's (the queues as the lab stood at the end).
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from .logs.jsonfast import dumps_indented
from .logs.logfile import LogStream
from .logs.routing_log import merge_routing_logs

_LOG_NAME = re.compile(r"(.*?)(\d{10}|\d{8})-(\d+)\.LOG")  # hourly logs; daily ones (the agent log)
_RECORD = re.compile(r"<EventRecordID>\d+</EventRecordID>")
_CREATED = re.compile(r"<TimeCreated SystemTime='([^']*)'/>")
WATERMARK_ROWS = 20_000


# What the merge knows how to merge (relative to a shard). A file of any other kind (a log a later
# labsim writes) stops the merge with its name rather than being left out of the corpus.
MERGED = (re.compile(r"[^/]+/TransportRoles/Logs/.+/[A-Z]+\d{10}-\d+\.LOG"),
          re.compile(r"[^/]+/TransportRoles/Logs/.+/AgentLog\d{8}-\d+\.LOG"),
          re.compile(r"[^/]+/EventLog/(Application|System)\.(xml|txt|evtx)"), re.compile(r"mailboxes/[^/]+/[^/]+/\d+\.eml"),
          re.compile(r"queue-history\.jsonl|queues\.json|summary\.json|manifest\.json|\.labsim-output"),
          re.compile(r"EXO/MessageTrace/(trace\.json|Get-MessageTrace\.csv|Get-MessageTraceDetail\.csv)"),
          re.compile(r"EXO/MessageTrace/Get-MessageTrace(Detail)?V2\.csv"),  # evidence2: message trace V2
          re.compile(r"[^/]+/TransportRoles/Logs/(Hub|FrontEnd|Mailbox|Edge)/Routing/(H|F|MS|MD|)RoutingConfig#\d+@[\d_]+ [\d_]+\.xml"))  # routing4: per-process files, not rows (logs.routing_log.merge_routing_logs)


def merge(shards: list[Path], out: Path) -> None:
    """Merge `shards` (in time order) into the empty folder `out`; no id a server gave a message may
    appear in two shards."""
    from .errors import LabRuntimeError

    for shard in shards:
        for path in shard.rglob("*"):
            rel = path.relative_to(shard).as_posix()
            if path.is_file() and not any(p.fullmatch(rel) for p in MERGED):
                raise LabRuntimeError(f"corpus: {shard.name} wrote {rel}, which the corpus merge does not know "
                                      "how to merge (labsim/_corpus_merge.py MERGED)")
    _check_disjoint(shards)  # (every server's ids: the organisation's, EXO's, the Internet hosts')
    join_carried(shards)  # a message carried across hours is one message (engine.carry)
    _merge_logs(shards, out)
    _merge_event_logs(shards, out)
    _merge_mailboxes(shards, out)
    _merge_jsonl(shards, out, "queue-history.jsonl")
    _merge_trace(shards, out)
    _merge_summary(shards, out)
    merge_routing_logs([(s, *_shard_span(s)) for s in shards], out)  # routing table logs (logs.routing_log)
    last = shards[-1] / "queues.json"
    if last.is_file():
        (out / "queues.json").write_bytes(last.read_bytes())


def _carried_keys(shard: Path) -> set[str]:
    """The scenario keys of the messages `shard` took up from an earlier hour's queues."""
    path = shard / "summary.json"
    if not path.is_file():
        return set()
    return {m["id"] for m in json.loads(path.read_text(encoding="utf-8"))["messages"] if m.get("carried_in")}


def _check_disjoint(shards: list[Path]) -> None:
    """Shards draw their ids from their own seeds: a Message-ID, or an id a server gave a message (an
    InternalId in its 250 2.6.0 reply, a tracking row's internal-message-id: the Hub's, the Mailbox
    Transport Submission's mail item id, an Internet host's), in two shards would make the merged
    tree lie, so it stops the merge. The wide counters start at random (14 digits: never seen to
    meet); the small ones draw from their shard's own block (labsim.ids.ID_SPACE), so they cannot.
    The one exception is a message carried from one hour into the next (engine.carry): the same
    message, so the same Message-ID and InternalIds, under the same scenario key."""
    import sqlite3
    import tempfile

    from .errors import LabRuntimeError

    with tempfile.TemporaryDirectory(prefix="labsim-ids-") as tmp:  # (on disk: flat memory for any corpus)
        db = sqlite3.connect(Path(tmp) / "ids.sqlite", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, shard TEXT, key TEXT)")
            for shard in shards:
                manifest = json.loads((shard / "manifest.json").read_text(encoding="utf-8"))
                carried = _carried_keys(shard)
                db.execute("BEGIN")
                for m in manifest["messages"]:
                    ids = [m["message_id"]] + [f"{h['server']}/{h['internal_id']}" for h in m["hops"]
                                               if h["event"] == "RECEIVE" and h["internal_id"]]
                    ids += [f"{server}/{iid}" for server, found in m["internal_ids"].items() for iid in found]
                    key = m.get("id")
                    db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                                   [(i, shard.name, key) for i in ids])
                    for i in ids:
                        first, first_key = db.execute("SELECT shard, key FROM seen WHERE id = ?", (i,)).fetchone()
                        if first != shard.name and not (key in carried and first_key == key):
                            raise LabRuntimeError(f"corpus: id {i} appears in {first} and {shard.name}; "
                                                  "change --seed")
                db.execute("COMMIT")
        finally:
            db.close()


# --- messages carried across hours ----------------------------------------------------------------------

def join_carried(shards: list[Path]) -> None:
    """Make a message carried from one hour into later ones one message: each shard's summary.json
    is rewritten (in its work folder) so that the message's entry in the hour it was sent holds its
    hops of every hour, its deliveries and failures of every hour, and the recipients still pending
    at the end of the last hour that had it (so its fate is that hour's), and the later hours no
    longer list it. The shards are walked from the last: memory holds the carried messages only."""
    from .engine.ledger import Fate
    from .errors import LabRuntimeError

    later: dict[str, dict[str, Any]] = {}  # key -> what the later hours did with it (already joined)
    for shard in reversed(shards):
        path = shard / "summary.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if not later and not any(m.get("carried_in") for m in data["messages"]):
            continue
        kept = []
        for m in data["messages"]:
            after = later.pop(m["id"], None)
            if after is not None:
                m = {**m, "hops": m["hops"] + after["hops"], "delivered": m["delivered"] + after["delivered"],
                     "failed": m["failed"] + after["failed"], "pending": after["pending"],
                     "notifications": m["notifications"] + after["notifications"]}
                fate = Fate(m["id"], m["message_id"], m["from"], m["to"], m["subject"], m["injected"],
                            delivered=m["delivered"], failed=m["failed"], pending=m["pending"])
                m["fate"] = fate.fate
            if m.pop("carried_in", None):
                later[m["id"]] = m  # (itself the continuation of an earlier hour's message)
            else:
                kept.append(m)
        data["messages"] = kept
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if later:
        raise LabRuntimeError(f"corpus: {sorted(later)[0]} was carried into an hour, but no earlier hour sent it")


# --- logs --------------------------------------------------------------------------------------------

def _log_groups(shards: list[Path]) -> dict[tuple[str, str], list[list[Path]]]:
    """(folder relative to a shard, prefix) -> per shard, its files of that log in order."""
    groups: dict[tuple[str, str], list[list[Path]]] = {}
    for k, shard in enumerate(shards):
        for path in sorted(shard.glob("*/TransportRoles/Logs/**/*.LOG")):
            m = _LOG_NAME.fullmatch(path.name)
            if not m:
                continue
            key = (path.parent.relative_to(shard).as_posix(), m.group(1))
            per_shard = groups.setdefault(key, [[] for _ in shards])
            per_shard[k].append(path)
    for per_shard in groups.values():
        for files in per_shard:
            files.sort(key=lambda p: (_LOG_NAME.fullmatch(p.name).group(2), int(_LOG_NAME.fullmatch(p.name).group(3))))  # type: ignore[union-attr]
    return groups


def _rows(files: list[Path], shard: int) -> Iterator[tuple[str, int, int, str]]:
    """(timestamp, shard, sequence, the row after its timestamp) of a shard's files of one log."""
    seq = 0
    for path in files:
        with path.open("r", encoding="utf-8-sig", newline="") as f:
            for line in f:
                if line.startswith("#"):
                    continue
                line = line.rstrip("\r\n")
                if not line:
                    continue
                ts, _, rest = line.partition(",")
                seq += 1
                yield ts, shard, seq, rest


def _header(path: Path) -> tuple[str, str, list[str]]:
    version, log_type, fields = "", "", []
    with path.open("r", encoding="utf-8-sig", newline="") as f:
        for line in f:
            if not line.startswith("#"):
                break
            line = line.rstrip("\r\n")
            if line.startswith("#Version: "):
                version = line[10:]
            elif line.startswith("#Log-type: "):
                log_type = line[11:]
            elif line.startswith("#Fields: "):
                fields = line[9:].split(",")
    return version, log_type, fields


def _merge_logs(shards: list[Path], out: Path) -> None:
    for (folder, prefix), per_shard in sorted(_log_groups(shards).items()):
        first = next(f[0] for f in per_shard if f)
        version, log_type, fields = _header(first)
        daily = len(_LOG_NAME.fullmatch(first.name).group(2)) == 8  # type: ignore[union-attr]
        stream = LogStream(out / folder, prefix, log_type, fields, version, daily=daily)
        stream.folder.mkdir(parents=True, exist_ok=True)
        added = 0
        last_when: tuple[str, datetime] | None = None
        for ts, shard, seq, rest in heapq.merge(*(_rows(files, k) for k, files in enumerate(per_shard))):
            if added >= WATERMARK_ROWS:
                stream.flush(before=ts)  # every row still to come sorts at or after ts
                added = 0
            if last_when is None or last_when[0] != ts:
                last_when = (ts, datetime.fromisoformat(ts.replace("Z", "+00:00")))
            stream.add_joined(last_when[1], (shard, seq), rest)
            added += 1
        stream.flush()


# --- event logs ----------------------------------------------------------------------------------------

def _txt_blocks(path: Path) -> list[str]:
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^(?=Event\[\d+\]:)", text)
    return [p for p in parts if p.startswith("Event[")]


def _merge_event_logs(shards: list[Path], out: Path) -> None:
    for channel in ("Application", "System"):
        _merge_event_log(shards, out, channel)


def _merge_event_log(shards: list[Path], out: Path, channel: str) -> None:
    """One event log of every server: records by time, renumbered; the .evtx written anew from them."""
    from .logs.evtx import EvtxLog

    servers = sorted({p.parent.parent.name for s in shards for p in s.glob(f"*/EventLog/{channel}.xml")})
    for server in servers:
        events: list[tuple[str, int, int, str, str]] = []  # (time, shard, n, xml line, txt block)
        base: int | None = None
        for k, shard in enumerate(shards):
            xml = shard / server / "EventLog" / f"{channel}.xml"
            if not xml.is_file():
                continue
            lines = [x for x in xml.read_text(encoding="utf-8").splitlines() if x.startswith("<Event")]
            blocks = _txt_blocks(shard / server / "EventLog" / f"{channel}.txt")
            if len(blocks) != len(lines):
                blocks = [""] * len(lines)
            for n, (line, block) in enumerate(zip(lines, blocks)):
                m = _CREATED.search(line)
                rec = re.search(r"<EventRecordID>(\d+)</EventRecordID>", line)
                if base is None and rec:
                    base = int(rec.group(1))
                events.append((m.group(1) if m else "", k, n, line, block))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        folder = out / server / "EventLog"
        folder.mkdir(parents=True, exist_ok=True)
        start = base or 1
        evtx = EvtxLog()
        with (folder / f"{channel}.xml").open("w", encoding="utf-8", newline="") as xml_out, \
                (folder / f"{channel}.txt").open("w", encoding="utf-8", newline="") as txt_out:
            for i, (_, _, _, line, block) in enumerate(events):
                renumbered = _RECORD.sub(f"<EventRecordID>{start + i}</EventRecordID>", line)
                xml_out.write(renumbered + "\n")
                txt_out.write(re.sub(r"^Event\[\d+\]:", f"Event[{i}]:", block))
                evtx.add(renumbered)
        (folder / f"{channel}.evtx").write_bytes(evtx.to_bytes())


# --- mailboxes, queue history, the EXO trace, the summary ------------------------------------------------

def _merge_mailboxes(shards: list[Path], out: Path) -> None:
    counts: dict[Path, int] = {}
    for shard in shards:
        root = shard / "mailboxes"
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*/*/*.eml")):
            rel = path.parent.relative_to(shard)
            n = counts[rel] = counts.get(rel, 0) + 1
            target = out / rel / f"{n:04d}.eml"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)


def _jsonl(path: Path, shard: int) -> Iterator[tuple[str, int, int, str]]:
    if not path.is_file():
        return
    with path.open("r", encoding="utf-8") as f:
        for n, line in enumerate(f):
            if line.strip():
                yield json.loads(line).get("Time", ""), shard, n, line


def _merge_jsonl(shards: list[Path], out: Path, name: str) -> None:
    with (out / name).open("w", encoding="utf-8", newline="") as f:
        for _, _, _, line in heapq.merge(*(_jsonl(s / name, k) for k, s in enumerate(shards))):
            f.write(line if line.endswith("\n") else line + "\n")


_ITEMS = "\0labsim-streamed-items\0"


def write_streamed(path: Path, head: dict[str, Any], key: str, items: Iterator[Any], *, indent: int,
                   sort_keys: bool = False, ensure_ascii: bool = True, encoded: bool = False) -> None:
    """Write `head` as JSON with `head[key]` the array of `items`, streamed one item at a time (the
    same bytes json.dumps(indent=indent) gives for the whole; memory holds one item). `encoded`:
    the items are texts already, each `dumps_indented(item, indent, ..., level=2)`."""
    text = json.dumps({**head, key: _ITEMS}, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
    before, after = text.split(json.dumps(_ITEMS))
    pad = " " * indent * 2
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(before)
        first = True
        for item in items:
            f.write(("[\n" if first else ",\n") + pad + (item if encoded else dumps_indented(
                item, indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii, level=2)))
            first = False
        f.write("[]" if first else "\n" + " " * indent + "]")
        f.write(after + "\n")


def _shard_items(paths: list[Path], key: str) -> Iterator[Any]:
    for path in paths:
        if path.is_file():
            yield from json.loads(path.read_text(encoding="utf-8"))[key]


def _merge_trace(shards: list[Path], out: Path) -> None:
    folder = out / "EXO" / "MessageTrace"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [s / "EXO" / "MessageTrace" / "trace.json" for s in shards]
    head: dict[str, Any] = {}
    for path in paths:  # the first pass keeps only the head
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            data.pop("messages")
            head = data if not head else {**head, "start": min(head["start"], data["start"]),
                                          "end": max(head["end"], data["end"])}
    write_streamed(folder / "trace.json", head, "messages", _shard_items(paths, "messages"), indent=2)
    for name in ("Get-MessageTrace.csv", "Get-MessageTraceDetail.csv",
                 "Get-MessageTraceV2.csv", "Get-MessageTraceDetailV2.csv"):  # V2: no Index column
        with (folder / name).open("w", encoding="utf-8", newline="") as f:
            header_written = False
            index = 0
            for shard in shards:
                path = shard / "EXO" / "MessageTrace" / name
                if not path.is_file():
                    continue
                lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
                if not lines:
                    continue
                if not header_written:
                    f.write(lines[0])
                    header_written = True
                has_index = lines[0].rstrip().endswith('"Index"')
                for line in lines[1:]:
                    if has_index:
                        line = re.sub(r'"\d+"(\r?\n)$', f'"{index}"\\1', line)
                    index += 1
                    f.write(line)


def _merge_summary(shards: list[Path], out: Path) -> None:
    """summary.json: the messages streamed shard after shard; the rest (small) merged in memory."""
    paths = [s / "summary.json" for s in shards]
    head: dict[str, Any] = {}
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["messages"] = None  # (keeps the key's place)
        if not head:
            head = data
            continue
        head["start"] = min(head["start"], data["start"])
        head["end"] = max(head["end"], data["end"])
        for key in ("internal_errors", "events"):
            head[key] = head.get(key, []) + data.get(key, [])
        head["queues"] = data.get("queues", [])
        head["services"] = data.get("services", head.get("services"))
    write_streamed(out / "summary.json", head, "messages", _shard_items(paths, "messages"), indent=2)


def _shard_span(shard: Path) -> tuple[datetime, datetime]:
    """A shard's start and end (UTC, naive), from the head of its summary.json."""
    with open(shard / "summary.json", encoding="utf-8") as fh:
        head = fh.read(200)
    start, end = (datetime.fromisoformat(re.search(rf'"{k}": "([^"]+)"', head).group(1).replace("Z", ""))  # type: ignore[union-attr]
                  for k in ("start", "end"))
    return start, end
