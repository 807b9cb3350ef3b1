"""A party's queue database on disk: what `labsim up` keeps so that a restart loses nothing.

Exchange keeps every queued message in the ESE database `mail.que` under
`TransportRoles\\data\\Queue` and acknowledges a message (250) only after it is committed there; at
service start the Transport service opens the database and its queues carry on (see
docs/queues-tracking-ndr.md §2a). The lab models the idea, not ESE:

    <folder>/<InternalId>.eml    the message as this server holds it (written once)
    <folder>/<InternalId>.json   envelope, item fields and every queued copy's state (the commit record)
    <folder>/next-internal-id    InternalIds below it may have been used (kept a block ahead)

What is kept is what mail.que keeps: the messages, with their InternalId, arrival time (so their
delay-DSN and expiry times), retry count, LastError, their own next retry time (a message deferred
by a 4xx waits MessageRetryInterval) and Suspended. What is not kept is the delivery queues
themselves: Exchange holds them in memory and creates them when they are needed, so at service
start the categorizer routes the messages again and each new queue connects at once (a queue's
glitch/transient Retry ladder starts afresh).

Why one file per message rather than one JSON-Lines journal: a journal must be compacted (every
retry appends a line) and read back from the start, and a torn last line must be detected; a file
per message is the whole truth about that message, replaced atomically (written to a temporary
name and renamed over the old one; the first commit, the one a 250 follows, is fdatasync'd and the
folder fsync'd), and removed when the message leaves the server, so the folder *is* the queue and
an admin can look into it. The message body goes into its
own `.eml` (written before the `.json` that refers to it, removed after it) so a retry, which changes
a few fields, never rewrites a large body. A `.eml` without its `.json` is a commit that never
happened (the server had not answered 250) and is removed at start-up.

Only `up` (wall-clock time) keeps queues on disk; `run` (virtual time) stays in memory so its
output tree is byte-identical for a seed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .message import MailItem
from .queues import Queue, QueuedMessage, QueueSet

FORMAT = 1
RESERVE_FILE = "next-internal-id"  # InternalIds below this number may have been handed out
RESERVE_BLOCK = 1000
_OUR_TMP = re.compile(r"^\.(\d+\.(json|eml)|next-internal-id)\.\d+\.tmp$")

_ITEM_FIELDS = ("server", "internal_id", "mail_from", "recipients", "message_id", "network_message_id",
                "subject", "directionality", "client_ip", "client_hostname", "receive_connector", "lab_key",
                "original_recipients", "retry_count", "last_error", "history", "dsn_kind", "dsn_of",
                "delay_notified", "received_tls", "session_context")
_COPY_FIELDS = ("status", "last_error", "retry_count", "suspended", "source", "deferred", "last_deferred_error")


def _t(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _parse_t(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace `path` with `data` all at once: a reader (or a restart) sees the old or the new file.

    `fsync`: the data reaches the disk before the rename (the caller syncs the folder once).
    Without it the rename is still atomic for a process that dies; only a power cut could lose
    the newest version (a state update: the previous record stays valid).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable (POSIX: fsync the directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not fsync directories; the rename is still atomic
    finally:
        os.close(fd)


def queue_key(queues: QueueSet, q: Queue) -> list[str]:
    """How a queue is found again after a restart: its routing key, or its persistent name."""
    for key, candidate in queues.by_key.items():
        if candidate is q:
            return ["route", *key]
    return ["special", q.name]


@dataclass
class SavedCopy:
    """One queued copy of a message as it was on disk."""

    queue: list[str]  # queue_key()
    identity: str
    recipients: list[str]
    state: dict[str, Any]
    next_retry_time: datetime | None
    queued_at: datetime | None


@dataclass
class SavedMessage:
    item: MailItem
    copies: list[SavedCopy] = field(default_factory=list)


class QueueStore:
    """One party's queue folder."""

    def __init__(self, folder: Path, *, fsync: bool = True) -> None:
        self.folder = folder
        self.fsync = fsync
        self._bodies: set[str] = set()  # stems whose .eml is on disk
        self.reserved = 0  # InternalIds below this are reserved on disk (see `reserve`)

    def _ensure(self) -> None:
        if not self.folder.exists():
            self.folder.mkdir(parents=True, exist_ok=True)

    # --- writing ----------------------------------------------------------------------------------
    def save(self, item: MailItem, copies: list[tuple[Queue, QueuedMessage]], queues: QueueSet) -> None:
        """Commit `item` and its queued copies (call before the 250 that acknowledges it).

        The first commit of a message is durable (body and record fdatasync'd, the folder fsync'd
        once) because a 250 follows it; later state updates (retry count, LastError) are only
        atomic, as are removals - a power cut could only roll them back to an earlier valid state.
        """
        self._ensure()
        stem = str(item.internal_id)
        first = stem not in self._bodies
        if first:
            atomic_write(self.folder / f"{stem}.eml", item.data, fsync=self.fsync)
            self._bodies.add(stem)
        record = {
            "format": FORMAT,
            "item": {name: getattr(item, name) for name in _ITEM_FIELDS} | {"arrived": _t(item.arrived)},
            "copies": [{
                "queue": queue_key(queues, q), "identity": q.identity, "recipients": list(qm.recipients),
                "next_retry_time": _t(qm.next_retry_time), "queued_at": _t(qm.queued_at),
                **{name: getattr(qm, name) for name in _COPY_FIELDS},
            } for q, qm in copies],
        }
        atomic_write(self.folder / f"{stem}.json", json.dumps(record).encode("utf-8"), fsync=self.fsync and first)
        if self.fsync and first:
            fsync_dir(self.folder)

    def drop(self, item: MailItem) -> None:
        """`item` left this server (delivered onwards, failed, expired, removed): forget it."""
        stem = str(item.internal_id)
        if stem not in self._bodies:
            return  # never committed (it left in the session that brought it)
        for suffix in (".json", ".eml"):  # the record first: a lone .eml is an uncommitted body
            try:
                (self.folder / f"{stem}{suffix}").unlink()
            except FileNotFoundError:
                pass
        self._bodies.discard(stem)

    def reserve(self, upcoming: int) -> None:
        """Keep InternalIds unique across restarts, as Exchange's are: before the server hands out
        ids at or above the mark on disk, the mark moves a block ahead (one small write per
        RESERVE_BLOCK ids, like a database's auto-increment)."""
        if upcoming < self.reserved - RESERVE_BLOCK // 2:
            return  # (ids handed out between two commits stay well below the mark)
        self._ensure()
        self.reserved = upcoming + RESERVE_BLOCK
        atomic_write(self.folder / RESERVE_FILE, f"{self.reserved}\n".encode(), fsync=self.fsync)

    def reserved_mark(self) -> int:
        """The mark an earlier run left (0: none)."""
        try:
            text = (self.folder / RESERVE_FILE).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise ValueError(f"{self.folder / RESERVE_FILE}: unreadable ({exc})") from None
        if not text.isdigit():
            raise ValueError(f"{self.folder / RESERVE_FILE}: not a number ({text[:20]!r})")
        return int(text)

    # --- reading (at start-up) -------------------------------------------------------------------
    def load(self) -> list[SavedMessage]:
        """Every committed message, oldest first.

        A record that cannot be read is an error the admin must see, not something to skip
        silently: it raises `ValueError` naming the file.
        """
        if not self.folder.is_dir():
            return []
        saved: list[SavedMessage] = []
        for path in sorted(self.folder.glob("*.json")):
            body = path.with_suffix(".eml")
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                data = body.read_bytes()
                saved.append(_saved_message(record, data))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: unreadable queued message ({exc})") from None
            self._bodies.add(path.stem)
        for body in self.folder.glob("*.eml"):
            if body.stem.isdigit() and body.stem not in self._bodies:
                body.unlink()  # written by us, never committed: the sender had no 250 for it
        for tmp in self.folder.glob(".*.tmp"):
            if _OUR_TMP.match(tmp.name):
                tmp.unlink()  # an interrupted atomic write of ours
        saved.sort(key=lambda s: (s.item.arrived, s.item.internal_id))
        return saved


def _saved_message(record: dict[str, Any], data: bytes) -> SavedMessage:
    if record.get("format") != FORMAT:
        raise ValueError(f"format {record.get('format')!r}, expected {FORMAT}")
    fields = dict(record["item"])
    arrived = _parse_t(fields.pop("arrived"))
    if arrived is None:
        raise ValueError("no arrival time")
    item = MailItem(data=data, arrived=arrived, **{k: fields[k] for k in _ITEM_FIELDS})
    copies = [SavedCopy(queue=list(c["queue"]), identity=c["identity"], recipients=list(c["recipients"]),
                        state={name: c[name] for name in _COPY_FIELDS},
                        next_retry_time=_parse_t(c.get("next_retry_time")), queued_at=_parse_t(c.get("queued_at")))
              for c in record["copies"]]
    return SavedMessage(item=item, copies=copies)
