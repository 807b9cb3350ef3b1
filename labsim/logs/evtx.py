"""Windows event logs as binary .evtx files (the format Event Viewer, wevtutil and every event tool read).

Theory of operation. An .evtx file is a 4096-byte file header followed by 64 KiB chunks; each
chunk has a 512-byte header (record numbers, offsets, a CRC32 of its records and one of itself,
a 64-bucket table of element/attribute names and a 32-bucket table of templates) and then event
records. A record holds the event as *binary XML*: a template instance that names a template
(the XML skeleton, stored once per chunk, inline in the first record that uses it) and the
record's substitution values (typed: UInt8 Level, UInt16 EventID, FILETIME SystemTime, ...).
Names (`Event`, `System`, `Provider`, ...) are likewise stored once per chunk, inline where they
are first used, and referenced by chunk offset afterwards.

The writer takes each event in its `wevtutil qe /f:xml` text form (what labsim already writes in
Application.xml), turns the text into a template (element and attribute names, the literal
values Windows keeps in the template: Provider, Channel, Computer, Data names) plus typed
values, and packs records into chunks. The same events give the same bytes (template GUIDs are
hashes of the template's shape; no clock is read).

Sources (docs/event-logs.md): libyal/libevtx "Windows XML Event Log (EVTX)" format
documentation (file header, chunk header, record, binary XML tokens, value types, CRC32 ranges);
williballenthin/python-evtx (the reader the tests use; its test_records.py shows a real
System-log record's template: Provider/Channel/Computer literal, System fields as typed optional
substitutions in this order: Level UInt8, Opcode UInt8, Task UInt16, EventID UInt16, Qualifiers
UInt16, Keywords HexInt64, TimeCreated FILETIME, ..., ProcessID/ThreadID UInt32, EventRecordID
UInt64, Version UInt8); omerbenamram/evtx (the reader behind Chainsaw and Hayabusa: element
starts inside templates carry the 16-bit dependency identifier; name hash multiplier 65599).
[INFERRED] Windows puts EventData/UserData in a nested binary-XML substitution (value type
0x21); labsim keeps it in the record's own template with one string substitution per <Data>,
which every reader renders to the same XML. The bucket of a template in the chunk's template
table (template id mod 32) is inferred; readers walk every bucket.
"""

from __future__ import annotations

import binascii
import hashlib
import struct
import xml.parsers.expat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["EvtxError", "EvtxLog", "XmlNode", "evtx_bytes", "parse_event_xml"]

CHUNK_SIZE = 0x10000
FILE_HEADER_SIZE = 0x1000
CHUNK_HEADER_SIZE = 0x200
_EPOCH_DELTA_100NS = 116444736000000000  # 1601-01-01 -> 1970-01-01 in 100 ns

# Binary XML tokens (libevtx "Token types").
_EOF, _OPEN, _CLOSE_START, _CLOSE_EMPTY, _END, _VALUE, _ATTR = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
_TEMPLATE_INSTANCE, _NORMAL_SUB, _OPTIONAL_SUB, _FRAGMENT = 0x0C, 0x0D, 0x0E, 0x0F
_MORE = 0x40  # "has more data" flag on open-start (attributes follow), attribute and value tokens

# Value types (libevtx "Value types").
T_STRING, T_UINT8, T_UINT16, T_UINT32, T_UINT64 = 0x01, 0x04, 0x06, 0x08, 0x0A
T_BINARY, T_FILETIME, T_HEX64 = 0x0E, 0x11, 0x15

# Where Windows substitutes a typed value in the System element (python-evtx test_records.py,
# a real record): path -> (substitution index, value type). Everything else in System is literal.
_SYSTEM_SUBS: dict[tuple[str, ...], tuple[int, int]] = {
    ("Level",): (0, T_UINT8),
    ("Opcode",): (1, T_UINT8),
    ("Task",): (2, T_UINT16),
    ("EventID",): (3, T_UINT16),
    ("EventID", "@Qualifiers"): (4, T_UINT16),
    ("Keywords",): (5, T_HEX64),
    ("TimeCreated", "@SystemTime"): (6, T_FILETIME),
    ("Execution", "@ProcessID"): (8, T_UINT32),
    ("Execution", "@ThreadID"): (9, T_UINT32),
    ("EventRecordID",): (10, T_UINT64),
    ("Version",): (11, T_UINT8),
}
_FIRST_DATA_SUB = 14  # indexes 7, 12, 13 (ActivityID, UserID, RelatedActivityID) stay Null


class EvtxError(ValueError):
    """An event the writer cannot encode (names the event and the problem)."""


@dataclass
class XmlNode:
    name: str
    attrs: list[tuple[str, str]] = field(default_factory=list)
    children: list[XmlNode] = field(default_factory=list)
    text: str = ""


def parse_event_xml(text: str) -> XmlNode:
    """One `<Event>` in wevtutil's XML text form -> a plain tree (attribute order kept, xmlns as an
    ordinary attribute, as binary XML stores it)."""
    parser = xml.parsers.expat.ParserCreate()
    parser.ordered_attributes = True
    stack: list[XmlNode] = []
    root: list[XmlNode] = []

    def start(name: str, attrs: list[str]) -> None:
        node = XmlNode(name, list(zip(attrs[0::2], attrs[1::2])))
        (stack[-1].children if stack else root).append(node)
        stack.append(node)

    def end(name: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(text, True)
    except xml.parsers.expat.ExpatError as exc:
        raise EvtxError(f"event XML is not well-formed: {exc}") from None
    if len(root) != 1 or root[0].name != "Event":
        raise EvtxError("event XML must hold exactly one <Event> element")
    return root[0]


# ---------------------------------------------------------------------------------------------
# Values


def _filetime(value: str) -> int:
    """`2026-05-01T06:00:05.2120000Z` (7 fractional digits) -> FILETIME (100 ns since 1601)."""
    head, _, frac = value.rstrip("Z").partition(".")
    when = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    ticks = int((frac + "0000000")[:7]) if frac else 0
    return int(when.timestamp()) * 10_000_000 + _EPOCH_DELTA_100NS + ticks


def _encode_value(value: str, vtype: int, where: str) -> bytes:
    try:
        if vtype == T_STRING:
            return value.encode("utf-16-le")
        if vtype == T_UINT8:
            return struct.pack("<B", int(value))
        if vtype == T_UINT16:
            return struct.pack("<H", int(value))
        if vtype == T_UINT32:
            return struct.pack("<I", int(value))
        if vtype == T_UINT64:
            return struct.pack("<Q", int(value))
        if vtype == T_BINARY:
            return bytes.fromhex(value)  # wevtutil prints binary data as hex
        if vtype == T_HEX64:
            return struct.pack("<Q", int(value, 16))
        if vtype == T_FILETIME:
            return struct.pack("<Q", _filetime(value))
    except (ValueError, struct.error):
        raise EvtxError(f"{where}: {value!r} is not a valid value for its field") from None
    raise EvtxError(f"{where}: unsupported value type {vtype:#x}")  # pragma: no cover


def name_hash(name: str) -> int:
    """The 16-bit name hash of binary XML names (hash = hash * 65599 + UTF-16 code unit)."""
    h = 0
    for unit in struct.unpack(f"<{len(name)}H", name.encode("utf-16-le")):
        h = (h * 65599 + unit) & 0xFFFFFFFF
    return h & 0xFFFF


# ---------------------------------------------------------------------------------------------
# Templates: the XML skeleton with literal text or substitutions


@dataclass(frozen=True)
class _Sub:
    index: int
    vtype: int


_Content = str | _Sub  # literal text, or a substitution


@dataclass(frozen=True)
class _TElem:
    name: str
    attrs: tuple[tuple[str, _Content], ...]
    children: tuple[_TElem, ...]
    text: _Content | None


def _shape(event: XmlNode) -> tuple[_TElem, dict[int, tuple[int, str]]]:
    """The template of one event and its values: index -> (value type, text)."""
    values: dict[int, tuple[int, str]] = {}
    next_data = [_FIRST_DATA_SUB]

    def sub_for(path: tuple[str, ...], in_system: bool, text: str) -> _Content:
        if in_system:
            spec = _SYSTEM_SUBS.get(path)
            if spec is None:
                return text  # literal in the template: Provider, Channel, Computer ...
            values[spec[0]] = (spec[1], text)
            return _Sub(*spec)
        index = next_data[0]
        next_data[0] += 1
        vtype = T_BINARY if path[-1:] == ("Binary",) else T_STRING
        values[index] = (vtype, text)
        return _Sub(index, vtype)

    def build(node: XmlNode, path: tuple[str, ...], section: str) -> _TElem:
        in_system = section == "System"
        inner = path[1:] if in_system else path
        attrs = []
        for key, val in node.attrs:
            literal = not in_system or (*inner, f"@{key}") not in _SYSTEM_SUBS
            attrs.append((key, val if literal else sub_for((*inner, f"@{key}"), True, val)))
        children = tuple(build(c, (*path, c.name), section or c.name) for c in node.children)
        text: _Content | None = None
        if not node.children and node.text:
            text = sub_for(inner, in_system, node.text) if section else node.text
        elif not node.children and section and not in_system and node.name == "Data":
            text = sub_for(inner, False, "")  # an empty insertion string is still a value
        return _TElem(node.name, tuple(attrs), children, text)

    top = _TElem(event.name, tuple(event.attrs),
                 tuple(build(c, (c.name,), c.name) for c in event.children), None)
    return top, values


# ---------------------------------------------------------------------------------------------
# The chunk: names and templates are written once, referenced afterwards


class _Chunk:
    def __init__(self, first_record: int) -> None:
        self.data = bytearray(CHUNK_HEADER_SIZE)
        self.names: dict[str, int] = {}  # name -> chunk offset of its NameString
        self.name_buckets: dict[int, list[int]] = {}
        self.templates: dict[bytes, int] = {}  # guid -> chunk offset of the definition
        self.template_buckets: dict[int, list[int]] = {}
        self.first = first_record
        self.last = first_record - 1
        self.last_offset = 0

    # -- names
    def _name_ref(self, out: bytearray, name: str) -> None:
        """Append a 4-byte name offset; the name itself follows inline on its first use."""
        here = len(self.data) + len(out) + 4
        known = self.names.get(name)
        if known is not None:
            out += struct.pack("<I", known)
            return
        out += struct.pack("<I", here)
        self.names[name] = here
        h = name_hash(name)
        self.name_buckets.setdefault(h % 64, []).append(here)
        out += struct.pack("<IHH", 0, h, len(name)) + name.encode("utf-16-le") + b"\x00\x00"

    # -- binary XML of a template
    def _content(self, out: bytearray, content: _Content, more: bool = False) -> None:
        if isinstance(content, _Sub):
            out += struct.pack("<BHB", _OPTIONAL_SUB if content.index < _FIRST_DATA_SUB else _NORMAL_SUB,
                               content.index, content.vtype)
        else:
            out += bytes([_VALUE | (_MORE if more else 0), T_STRING])
            out += struct.pack("<H", len(content)) + content.encode("utf-16-le")

    def _element(self, out: bytearray, el: _TElem) -> None:
        start = len(out)
        out += bytes([_OPEN | (_MORE if el.attrs else 0)]) + struct.pack("<HI", 0xFFFF, 0)
        self._name_ref(out, el.name)
        if el.attrs:
            size_at = len(out)
            out += b"\x00\x00\x00\x00"
            for i, (key, val) in enumerate(el.attrs):
                out.append(_ATTR | (_MORE if i + 1 < len(el.attrs) else 0))
                self._name_ref(out, key)
                self._content(out, val)
            struct.pack_into("<I", out, size_at, len(out) - size_at - 4)
        if not el.children and el.text is None:
            out.append(_CLOSE_EMPTY)
        else:
            out.append(_CLOSE_START)
            for child in el.children:
                self._element(out, child)
            if el.text is not None:
                self._content(out, el.text)
            out.append(_END)
        struct.pack_into("<I", out, start + 3, len(out) - start - 7)

    def _template_instance(self, out: bytearray, template: _TElem) -> None:
        guid = hashlib.sha256(repr(template).encode("utf-8")).digest()[:16]
        template_id = struct.unpack_from("<I", guid)[0]
        out += bytes([_TEMPLATE_INSTANCE, 0x01]) + struct.pack("<I", template_id)
        known = self.templates.get(guid)
        if known is not None:
            out += struct.pack("<I", known)
            return
        here = len(self.data) + len(out) + 4
        out += struct.pack("<I", here)
        self.templates[guid] = here
        self.template_buckets.setdefault(template_id % 32, []).append(here)
        head = len(out)
        out += struct.pack("<I", 0) + guid + b"\x00\x00\x00\x00"
        body_start = len(out)
        out += bytes([_FRAGMENT, 1, 1, 0])
        self._element(out, template)
        out.append(_EOF)
        struct.pack_into("<I", out, head + 20, len(out) - body_start)

    # -- records
    def try_add(self, record_id: int, written: int, template: _TElem,
                values: dict[int, tuple[int, str]], where: str) -> bool:
        """Append one record; False (and nothing changed) when it does not fit in this chunk."""
        saved = (dict(self.names), {k: list(v) for k, v in self.name_buckets.items()},
                 dict(self.templates), {k: list(v) for k, v in self.template_buckets.items()})
        body = bytearray()
        body += struct.pack("<IIQQ", 0x00002A2A, 0, record_id, written)
        body += bytes([_FRAGMENT, 1, 1, 0])
        self._template_instance(body, template)
        count = max(values) + 1 if values else 0
        encoded = [(_encode_value(values[i][1], values[i][0], where), values[i][0]) if i in values else (b"", 0)
                   for i in range(count)]
        body += struct.pack("<I", count)
        for data, vtype in encoded:
            if len(data) > 0xFFFF:
                raise EvtxError(f"{where}: a value of {len(data)} bytes does not fit in one record")
            body += struct.pack("<HBB", len(data), vtype, 0)
        for data, _ in encoded:
            body += data
        body += struct.pack("<I", len(body) + 4)
        struct.pack_into("<I", body, 4, len(body))
        if len(self.data) + len(body) > CHUNK_SIZE:
            self.names, self.name_buckets, self.templates, self.template_buckets = saved
            if len(self.data) == CHUNK_HEADER_SIZE:
                raise EvtxError(f"{where}: the event does not fit in one 64 KiB chunk")
            return False
        self.last_offset = len(self.data)
        self.data += body
        self.last = record_id
        return True

    def _chain(self, table_at: int, buckets: dict[int, list[int]], out: bytearray, link_at: int) -> None:
        for bucket, offsets in buckets.items():
            # newest first in the bucket, each entry's first dword pointing to the previous one
            for newer, older in zip(offsets[1:], offsets[:-1]):
                struct.pack_into("<I", out, newer + link_at, older)
            struct.pack_into("<I", out, table_at + 4 * bucket, offsets[-1])

    def finish(self) -> bytes:
        """The chunk's 64 KiB: header with its tables and CRC32s, records, zeros."""
        out = bytearray(self.data) + bytes(CHUNK_SIZE - len(self.data))
        self._chain(0x80, self.name_buckets, out, 0)
        self._chain(0x180, self.template_buckets, out, 0)
        free = len(self.data)
        struct.pack_into("<8sQQQQIII", out, 0, b"ElfChnk\x00", self.first, self.last, self.first, self.last,
                         0x80, self.last_offset, free)
        struct.pack_into("<I", out, 52, binascii.crc32(out[CHUNK_HEADER_SIZE:free]) & 0xFFFFFFFF)
        struct.pack_into("<I", out, 124, binascii.crc32(bytes(out[:120]) + bytes(out[128:512])) & 0xFFFFFFFF)
        return bytes(out)


def _file_header(chunks: int, next_record: int) -> bytes:
    head = bytearray(FILE_HEADER_SIZE)
    last = max(chunks - 1, 0)
    struct.pack_into("<8sQQQIHHHH", head, 0, b"ElfFile\x00", 0, last, next_record, 0x80, 1, 3,
                     FILE_HEADER_SIZE, chunks)
    struct.pack_into("<I", head, 124, binascii.crc32(bytes(head[:120])) & 0xFFFFFFFF)
    return bytes(head)


class EvtxLog:
    """One channel's .evtx (e.g. a server's Application.evtx), events added as they are raised.

    `add(xml)` takes the event's `wevtutil /f:xml` text (EventRecordID and SystemTime inside it
    become the record's number and written time); `to_bytes()` is the whole file: header and
    every chunk, the last one holding what fits. `write(path)` writes it."""

    def __init__(self) -> None:
        self._done: list[bytes] = []
        self._chunk: _Chunk | None = None
        self._next_record = 1

    def add(self, event_xml: str) -> None:
        event = parse_event_xml(event_xml)
        template, values = _shape(event)
        try:
            record_id = int(values[10][1])
            written = _filetime(values[6][1])
        except KeyError:
            raise EvtxError("event XML lacks EventRecordID or TimeCreated/@SystemTime") from None
        except ValueError:
            raise EvtxError(f"event XML has a bad EventRecordID or SystemTime: {values[10][1]!r}") from None
        where = f"event record {record_id}"
        if self._chunk is None:
            self._chunk = _Chunk(record_id)
        if not self._chunk.try_add(record_id, written, template, values, where):
            self._done.append(self._chunk.finish())
            self._chunk = _Chunk(record_id)
            self._chunk.try_add(record_id, written, template, values, where)
        self._next_record = record_id + 1

    @property
    def records(self) -> int:
        return 0 if self._chunk is None else self._chunk.last  # last record id written

    def to_bytes(self) -> bytes:
        chunks = self._done + ([self._chunk.finish()] if self._chunk is not None else [])
        return _file_header(len(chunks), self._next_record) + b"".join(chunks)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())
        return path


def evtx_bytes(events_xml: list[str]) -> bytes:
    """The .evtx file holding these events (each in wevtutil /f:xml text form), oldest first."""
    log = EvtxLog()
    for text in events_xml:
        log.add(text)
    return log.to_bytes()
