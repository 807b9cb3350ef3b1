"""Mail items as a transport service holds them, and the headers each hop writes.

Received header form of Exchange (one per hop that stores the message):
`Received: from <helo> (<ip>) by <fqdn> (<ip>) with Microsoft SMTP Server (version=TLS1_2,
cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1544.4; <date>` (the `via Frontend Transport`
suffix when the Front End proxied it).
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.policy import compat32

# OpenSSL cipher name -> IANA name as Schannel prints it in Received headers.
_IANA = {
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
}


@dataclass
class MailItem:
    """One server's copy of a message."""

    server: str
    internal_id: int
    mail_from: str
    recipients: list[str]
    data: bytes
    message_id: str
    network_message_id: str
    subject: str
    arrived: datetime
    directionality: str = "Incoming"
    client_ip: str = ""
    client_hostname: str = ""
    receive_connector: str = ""
    lab_key: str = ""  # the scenario's message id (ground truth), carried across hops
    # recipient as routed -> as the sender addressed it (a remote mailbox's targetAddress rewrite);
    # DSNs report the latter as Original-Recipient (RFC 3461 ORCPT)
    original_recipients: dict[str, str] = field(default_factory=dict)
    retry_count: int = 0
    last_error: str = ""
    history: list[str] = field(default_factory=list)
    dsn_kind: str = ""  # "failed" / "delayed" when this item is a DSN the lab generated
    dsn_of: str = ""  # the original's Message-ID (tracking `reference`)
    timers_armed: dict[str, list] = field(default_factory=dict)  # per server: its delay/expiry actions
    delay_notified: bool = False  # a delay DSN went out (only one per message)
    received_tls: dict | None = None  # TLS of the session it arrived in (for Received headers)
    session_context: str = ""  # `<session X16>;<session start>;<n>` of the receiving session

    @property
    def size(self) -> int:
        return len(self.data)


def header_block(data: bytes) -> bytes:
    """The message up to and including the first empty line: all the email parser reads headers
    from. A prefix that ends at an empty line parses to the same headers as the whole message
    (an earlier end of the headers lies inside the prefix), so the body is never parsed."""
    ends = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    return data[:min(ends) + 4] if ends else data


def header_value(data: bytes, name: str) -> str:
    msg = message_from_bytes(header_block(data), policy=compat32)
    value = msg.get(name, "")
    return str(value).strip()


def count_received(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0]
    return sum(1 for line in head.split(b"\r\n") if line[:9].lower() == b"received:")


def received_header(*, helo: str, client_ip: str, by_fqdn: str, by_ip: str, tls: dict | None,
                    version: str, when: datetime, utc_offset_minutes: int, via_frontend: bool = False,
                    product: str = "Microsoft SMTP Server") -> bytes:
    """An Exchange-style Received header line (folded as Exchange folds it)."""
    from ..clock import rfc2822_local

    ver = ".".join(str(int(p)) for p in version.split("."))
    with_part = f"with {product}"
    if tls and tls.get("cipher"):
        proto = {"TLSv1.2": "TLS1_2", "TLSv1.3": "TLS1_3"}.get(tls.get("version", ""), "TLS1_2")
        with_part += f" (version={proto}, cipher={_IANA.get(tls['cipher'], tls['cipher'])})"
    via = " via Frontend Transport" if via_frontend else ""
    text = (f"Received: from {helo} ({client_ip}) by {by_fqdn} ({by_ip})\r\n {with_part}\r\n"
            f" id {ver}{via}; {rfc2822_local(when, utc_offset_minutes)}\r\n")
    return text.encode()


def new_message(*, mail_from: str, to: list[str], subject: str, body: str, message_id: str,
                when: datetime, utc_offset_minutes: int = 0, extra_headers: dict[str, str] | None = None,
                display_from: str | None = None) -> bytes:
    """A plain RFC 5322 message as a mail client would submit it."""
    from ..clock import rfc2822_local

    headers = [
        ("From", email.utils.formataddr((display_from or "", mail_from))),
        ("To", ", ".join(to)),
        ("Subject", subject),
        ("Date", rfc2822_local(when, utc_offset_minutes)),
        ("Message-ID", message_id),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="us-ascii"'),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    for k, v in (extra_headers or {}).items():
        headers.append((k, v))
    text = "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")
    if not text.endswith("\r\n"):
        text += "\r\n"
    return text.encode("utf-8")
