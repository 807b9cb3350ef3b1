"""Exchange Online's message trace V2: what Get-MessageTraceV2 / Get-MessageTraceDetailV2 show.

Get-MessageTraceV2 replaced Get-MessageTrace in 2025 (Learn: "This cmdlet is replaced by the
Get-MessageTraceV2 cmdlet"); the lab is dated 2026, so an admin reaches for V2. Both views are
rendered from the same `trace.json` as V1 (engine.trace), so they cannot disagree.

What differs from V1 [LEARN-V2 = Microsoft Learn Get-MessageTraceV2 / Get-MessageTraceDetailV2;
GRAPH = Microsoft Graph exchangeMessageTrace / exchangeMessageTraceDetail]:
- no paging (-Page/-PageSize are gone; "Pagination is not supported", query the next set with
  -StartingRecipientAddress and -EndDate from the last row) [LEARN-V2], so no `Index`,
  `StartDate`, `EndDate` properties [INFERRED from the paging change], and no `Organization`
  [INFERRED: GRAPH's resource, V2's service-side twin, has none];
- the summary row's properties are GRAPH's: fromIP, id (MessageTraceId), messageId,
  receivedDateTime (Received), recipientAddress, senderAddress, size, status, subject, toIP;
  the order `Received, SenderAddress, RecipientAddress, Subject, Status, ToIP, FromIP, Size,
  MessageId, MessageTraceId` is the one admins' scripts select [INFERRED];
- -Subject with -SubjectFilterType Contains|StartsWith|EndsWith [LEARN-V2];
- output time stamps are UTC [LEARN-V2]; Export-Csv prints them in the shell's culture as for V1;
- the detail rows carry the message they belong to (MessageId, MessageTraceId, RecipientAddress,
  SenderAddress) besides Date, Event, Action, Detail, Data [GRAPH detail: messageId; scripts'
  `Select-Object Date, Event, Action, Detail, Data`].
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..clock import us_time

__all__ = ["TRACE_V2_COLUMNS", "DETAIL_V2_COLUMNS", "SUBJECT_FILTER_TYPES", "trace_v2_rows", "detail_v2_rows"]

TRACE_V2_COLUMNS = ("Received", "SenderAddress", "RecipientAddress", "Subject", "Status", "ToIP", "FromIP", "Size",
                    "MessageId", "MessageTraceId")
DETAIL_V2_COLUMNS = ("MessageId", "MessageTraceId", "Date", "Event", "Action", "Detail", "Data", "RecipientAddress",
                     "SenderAddress")
SUBJECT_FILTER_TYPES = ("Contains", "StartsWith", "EndsWith")


def _ps_date(iso: str) -> str:
    return us_time(datetime.fromisoformat(iso.replace("Z", "+00:00"))) if iso else ""


def _subject_matches(subject: str, wanted: str, how: str) -> bool:
    s, w = subject.lower(), wanted.lower()
    return s.startswith(w) if how == "StartsWith" else s.endswith(w) if how == "EndsWith" else w in s


def trace_v2_rows(data: dict[str, Any], *, sender: str | None = None, recipient: str | None = None,
                  status: str | None = None, message_id: str | None = None, subject: str | None = None,
                  subject_filter_type: str = "Contains") -> list[dict[str, Any]]:
    """Get-MessageTraceV2 over trace.json: newest first, then by recipient."""
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
        if subject and not _subject_matches(m["Subject"], subject, subject_filter_type):
            continue
        rows.append(m)
    rows.sort(key=lambda m: m["RecipientAddress"].lower())
    rows.sort(key=lambda m: m["Received"], reverse=True)
    return [{"Received": _ps_date(m["Received"]), "SenderAddress": m["SenderAddress"],
             "RecipientAddress": m["RecipientAddress"], "Subject": m["Subject"], "Status": m["Status"],
             "ToIP": m["ToIP"], "FromIP": m["FromIP"], "Size": m["Size"], "MessageId": m["MessageId"],
             "MessageTraceId": m["MessageTraceId"]} for m in rows]


def detail_v2_rows(data: dict[str, Any], *, trace_id: str | None = None,
                   recipient: str | None = None) -> list[dict[str, Any]]:
    """Get-MessageTraceDetailV2 (-MessageTraceId, -RecipientAddress) over trace.json, in time order
    per message and recipient."""
    out = []
    for m in data["messages"]:
        if trace_id and m["MessageTraceId"].lower() != trace_id.lower():
            continue
        if recipient and m["RecipientAddress"].lower() != recipient.lower():
            continue
        for ev in m["Events"]:
            out.append((m["MessageTraceId"], m["RecipientAddress"], ev["Date"], {
                "MessageId": m["MessageId"], "MessageTraceId": m["MessageTraceId"], "Date": _ps_date(ev["Date"]),
                "Event": ev["Event"], "Action": ev["Action"], "Detail": ev["Detail"], "Data": ev["Data"],
                "RecipientAddress": m["RecipientAddress"], "SenderAddress": m["SenderAddress"]}))
    out.sort(key=lambda t: (t[0], t[1], t[2]))
    return [t[3] for t in out]
