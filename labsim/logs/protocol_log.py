"""SMTP Receive / Send protocol logs (reference log-formats.md §2, §3).

`ProtocolLog` is one log folder of one transport service (a `LogStream` with the RECV/SEND
prefix); `SessionWriter` is what an SMTP session holds: it numbers the session's rows from 0 and
stamps them with the session's virtual clock. Rows are sorted on flush by (printed timestamp,
session id, sequence number), so concurrent sessions interleave as in a real file but always the
same way.

Why the writer pre-escapes its constant columns: it runs once per SMTP line, so a row costs one
f-string and one encode (and the escaping only of a line that needs it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Literal

from ..ids import session_hex
from .csvfmt import escape
from .logfile import DEFAULT_MAX_FILE_BYTES, LogStream
from .protocol_text import escape_controls

__all__ = [
    "PROTOCOL_LOG_FIELDS", "PROTOCOL_LOG_VERSION", "PROTOCOL_LOG_TYPES", "PROTOCOL_LOG_PREFIXES",
    "ProtocolLog", "SessionWriter", "protocol_log_folder",
]

# [REAL: QAZ, RML; DOC-PL]
PROTOCOL_LOG_FIELDS = ("date-time", "connector-id", "session-id", "sequence-number", "local-endpoint",
                       "remote-endpoint", "event", "data", "context")
# The assembly version, 15.0.0.0 on every 2013/2016/2019 build [REAL: QAZ on 15.01.2375].
PROTOCOL_LOG_VERSION = "15.0.0.0"
# Receive [REAL: QAZ]; Send [UNVERIFIED + DOC: no real Send header was found].
PROTOCOL_LOG_TYPES = {"recv": "SMTP Receive Protocol Log", "send": "SMTP Send Protocol Log"}
# RECV [REAL]; SEND [UNVERIFIED]
PROTOCOL_LOG_PREFIXES = {"recv": "RECV", "send": "SEND"}

Kind = Literal["recv", "send"]
Service = Literal["FrontEnd", "Hub", "Edge", "MailboxDelivery", "MailboxSubmission"]


def protocol_log_folder(server_name: str, service: Service, kind: Kind) -> Path:
    """The log folder relative to an output root that stands for `%ExchangeInstallPath%` [DOC-PL].

    `<SERVER>/TransportRoles/Logs/<FrontEnd|Hub|Edge>/ProtocolLog/<SmtpReceive|SmtpSend>`; the
    Mailbox services use `Mailbox/ProtocolLog/SmtpReceive/Delivery` and
    `Mailbox/ProtocolLog/SmtpSend/Submission` (plus `SmtpSend/Delivery` for the delivery service's
    side-effect messages, §3.2). Mailbox Transport Submission does not receive SMTP.
    """
    direction = {"recv": "SmtpReceive", "send": "SmtpSend"}[kind]
    base = Path(server_name, "TransportRoles", "Logs")
    if service in ("FrontEnd", "Hub", "Edge"):
        return base / service / "ProtocolLog" / direction
    if service == "MailboxDelivery":
        return base / "Mailbox" / "ProtocolLog" / direction / "Delivery"
    if service == "MailboxSubmission" and kind == "send":
        return base / "Mailbox" / "ProtocolLog" / direction / "Submission"
    raise ValueError(f"no SMTP {direction} protocol log for service {service!r}")


class ProtocolLog:
    """One SMTP protocol log folder: `root / folder`, files RECV/SENDyyyyMMddHH-n.LOG."""

    __slots__ = ("kind", "stream")

    def __init__(self, root: Path, kind: Kind, folder: Path,
                 *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        if kind not in PROTOCOL_LOG_TYPES:
            raise ValueError(f"kind must be 'recv' or 'send', not {kind!r}")
        self.kind = kind
        self.stream = LogStream(Path(root) / folder, PROTOCOL_LOG_PREFIXES[kind], PROTOCOL_LOG_TYPES[kind],
                                PROTOCOL_LOG_FIELDS, PROTOCOL_LOG_VERSION, max_file_bytes=max_file_bytes)

    def flush(self, before: str | None = None) -> list[Path]:
        """Write the buffered rows (only those printed before `before`: see LogStream.flush)."""
        return self.stream.flush(before)


class SessionWriter:
    """The protocol-log rows of one SMTP session; a no-op when the connector's level is None.

    `local` is None (printed empty) on Send sessions until the TCP connection exists [REAL: ELA];
    call `set_local` once it does. Methods take the time from `clock` at the moment of the call.
    A `data` value containing CRLF becomes one row per line, each with its own sequence number
    [UNVERIFIED]; one trailing CRLF is ignored.

    Per row (once per SMTP line): the columns before the sequence number and those between it and
    the event are kept escaped; a line of printable ASCII without `,` or `"` (nearly every SMTP
    line) is its own field (`escape_controls` and `escape` would return it as is), so it goes into
    the row without either call. (The `in` scans go first: `isprintable` reads every character
    through the Unicode tables, and a line with a comma takes the escaping way anyway.)
    """

    __slots__ = ("_stream", "_clock", "_enabled", "session_id", "_head", "_remote", "_mid", "_seq")

    def __init__(self, log: ProtocolLog, connector_id: str, session_id: int, local: str | None,
                 remote: str, clock: Callable[[], datetime], enabled: bool) -> None:
        self._stream = log.stream
        self._clock = clock
        self._enabled = enabled
        self.session_id = session_id
        self._head = f"{escape(connector_id)},{session_hex(session_id)},"
        self._remote = escape(remote)
        self._mid = f",{escape(local or '')},{self._remote},"  # between the sequence number and the event
        self._seq = 0

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def next_sequence(self) -> int:
        return self._seq

    def set_local(self, endpoint: str) -> None:
        self._mid = f",{escape(endpoint)},{self._remote},"

    def connect(self) -> None:
        """`+` row; data and context empty [REAL]."""
        if self._enabled:
            self._row("+", "", "")

    def disconnect(self, reason: str) -> None:
        """`-` row; context = the reason (`Local`, `Remote(ConnectionReset)`, see protocol_text)."""
        if self._enabled:
            self._row("-", "", escape(reason))

    def sent(self, line: str) -> None:
        """`>` row(s): what this server wrote on the wire."""
        if self._enabled:
            if "," not in line and '"' not in line and line.isascii() and line.isprintable():
                self._row(">", line, "")
            else:
                self._lines(">", line, "")

    def received(self, line: str) -> None:
        """`<` row(s): what this server read from the wire."""
        if self._enabled:
            if "," not in line and '"' not in line and line.isascii() and line.isprintable():
                self._row("<", line, "")
            else:
                self._lines("<", line, "")

    def info(self, data: str = "", context: str = "") -> None:
        """`*` row(s): information (certificate, permissions, TLS result, …)."""
        if self._enabled:
            if "," not in data and '"' not in data and data.isascii() and data.isprintable():
                self._row("*", data, escape(context))
            else:
                self._lines("*", data, escape(context))

    def _lines(self, event: str, data: str, context: str) -> None:
        data = escape_controls(data)  # never a raw NUL or other control byte in a row [INFERRED]
        if "\r\n" in data:
            if data.endswith("\r\n"):
                data = data[:-2]
            for part in data.split("\r\n"):
                self._row(event, escape(part), context)
        else:
            self._row(event, escape(data), context)

    def _row(self, event: str, data: str, context: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self._stream.add_joined(self._clock(), (self.session_id, seq),
                                f"{self._head}{seq}{self._mid}{event},{data},{context}")
