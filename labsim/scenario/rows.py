"""A scenario's [[message]] rows packed into one buffer (issue 8: a working day of mail in one file).

A MessageRow is ~0.1 KB plus its own strings (its id, its subject: ~0.27 KB a message of
gen_traffic's); a loaded scenario keeps its rows for as long as it is held (the whole run, and
`labsim run A B ...` holds every scenario it loaded). `PackedRows` keeps each row as a few bytes
in one bytearray - its id, time and subject as UTF-8, the sender, the recipients and a short body
(the strings most messages share, as MessageRow.of shares them) as numbers into one table of
those strings, the size - and builds the MessageRow again when it is read (~40 bytes a message
of gen_traffic's instead of ~270). It is the list the loader gives (`scenario.message`): read by
index, iterated, compared with a list, and changed like one (a Message put in is kept as its
MessageRow, as the loader keeps it).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, MutableSequence
from typing import Any, overload

from .model import Message, MessageRow

SHARED_BODY = 256  # a body this long or shorter is shared (as MessageRow.of interns it)


def _uint(buf: bytearray, n: int) -> None:
    while n >= 0x80:
        buf.append(n & 0x7F | 0x80)
        n >>= 7
    buf.append(n)


def _text(buf: bytearray, s: str) -> None:
    b = s.encode("utf-8", "surrogatepass")  # (a str from Python may hold a lone surrogate)
    _uint(buf, len(b))
    buf += b


class PackedRows(MutableSequence[MessageRow]):
    """MessageRows packed in a bytearray (see the module's docstring)."""

    __hash__ = None  # type: ignore[assignment]  # (a list's: mutable)

    def __init__(self, rows: Iterable[MessageRow | Message] = ()) -> None:
        self._buf = bytearray()
        self._start = array("Q")  # row i's bytes start at _buf[_start[i]]
        self._shared: list[str] = []  # senders, recipients, short bodies: each once
        self._number: dict[str, int] = {}
        for row in rows:
            self._start.append(self._pack(row))

    # --- packing --------------------------------------------------------------------------------
    def _share(self, s: str) -> int:
        n = self._number.get(s)
        if n is None:
            n = self._number[s] = len(self._shared)
            self._shared.append(s)
        return n

    def _pack(self, row: MessageRow | Message) -> int:
        """Append `row`'s bytes to the buffer; where they start."""
        if isinstance(row, Message):
            row = MessageRow.of(row)
        elif not isinstance(row, MessageRow):
            raise TypeError(f"a scenario's message is a MessageRow or a Message, not {type(row).__name__}")
        buf = self._buf
        start = len(buf)
        _text(buf, row.id)
        _text(buf, row.at)
        _uint(buf, self._share(row.sender))
        _uint(buf, len(row.to))
        for a in row.to:
            _uint(buf, self._share(a))
        _text(buf, row.subject)
        if len(row.body) <= SHARED_BODY:
            _uint(buf, 2 * self._share(row.body))
        else:
            b = row.body.encode("utf-8", "surrogatepass")
            _uint(buf, 2 * len(b) + 1)
            buf += b
        _uint(buf, 0 if row.size is None else row.size + 1)
        return start

    def _unpack(self, pos: int) -> MessageRow:
        buf, shared = self._buf, self._shared

        def uint() -> int:
            nonlocal pos
            n = shift = 0
            while True:
                b = buf[pos]
                pos += 1
                n |= (b & 0x7F) << shift
                if b < 0x80:
                    return n
                shift += 7

        def text(length: int) -> str:
            nonlocal pos
            end = pos + length
            s = buf[pos:end].decode("utf-8", "surrogatepass")
            pos = end
            return s

        mid = text(uint())
        at = text(uint())
        sender = shared[uint()]
        to = tuple(shared[uint()] for _ in range(uint()))
        subject = text(uint())
        b = uint()
        body = text(b >> 1) if b & 1 else shared[b >> 1]
        size = uint()
        return MessageRow(mid, at, sender, to, subject, body, size - 1 if size else None)

    # --- the sequence ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._start)

    @overload
    def __getitem__(self, i: int) -> MessageRow: ...

    @overload
    def __getitem__(self, i: slice) -> list[MessageRow]: ...

    def __getitem__(self, i: int | slice) -> MessageRow | list[MessageRow]:
        if isinstance(i, slice):
            return [self._unpack(p) for p in self._start[i]]
        return self._unpack(self._start[i])

    def __iter__(self) -> Any:
        return (self._unpack(p) for p in self._start)

    @overload
    def __setitem__(self, i: int, row: MessageRow) -> None: ...

    @overload
    def __setitem__(self, i: slice, row: Iterable[MessageRow]) -> None: ...

    def __setitem__(self, i: int | slice, row: Any) -> None:
        if isinstance(i, slice):
            rows = list(self)
            rows[i] = row
            self._start = array("Q", (self._pack(r) for r in rows))
        else:
            self._start[i] = self._pack(row)  # (the row it replaces stays in the buffer, unread)

    def __delitem__(self, i: int | slice) -> None:
        del self._start[i]

    def insert(self, i: int, row: MessageRow) -> None:
        self._start.insert(i, self._pack(row))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, PackedRows)):  # (a list is never equal to a tuple)
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))
