"""A map from str to str or int whose older entries wait on disk (issue 8: memory that follows
the mail in flight, not the mail ever seen).

The run looks up a few things by message for as long as the run goes (a message's network id by
its Message-ID, its place in the ledger): a lookup of a message that was final long ago must
give the same answer, but such lookups are rare, and most come while the message is in flight.
`SpilledMap` keeps the entries written last in two generations of dicts of at most `young`
entries each; when the newer fills, the older is written to a private temporary SQLite database
(`sqlite3.connect("")`: on disk, deleted when closed or with the process) and the newer takes
its place. So at most 2 × `young` entries are in memory, however many were ever written, and a
run of fewer than `young` messages never opens a database. A lookup tries the newer dict, the
older, then the database; a later write of a key shadows the earlier ones, and the database keeps
the last value written for each key, so the answers are exactly a dict's.
"""

from __future__ import annotations

import sqlite3
from typing import Generic, TypeVar

V = TypeVar("V", str, int)

YOUNG = 4096  # entries per generation in memory


def _k(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")  # a header's surrogate-escaped byte survives


class SpilledMap(Generic[V]):
    """`get`, `m[key] = value` and `key in m` of a dict[str, V] (V: str or int), with at most
    2 × `young` entries in memory (see the module's docstring)."""

    def __init__(self, young: int | None = None) -> None:
        self.young = max(1, YOUNG if young is None else young)
        self._new: dict[str, V] = {}
        self._old: dict[str, V] = {}
        self._db: sqlite3.Connection | None = None

    def get(self, key: str, default: V | None = None) -> V | None:
        value = self._new.get(key)
        if value is None:
            value = self._old.get(key)
            if value is None and self._db is not None:
                row = self._db.execute("SELECT v FROM m WHERE k=?", (_k(key),)).fetchone()
                if row is not None:
                    v = row[0]
                    value = v.decode("utf-8", "surrogatepass") if isinstance(v, bytes) else v  # type: ignore[assignment]
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __setitem__(self, key: str, value: V) -> None:
        new = self._new
        if key not in new and len(new) >= self.young:
            self._spill()
            new = self._new
        new[key] = value

    def _spill(self) -> None:
        """The older generation to disk; the newer becomes the older."""
        if self._old:
            db = self._db
            if db is None:
                db = self._db = sqlite3.connect("", isolation_level=None)
                db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-256;"
                                 "CREATE TABLE m(k BLOB PRIMARY KEY, v) WITHOUT ROWID;")
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO m VALUES (?,?)",
                           [(_k(k), v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v)
                            for k, v in self._old.items()])
            db.execute("COMMIT")
        self._old = self._new
        self._new = {}

    @property
    def in_memory(self) -> int:
        """Entries held in memory (the two generations; a key in both counts twice)."""
        return len(self._new) + len(self._old)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
