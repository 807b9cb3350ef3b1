"""The manifest's index of evidence lines, on disk: a private SQLite file, so memory stays flat
whatever the size of the output folder (a month-scale corpus indexes millions of rows).

labsim.manifest reads every log back once and files here what can be evidence: each protocol log
session (a *part*: a session cut by an hourly or size rollover has one part per file) with only its
lines that can be evidence; the `250 2.6.0` replies by Message-ID and InternalId; every message
tracking row, event and message trace row; the queue history's last error per message. Building a
session needs only its own file in memory; the rest is INSERTs. Lookups are indexed queries, and
every list comes back in the order the files were read (rowid), so the manifest's bytes do not
depend on how SQLite plans a query.

The file lives in a temporary folder of its own (tempfile), is opened by this process only, and is
removed on close; nothing is written into the output folder.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Self

CACHE_KIB = 2 * 1024  # SQLite's page cache (and its sorter's memory when the indexes are made): the index's share of
# memory, whatever its size (16 MiB cost 15 MB more RSS at 5,000 messages and saved ~10 % of the manifest's CPU)
SEND_CANDIDATES = 64  # the latest-ending send sessions a deferral's session is looked for among
SESSIONS_KEPT = 256  # parts kept built after the index is finished (a part is read for every message it carried)
BATCH = 2048  # rows of a table written to SQLite at once
_US = "\x1f"  # (unit separator) between a row's values in the index


@dataclass
class Session:
    """A protocol log session (one part of it: its lines in one file) and only its lines that can be
    evidence (the `250 2.6.0` replies, the lines with a 4xx/5xx status, the ones that say something
    failed, its first and last line)."""

    server: str
    log: str  # Service/Kind, e.g. FrontEnd/SmtpReceive
    session_id: str
    connector: str
    file: str
    first: str = ""  # its first and last timestamps
    last: str = ""
    last_line: int = 0
    lines: list[int] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    slow: list[int] = field(default_factory=list)  # lines that came long after the one before
    part: int = 0  # its row in the index


@dataclass
class Row:
    file: str
    line: int
    text: str
    values: dict[str, str]


# table line: the parts' kept lines for the text searches, filled by _make_lines when one first searches
_SCHEMA = """
CREATE TABLE part (id INTEGER PRIMARY KEY, key TEXT, keyorder INTEGER, current INTEGER, server TEXT, log TEXT,
                   session_id TEXT, connector TEXT, connector_low TEXT, file TEXT, first TEXT, last TEXT,
                   slow TEXT, failed TEXT, packed TEXT);
CREATE TABLE line (part INTEGER, i INTEGER, line INTEGER, time TEXT, text TEXT);
CREATE TABLE reply (kind TEXT, value TEXT, part INTEGER, i INTEGER);
CREATE TABLE tracking (mid TEXT, file TEXT, line INTEGER, text TEXT, keys INTEGER, vals TEXT);
CREATE TABLE event (file TEXT, line INTEGER, text TEXT, keys INTEGER, vals TEXT, time TEXT, level TEXT, server TEXT);
CREATE TABLE trace (mid TEXT, file TEXT, line INTEGER, text TEXT, keys INTEGER, vals TEXT);
CREATE TABLE queued (mid TEXT PRIMARY KEY, file TEXT, line INTEGER, keys INTEGER, vals TEXT);
CREATE TABLE skey (key TEXT PRIMARY KEY, keyorder INTEGER) WITHOUT ROWID;
"""
_PREFETCH = ("SELECT 0, rowid, file, line, text, keys, vals FROM tracking WHERE mid = ?1 "
             "UNION ALL SELECT 1, rowid, file, line, text, keys, vals FROM trace WHERE mid = ?1 "
             "UNION ALL SELECT 2, 0, file, line, NULL, keys, vals FROM queued WHERE mid = ?1 "
             "UNION ALL SELECT 3, rowid, part, i, NULL, NULL, NULL FROM reply WHERE kind = 'mid' AND value = ?1")
_KIND_ROWID = itemgetter(0, 1)
_INDEXES = """
CREATE INDEX reply_value ON reply (kind, value);
CREATE INDEX tracking_mid ON tracking (mid);
CREATE INDEX trace_mid ON trace (mid);
CREATE INDEX part_first ON part (current, first);
CREATE INDEX part_send ON part (server, last);
CREATE INDEX event_time ON event (time);
"""


_RS = "\x1e"  # (record separator) between a packed part's lines, times and texts


def pack_part(lines: list[int], times: list[str], texts: list[str]) -> str:
    """A part's kept lines as one text for its row: their numbers joined by commas, RS, the times
    joined by US, RS, the texts joined by US; JSON of the three lists when that would not split back
    (a time or text holding US or RS; no line at all). `unpack_part` gives the lists back."""
    joined_times, joined_texts = _US.join(times), _US.join(texts)
    if len(times) == len(texts) == len(lines) and _RS not in joined_times and _RS not in joined_texts \
            and joined_times.count(_US) == joined_texts.count(_US) == len(lines) - 1:
        return ",".join(map(str, lines)) + _RS + joined_times + _RS + joined_texts
    return json.dumps([lines, times, texts])


def unpack_part(packed: str) -> tuple[list[int], list[str], list[str]]:
    if packed[:1] == "[":
        lines, times, texts = json.loads(packed)
        return lines, times, texts
    numbers, times, texts = packed.split(_RS)
    return list(map(int, numbers.split(","))), times.split(_US), texts.split(_US)


class _RowCodec:
    """A row's values as (the number of its keys, its values joined by US) when they are texts
    without US; else (-1, JSON). `unpack` gives the same dict back, keys in the same order. The sets
    of keys are few (one per kind of file), so they are numbered, not stored with every row."""

    def __init__(self) -> None:
        self._keys: list[tuple[str, ...]] = []
        self._key_ids: dict[tuple[str, ...], int] = {}

    def pack(self, values: dict[str, Any]) -> tuple[int, str]:
        keys = tuple(values)
        kid = self._key_ids.get(keys)
        if kid is None:
            kid = self._key_ids[keys] = len(self._keys)
            self._keys.append(keys)
        try:
            text = _US.join(values.values())
        except TypeError:  # a value that is not a str
            return -1, json.dumps(values)
        if text.count(_US) != max(len(keys) - 1, 0):  # a value holds US itself
            return -1, json.dumps(values)
        return kid, text

    def unpack(self, kid: int, text: str) -> dict[str, Any]:
        if kid < 0:
            values: dict[str, Any] = json.loads(text)
            return values
        return dict(zip(self._keys[kid], text.split(_US)))


class _IndexFile:
    """The index's SQLite file and its building: rows go in as the manifest reads the files, in
    batches, until `finish` indexes them (EvidenceIndex adds the queries)."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="labsim-evidence-")
        self.db = sqlite3.connect(Path(self._dir) / "index.sqlite", isolation_level=None)
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(_SCHEMA)
        self.db.execute("BEGIN")
        self.sessions = 0  # distinct sessions (server, log, session id); table skey: each one's order
        self._pending: dict[str, list[tuple[Any, ...]]] = {}  # rows not yet written, by INSERT statement
        self._codec = _RowCodec()  # a row's values are stored as their keys' number and joined text

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def add_sessions(self, parts: list[Session], replies: list[tuple[str, str, Session, int]],
                     failed: dict[int, list[int]]) -> None:
        """One file's session parts (in the order they began), its replies (kind "mid" / "iid",
        value, session, index of the line) and the failure lines of the parts that carried no message."""
        for s in parts:
            key = json.dumps([s.server, s.log, s.session_id])
            known = self.db.execute("SELECT keyorder FROM skey WHERE key = ?", (key,)).fetchone()
            if known is None:
                order = self.sessions
                self.db.execute("INSERT INTO skey VALUES (?, ?)", (key, order))
                self.sessions += 1
            else:
                order = known[0]
                self.db.execute("UPDATE part SET current = 0 WHERE key = ?", (key,))
            cur = self.db.execute(
                "INSERT INTO part (key, keyorder, current, server, log, session_id, connector, connector_low, file, "
                "first, last, slow, failed, packed) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, order, s.server, s.log, s.session_id, s.connector, s.connector.lower(), s.file, s.first, s.last,
                 json.dumps(s.slow) if s.slow else None, json.dumps(failed[id(s)]) if id(s) in failed else None,
                 pack_part(s.lines, s.times, s.texts)))
            s.part = cur.lastrowid or 0
        self.db.executemany("INSERT INTO reply VALUES (?, ?, ?, ?)", [(k, v, s.part, i) for k, v, s, i in replies])

    def _add(self, sql: str, row: tuple[Any, ...]) -> None:
        """INSERT `row` (rows of one statement go in batches, in the order they came: rowid order)."""
        rows = self._pending.setdefault(sql, [])
        rows.append(row)
        if len(rows) >= BATCH:
            self._flush(sql)

    def _flush(self, sql: str) -> None:
        self.db.executemany(sql, self._pending.pop(sql, []))

    def add_tracking(self, mid: str, row: Row) -> None:
        self._add("INSERT INTO tracking VALUES (?, ?, ?, ?, ?, ?)", (mid, row.file, row.line, row.text,
                                                                     *self._codec.pack(row.values)))

    def add_event(self, row: Row) -> None:
        v = row.values
        self._add("INSERT INTO event VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (row.file, row.line, row.text, *self._codec.pack(v), v["time"], v["level"], v["server"]))

    def add_trace(self, mid: str, row: Row) -> None:
        self._add("INSERT INTO trace VALUES (?, ?, ?, ?, ?, ?)", (mid, row.file, row.line, row.text,
                                                                  *self._codec.pack(row.values)))

    def set_queued(self, mid: str, row: Row) -> None:
        self._add("INSERT OR REPLACE INTO queued VALUES (?, ?, ?, ?, ?)", (mid, row.file, row.line,
                                                                           *self._codec.pack(row.values)))

    def finish(self) -> None:
        """Indexed and ready for queries."""
        for sql in list(self._pending):
            self._flush(sql)
        self.db.execute("COMMIT")
        self.db.executescript(_INDEXES)


class EvidenceIndex(_IndexFile):
    """The index (see the module's docstring): built through _IndexFile's `add_*` and `finish`,
    then asked. Use as a context manager: the file goes on close."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: dict[int, Session] = {}  # parts built by _session (read-only once finished)
        self._last: dict[tuple[str, str], Any] = {}  # the last answer of tracking / trace / replies, by query
        self._iids: dict[str, list[tuple[Session, int]]] = {}  # the replies naming the prefetched message's InternalIds
        self._lines_made = False  # table line is made when first searched (_make_lines)

    def _session(self, r: tuple[Any, ...]) -> Session:
        """The part of row `r` of _PART with its lines (a Session shared by every caller: read it only)."""
        part = r[0]
        kept = self._parts.get(part)
        if kept is not None:
            return kept
        if len(self._parts) >= SESSIONS_KEPT:
            self._parts.clear()
        kept = self._parts[part] = self._build(r)
        return kept

    def _build(self, r: tuple[Any, ...]) -> Session:
        part, server, log, sid, connector, file, first, last, slow, packed = r
        lines, times, texts = unpack_part(packed)  # (its rows of table line, in order)
        s = Session(server, log, sid, connector, file, first=first, last=last, lines=lines, times=times, texts=texts,
                    slow=json.loads(slow) if slow else [], part=part)
        s.last_line = s.lines[-1] if s.lines else 0
        return s

    _PART = "SELECT id, server, log, session_id, connector, file, first, last, slow, packed FROM part"

    def sessions_where(self, where: str, args: tuple[Any, ...] = (), order: str = "keyorder",
                       limit: int | None = None) -> list[Session]:
        """The current parts (the last part of each session) matching `where`, with their lines."""
        sql = f"{self._PART} WHERE current = 1 AND ({where}) ORDER BY {order}" + (f" LIMIT {int(limit)}" if limit else "")
        return [self._session(r) for r in self.db.execute(sql, args).fetchall()]

    def failed_in(self, start: str, end: str | None) -> Iterator[tuple[Session, list[int]]]:
        """Sessions that carried no message and show a failure, beginning inside [start, end]
        (compared to the millisecond), with the indices of the lines that show it."""
        sql = (f"{self._PART.replace(' FROM part', ', failed FROM part')} WHERE current = 1 AND failed IS NOT NULL "
               "AND substr(first, 1, 23) >= ?" + ("" if end is None else " AND substr(first, 1, 23) <= ?")
               + " ORDER BY keyorder")
        args = (start[:23],) if end is None else (start[:23], end[:23])
        for r in self.db.execute(sql, args).fetchall():
            yield self._session(r[:-1]), json.loads(r[-1])

    def prefetch(self, mid: str, iids: list[str]) -> None:
        """What the manifest asks about one message, in one query: its tracking and trace rows, its
        queue-history row and the replies naming its Message-ID or any of `iids` (its InternalIds);
        tracking / trace / queued / replies then answer for it without asking SQLite again (each
        list in rowid order, as their own queries give it)."""
        iids = list(dict.fromkeys(iids))
        sql = _PREFETCH + (f" UNION ALL SELECT 4, rowid, part, i, value, NULL, NULL FROM reply WHERE kind = 'iid' "
                           f"AND value IN ({', '.join('?' * len(iids))})" if iids else "")
        unpack = self._codec.unpack
        tracking: list[Row] = []
        trace: list[Row] = []
        queued: Row | None = None
        replies: list[tuple[int, int]] = []
        by_iid: dict[str, list[tuple[int, int]]] = {i: [] for i in iids}
        rows = self.db.execute(sql, (mid, *iids)).fetchall()
        rows.sort(key=_KIND_ROWID)  # (sorted here: SQLite's sorter costs more than the query)
        for kind, _, a, b, c, d, e in rows:
            if kind == 0:
                tracking.append(Row(a, b, c, unpack(d, e)))
            elif kind == 1:
                trace.append(Row(a, b, c, unpack(d, e)))
            elif kind == 2:
                queued = Row(a, b, "", unpack(d, e))
            else:
                (replies if kind == 3 else by_iid[c]).append((a, b))
        parts = self._parts_of({part for part, _ in replies} | {part for found in by_iid.values() for part, _ in found})
        self._last[("tracking", "")] = (mid, tracking)
        self._last[("trace", "")] = (mid, trace)
        self._last[("queued", "")] = (mid, queued)
        self._last[("reply", "mid")] = (mid, [(parts[part], i) for part, i in replies])
        self._iids = {v: [(parts[part], i) for part, i in found] for v, found in by_iid.items()}

    def _parts_of(self, ids: set[int]) -> dict[int, Session]:
        """The parts `ids`, those not kept built read at once."""
        found = {i: s for i in ids if (s := self._parts.get(i)) is not None}
        missing = sorted(ids - found.keys())
        if missing:
            for r in self.db.execute(f"{self._PART} WHERE id IN ({', '.join('?' * len(missing))})", missing).fetchall():
                found[r[0]] = self._session(r)
        return found

    def replies(self, kind: str, value: str) -> list[tuple[Session, int]]:
        """The `250 2.6.0` reply lines naming a Message-ID (kind "mid") or an InternalId ("iid")."""
        if kind == "iid" and value in self._iids:
            return list(self._iids[value])
        last = self._last.get(("reply", kind))
        if last is not None and last[0] == value:
            return list(last[1])
        rows = self.db.execute("SELECT part, i FROM reply WHERE kind = ? AND value = ? ORDER BY rowid",
                               (kind, value)).fetchall()
        out = [(self._part(part), i) for part, i in rows]
        self._last[("reply", kind)] = (value, out)
        return list(out)

    def _part(self, part: int) -> Session:
        kept = self._parts.get(part)
        return kept if kept is not None else self._session(
            self.db.execute(f"{self._PART} WHERE id = ?", (part,)).fetchone())

    def _make_lines(self) -> None:
        """Table line (each part's kept lines, in part order), made from the parts' packed lines when
        a text search first needs it: a run whose hops did not fail never searches."""
        if self._lines_made:
            return
        self._lines_made = True
        began = not self.db.in_transaction
        if began:
            self.db.execute("BEGIN")
        rows: list[tuple[Any, ...]] = []
        for part, packed in self.db.execute("SELECT id, packed FROM part ORDER BY id"):
            rows += [(part, i, n, t, x) for i, (n, t, x) in enumerate(zip(*unpack_part(packed)))]
            if len(rows) >= BATCH:
                self.db.executemany("INSERT INTO line VALUES (?, ?, ?, ?, ?)", rows)
                rows = []
        self.db.executemany("INSERT INTO line VALUES (?, ?, ?, ?, ?)", rows)
        self.db.execute("CREATE INDEX line_part ON line (part, i)")
        self.db.execute("CREATE INDEX line_time ON line (time)")
        if began:
            self.db.execute("COMMIT")

    def lines_showing(self, text: str, server: str | None, between: tuple[str, str] | None = None,
                      part: int | None = None) -> list[tuple[Session, list[int]]]:
        """The current parts with kept lines containing `text` (on `server`; with a line time inside
        `between`; of one `part`), in session order, with the indices of those lines."""
        self._make_lines()
        sql = ("SELECT part.id, line.i FROM line JOIN part ON part.id = line.part WHERE part.current = 1 "
               "AND instr(line.text, ?) > 0")
        args: tuple[Any, ...] = (text,)
        if server is not None:
            sql, args = sql + " AND part.server = ?", args + (server,)
        if between is not None:
            sql, args = sql + " AND line.time >= ? AND line.time <= ?", args + between
        if part is not None:
            sql, args = sql + " AND part.id = ?", args + (part,)
        hits: dict[int, list[int]] = {}
        for p, i in self.db.execute(sql + " ORDER BY part.keyorder, line.i", args):
            hits.setdefault(p, []).append(i)
        return [(self._part(p), ix) for p, ix in hits.items()]

    def send_sessions(self, server: str, connector: str, first_before: str, last_before: str) -> list[Session]:
        """SmtpSend parts of `server` (and `connector`, if given) that began by `first_before` and ended
        by `last_before` (ISO strings compared as such): the SEND_CANDIDATES that ended last, in
        session order."""
        where = "server = ? AND log LIKE '%SmtpSend' AND first <= ? AND last <= ?"
        args: tuple[Any, ...] = (server, first_before, last_before)
        if connector:
            where += " AND connector = ?"
            args += (connector,)
        found = self.sessions_where(where, args, order="last DESC, keyorder", limit=SEND_CANDIDATES)
        return sorted(found, key=lambda s: self._order(s.part))

    def _order(self, part: int) -> int:
        return int(self.db.execute("SELECT keyorder FROM part WHERE id = ?", (part,)).fetchone()[0])

    def tracking(self, mid: str) -> list[Row]:
        """The message's tracking rows (Rows shared by the callers asking for the same message in turn: read them only)."""
        return self._rows("tracking", mid)

    def trace(self, mid: str) -> list[Row]:
        return self._rows("trace", mid)

    def _rows(self, table: str, mid: str) -> list[Row]:
        last = self._last.get((table, ""))
        if last is None or last[0] != mid:
            unpack = self._codec.unpack
            rows = [Row(f, n, t, unpack(k, v)) for f, n, t, k, v in self.db.execute(
                f"SELECT file, line, text, keys, vals FROM {table} WHERE mid = ? ORDER BY rowid", (mid,))]
            last = self._last[(table, "")] = (mid, rows)
        return list(last[1])

    def queued(self, mid: str) -> Row | None:
        last = self._last.get(("queued", ""))
        if last is not None and last[0] == mid:
            kept: Row | None = last[1]
            return kept
        r = self.db.execute("SELECT file, line, keys, vals FROM queued WHERE mid = ?", (mid,)).fetchone()
        return None if r is None else Row(r[0], r[1], "", self._codec.unpack(r[2], r[3]))

    def events(self, start: str | None = None, end: str | None = None) -> Iterator[Row]:
        """Events in file order; with `start` / `end`, only those whose time lies between (to the ms)."""
        sql, args = "SELECT file, line, text, keys, vals FROM event", ()
        if start is not None:
            sql += " WHERE substr(time, 1, 23) >= ?" + ("" if end is None else " AND substr(time, 1, 23) <= ?")
            args = (start[:23],) if end is None else (start[:23], end[:23])  # type: ignore[assignment]
        for f, n, t, k, v in self.db.execute(sql + " ORDER BY rowid", args):
            yield Row(f, n, t, self._codec.unpack(k, v))
