"""A buffered Exchange log stream: one log type, one folder, hourly files, size rollover.

Shared by the SMTP protocol logs and the message tracking log; both use the same file layout
(reference log-formats.md §1, §3.1, §4.2):

- a new file starts with the UTF-8 BOM and five header lines (`#Software`, `#Version`,
  `#Log-type`, `#Date`, `#Fields`); every line ends with CRLF;
- files are named `{prefix}{yyyyMMddHH}-{n}.LOG`, n from 1 without padding, the next n when the
  size limit would be exceeded within the hour.

Why buffer and sort: Exchange itself buffers rows and appends them in batches (§1.6), so a
buffered writer is faithful, and sorting each batch by (printed timestamp, sort key) makes the
output independent of the order in which concurrent sessions happened to be run by the event
loop (shared/design-notes.md). The printed millisecond timestamp is the primary key, so rows that
print the same time are ordered by session id and sequence number, not by invisible microseconds.
If two rows are equal in both, their bytes decide, so identical input gives identical files
whatever order it was added in.

Streaming (a run writes its logs as it goes, so memory holds only the rows still in flight): a
flush can be given a watermark, `flush(before=ts)`, and then writes only the rows printed earlier
than `ts`, keeping the rest buffered. The caller promises that no row stamped earlier than the
watermark will be added later (in `run` mode: the time of the next scheduled action, see
engine/evidence.py); under that promise, flushing in any number of watermark steps gives exactly
the bytes of one flush at the end, because every batch sorts before every later one. The stream
checks the promise: a row added below the highest watermark so far is counted in `late_rows`
(and still written, at the next flush, never lost), and its owner reports it as a lab error.
`buffered_bytes` lets the owner flush when the buffer fills, as Exchange does
(`*LogBufferSize`, §1.6).

Choices the reference leaves open (all [INFERRED]):
- The hour of a file is the UTC hour of its rows, and `#Date` is the timestamp of the first row
  written to it (a real file's `#Date` is its creation time, which can be a little later than its
  first rows because of the buffering: QAZ `RECV2023011116-1.LOG`).
- A flush appends to the current file of each hour; after a restart (files of that hour already on
  disk from an earlier process) the stream starts the next n instead of appending to a file that
  may end in a half-written row.
- A row larger than the limit still goes into a file of its own (never an empty file, never a
  loop).

Not thread-safe: the lab runs one event loop, and flushing is done by its owner.
"""

from __future__ import annotations

import bisect
import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..clock import iso_ms
from .csvfmt import join

__all__ = ["LogStream", "BOM", "DEFAULT_MAX_FILE_BYTES", "ENCODE_ERRORS"]

BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024  # Exchange's default for protocol and tracking logs (§3.3)
ENCODE_ERRORS = "labsim.logs.fffd"


def _replace_with_fffd(err: UnicodeError) -> tuple[bytes, int]:
    """.NET's UTF-8 encoder writes U+FFFD for a lone surrogate; `errors="replace"` would write `?`.

    Lone surrogates do reach us: SMTP lines decoded with `surrogateescape` carry raw non-UTF-8 bytes.
    """
    if not isinstance(err, UnicodeEncodeError):
        raise err
    # bytes, because CPython's UTF-8 encoder accepts only ASCII text from an error handler
    return b"\xef\xbf\xbd" * (err.end - err.start), err.end


codecs.register_error(ENCODE_ERRORS, _replace_with_fffd)


def _timestamp(row: tuple[str, Any, bytes]) -> str:
    return row[0]


@dataclass(slots=True)
class _CurrentFile:
    path: Path
    n: int
    size: int


class LogStream:
    """Rows of one Exchange log, buffered in memory and written to hourly files on `flush()`.

    `fields` are the header's field names, the first being `date-time`; rows are given without
    it (the stream prints `when`). Call `flush()` periodically in live mode (appends) or once at
    the end of a run: identical rows give byte-identical files.
    """

    __slots__ = ("folder", "prefix", "log_type", "fields", "version", "max_file_bytes",
                 "_rows", "_current", "_nfields", "_head", "_tail", "_name_re", "_last_when", "_last_ts",
                 "_floor", "buffered_bytes", "late_rows", "_period")

    def __init__(self, folder: Path, prefix: str, log_type: str, fields: Sequence[str], version: str,
                 *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, daily: bool = False) -> None:
        if not fields or fields[0] not in ("date-time", "Timestamp"):  # Timestamp: the agent log
            raise ValueError("the first field of an Exchange log is date-time")
        if max_file_bytes <= 0:
            raise ValueError("max_file_bytes must be positive")
        self.folder = Path(folder)
        self.prefix = prefix
        self.log_type = log_type
        self.fields = tuple(fields)
        self.version = version
        self.max_file_bytes = max_file_bytes
        self._rows: list[tuple[str, Any, bytes]] = []
        self._current: dict[str, _CurrentFile | None] = {}
        self._nfields = len(self.fields) - 1
        self._head = BOM + (f"#Software: Microsoft Exchange Server\r\n#Version: {version}\r\n"
                            f"#Log-type: {log_type}\r\n#Date: ").encode()
        self._tail = f"\r\n#Fields: {','.join(self.fields)}\r\n".encode()
        # `daily`: files named by UTC day (AgentLogyyyyMMdd-n.LOG, logs/agent_log.py), else by hour
        self._period = 10 if daily else 13
        self._name_re = re.compile(re.escape(prefix) + (r"(\d{8})-(\d+)\.LOG" if daily else r"(\d{10})-(\d+)\.LOG"))
        # Consecutive rows usually share one virtual instant; formatting it is half a row's cost.
        self._last_when: datetime | None = None
        self._last_ts = ""
        self._floor = ""  # the highest watermark flushed so far: rows must not be printed earlier
        self.buffered_bytes = 0
        self.late_rows = 0  # rows added below the floor (a broken watermark promise)

    def __len__(self) -> int:
        """Rows waiting for the next flush."""
        return len(self._rows)

    def add(self, when: datetime, sort_key: tuple[Any, ...], fields: Sequence[str]) -> None:
        """Buffer one row: `fields` are the values after date-time, escaped here."""
        if len(fields) != self._nfields:
            raise ValueError(f"{self.log_type}: {len(fields)} values, want {self._nfields}")
        self.add_joined(when, sort_key, join(fields))

    def add_joined(self, when: datetime, sort_key: tuple[Any, ...], row: str) -> None:
        """Buffer a row whose values after date-time are already escaped and joined (hot path)."""
        if when is self._last_when:  # the same instant object: checked and printed already
            ts = self._last_ts
        else:
            if when.tzinfo is None:
                raise ValueError("log timestamps must be timezone-aware")
            if when == self._last_when:
                ts = self._last_ts
            else:
                ts = self._last_ts = iso_ms(when)
            self._last_when = when
        if ts < self._floor:
            self.late_rows += 1
        data = f"{ts},{row}\r\n".encode("utf-8", ENCODE_ERRORS)
        self.buffered_bytes += len(data)
        self._rows.append((ts, sort_key, data))

    def flush(self, before: str | None = None) -> list[Path]:
        """Sort the buffered rows and append them to their files; returns the files written.

        `before` (an `iso_ms` timestamp): write only the rows printed earlier, keep the others.
        """
        rows = self._rows
        if not rows:
            if before is not None and before > self._floor:
                self._floor = before
            return []
        rows.sort()
        if before is None:
            self._rows = []
        else:
            if before > self._floor:
                self._floor = before
            cut = bisect.bisect_left(rows, before, key=_timestamp)
            if not cut:
                return []
            rows, self._rows = rows[:cut], rows[cut:]
        written: list[Path] = []
        limit = self.max_file_bytes
        flushed = 0
        i, count = 0, len(rows)
        while i < count:
            hour = rows[i][0][:self._period]  # yyyy-MM-ddTHH (or yyyy-MM-dd)
            # the rows of this hour: their timestamps start with `hour`, and "~" sorts after every
            # character a timestamp has
            end = bisect.bisect_left(rows, hour + "~", lo=i, key=_timestamp)
            data = [r[2] for r in rows[i:end]]
            size = sum(map(len, data))
            flushed += size
            cur = self._current[hour] if hour in self._current else self._first_file_of(hour)
            if cur is not None and cur.size + size <= limit:  # all of them fit in the hour's file
                cur.size += size
                self._write(cur.path, data, False, written)
            else:
                cur = self._write_rolling(hour, cur, rows, i, end, written)
            self._current[hour] = cur
            i = end
        self.buffered_bytes -= flushed
        return written

    def _write_rolling(self, hour: str, cur: _CurrentFile | None, rows: list[tuple[str, Any, bytes]], i: int,
                       end: int, written: list[Path]) -> _CurrentFile:
        """Rows `i:end` of one hour, row by row: a new file when the next row would pass the limit."""
        limit = self.max_file_bytes
        chunks: list[bytes] = []
        fresh = False
        for ts, _, data in rows[i:end]:
            if cur is None or cur.size + len(data) > limit:
                if chunks and cur is not None:
                    self._write(cur.path, chunks, fresh, written)
                n = 1 if cur is None else cur.n + 1
                name = f"{self.prefix}{hour[0:4]}{hour[5:7]}{hour[8:10]}{hour[11:]}-{n}.LOG"
                header = self._head + ts.encode() + self._tail
                cur = _CurrentFile(self.folder / name, n, len(header))
                chunks = [header]
                fresh = True
            chunks.append(data)
            cur.size += len(data)
        assert cur is not None
        self._write(cur.path, chunks, fresh, written)
        return cur

    def close(self) -> list[Path]:
        return self.flush()

    def _first_file_of(self, hour: str) -> _CurrentFile | None:
        """None, or a full stand-in for the newest file of `hour` left by an earlier process.

        The stand-in claims the limit as its size, so the next row starts file n+1.
        """
        stamp = f"{hour[0:4]}{hour[5:7]}{hour[8:10]}{hour[11:]}"
        newest = 0
        if self.folder.is_dir():
            for p in self.folder.glob(f"{self.prefix}{stamp}-*.LOG"):
                m = self._name_re.fullmatch(p.name)
                if m:
                    newest = max(newest, int(m.group(2)))
        if not newest:
            return None
        name = f"{self.prefix}{stamp}-{newest}.LOG"
        return _CurrentFile(self.folder / name, newest, self.max_file_bytes)

    def _write(self, path: Path, chunks: list[bytes], fresh: bool, written: list[Path]) -> None:
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
        # "xb" for a new file: never clobber or silently extend a file this stream did not start.
        with open(path, "xb" if fresh else "ab") as fh:
            fh.write(b"".join(chunks))
        if path not in written:
            written.append(path)
