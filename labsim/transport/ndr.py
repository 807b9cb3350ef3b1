"""Delivery status notifications as Exchange writes them: RFC 3464 multipart/report messages.

One builder for both products and both kinds (an NDR, `Action: failed`; a delay DSN,
`Action: delayed`), from plain data (`DsnRequest`) to bytes. The engine decides *when* a DSN is
due and who generates it (`engine.notifications`); this module only decides what it looks like.

What is confirmed, and where (docs/queues-tracking-ndr.md has the details and sources):
- structure: a user section, then "Diagnostic information for administrators:" with
  `Generating server:`, the recipient, the remote server and the SMTP response, then "Original
  message headers:" (Learn "DSNs and NDRs in Exchange Server"; transport-behavior.md §9);
- `Remote Server returned '<response>'` for a remote rejection [V-obs Q&A]; for an expiry the
  timestamped `<time> - Remote Server at <host> (<ip>) returned '<response>'` lines [real NDR
  quoted in sisimai's Exchange parser];
- the machine part: `Reporting-MTA: dns;<server>`, `Received-From-MTA`, `Arrival-Date`, per
  recipient `Original-Recipient`, `Final-Recipient: rfc822;<addr>`, `Action`, `Status`,
  `Diagnostic-Code: smtp;<response>`, `Remote-MTA`, `X-Display-Name` [real Exchange NDR, sisimai
  set-of-emails; RFC 3464];
- `Undeliverable: <subject>`; the header `X-MS-Exchange-Message-Is-Ndr` [Exchange header constant].
The user-facing sentences and the delay DSN wording are [INFERRED].
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..clock import rfc2822_local

NDR_SENDER_LOCALPART = "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e"  # the Microsoft Exchange recipient
_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass
class DsnRecipient:
    address: str
    response: str  # "550 4.4.7 QUEUE.Expired; message expired" or a remote reply
    remote_host: str = ""  # the server that answered / was last tried
    remote_ip: str = ""
    last_error: str = ""  # the queue's LastError (an expiry after connection failures)
    last_attempt: datetime | None = None
    display_name: str = ""
    original: str = ""  # the address the sender used, when routing rewrote it (ORCPT)


@dataclass
class DsnRequest:
    action: str  # "failed" | "delayed"
    generating_server: str  # FQDN
    from_address: str
    from_display: str
    to: str
    original_subject: str
    message_id: str
    original_message_id: str
    original_data: bytes
    arrival: datetime
    received_from: str  # the HELO of the host the original came from
    when: datetime
    utc_offset_minutes: int = 0
    retry_until: datetime | None = None  # delay DSN
    recipients: list[DsnRecipient] = field(default_factory=list)
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


def enhanced_status(response: str) -> str:
    """The enhanced status code of an SMTP response (`550 4.4.7 ...` -> `4.4.7`)."""
    m = _ENHANCED.search(response)
    if m:
        return m.group(1)
    code = response[:3]
    return f"{code[0]}.0.0" if code[:1] in ("4", "5") else "5.0.0"


def subject_for(action: str, subject: str) -> str:
    return ("Delivery delayed:" if action == "delayed" else "Undeliverable:") + (" " + subject if subject else "")


def _when(t: datetime | None) -> str:
    """`3/09/2016 8:05:56 PM` as an en-US Exchange prints it in NDR diagnostics (UTC here)."""
    if t is None:
        return ""
    hour = t.hour % 12 or 12
    return f"{t.month}/{t.day}/{t.year} {hour}:{t.minute:02d}:{t.second:02d} {'AM' if t.hour < 12 else 'PM'}"


def _span(d: timedelta) -> str:
    mins = max(0, int(d.total_seconds() // 60))
    days, rem = divmod(mins, 24 * 60)
    hours, minutes = divmod(rem, 60)
    return f"{days} days, {hours} hours and {minutes} minutes"


def _at(r: DsnRecipient) -> str:
    return f"{r.remote_host} ({r.remote_ip})" if r.remote_ip and r.remote_ip != r.remote_host else r.remote_host


def _diagnostic_lines(r: DsnRecipient, generating: str, action: str) -> list[str]:
    lines = [r.address]
    local = r.response.startswith(("550 4.4.7", "550 4.3.2")) or not r.remote_host
    if action == "delayed":
        if r.remote_host:
            lines.append(f"{_when(r.last_attempt)} - Server at {_at(r)} returned "
                         f"'{r.last_error or r.response}'")
        else:
            lines.append(f"{_when(r.last_attempt)} - Server at {generating} returned '{r.last_error or r.response}'")
        return lines
    if local and r.remote_host:
        lines.append(f"{_when(r.last_attempt)} - Remote Server at {_at(r)} returned "
                     f"'{r.response}'")
        if r.last_error:
            lines.append(f"{_when(r.last_attempt)} - Remote Server at {_at(r)} returned "
                         f"'{r.last_error}'")
    elif local:
        lines.append(f"#{r.response} ##")
    else:
        lines.append(r.remote_host)
        lines.append(f"Remote Server returned '{r.response}'")
    return lines


def _user_text(req: DsnRequest) -> list[str]:
    if req.action == "delayed":
        left = (req.retry_until - req.when) if req.retry_until else timedelta(0)
        lines = ["Delivery is delayed to these recipients or groups:", ""]
        lines += [r.address for r in req.recipients]
        lines += ["", f"Subject: {req.original_subject}", "",
                  "This message hasn't been delivered yet. Delivery will continue to be attempted.", "",
                  f"The server will keep trying to deliver this message for the next {_span(left)}. "
                  "You'll be notified if the message can't be delivered by that time."]
        return lines
    lines = ["Delivery has failed to these recipients or groups:", ""]
    for r in req.recipients:
        lines.append(r.address)
        status = enhanced_status(r.response)
        if status == "4.4.7":
            lines.append("The message couldn't be delivered because the destination server didn't respond "
                         "within the time allowed. Microsoft Exchange will not try to redeliver this message for you.")
        elif status == "4.3.2":
            lines.append("Your message was deleted by an administrator. Microsoft Exchange will not try to "
                         "redeliver this message for you.")
        elif r.remote_host:
            lines.append(f"Your message couldn't be delivered. {r.remote_host} gave this error:")
            lines.append(r.response.split(" ", 2)[-1] if r.response[:1].isdigit() else r.response)
        else:
            lines.append("Your message couldn't be delivered. Microsoft Exchange will not try to redeliver "
                         "this message for you.")
        lines.append("")
    return lines


def _headers_of(data: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    return head.decode("utf-8", "replace").replace("\r\n", "\n")


def _boundary(message_id: str) -> str:
    h = hashlib.sha256(message_id.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def build_dsn(req: DsnRequest) -> bytes:
    """The whole DSN message, CRLF line ends, ready to be put on the wire."""
    b = _boundary(req.message_id)
    date = rfc2822_local(req.when, req.utc_offset_minutes)
    headers = [
        ("From", f"{req.from_display} <{req.from_address}>" if req.from_display else req.from_address),
        ("To", f"<{req.to}>"),
        ("Date", date),
        ("Content-Type", f'multipart/report; report-type=delivery-status;\n\tboundary="{b}"'),
        ("Content-Language", "en-US"),
        ("Message-ID", req.message_id),
        ("In-Reply-To", req.original_message_id),
        ("References", req.original_message_id),
        ("Subject", subject_for(req.action, req.original_subject)),
        ("MIME-Version", "1.0"),
        ("Auto-Submitted", "auto-replied"),
    ]
    if req.action == "failed":
        headers.append(("X-MS-Exchange-Message-Is-Ndr", ""))
    headers += req.extra_headers
    text = _user_text(req)
    text += ["", "", "Diagnostic information for administrators:", "",
             f"Generating server: {req.generating_server}", ""]
    for r in req.recipients:
        text += _diagnostic_lines(r, req.generating_server, req.action) + [""]
    text += ["Original message headers:", "", _headers_of(req.original_data)]
    status = ["Reporting-MTA: dns;" + req.generating_server]
    if req.received_from:
        status.append("Received-From-MTA: dns;" + req.received_from)
    status.append("Arrival-Date: " + rfc2822_local(req.arrival, req.utc_offset_minutes))
    for r in req.recipients:
        status.append("")
        status.append(f"Original-Recipient: rfc822;{r.original or r.address}")
        status.append(f"Final-Recipient: rfc822;{r.address}")
        status.append(f"Action: {req.action}")
        code = enhanced_status(r.last_error if req.action == "delayed" and r.last_error else r.response)
        status.append(f"Status: {code}")
        diag = r.last_error if req.action == "delayed" and r.last_error else r.response
        status.append(f"Diagnostic-Code: smtp;{diag}")
        if r.remote_host:
            status.append(f"Remote-MTA: dns;{r.remote_host}")
        if req.action == "delayed" and req.retry_until is not None:
            status.append("Will-Retry-Until: " + rfc2822_local(req.retry_until, req.utc_offset_minutes))
        status.append(f"X-Display-Name: {r.display_name or r.address}")
    if req.action == "failed":
        original_part = ["Content-Type: message/rfc822", "", req.original_data.decode("utf-8", "replace")
                         .replace("\r\n", "\n").rstrip("\n")]
    else:
        original_part = ["Content-Type: text/rfc822-headers", "", _headers_of(req.original_data)]
    parts = [
        [f"--{b}", 'Content-Type: text/plain; charset="us-ascii"', "Content-Transfer-Encoding: 7bit", "", *text],
        [f"--{b}", "Content-Type: message/delivery-status", "", *status],
        [f"--{b}", *original_part],
    ]
    lines = [f"{k}: {v}".rstrip(" ") if v else f"{k}: " for k, v in headers]
    lines.append("")
    lines.append("")
    for p in parts:
        lines += p
        lines.append("")
    lines.append(f"--{b}--")
    body = "\n".join(lines) + "\n"
    return body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
