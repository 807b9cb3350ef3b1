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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import iso_ms
from ..transport.tracking import led_status, us_time
from .trace_v2 import DETAIL_V2_COLUMNS, TRACE_V2_COLUMNS, detail_v2_rows, trace_v2_rows

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


@dataclass
class TraceRecipient:
    message_id: str
    trace_id: str
    received: datetime
    sender: str
    recipient: str
    subject: str
    size: int
    from_ip: str
    to_ip: str = ""
    events: list[dict[str, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        for ev in reversed(self.events):
            if ev["Event"] in _STATUS_OF_EVENT:
                return _STATUS_OF_EVENT[ev["Event"]]
        return "None"


class ExoTrace:
    """The tenant's message trace, filled as EXO acts."""

    def __init__(self, lab: "TraceLab") -> None:
        self.lab = lab
        self.rows: dict[tuple[str, str], TraceRecipient] = {}
        self.order: list[tuple[str, str]] = []

    # --- recording ---------------------------------------------------------------------------------
    def _row(self, item: "MailItem", recipient: str) -> TraceRecipient:
        key = (item.network_message_id, recipient.lower())
        row = self.rows.get(key)
        if row is None:
            row = TraceRecipient(message_id=item.message_id, trace_id=item.network_message_id, received=item.arrived,
                                 sender=item.mail_from, recipient=recipient, subject=item.subject, size=item.size,
                                 from_ip=item.client_ip)
            self.rows[key] = row
            self.order.append(key)
        return row

    def _event(self, item: "MailItem", recipients: list[str], event: str, detail: str, *, action: str = "",
               data: str = "", to_ip: str | None = None) -> None:
        now = iso_ms(self.lab.clock.now())
        for r in recipients:
            row = self._row(item, r)
            if to_ip is not None:
                row.to_ip = to_ip
            row.events.append({"Date": now, "Event": event, "Action": action, "Detail": detail, "Data": data})

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

    def send(self, item: "MailItem", recipients: list[str], q: "Queue", res: Any, spec: Any) -> None:
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
        if (item.network_message_id, recipient.lower()) in self.rows:
            return recipient
        for mu in self.lab.model.tenant.mail_users:
            if mu.external_email_address.lower() == recipient.lower() and \
                    (item.network_message_id, mu.primary_smtp_address.lower()) in self.rows:
                return mu.primary_smtp_address
        for mb in self.lab.model.tenant.mailboxes:
            if mb.primary_smtp_address.lower() == recipient.lower():
                for a in [*mb.email_addresses]:
                    if (item.network_message_id, a.lower()) in self.rows:
                        return a
        return recipient

    # --- output ------------------------------------------------------------------------------------
    def as_json(self) -> dict[str, Any]:
        return {"organization": self.lab.model.tenant.initial_domain,
                "start": iso_ms(self.lab.model.start), "end": iso_ms(self.lab.clock.now()),
                "messages": [{"MessageId": r.message_id, "MessageTraceId": r.trace_id, "Received": iso_ms(r.received),
                              "SenderAddress": r.sender, "RecipientAddress": r.recipient, "Subject": r.subject,
                              "Status": r.status, "ToIP": r.to_ip, "FromIP": r.from_ip, "Size": r.size,
                              "Events": r.events} for r in (self.rows[k] for k in self.order)]}

    def write(self, out: Path) -> list[Path]:
        folder = out / "EXO" / "MessageTrace"
        folder.mkdir(parents=True, exist_ok=True)
        data = self.as_json()
        paths = [folder / "trace.json", folder / "Get-MessageTrace.csv", folder / "Get-MessageTraceDetail.csv",
                 folder / "Get-MessageTraceV2.csv", folder / "Get-MessageTraceDetailV2.csv"]  # V2: engine.trace_v2
        # Written as they are encoded (json.dump, csv.writer on the file): no whole-file strings.
        with open(paths[0], "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        for path, rows, columns in ((paths[1], trace_rows(data), TRACE_COLUMNS),
                                    (paths[2], detail_rows(data), DETAIL_COLUMNS),
                                    (paths[3], trace_v2_rows(data), TRACE_V2_COLUMNS),
                                    (paths[4], detail_v2_rows(data), DETAIL_V2_COLUMNS)):
            with open(path, "w", encoding="utf-8", newline="") as fh:
                _write_csv(fh, rows, columns)
        return paths


# --- rendering (shared with `labsim trace`) ----------------------------------------------------------
def _ps_date(iso: str) -> str:
    return us_time(datetime.fromisoformat(iso.replace("Z", "+00:00"))) if iso else ""


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


def _write_csv(fh: Any, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    w = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else str(r.get(c)) for c in columns])
