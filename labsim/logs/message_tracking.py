"""Message tracking log (reference log-formats.md §4): groundwork, header and row layout only.

Files `MSGTRK`/`MSGTRKMS`/`MSGTRKMD`/`MSGTRKMA` + `yyyyMMddHH-n.LOG` share one folder,
`<SERVER>/TransportRoles/Logs/MessageTracking` [DOC-MT; REAL: QAZ `MSGTRKMS2022091915-1.LOG`].
Unlike protocol logs, `#Version` is the full build (`15.02.1544.004` = Exchange 2019 CU14) [REAL
format]. Rows of one log are ordered by (timestamp, order added): tracking rows have no session to
sort by, and within one millisecond the causal order in which the lab records events is the order
Exchange would have written them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .csvfmt import escape
from .logfile import DEFAULT_MAX_FILE_BYTES, LogStream
from .protocol_text import escape_controls

__all__ = ["MESSAGE_TRACKING_FIELDS", "MESSAGE_TRACKING_LOG_TYPE", "MESSAGE_TRACKING_PREFIXES",
           "MessageTrackingLog", "message_tracking_folder"]

# 2016/2019: 30 fields [REAL: QAZ header; ELA rows have 30 values].
MESSAGE_TRACKING_FIELDS = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname", "source-context",
    "connector-id", "source", "event-id", "internal-message-id", "message-id", "network-message-id",
    "recipient-address", "recipient-status", "total-bytes", "recipient-count",
    "related-recipient-address", "reference", "message-subject", "sender-address", "return-path",
    "message-info", "directionality", "tenant-id", "original-client-ip", "original-server-ip",
    "custom-data", "transport-traffic-type", "log-id", "schema-version",
)
MESSAGE_TRACKING_LOG_TYPE = "Message Tracking Log"  # [REAL: QAZ, KIN]
MESSAGE_TRACKING_PREFIXES = ("MSGTRK", "MSGTRKMS", "MSGTRKMD", "MSGTRKMA")
_INDEX = {name.replace("-", "_"): i for i, name in enumerate(MESSAGE_TRACKING_FIELDS[1:])}
_SCHEMA_VERSION = _INDEX["schema_version"]
_SEPARATORS = len(_INDEX) - 1  # the commas of a row none of whose values holds one
# A row needs no escaping when it is printable ASCII (what `isprintable` says of ASCII: U+0020 to
# U+007E) with no `"` and no `,` but its separators. Deleting from its bytes every printable
# character but those two leaves exactly the separators then: one C pass over bytes, where
# `count`, `in` and `isprintable` (which looks each character up in the Unicode tables) took three.
_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b',"')
_SEPARATED = b"," * _SEPARATORS

Prefix = Literal["MSGTRK", "MSGTRKMS", "MSGTRKMD", "MSGTRKMA"]


def message_tracking_folder(server_name: str) -> Path:
    return Path(server_name, "TransportRoles", "Logs", "MessageTracking")


class MessageTrackingLog:
    """One message tracking log (one prefix) of one server."""

    __slots__ = ("stream", "version", "_order", "_blank")

    def __init__(self, root: Path, server_name: str, prefix: Prefix, version: str = "15.02.1544.004",
                 *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        if prefix not in MESSAGE_TRACKING_PREFIXES:
            raise ValueError(f"prefix must be one of {MESSAGE_TRACKING_PREFIXES}, not {prefix!r}")
        self.version = version
        self.stream = LogStream(Path(root) / message_tracking_folder(server_name), prefix,
                                MESSAGE_TRACKING_LOG_TYPE, MESSAGE_TRACKING_FIELDS, version,
                                max_file_bytes=max_file_bytes)
        self._order = 0
        self._blank = [""] * len(_INDEX)  # a row's values before the given ones: the schema version only
        self._blank[_SCHEMA_VERSION] = version

    def add(self, when: datetime, **fields: str | int | None) -> None:
        """One row; fields by snake_case name (`event_id="RECEIVE"`), the others left empty.

        `schema_version` defaults to the log's build: every real 2016/2019 row carries it (QAZ,
        ELA), equal to the file's `#Version`.
        """
        self.add_fields(when, fields)

    def add_fields(self, when: datetime, fields: Mapping[str, str | int | None]) -> None:
        """`add` with the fields in a mapping (the tracker builds one: no second keyword dict).

        A row is joined once and written as is when it is printable ASCII without `"` and with no
        `,` but its 28 separators (`_PLAIN`) (the common case: then no value needs `escape_controls` or
        `escape`); otherwise each given value is escaped as below.
        """
        values = self._blank.copy()
        index = _INDEX
        for name, value in fields.items():
            i = index.get(name)
            if i is None:
                raise TypeError(f"unknown message tracking field {name!r}")
            values[i] = value if isinstance(value, str) else "" if value is None else str(value)
        row = ",".join(values)
        if not row.isascii() or row.encode("ascii").translate(None, _PLAIN) != _SEPARATED:
            values = self._blank.copy()
            values[_SCHEMA_VERSION] = escape(self.version)
            for name, value in fields.items():
                # client-supplied text (sender, subject, HELO...): never a raw control byte (smtp-limits.md §5)
                values[index[name]] = "" if value is None else escape(
                    escape_controls(value if isinstance(value, str) else str(value)))
            row = ",".join(values)
        self._order += 1
        self.stream.add_joined(when, (self._order,), row)

    def flush(self, before: str | None = None) -> list[Path]:
        """Write the buffered rows (only those printed before `before`: see LogStream.flush)."""
        return self.stream.flush(before)


# --- reading (Get-MessageTrackingLog over an output tree) -------------------------------------

# Field name -> the property name Get-MessageTrackingLog prints.
TRACK_PROPERTIES = {
    "date-time": "Timestamp", "client-ip": "ClientIp", "client-hostname": "ClientHostname",
    "server-ip": "ServerIp", "server-hostname": "ServerHostname", "source-context": "SourceContext",
    "connector-id": "ConnectorId", "source": "Source", "event-id": "EventId",
    "internal-message-id": "InternalMessageId", "message-id": "MessageId",
    "network-message-id": "NetworkMessageId", "recipient-address": "Recipients",
    "recipient-status": "RecipientStatus", "total-bytes": "TotalBytes", "recipient-count": "RecipientCount",
    "related-recipient-address": "RelatedRecipientAddress", "reference": "Reference",
    "message-subject": "MessageSubject", "sender-address": "Sender", "return-path": "ReturnPath",
    "message-info": "MessageInfo", "directionality": "Directionality", "tenant-id": "TenantId",
    "original-client-ip": "OriginalClientIp", "original-server-ip": "OriginalServerIp",
    "custom-data": "EventData", "transport-traffic-type": "TransportTrafficType", "log-id": "LogId",
    "schema-version": "SchemaVersion",
}


def read_tracking(out: Path) -> list[dict[str, Any]]:
    """Every message tracking row of every server, as Get-MessageTrackingLog objects (sorted by time)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(out.glob("*/TransportRoles/Logs/MessageTracking/MSGTRK*.LOG")):
        server = path.parts[len(out.parts)]
        text = path.read_bytes().decode("utf-8-sig")
        for line in text.split("\r\n"):
            if not line or line.startswith("#"):
                continue
            values = next(csv.reader(io.StringIO(line)))
            row = {TRACK_PROPERTIES[f]: v for f, v in zip(MESSAGE_TRACKING_FIELDS, values)}
            row["Server"] = server
            row["Log"] = path.name.split("20", 1)[0]
            rows.append(row)
    rows.sort(key=lambda r: r["Timestamp"])
    return rows
