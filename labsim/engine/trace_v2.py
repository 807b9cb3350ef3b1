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

from typing import Any

from .trace import DETAIL_V2_COLUMNS, TRACE_V2_COLUMNS, detail_rows, trace_rows

__all__ = ["TRACE_V2_COLUMNS", "DETAIL_V2_COLUMNS", "SUBJECT_FILTER_TYPES", "trace_v2_rows", "detail_v2_rows"]

SUBJECT_FILTER_TYPES = ("Contains", "StartsWith", "EndsWith")


def _subject_matches(subject: str, wanted: str, how: str) -> bool:
    s, w = subject.lower(), wanted.lower()
    return s.startswith(w) if how == "StartsWith" else s.endswith(w) if how == "EndsWith" else w in s


def trace_v2_rows(data: dict[str, Any], *, sender: str | None = None, recipient: str | None = None,
                  status: str | None = None, message_id: str | None = None, subject: str | None = None,
                  subject_filter_type: str = "Contains") -> list[dict[str, Any]]:
    """Get-MessageTraceV2 over trace.json: V1's rows in V1's order (newest first, then by
    recipient), narrowed by -Subject, with V2's properties."""
    return [{c: r[c] for c in TRACE_V2_COLUMNS}
            for r in trace_rows(data, sender=sender, recipient=recipient, status=status, message_id=message_id)
            if not subject or _subject_matches(r["Subject"], subject, subject_filter_type)]


def detail_v2_rows(data: dict[str, Any], *, trace_id: str | None = None,
                   recipient: str | None = None) -> list[dict[str, Any]]:
    """Get-MessageTraceDetailV2 (-MessageTraceId, -RecipientAddress) over trace.json: V1's detail
    rows (in time order per message and recipient) with V2's properties."""
    return [{c: r[c] for c in DETAIL_V2_COLUMNS} for r in detail_rows(data, trace_id=trace_id, recipient=recipient)]
