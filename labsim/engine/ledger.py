"""Ground truth: what happened to each message of a scenario, for summaries and expectations.

Every party reports into the ledger as it acts (received, sent on, delivered, failed); messages
are tied to the scenario's traffic by their Message-ID. Nothing reads the ledger to decide
anything: it is evidence, never policy.

Memory (issue 8): a run of a working day registers tens of thousands of messages, each with a
dozen hops. The ledger keeps in memory only what the run looks up while it goes (a message's
registration index by scenario id and by Message-ID, and the notifications of messages that got a
DSN), and of these maps only the entries written last (engine.spill: the older wait in a private
temporary SQLite database, so a late lookup gives the same answer); every fact is appended to an
anonymous spool file (deleted when the ledger is closed or the process ends) as it is reported.
`fates` reads the spool back: `get(key)` rebuilds one message's fate, `values()` all of them in
registration order, a bucket of messages at a time, so writing summary.json holds a few thousand
fates at most. The fates come out exactly as the in-memory
ledger built them (same order of hops, deliveries, failures, notifications).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from ..clock import iso_ms
from ..logs.jsonstream import dump_streamed
from ..transport.message import header_value
from .spill import SpilledMap

BUCKET = 2000  # messages per bucket when all fates are read back


@dataclass
class Fate:
    key: str
    message_id: str
    sender: str
    recipients: list[str]
    subject: str
    injected: datetime | str
    hops: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    pending: list[dict[str, str]] = field(default_factory=list)
    notifications: list[dict[str, str]] = field(default_factory=list)  # DSNs about it: generated, delivered
    carried_in: list[dict[str, str]] = field(default_factory=list)  # taken up from an earlier run's queues

    @property
    def fate(self) -> str:
        if self.pending:
            return "pending"
        if self.failed and self.delivered:
            return "partial"
        if self.failed:
            return "failed"
        if self.delivered:
            return "delivered"
        return "lost"

    def as_dict(self) -> dict[str, Any]:
        injected = self.injected if isinstance(self.injected, str) else iso_ms(self.injected)
        return {
            "id": self.key, "message_id": self.message_id, "from": self.sender, "to": self.recipients,
            "subject": self.subject, "injected": injected, "fate": self.fate,
            "delivered": self.delivered, "failed": self.failed, "pending": self.pending, "hops": self.hops,
            "notifications": self.notifications,
        } | ({"carried_in": self.carried_in} if self.carried_in else {})


# Spool records: [index, kind, payload]. Kinds: "r" registration (resets the fate), "h" hop,
# "d" delivered, "f" failed, "p" pending, "n" notification, "u" update of notification n,
# "c" carried in (taken up from an earlier run's queues: engine.carry).
def _apply(fates: dict[int, Fate], index: int, kind: str, payload: Any) -> None:
    if kind == "r":
        fates[index] = Fate(*payload)
        return
    fate = fates.get(index)
    if fate is None:
        return
    if kind == "h":
        fate.hops.append(payload)
    elif kind == "d":
        fate.delivered.append(payload)
    elif kind == "f":
        fate.failed.append(payload)
    elif kind == "p":
        fate.pending.append(payload)
    elif kind == "n":
        fate.notifications.append(payload)
    elif kind == "u":
        fate.notifications[payload[0]].update(payload[1])
    elif kind == "c":
        fate.carried_in.append(payload)


DECODED_AT_ONCE = 1024  # spool lines decoded in one json.loads (as one array: one call, not one per line)


# json.dumps(record, separators=(",", ":")) without a new JSONEncoder a record (dumps builds one
# whenever it is given any option)
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _decoded(lines: Iterable[str]) -> Iterator[Any]:
    """json.loads of each line, in order, DECODED_AT_ONCE lines at a time (each line is one JSON
    text that _put wrote, so the lines joined by commas in brackets are their array)."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= DECODED_AT_ONCE:
            yield from json.loads("[" + ",".join(batch) + "]")
            batch.clear()
    if batch:
        yield from json.loads("[" + ",".join(batch) + "]")


class Ledger:
    def __init__(self, clock: Any) -> None:
        self.clock = clock
        # (memory follows the mail in flight: the maps keep their recent entries, engine.spill)
        self._index: SpilledMap[int] = SpilledMap()  # scenario message id -> registration index
        self._count = 0  # registrations (a key registered again keeps its index); the keys are in the spool
        self._by_mid: SpilledMap[str] = SpilledMap()  # Message-ID -> key
        self._dsn_by_mid: SpilledMap[str] = SpilledMap()  # DSN Message-ID -> "index number" (of the notification)
        self._notes: SpilledMap[int] = SpilledMap()  # str(index) -> notifications so far (messages with a DSN only)
        self._outcome = bytearray()  # bit `index`: a delivery or a failure was recorded for the message
        self._spool: IO[str] | None = None
        self.fates = FateView(self)
        # a live lab (engine.driver.serve, labsim.Lab): a message a client of its own hands to the lab
        # is reported too, under its Message-ID, from the first server that accepted it
        self.report_clients = False
        self._lab_made: SpilledMap[int] = SpilledMap()  # (then) the Message-IDs of the DSNs the lab generated

    # --- the spool -----------------------------------------------------------------------------
    def _put(self, index: int, kind: str, payload: Any) -> None:
        if self._spool is None:
            self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._spool.write(_ENCODE([index, kind, payload]) + "\n")

    def _records(self) -> Iterator[tuple[int, str, Any]]:
        if self._spool is None:
            return
        self._spool.flush()
        self._spool.seek(0)
        try:
            for record in _decoded(self._spool):
                index, kind, payload = record
                yield index, kind, payload
        finally:
            self._spool.seek(0, 2)  # back to the end: reporting goes on appending

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        for m in (self._index, self._by_mid, self._dsn_by_mid, self._notes, self._lab_made):
            m.close()

    def _new_index(self, key: str) -> int:
        index = self._count
        self._index[key] = index
        self._count = index + 1
        return index

    def _set_outcome(self, index: int, done: bool) -> None:
        byte, bit = index >> 3, 1 << (index & 7)
        bits = self._outcome
        if byte >= len(bits):
            if not done:
                return
            bits.extend(bytes(byte + 1 - len(bits)))
        bits[byte] = bits[byte] | bit if done else bits[byte] & ~bit

    # --- reporting -----------------------------------------------------------------------------
    def register(self, key: str, message_id: str, sender: str, recipients: list[str], subject: str) -> None:
        index = self._index.get(key)
        if index is None:
            index = self._new_index(key)
        else:  # registered again: its fate starts anew
            if self._notes.get(str(index)) is not None:
                self._notes[str(index)] = 0
            self._set_outcome(index, False)
        self._put(index, "r", [key, message_id, sender, list(recipients), subject, iso_ms(self.clock.now())])
        self._by_mid[message_id] = key

    def carried_in(self, item: Any, server: str) -> None:
        """`item` was left queued on `server` by an earlier run and is taken up by this one (a corpus
        hour's mail carried into the next: engine.carry). A scenario message (it has a key) is
        registered under its own key, once, with its sender, recipients and subject and its arrival
        as `injected`, so its later hops are reported here; its summary entry says `carried_in`
        (when, where, which InternalId), so a merge joins it with the run it came from. Also a
        restarted `up` taking up its queue database (engine.durable). A client's own message counts
        only when clients are reported (`report_clients`: under its Message-ID, as `received` does);
        a DSN the lab generated never does."""
        key = getattr(item, "lab_key", "")
        if not key and self.report_clients and not getattr(item, "dsn_kind", ""):
            key = getattr(item, "message_id", "")
        if not key:
            return
        index = self._index.get(key)
        if index is None:
            index = self._new_index(key)
            rcpts = [item.original_recipients.get(r, r) for r in item.recipients]
            self._put(index, "r", [key, item.message_id, item.mail_from, rcpts, item.subject, iso_ms(item.arrived)])
            self._by_mid[item.message_id] = key
        self._put(index, "c", {"time": iso_ms(self.clock.now()), "server": server, "internal_id": str(item.internal_id)})

    def key_for(self, message_id: str) -> str:
        return self._by_mid.get(message_id) or ""

    def has_outcome(self, key: str) -> bool:
        """Was a delivery or a failure recorded for the message (cheap: no reading back)?"""
        index = self._index.get(key)
        if index is None:
            return False
        bits = self._outcome
        return index >> 3 < len(bits) and bool(bits[index >> 3] & 1 << (index & 7))

    def _at(self, item: Any) -> int | None:
        key = getattr(item, "lab_key", "") or self.key_for(getattr(item, "message_id", ""))
        return self._index.get(key) if key else None  # (no key is "")

    def _hop(self, index: int | None, server: str, event: str, **extra: str) -> None:
        if index is not None:
            self._put(index, "h", {"time": iso_ms(self.clock.now()), "server": server, "event": event, **extra})

    def received(self, item: Any, server: str) -> None:
        index = self._at(item)
        if index is None and self.report_clients:
            index = self._client_message(item)
        self._hop(index, server, "RECEIVE", internal_id=str(item.internal_id))

    def _client_message(self, item: Any) -> int | None:
        """A message that is none of the scenario's nor a DSN of the lab's: a client's (report_clients)."""
        mid = getattr(item, "message_id", "")
        if not mid or mid in self._lab_made:
            return None
        self.register(mid, mid, item.mail_from, list(item.recipients), item.subject)
        return self._index.get(mid)

    def sent(self, item: Any, recipients: list[str], server: str, next_hop: str) -> None:
        self._hop(self._at(item), server, "SEND", to=";".join(recipients), next_hop=next_hop)

    def dsn_generated(self, item: Any, dsn_message_id: str, action: str, server: str,
                      about: list[str]) -> None:
        """A server generated a DSN (an NDR, a delay notice) about some recipients of `item`."""
        if self.report_clients:
            self._lab_made[dsn_message_id] = 1
        index = self._at(item)
        if index is None:
            return
        self._put(index, "n", {"time": iso_ms(self.clock.now()), "action": action, "server": server,
                               "message_id": dsn_message_id, "about": ";".join(about),
                               "delivered_to": "", "realm": "", "path": ""})
        number = self._notes.get(str(index)) or 0
        self._notes[str(index)] = number + 1
        self._dsn_by_mid[dsn_message_id] = f"{index} {number}"

    def delivered(self, item: Any, recipient: str, realm: str, path: str, server: str) -> None:
        dsn = self._dsn_by_mid.get(getattr(item, "message_id", ""))
        if dsn is not None:
            at, _, number = dsn.partition(" ")
            self._put(int(at), "u", [int(number), {"delivered_to": recipient, "realm": realm, "path": path}])
            return
        index = self._at(item)
        self._hop(index, server, "DELIVER", to=recipient)
        if index is not None:
            self._set_outcome(index, True)
            self._put(index, "d", {"recipient": recipient, "realm": realm, "server": server, "path": path})

    def failed(self, item: Any, recipients: list[str], reason: str, server: str) -> None:
        index = self._at(item)
        self._hop(index, server, "FAIL", to=";".join(recipients), reason=reason)
        if index is not None:
            if recipients:
                self._set_outcome(index, True)
            for r in recipients:
                self._put(index, "f", {"recipient": r, "server": server, "reason": reason})

    def submit_failed(self, data: bytes, recipients: list[str], reason: str, server: str) -> None:
        key = self.key_for(header_value(data, "Message-ID"))
        index = self._index.get(key) if key else None
        if index is not None:
            self._put(index, "h", {"time": iso_ms(self.clock.now()), "server": server, "event": "SUBMITFAIL",
                                   "reason": reason})
            if recipients:
                self._set_outcome(index, True)
            for r in recipients:
                self._put(index, "f", {"recipient": r, "server": server, "reason": reason})

    def pending(self, item: Any, recipients: list[str], server: str, queue: str, last_error: str) -> None:
        index = self._at(item)
        if index is not None:
            for r in recipients:
                self._put(index, "p", {"recipient": r, "server": server, "queue": queue, "last_error": last_error})

    # --- reading back --------------------------------------------------------------------------
    def fate_of(self, key: str) -> Fate | None:
        index = self._index.get(key)
        return None if index is None else self.fate_at(index)

    def fate_at(self, index: int) -> Fate | None:
        """The fate of the message registered `index`-th (read back from the spool)."""
        fates: dict[int, Fate] = {}
        for i, kind, payload in self._records():
            if i == index:
                _apply(fates, i, kind, payload)
        return fates.get(index)

    def all_fates(self) -> Iterator[Fate]:
        """Every fate in registration order; at most BUCKET of them (and their records) in memory."""
        count = self._count
        if count == 0:
            return
        if count <= BUCKET:
            fates: dict[int, Fate] = {}
            for i, kind, payload in self._records():
                _apply(fates, i, kind, payload)
            yield from (fates[i] for i in range(count) if i in fates)
            return
        buckets = [tempfile.TemporaryFile("w+", encoding="utf-8") for _ in range((count + BUCKET - 1) // BUCKET)]
        try:
            assert self._spool is not None
            self._spool.flush()
            self._spool.seek(0)
            try:
                for line in self._spool:
                    buckets[int(line[1:line.index(",")]) // BUCKET].write(line)
            finally:
                self._spool.seek(0, 2)
            for b, fh in enumerate(buckets):
                fh.seek(0)
                fates = {}
                for i, kind, payload in _decoded(fh):
                    _apply(fates, i, kind, payload)
                fh.close()
                yield from (fates[i] for i in range(b * BUCKET, min(count, (b + 1) * BUCKET)) if i in fates)
        finally:
            for fh in buckets:
                fh.close()

    def keys(self) -> list[str]:
        """The keys in registration order (read back from the spool: a registration's first field)."""
        keys: list[str | None] = [None] * self._count
        for i, kind, payload in self._records():
            if kind == "r" and keys[i] is None:
                keys[i] = payload[0]
        return [k for k in keys if k is not None]

    def __len__(self) -> int:
        return self._count


class FateView:
    """`ledger.fates`: the fates read back from the spool, by scenario message id."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def get(self, key: str, default: Fate | None = None) -> Fate | None:
        fate = self._ledger.fate_of(key)
        return default if fate is None else fate

    def __contains__(self, key: object) -> bool:
        return key in self._ledger._index

    def __len__(self) -> int:
        return len(self._ledger)

    def values(self) -> Iterator[Fate]:
        return self._ledger.all_fates()

    def keys(self) -> list[str]:
        return self._ledger.keys()


class MessageList(Sequence[dict[str, Any]]):
    """summary["messages"] without holding them: each message's dict is rebuilt from the ledger's
    spool when read (iteration reads the spool once; an index reads up to that message)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (f.as_dict() for f in self._ledger.all_fates())

    def __len__(self) -> int:
        return len(self._ledger)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return list(self)[i]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("message index out of range")
        fate = self._ledger.fate_at(i)
        assert fate is not None
        return fate.as_dict()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, MessageList)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"MessageList({len(self)} messages)"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (a worker of `run --jobs` sends its RunResult to the parent) as the plain list."""
        return (list, (list(self),))


def dump_summary(summary: dict[str, Any], fh: IO[str]) -> None:
    """json.dump(summary, fh, indent=2), with summary["messages"] written one message at a time."""
    dump_streamed(summary, "messages", summary.get("messages") or [], fh)
