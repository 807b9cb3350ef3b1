"""Delivery status notifications as Exchange writes them: RFC 3464 multipart/report messages.

One builder for both products and both kinds (an NDR, `Action: failed`; a delay DSN,
`Action: delayed`), from plain data (`DsnRequest`) to bytes. The engine decides *when* a DSN is
due and who generates it (`engine.notifications`); this module only decides what it looks like.

Layout (docs/queues-tracking-ndr.md §5 has the sources): multipart/report with
(1) multipart/alternative (`differences=Content-Type`) of a text/plain and a text/html part, both
quoted-printable, (2) message/delivery-status, (3) the original (message/rfc822; a delay DSN:
text/rfc822-headers). Two layouts of the human part:
- "classic" - on-prem Exchange 2013-2019 (real NDRs of 15.0.1104 / 15.0.1178 and delay DSNs of
  15.0.1497 in the sisimai set and public captures): "Delivery has failed to these recipients or
  groups:", `addr<mailto:addr>`, the sentence, blank lines, "Diagnostic information for
  administrators:", `Generating server:` and `Receiving server: host (ip)` for a next hop that
  was tried, the recipient's lines (expiry: the expiry stamped with the NDR's time, then the last
  error with the last attempt's time; delay: `Remote Server at host (ip) returned '400 4.4.7
  Message delayed'` then the stamped last error), "Original message headers:"; the HTML repeats it
  in the real NDR's markup;
- "exo" - Exchange Online's newer layout (a real EXO NDR in the sisimai set): "Your message to ...
  couldn't be delivered.", "Action Required", "How to Fix It", "More Info for Email Admins" with the
  status code, "Original Message Details", "Error Details", "Message Hops", "Original Message
  Headers"; Thread-Topic / Thread-Index as every EXO NDR carries.
The machine part: `Reporting-MTA`, `Received-From-MTA`, `Arrival-Date`, per recipient
`Original-Recipient` (NDRs; delay DSNs only for a rewritten address), `Final-Recipient`, `Action`,
`Status`, `Diagnostic-Code` (delay: `smtp;400 4.4.7 Message delayed`), `Remote-MTA` (NDRs),
`Will-Retry-Until` (delay), `X-Display-Name`. [INFERRED]: user sentences other than those of
the real samples (4.4.7, 5.1.1 on-prem; 5.1.10 EXO), the EXO HTML markup, the Thread-Index child
block's bits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import quoprimime
from email.utils import parsedate_to_datetime

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
    layout: str = "classic"  # "classic": on-prem Exchange 2013-2019; "exo": Exchange Online's newer layout


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


_HELPDESK = {
    # the user sentence for an enhanced status, as on-prem Exchange writes it (real NDRs, see module doc)
    "4.4.7": "The server has tried to deliver this message, without success, and has stopped trying. Please try "
             "sending this message again. If the problem continues, contact your helpdesk.",
    "5.1.1": "The email address you entered couldn't be found. Please check the recipient's email address and try "
             "to resend the message. If the problem continues, please contact your helpdesk.",
}
DELAYED_RESPONSE = "400 4.4.7 Message delayed"  # the delay DSN's stated response (real delay DSNs)


def _remote_at(r: DsnRecipient) -> str:
    return f"Remote Server at {_at(r)}"


def _diagnostic_lines(r: DsnRecipient, action: str, when: datetime) -> list[str]:
    """The recipient's block under "Diagnostic information for administrators:".

    Expiry (a real Exchange 2013 NDR, sisimai set-of-emails lhost-exchange2007-05): the expiry
    stamped with the NDR's own time, then the last attempt stamped with *its* time. Delay DSN (real
    2013 delay DSNs quoted on Microsoft Q&A and in a public test): the stated `400 4.4.7 Message
    delayed` line without a time, then the last error with the last attempt's time."""
    lines = [r.address]
    if action == "delayed":
        at = _remote_at(r) if r.remote_host else "Remote Server"
        lines.append(f"{at} returned '{DELAYED_RESPONSE}'")
        if r.last_error:
            lines.append(f"{_when(r.last_attempt or when)} - {at} returned '{r.last_error}'")
        return lines
    local = r.response.startswith(("550 4.4.7", "550 4.3.2")) or not r.remote_host
    if local and r.remote_host:
        lines.append(f"{_when(when)} - {_remote_at(r)} returned '{r.response}'")
        if r.last_error:
            lines.append(f"{_when(r.last_attempt or when)} - {_remote_at(r)} returned '{r.last_error}'")
    elif local:
        lines.append(f"#{r.response} ##")
    else:
        lines.append(r.remote_host)
        lines.append(f"Remote Server returned '{r.response}'")
    return lines


def _user_sentence(r: DsnRecipient) -> str:
    status = enhanced_status(r.response)
    if status in _HELPDESK:
        return _HELPDESK[status]
    if status == "4.3.2":
        return ("Your message was deleted by an administrator. Microsoft Exchange will not try to redeliver this "
                "message for you.")  # [INFERRED]
    if r.remote_host:
        return (f"Your message couldn't be delivered. {r.remote_host} gave this error: "  # [INFERRED]
                + (r.response.split(" ", 2)[-1] if r.response[:1].isdigit() else r.response))
    return "Your message couldn't be delivered. Microsoft Exchange will not try to redeliver this message for you."


def _user_text(req: DsnRequest) -> list[str]:
    if req.action == "delayed":
        left = (req.retry_until - req.when) if req.retry_until else timedelta(0)
        lines = ["Delivery is delayed to these recipients or groups:", ""]
        lines += [f"{r.address}<mailto:{r.address}>" for r in req.recipients]
        lines += ["", f"Subject: {req.original_subject}", "",
                  "This message hasn't been delivered yet. Delivery will continue to be attempted.", "",
                  f"The server will keep trying to deliver this message for the next {_span(left)}. "
                  "You'll be notified if the message can't be delivered by that time."]
        return lines
    lines = ["Delivery has failed to these recipients or groups:", ""]
    for i, r in enumerate(req.recipients):
        if i:
            lines.append("")
        lines += [f"{r.address}<mailto:{r.address}>", _user_sentence(r)]
    return lines


def _receiving_server(req: DsnRequest) -> list[str]:
    """`Receiving server: host (ip)` after the generating server, when the DSN is about a next hop
    that was tried (expiry, delay) [real NDR and delay DSNs]."""
    for r in req.recipients:
        if r.remote_host and (req.action == "delayed" or r.response.startswith("550 4.4.7")):
            return [f"Receiving server: {_at(r)}"]
    return []


def _classic_text(req: DsnRequest) -> list[str]:
    text = _user_text(req)
    text += [""] * (7 if req.action == "delayed" else 8)
    text += ["Diagnostic information for administrators:", "", f"Generating server: {req.generating_server}",
             *_receiving_server(req), ""]
    for r in req.recipients:
        text += _diagnostic_lines(r, req.action, req.when) + [""]
    text += ["Original message headers:", "", _headers_of(req.original_data)]
    return text


def _classic_html(req: DsnRequest) -> str:
    """The HTML alternative of the classic layout (the real 2013 NDR's markup, en-US words)."""
    e = html.escape
    out = ["<html>", "<Head></head><body>"]
    if req.action == "delayed":
        out.append('<p><b><font color="#000066" size="3" face="Arial">Delivery is delayed to these recipients or '
                   "groups:</font></b></p>")
        out.append('<font color="#000000" size="2" face="Tahoma"><p>'
                   + "".join(f'<a href="mailto:{e(r.address)}">{e(r.address)}</a><br>\n' for r in req.recipients)
                   + "</p></font>")
        user = _user_text(req)[len(req.recipients) + 3:]
        out.append('<font color="#000000" size="3" face="Arial">'
                   + "".join(f"{e(line)}<br>\n" if line else "<br>\n" for line in user) + "</font>")
    else:
        out.append('<p><b><font color="#000066" size="3" face="Arial">Delivery has failed to these recipients or '
                   "groups:</font></b></p>")
        for r in req.recipients:
            out.append(f'<font color="#000000" size="2" face="Tahoma"><p><a href="mailto:{e(r.address)}">'
                       f"{e(r.address)}</a><br>\n</font>")
            out.append(f'<font color="#000000" size="3" face="Arial">{e(_user_sentence(r))}<br>\n</font>')
            out.append('<font color="#000000" size="2" face="Tahoma"><br>\n</p>\n</font>')
    out.append("<br><br><br><br><br><br>")
    diag = ['<font color="#808080" size="2" face="Tahoma"><p><b>Diagnostic information for administrators:</b></p>',
            f"<p>Generating server: {e(req.generating_server)}<br>"]
    diag += [f"{e(line)}<br>" for line in _receiving_server(req)]
    diag.append("</p>")
    for r in req.recipients:
        lines = _diagnostic_lines(r, req.action, req.when)
        diag.append("<p>" + "".join(f"{e(line)}<br>\n" for line in lines) + "</p>")
    diag += ["<p>Original message headers:</p>", f"<pre>{e(_headers_of(req.original_data))}</pre>", "</font>"]
    out += diag
    out += ["</body>", "</html>"]
    return "\n".join(out)


# --- Exchange Online's newer layout ("Your message to ... couldn't be delivered.") ---------------
_EXO_EXPLAIN = {
    # status -> (what happened, short title, "How to Fix It" lines, admin text); 5.1.10 from a real EXO NDR
    "5.1.10": ("{local} wasn't found at {domain}.", "Unknown To address",
               ["The address may be misspelled or may not exist. Try one or more of the following:",
                "",
                "  *   Send the message again following these steps: In Outlook, open this non-delivery report "
                "(NDR) and choose Send Again from the Report ribbon. In Outlook on the web, select this NDR, then "
                "select the link \"To send this message again, click here.\" Then delete and retype the entire "
                "recipient address. If prompted with an Auto-Complete List suggestion don't select it. After typing "
                "the complete address, click Send.",
                "  *   Contact the recipient (by phone, for example) to check that the address exists and is "
                "correct.",
                "  *   The recipient may have set up email forwarding to an incorrect address. Ask them to check "
                "that any forwarding they've set up is working correctly."],
               "This error occurs because the sender sent a message to an email address hosted by Office 365 but "
               "the address is incorrect or doesn't exist at the destination domain. The error is reported by the "
               "recipient domain's email server, but most often it must be fixed by the person who sent the "
               "message."),
}


def _exo_text(req: DsnRequest) -> list[str]:
    """Exchange Online's newer NDR (the layout of a real EXO NDR in the sisimai set, lhost-office365-13):
    the headline per recipient, the sender / Office 365 / recipient diagram with "Action Required", How to
    Fix It, "More Info for Email Admins" with the status code, Original Message Details, Error Details,
    Message Hops and the original headers. Explanations of other statuses than 5.1.10 are [INFERRED]."""
    lines: list[str] = []
    sender_local = req.to.split("@", 1)[0]
    for r in req.recipients:
        local, _, domain = r.address.partition("@")
        status = enhanced_status(r.response)
        what, title, fix, admin = _EXO_EXPLAIN.get(status, (
            "Office 365 couldn't deliver the message to {domain}.", "Delivery failed",
            ["If the problem continues, contact the recipient by some other means."],
            "The message couldn't be delivered; the error below names the server that reported it."))
        lines += [f"Your message to {r.address} couldn't be delivered.", "",
                  what.format(local=local, domain=domain), "",
                  f"{sender_local}\tOffice 365\t{local}",
                  "Action Required\t\t\tRecipient", "", "", title, "", "",
                  "How to Fix It", *fix, "", "",
                  "If the problem continues, forward this message to your email admin. If you're an email admin, "
                  "refer to the More Info for Email Admins section below.", "", "",
                  "Was this helpful? Send feedback to Microsoft<http://go.microsoft.com/fwlink/?LinkId=525921>.",
                  "________________________________", "", "",
                  "More Info for Email Admins", f"Status code: {r.response.split(' ', 2)[0]} {status}", "",
                  admin, "", ""]
    lines += ["Original Message Details",
              f"Created Date:\t{_when(req.arrival)}",
              f"Sender Address:\t{req.to}",
              "Recipient Address:\t" + ";".join(r.address for r in req.recipients),
              f"Subject:\t{req.original_subject}", "", "",
              "Error Details"]
    for r in req.recipients:
        lines.append(f"Reported error:\t{r.response}")
    lines += [f"DSN generated by:\t{req.generating_server}"]
    remote = next((r for r in req.recipients if r.remote_host), None)
    if remote is not None:
        lines.append(f"Remote server:\t{remote.remote_host}")
    lines += ["", "", "Message Hops", "HOP\tTIME (UTC)\tFROM\tTO\tWITH\tRELAY TIME"]
    for i, (t, frm, to, with_) in enumerate(_hops(req.original_data), 1):
        lines.append(f"{i}\t{_when(t)}\t{frm}\t{to}\t{with_}\t*")
    lines += ["", "Original Message Headers", "", _headers_of(req.original_data)]
    return lines


_RECEIVED = re.compile(r"^Received: from (\S+).*? by (\S+) .*?with ([^;]+?)(?: id [^;]+)?;\s*(.+)$", re.S)


def _hops(data: bytes) -> list[tuple[datetime | None, str, str, str]]:
    """(time, from, to, with) of each Received header of the original, oldest first."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    hops: list[tuple[datetime | None, str, str, str]] = []
    for field_ in re.split(r"\r\n(?=\S)", head):
        m = _RECEIVED.match(" ".join(field_.split()))
        if not m:
            continue
        try:
            when: datetime | None = parsedate_to_datetime(m.group(4).strip())
        except (TypeError, ValueError):
            when = None
        with_ = m.group(3).split(" (")[0].strip()
        hops.append((when.astimezone(timezone.utc) if when else None, m.group(1), m.group(2), with_))
    return list(reversed(hops))


def _exo_html(req: DsnRequest) -> str:
    """The HTML alternative of the EXO layout: the same words in Exchange Online's DSN page
    (`<title>DSN</title>`, the sisimai sample keeps only its frame) [INFERRED markup]."""
    e = html.escape
    body = "".join(f"<p>{e(line)}</p>\n" if line else "<br>\n" for line in _exo_text(req)[:-1])
    return ('<html>\n  <meta name="viewport" content="width=device-width, initial-scale=1" />\n  <head>\n'
            "    <title>\n          DSN\n        </title>\n    </head>\n    <body>\n"
            f"{body}<pre>{e(_headers_of(req.original_data))}</pre>\n  </body>\n</html>")


def thread_index(original: str | None, when: datetime, salt: str) -> str:
    """Thread-Index of a reply (MS-OXOMSG PidTagConversationIndex): the original's header block and a
    5-byte child block (delta code, 31 bits of time delta, 8 random bits); a new header block when the
    original has none. Real EXO NDRs: `AQHT8m5B7Fria4Mh8EClsxhX8M4YpaQ896xt` = the original's
    `AQHT8m5B7Fria4Mh8EClsxhX8M4YpQ==` + 5 bytes (sisimai set lhost-office365-05); the bits of EXO's own
    child block do not follow the documented delta, so ours are the documented ones [INFERRED]."""
    ft = int((when - datetime(1601, 1, 1, tzinfo=timezone.utc)).total_seconds() * 10_000_000)
    rnd = hashlib.sha256(salt.encode()).digest()
    try:
        base = base64.b64decode(original or "", validate=True)
    except (ValueError, binascii.Error):
        base = b""
    if len(base) < 22:  # header block: a reserved 0x01, the 5 high bytes of the FILETIME, a GUID
        return base64.b64encode(b"\x01" + ft.to_bytes(8, "big")[:5] + rnd[:16]).decode()
    start = int.from_bytes(base[1:6] + b"\x00\x00\x00", "big")
    delta = max(0, ft - start)
    code = 0 if delta < (1 << 49) else 1
    bits = (delta >> 18) & 0x7FFFFFFF if code == 0 else (delta >> 23) & 0x7FFFFFFF
    child = ((code << 39) | (bits << 8) | rnd[16]).to_bytes(5, "big")
    return base64.b64encode(base + child).decode()


def _headers_of(data: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    return head.decode("utf-8", "replace").replace("\r\n", "\n")


def _boundary(message_id: str) -> str:
    h = hashlib.sha256(message_id.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _header(data: bytes, name: str) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    m = re.search(rf"^{name}:[ \t]*(.*(?:\r\n[ \t].*)*)", head, re.I | re.M)
    return " ".join(m.group(1).split()) if m else None


def _qp(text: str) -> str:
    return quoprimime.body_encode(text.replace("\r\n", "\n"), maxlinelen=76, eol="\n")


def build_dsn(req: DsnRequest) -> bytes:
    """The whole DSN message, CRLF line ends, ready to be put on the wire."""
    b = _boundary(req.message_id)
    alt = _boundary(req.message_id + "/alternative")
    date = rfc2822_local(req.when, req.utc_offset_minutes)
    original_index = _header(req.original_data, "Thread-Index")
    headers = [
        ("From", f"{req.from_display} <{req.from_address}>" if req.from_display else req.from_address),
        ("To", f"<{req.to}>"),
        ("Date", date),
        ("Content-Type", f'multipart/report; report-type=delivery-status;\n\tboundary="{b}"'),
    ]
    if req.action == "failed":
        headers.append(("X-MS-Exchange-Message-Is-Ndr", ""))
    headers += [
        ("Content-Language", "en-US"),
        ("Message-ID", req.message_id),
        ("In-Reply-To", req.original_message_id),
        ("References", req.original_message_id),
    ]
    if original_index or req.layout == "exo":
        # Thread-Topic/Thread-Index: every EXO NDR in the samples; on-prem ones only when the original
        # had a Thread-Index (none of the on-prem samples' originals did) [INFERRED for the latter]
        headers += [("Thread-Topic", req.original_subject),
                    ("Thread-Index", thread_index(original_index, req.when, req.message_id))]
    headers += [
        ("Subject", subject_for(req.action, req.original_subject)),
        ("MIME-Version", "1.0"),
        ("Auto-Submitted", "auto-replied"),
    ]
    headers += req.extra_headers
    if req.layout == "exo":
        text, html_body = _exo_text(req), _exo_html(req)
    else:
        text, html_body = _classic_text(req), _classic_html(req)
    status = ["Reporting-MTA: dns;" + req.generating_server]
    if req.received_from:
        status.append("Received-From-MTA: dns;" + req.received_from)
    status.append("Arrival-Date: " + rfc2822_local(req.arrival, req.utc_offset_minutes))
    for r in req.recipients:
        status.append("")
        if req.action == "failed" or r.original:  # a real delay DSN has none; a rewritten address keeps it
            status.append(f"Original-Recipient: rfc822;{r.original or r.address}")
        status.append(f"Final-Recipient: rfc822;{r.address}")
        status.append(f"Action: {req.action}")
        diag = DELAYED_RESPONSE if req.action == "delayed" else r.response
        status.append(f"Status: {enhanced_status(diag)}")
        status.append(f"Diagnostic-Code: smtp;{diag}")
        if r.remote_host and req.action == "failed":
            status.append(f"Remote-MTA: dns;{r.remote_host}")
        if req.action == "delayed" and req.retry_until is not None:
            status.append("Will-Retry-Until: " + rfc2822_local(req.retry_until, req.utc_offset_minutes))
        status.append(f"X-Display-Name: {r.display_name or r.address}")
    if req.action == "failed":
        original_part = ["Content-Type: message/rfc822", "", req.original_data.decode("utf-8", "replace")
                         .replace("\r\n", "\n").rstrip("\n")]
    else:
        original_part = ["Content-Type: text/rfc822-headers", "", _headers_of(req.original_data)]
    alternative = [
        f"--{b}", f'Content-Type: multipart/alternative; differences=Content-Type;\n\tboundary="{alt}"', "",
        f"--{alt}", 'Content-Type: text/plain; charset="us-ascii"', "Content-Transfer-Encoding: quoted-printable",
        "", _qp("\n".join(text)), "",
        f"--{alt}", 'Content-Type: text/html; charset="us-ascii"', "Content-Transfer-Encoding: quoted-printable",
        "", _qp(html_body), "",
        f"--{alt}--",
    ]
    parts = [alternative, [f"--{b}", "Content-Type: message/delivery-status", "", *status], [f"--{b}", *original_part]]
    lines = [f"{k}: {v}".rstrip(" ") if v else f"{k}: " for k, v in headers]
    lines.append("")
    lines.append("")
    for p in parts:
        lines += p
        lines.append("")
    lines.append(f"--{b}--")
    body = "\n".join(lines) + "\n"
    return body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
