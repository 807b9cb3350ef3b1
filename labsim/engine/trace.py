"""Exchange Online's message trace: what Get-MessageTrace / Get-MessageTraceDetail show for the tenant.

EXO keeps no message tracking log an admin can read; the trace is its evidence. The EXO party
reports to this recorder through the same calls the on-prem tracker gets (`received`, `send`,
`deliver`, `defer`, `fail`, `dsn`), so trace and ledger come from the same moments.

Formats (log-formats.md §5 [GMT, DOC-EXO]): Get-MessageTrace rows per recipient with
`Organization, MessageId, Received, SenderAddress, RecipientAddress, Subject, Status, ToIP,
FromIP, Size, MessageTraceId, StartDate, EndDate, Index`; statuses `Delivered`, `Failed`,
`Pending`, `GettingStatus` (PowerShell names); Get-MessageTraceDetail rows `Organization,
MessageId, MessageTraceId, Date, Event, Action, Detail, Data, RecipientAddress, SenderAddress,
StartDate, EndDate` with the events Receive, Send, Deliver, Defer, Fail. A failed connector hop
reads `Reason: [{LED=...};{MSG=...};{FQDN=...};{IP=...};{LRT=...}]` (the structured status real
Exchange prints, docs/queues-tracking-ndr.md). Detail sentences are [INFERRED]. Export-Csv
formatting (quoted header and values, en-US dates) is PowerShell's.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import iso_ms
from ..logs.jsonstream import dump_streamed
from ..transport.tracking import led_status, us_time
from .spill import SpilledMap

if TYPE_CHECKING:  # pragma: no cover
    from ..transport.message import MailItem
    from ..transport.queues import Queue
    from .ports import TraceLab

TRACE_COLUMNS = ("Organization", "MessageId", "Received", "SenderAddress", "RecipientAddress", "Subject", "Status",
                 "ToIP", "FromIP", "Size", "MessageTraceId", "StartDate", "EndDate", "Index")
DETAIL_COLUMNS = ("Organization", "MessageId", "MessageTraceId", "Date", "Event", "Action", "Detail", "Data",
                  "RecipientAddress", "SenderAddress", "StartDate", "EndDate")
_STATUS_OF_EVENT = {"Receive": "GettingStatus", "Defer": "Pending", "Send": "Delivered", "Deliver": "Delivered",
                    "Fail": "Failed"}


class ExoTrace:
    """The tenant's message trace, filled as EXO acts.

    Memory (issue 8): rows and events go into a private temporary SQLite database on disk (Python's
    sqlite3; deleted when closed) as EXO reports them; the trace keeps only the row number of
    each (Network Message ID, recipient), the recent ones in memory and the older on disk
    (engine.spill.SpilledMap). The outputs are written from the database in
    the orders `trace_rows` and `detail_rows` give (Received newest first, then recipient, then
    first seen; trace id, recipient, date, then first seen), text compared by code point as
    Python compares it (UTF-8 bytes in BLOB columns sort the same way), so the bytes are the ones
    the in-memory trace wrote."""

    def __init__(self, lab: "TraceLab") -> None:
        self.lab = lab
        # (network message id NUL recipient lower) -> row number; older entries wait on disk (the
        # id is a GUID, so the first NUL separates the two): memory follows the mail in flight
        self._seq: SpilledMap[int] = SpilledMap()
        self._row_count = 0
        self._events = 0
        self._db: sqlite3.Connection | None = None

    def _sql(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect("")  # "": a private temporary database on disk, deleted on close
            self._db.executescript(
                "CREATE TABLE rows(seq INTEGER PRIMARY KEY, received BLOB, rcpt_lower BLOB, trace_id BLOB,"
                " recipient BLOB, fields TEXT, to_ip TEXT, status TEXT);"
                "CREATE TABLE events(row_seq INTEGER, ev_seq INTEGER, date BLOB, event TEXT);")
        return self._db

    # --- recording ---------------------------------------------------------------------------------
    def _row(self, item: "MailItem", recipient: str) -> int:
        key = f"{item.network_message_id}\0{recipient.lower()}"
        seq = self._seq.get(key)
        if seq is None:
            seq = self._seq[key] = self._row_count
            self._row_count += 1
            received = iso_ms(item.arrived)
            fields = [item.message_id, item.network_message_id, received, item.mail_from, recipient, item.subject,
                      item.client_ip, item.size]
            self._sql().execute("INSERT INTO rows VALUES (?,?,?,?,?,?,?,?)",
                                (seq, _b(received), _b(recipient.lower()), _b(item.network_message_id),
                                 _b(recipient), json.dumps(fields), "", "None"))
        return seq

    def _event(self, item: "MailItem", recipients: list[str], event: str, detail: str, *, action: str = "",
               data: str = "", to_ip: str | None = None) -> None:
        now = iso_ms(self.lab.clock.now())
        db = self._sql()
        for r in recipients:
            seq = self._row(item, r)
            self._events += 1
            db.execute("INSERT INTO events VALUES (?,?,?,?)",
                       (seq, self._events, _b(now), json.dumps([now, event, action, detail, data])))
            status = _STATUS_OF_EVENT.get(event)
            if to_ip is not None:
                db.execute("UPDATE rows SET to_ip=?, status=COALESCE(?, status) WHERE seq=?", (to_ip, status, seq))
            elif status is not None:
                db.execute("UPDATE rows SET status=? WHERE seq=?", (status, seq))

    def received(self, item: "MailItem", session: Any = None, service: str = "") -> None:
        host = self.lab.model.tenant.frontend_host
        tls = getattr(getattr(session, "extra", None), "tls", None) if session is not None else None
        detail = f"Message received by: {host}" + (" using TLS1.2 with AES256" if tls else "")
        self._event(item, item.recipients, "Receive", detail)

    def categorized(self, item: "MailItem") -> None:
        pass

    def resubmit(self, *a: Any, **k: Any) -> None:
        pass

    def deliver(self, item: "MailItem", recipient: str, path: str = "", session: Any = None) -> None:
        self._event(item, [self._original(item, recipient)], "Deliver", "The message was successfully delivered.")

    def send(self, item: "MailItem", recipients: list[str], q: "Queue", res: Any, spec: Any, qm: Any = None) -> None:
        tls = " using TLS1.2 with AES256" if res.tls.get("cipher") else ""
        data = f'<root><MEP Name="ConnectorId" String="{spec.connector_id}"/></root>' if spec.connector_id else ""
        self._event(item, [self._original(item, r) for r in recipients], "Send",
                    f"Message sent to {res.remote_host} at {res.remote_ip}{tls}", data=data, to_ip=res.remote_ip)

    def defer(self, item: "MailItem", recipients: list[str], error: str, q: "Queue") -> None:
        reason = led_status(error, fqdn=q.last_target_host, ip=q.last_target_ip, lrt=q.last_retry_time)
        detail = (f"Reason: {reason}. OutboundProxyTargetIP: {q.last_target_ip}. "
                  f"OutboundProxyTargetHostName: {q.last_target_host}")
        self._event(item, [self._original(item, r) for r in recipients], "Defer", detail, to_ip=q.last_target_ip)

    def fail(self, item: "MailItem", recipients: list[str], failure: Any, dsn_message_id: str = "") -> None:
        reason = led_status(failure.status, msg=failure.last_error, fqdn=failure.remote_host, ip=failure.remote_ip,
                            lrt=failure.last_attempt)
        detail = f"Reason: {reason}."
        if failure.remote_host or failure.remote_ip:
            detail += (f" OutboundProxyTargetIP: {failure.remote_ip}. "
                       f"OutboundProxyTargetHostName: {failure.remote_host}")
        self._event(item, [self._original(item, r) for r in recipients], "Fail", detail)

    def dsn(self, dsn: "MailItem", original: "MailItem", about: list[str], action: str) -> None:
        self._event(dsn, dsn.recipients, "Receive", f"Message received by: {self.lab.model.tenant.frontend_host}")

    def _original(self, item: "MailItem", recipient: str) -> str:
        """The recipient as addressed (EXO may have rewritten a mail user to its external address)."""
        nid = item.network_message_id
        if f"{nid}\0{recipient.lower()}" in self._seq:
            return recipient
        for mu in self.lab.model.tenant.mail_users:
            if mu.external_email_address.lower() == recipient.lower() and \
                    f"{nid}\0{mu.primary_smtp_address.lower()}" in self._seq:
                return mu.primary_smtp_address
        for mb in self.lab.model.tenant.mailboxes:
            if mb.primary_smtp_address.lower() == recipient.lower():
                for a in [*mb.email_addresses]:
                    if f"{nid}\0{a.lower()}" in self._seq:
                        return a
        return recipient

    # --- output ------------------------------------------------------------------------------------
    def _messages(self) -> Iterator[dict[str, Any]]:
        """trace.json's messages, in the order their rows were first seen."""
        db = self._sql()
        events = db.execute("SELECT row_seq, event FROM events ORDER BY row_seq, ev_seq")
        pending = next(events, None)
        for seq, fields, to_ip, status in db.execute("SELECT seq, fields, to_ip, status FROM rows ORDER BY seq"):
            mid, tid, received, sender, recipient, subject, from_ip, size = json.loads(fields)
            evs = []
            while pending is not None and pending[0] == seq:
                date, event, action, detail, data = json.loads(pending[1])
                evs.append({"Date": date, "Event": event, "Action": action, "Detail": detail, "Data": data})
                pending = next(events, None)
            yield {"MessageId": mid, "MessageTraceId": tid, "Received": received, "SenderAddress": sender,
                   "RecipientAddress": recipient, "Subject": subject, "Status": status, "ToIP": to_ip,
                   "FromIP": from_ip, "Size": size, "Events": evs}

    def as_json(self) -> dict[str, Any]:
        return {**self._head(), "messages": list(self._messages())}

    def _head(self) -> dict[str, Any]:
        return {"organization": self.lab.model.tenant.initial_domain,
                "start": iso_ms(self.lab.model.start), "end": iso_ms(self.lab.clock.now())}

    def _trace_rows(self, head: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Get-MessageTrace rows in `trace_rows`' order, from the database."""
        org, start, end = head["organization"], _ps_date(head["start"]), _ps_date(head["end"])
        query = "SELECT fields, to_ip, status FROM rows ORDER BY received DESC, rcpt_lower, seq"
        for i, (fields, to_ip, status) in enumerate(self._sql().execute(query)):
            mid, tid, received, sender, recipient, subject, from_ip, size = json.loads(fields)
            yield {"Organization": org, "MessageId": mid, "Received": _ps_date(received), "SenderAddress": sender,
                   "RecipientAddress": recipient, "Subject": subject, "Status": status, "ToIP": to_ip,
                   "FromIP": from_ip, "Size": size, "MessageTraceId": tid, "StartDate": start, "EndDate": end,
                   "Index": i}

    def _detail_rows(self, head: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Get-MessageTraceDetail rows in `detail_rows`' order, from the database."""
        org, start, end = head["organization"], _ps_date(head["start"]), _ps_date(head["end"])
        query = ("SELECT rows.fields, events.event FROM events JOIN rows ON rows.seq = events.row_seq "
                 "ORDER BY rows.trace_id, rows.recipient, events.date, events.row_seq, events.ev_seq")
        for fields, event in self._sql().execute(query):
            mid, tid, _, sender, recipient, _, _, _ = json.loads(fields)
            date, ev, action, detail, data = json.loads(event)
            yield {"Organization": org, "MessageId": mid, "MessageTraceId": tid, "Date": _ps_date(date), "Event": ev,
                   "Action": action, "Detail": detail, "Data": data, "RecipientAddress": recipient,
                   "SenderAddress": sender, "StartDate": start, "EndDate": end}

    def write(self, out: Path) -> list[Path]:
        folder = out / "EXO" / "MessageTrace"
        folder.mkdir(parents=True, exist_ok=True)
        head = self._head()
        paths = [folder / "trace.json", folder / "Get-MessageTrace.csv", folder / "Get-MessageTraceDetail.csv",
                 folder / "Get-MessageTraceV2.csv", folder / "Get-MessageTraceDetailV2.csv"]  # V2: engine.trace_v2
        # Written as they are read from the database: no whole-file strings, no list of all rows.
        with open(paths[0], "w", encoding="utf-8") as fh:
            dump_streamed({**head, "messages": []}, "messages", self._messages(), fh)
            fh.write("\n")
        # V2's rows are V1's, in the same order, with V2's columns (engine.trace_v2 says why): each
        # row read once and written to both
        for v1, v2, rows, columns in ((paths[1], paths[3], self._trace_rows(head), (TRACE_COLUMNS, TRACE_V2_COLUMNS)),
                                      (paths[2], paths[4], self._detail_rows(head), (DETAIL_COLUMNS, DETAIL_V2_COLUMNS))):
            with open(v1, "w", encoding="utf-8", newline="") as fh1, open(v2, "w", encoding="utf-8", newline="") as fh2:
                _write_csvs((fh1, fh2), rows, columns)
        return paths

    def close(self) -> None:
        self._seq.close()
        if self._db is not None:
            self._db.close()
            self._db = None


def _b(text: str) -> bytes:
    """Text as a BLOB that SQLite orders as Python orders str (by code point; lone surrogates too)."""
    return text.encode("utf-8", "surrogatepass")


# --- rendering (shared with `labsim trace`) ----------------------------------------------------------
# Get-MessageTraceV2's properties (engine.trace_v2 says why these): V1's rows, these columns.
TRACE_V2_COLUMNS = ("Received", "SenderAddress", "RecipientAddress", "Subject", "Status", "ToIP", "FromIP", "Size",
                    "MessageId", "MessageTraceId")
DETAIL_V2_COLUMNS = ("MessageId", "MessageTraceId", "Date", "Event", "Action", "Detail", "Data", "RecipientAddress",
                     "SenderAddress")


_PS_DATES: dict[str, str] = {}  # (the last few thousand: a trace's rows share their times)


def _ps_date(iso: str) -> str:
    text = _PS_DATES.get(iso)
    if text is None:
        if len(_PS_DATES) >= 4096:
            _PS_DATES.clear()
        text = _PS_DATES[iso] = us_time(datetime.fromisoformat(iso.replace("Z", "+00:00"))) if iso else ""
    return text


def trace_rows(data: dict[str, Any], *, sender: str | None = None, recipient: str | None = None,
               status: str | None = None, message_id: str | None = None) -> list[dict[str, Any]]:
    """Get-MessageTrace: newest first, then by recipient (Get-MessageTraceV2 ordering)."""
    rows = []
    for m in data["messages"]:
        if sender and m["SenderAddress"].lower() != sender.lower():
            continue
        if recipient and m["RecipientAddress"].lower() != recipient.lower():
            continue
        if status and m["Status"].lower() != status.lower():
            continue
        if message_id and m["MessageId"].strip("<>").lower() != message_id.strip("<>").lower():
            continue
        rows.append(m)
    rows.sort(key=lambda m: m["RecipientAddress"].lower())
    rows.sort(key=lambda m: m["Received"], reverse=True)
    out = []
    for i, m in enumerate(rows):
        out.append({"Organization": data["organization"], "MessageId": m["MessageId"],
                    "Received": _ps_date(m["Received"]), "SenderAddress": m["SenderAddress"],
                    "RecipientAddress": m["RecipientAddress"], "Subject": m["Subject"], "Status": m["Status"],
                    "ToIP": m["ToIP"], "FromIP": m["FromIP"], "Size": m["Size"], "MessageTraceId": m["MessageTraceId"],
                    "StartDate": _ps_date(data["start"]), "EndDate": _ps_date(data["end"]), "Index": i})
    return out


def detail_rows(data: dict[str, Any], *, trace_id: str | None = None, recipient: str | None = None) -> list[dict[str, Any]]:
    out = []
    for m in data["messages"]:
        if trace_id and m["MessageTraceId"].lower() != trace_id.lower():
            continue
        if recipient and m["RecipientAddress"].lower() != recipient.lower():
            continue
        for ev in m["Events"]:
            out.append({"Organization": data["organization"], "MessageId": m["MessageId"],
                        "MessageTraceId": m["MessageTraceId"], "Date": _ps_date(ev["Date"]), "Event": ev["Event"],
                        "Action": ev["Action"], "Detail": ev["Detail"], "Data": ev["Data"],
                        "RecipientAddress": m["RecipientAddress"], "SenderAddress": m["SenderAddress"],
                        "StartDate": _ps_date(data["start"]), "EndDate": _ps_date(data["end"]), "_iso": ev["Date"]})
    out.sort(key=lambda r: (r["MessageTraceId"], r["RecipientAddress"], r["_iso"]))
    for r in out:
        r.pop("_iso")
    return out


def export_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Export-Csv -NoTypeInformation: every header and value in double quotes, CRLF line ends."""
    buf = io.StringIO()
    _write_csv(buf, rows, columns)
    return buf.getvalue()


def _write_csv(fh: Any, rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> None:
    _write_csvs((fh,), rows, (columns,))


def _write_csvs(fhs: tuple[Any, ...], rows: Iterable[dict[str, Any]], columns: tuple[tuple[str, ...], ...]) -> None:
    """Export-Csv of the same rows into each file of `fhs`, with its `columns`."""
    writers = [csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n") for fh in fhs]
    for w, cols in zip(writers, columns):
        w.writerow(cols)
    pairs = list(zip(writers, columns))
    for r in rows:
        cells = {c: "" if v is None else v if type(v) is str else str(v) for c, v in r.items()}
        for w, cols in pairs:
            w.writerow([cells.get(c, "") for c in cols])
