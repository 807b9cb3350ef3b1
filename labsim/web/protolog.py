"""SMTP protocol logs read back from an output folder, whole or as they grow.

Exchange's protocol logs (logs/protocol_log.py writes them) are CSV files with `#` header lines,
one row per event of a session: `date-time,connector-id,session-id,sequence-number,
local-endpoint,remote-endpoint,event,data,context`, event `+` connect, `-` disconnect, `<` and
`>` received and sent lines, `*` information. A file's path names the server, the service
(FrontEnd, Hub, Edge) and the side (SmtpReceive, SmtpSend).

`LogTail` reads only what was appended since the last call (complete lines only), so `labsim up`
can print a line per finished session and the live web view can follow a lab while its logs are
flushed every second, from the files alone.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

_BOM = "\ufeff"


@dataclass(frozen=True)
class Row:
    time: str
    connector: str
    session: str
    seq: int
    local: str
    remote: str
    event: str
    data: str
    context: str
    server: str
    service: str  # FrontEnd, Hub, Edge, ... (the folder under Logs/)
    kind: str  # SmtpReceive or SmtpSend
    file: str  # path of the log file, relative to the output folder

    @property
    def key(self) -> str:
        """A session's id across the whole output folder: server/service/kind/session-id."""
        return f"{self.server}/{self.service}/{self.kind}/{self.session}"


@dataclass
class Session:
    key: str
    rows: list[Row] = field(default_factory=list)

    @property
    def first(self) -> Row:
        return self.rows[0]

    @property
    def receive(self) -> bool:
        return self.first.kind == "SmtpReceive"

    @property
    def ended(self) -> bool:
        return any(r.event == "-" for r in self.rows)

    def commands(self) -> list[str]:
        """What the client said (the SMTP client's lines), in order."""
        side = "<" if self.receive else ">"
        return [r.data for r in self.rows if r.event == side]

    def replies(self) -> list[str]:
        side = ">" if self.receive else "<"
        return [r.data for r in self.rows if r.event == side]

    def outcome(self) -> str:
        """The reply that tells what the session came to: the last refusal (4xx/5xx), else the
        last `250 2.6.0 ... Queued` acceptance, else the last reply. A 503 right after another
        refusal is that refusal's echo, not the cause: a pipelined group's RCPT TOs are answered
        `503 5.5.2 Need mail command` when its MAIL FROM was refused."""
        replies = self.replies()
        for i in range(len(replies) - 1, -1, -1):
            text = replies[i]
            if text[:1] in ("4", "5"):
                if text.startswith("503") and i and replies[i - 1][:1] in ("4", "5"):
                    continue
                return text
        for text in reversed(replies):
            if text.startswith("250 2.6.0"):
                return text
        return replies[-1] if replies else ""

    def disconnect(self) -> str:
        return next((r.context for r in self.rows if r.event == "-"), "")

    def line(self, width: int = 200) -> str:
        """One line for `labsim up`'s transcript: time, where, who, the verbs, the outcome."""
        r = self.first
        side = "receive" if self.receive else "send"
        verbs = " ".join(c.split(" ", 1)[0].upper() for c in self.commands() if c) or "-"
        peer = f"{r.remote} -> {r.local}" if self.receive else f"{r.local} -> {r.remote}"
        text = (f"{r.time[11:19]}  {r.server} {r.service} {side}  {r.connector}  {peer}  {verbs}  "
                f"{self.outcome()}  [{self.disconnect() or 'open'}]")
        return text if len(text) <= width else text[: width - 1] + "…"


def _where(out: Path, path: Path) -> tuple[str, str, str] | None:
    """(server, service, kind) of a protocol log file, from its folder names:
    <SERVER>/TransportRoles/Logs/<service>/ProtocolLog/<kind>/<file>."""
    parts = path.relative_to(out).parts
    if "ProtocolLog" not in parts:
        return None
    i = parts.index("ProtocolLog")
    if i < 2 or i + 2 != len(parts) - 1:
        return None
    return parts[0], parts[i - 1], parts[i + 1]


def log_files(out: Path) -> list[Path]:
    """The protocol log files, found where Exchange keeps them (not by walking the mailboxes)."""
    return sorted(p for p in out.glob("*/TransportRoles/Logs/*/ProtocolLog/*/*.LOG") if not p.name.startswith("."))


def parse_lines(text: str, *, server: str, service: str, kind: str, file: str) -> list[Row]:
    rows: list[Row] = []
    for line in text.split("\r\n"):
        line = line.lstrip(_BOM)
        if not line or line.startswith("#"):
            continue
        cells = next(csv.reader(io.StringIO(line)), [])
        if len(cells) < 9:
            continue
        try:
            seq = int(cells[3])
        except ValueError:
            seq = 0
        rows.append(Row(cells[0], cells[1], cells[2], seq, cells[4], cells[5], cells[6], cells[7], cells[8],
                        server, service, kind, file))
    return rows


class LogTail:
    """The protocol log rows appended to an output folder since the last `poll()`."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._offsets: dict[Path, int] = {}

    def skip_existing(self) -> None:
        """Start from the current end of every file (rows written before now are not returned)."""
        for path in log_files(self.out):
            self._offsets[path] = path.stat().st_size

    def poll(self) -> list[Row]:
        rows: list[Row] = []
        for path in log_files(self.out):
            where = _where(self.out, path)
            if where is None:
                continue
            start = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    chunk = fh.read()
            except OSError:
                continue
            end = chunk.rfind(b"\r\n")
            if end < 0:
                continue
            self._offsets[path] = start + end + 2
            rows.extend(parse_lines(chunk[: end + 2].decode("utf-8", "replace"), server=where[0], service=where[1],
                                    kind=where[2], file=str(path.relative_to(self.out))))
        rows.sort(key=lambda r: (r.time, r.key, r.seq))
        return rows


class SessionFollower:
    """Groups tailed rows into sessions and hands back each session once it has ended."""

    def __init__(self, out: Path, *, from_now: bool = True) -> None:
        self.tail = LogTail(out)
        if from_now:
            self.tail.skip_existing()
        self._open: dict[str, Session] = {}

    def poll(self) -> tuple[list[Row], list[Session]]:
        """(new rows, sessions that ended with them)."""
        rows = self.tail.poll()
        ended: list[Session] = []
        for r in rows:
            s = self._open.setdefault(r.key, Session(r.key))
            s.rows.append(r)
            if r.event == "-":
                ended.append(self._open.pop(r.key))
        return rows, ended


def read_sessions(out: Path) -> dict[str, Session]:
    """Every session of every protocol log of the folder, in the order they started."""
    sessions: dict[str, Session] = {}
    for r in LogTail(out).poll():
        sessions.setdefault(r.key, Session(r.key)).rows.append(r)
    return sessions
