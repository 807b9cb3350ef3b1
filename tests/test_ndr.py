"""NDRs and delay DSNs: RFC 3464 multipart/report in Exchange's layout (pure builder)."""

from __future__ import annotations

import email
from datetime import datetime, timedelta, timezone
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.transport.ndr import (
    DsnRecipient,
    DsnRequest,
    build_dsn,
    enhanced_status,
    subject_for,
)

T = datetime(2026, 5, 6, 8, 1, tzinfo=timezone.utc)
ORIGINAL = (b"From: raghu@cloudmonkeys.xyz\r\nTo: ramki@cloudmonkeys.xyz\r\nSubject: Plan\r\n"
            b"Message-ID: <a@b>\r\n\r\nbody\r\n")


def _req(action: str = "failed", recipients: list[DsnRecipient] | None = None, subject: str = "Plan") -> DsnRequest:
    return DsnRequest(action=action, generating_server="cmhybd01.cloudmonkeys.xyz",
                      from_address="MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@cloudmonkeys.xyz",
                      from_display="Microsoft Outlook", to="raghu@cloudmonkeys.xyz", original_subject=subject,
                      message_id="<n@cmhybd01.cloudmonkeys.xyz>", original_message_id="<a@b>",
                      original_data=ORIGINAL, arrival=T - timedelta(days=2), received_from="cmhybd01.cloudmonkeys.xyz",
                      when=T, retry_until=T + timedelta(days=1) if action == "delayed" else None,
                      recipients=recipients or [DsnRecipient("ramki@cloudmonkeys.xyz",
                                                             "550 4.4.7 QUEUE.Expired; message expired",
                                                             remote_host="mx.example", remote_ip="198.51.100.77",
                                                             last_error="451 4.4.0 DNS query failed", last_attempt=T)])


def _parse(data: bytes):
    msg = email.message_from_bytes(data, policy=compat32)
    status = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
    blocks = [dict(b.items()) for b in status.get_payload()]
    return msg, blocks


def _alternative(msg) -> tuple[str, str]:
    """(text, html) of the NDR's multipart/alternative, decoded."""
    text = next(p for p in msg.walk() if p.get_content_type() == "text/plain")
    page = next(p for p in msg.walk() if p.get_content_type() == "text/html")
    return (text.get_payload(decode=True).decode().replace("\r\n", "\n"),
            page.get_payload(decode=True).decode().replace("\r\n", "\n"))


def test_ndr_is_a_multipart_report_with_the_html_alternative() -> None:
    msg, blocks = _parse(build_dsn(_req()))
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in msg.get_payload()] == ["multipart/alternative", "message/delivery-status",
                                                                 "message/rfc822"]
    alternative = msg.get_payload()[0]
    assert alternative.get_param("differences") == "Content-Type"
    assert [p.get_content_type() for p in alternative.get_payload()] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in alternative.get_payload())
    assert msg["Subject"] == "Undeliverable: Plan" and "X-MS-Exchange-Message-Is-Ndr" in msg
    assert blocks[0]["Reporting-MTA"] == "dns;cmhybd01.cloudmonkeys.xyz"
    r = blocks[1]
    assert (r["Final-Recipient"], r["Action"], r["Status"]) == ("rfc822;ramki@cloudmonkeys.xyz", "failed", "4.4.7")
    assert r["Diagnostic-Code"] == "smtp;550 4.4.7 QUEUE.Expired; message expired"
    assert r["Remote-MTA"] == "dns;mx.example"
    text, page = _alternative(msg)
    assert "ramki@cloudmonkeys.xyz<mailto:ramki@cloudmonkeys.xyz>" in text
    assert "Generating server: cmhybd01.cloudmonkeys.xyz\nReceiving server: mx.example (198.51.100.77)\n" in text
    for body in (text, page):
        assert "The server has tried to deliver this message, without success, and has stopped trying." in body
        assert "Remote Server at mx.example (198.51.100.77) returned '550 4.4.7 QUEUE.Expired; message expired'" \
            in body.replace("&#x27;", "'")
    assert '<a href="mailto:ramki@cloudmonkeys.xyz">' in page and "<pre>" in page


def test_expiry_lines_carry_the_expiry_time_and_the_last_attempts_time() -> None:
    rcpt = DsnRecipient("ramki@cloudmonkeys.xyz", "550 4.4.7 QUEUE.Expired; message expired", remote_host="mx.example",
                        remote_ip="198.51.100.77", last_error="451 4.4.0 DNS query failed",
                        last_attempt=T - timedelta(minutes=7, seconds=29))
    text, _ = _alternative(_parse(build_dsn(_req(recipients=[rcpt])))[0])
    assert ("5/6/2026 8:01:00 AM - Remote Server at mx.example (198.51.100.77) returned '550 4.4.7 QUEUE.Expired; "
            "message expired'\n5/6/2026 7:53:31 AM - Remote Server at mx.example (198.51.100.77) returned "
            "'451 4.4.0 DNS query failed'") in text


def test_remote_rejection_reads_remote_server_returned() -> None:
    rcpt = DsnRecipient("x@fabrikam.com", "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
                        remote_host="mx.fabrikam.com", remote_ip="203.0.113.25")
    msg, blocks = _parse(build_dsn(_req(recipients=[rcpt])))
    assert "Remote Server returned '550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain'" in \
        _alternative(msg)[0]
    assert blocks[1]["Status"] == "5.7.54"


def test_delay_dsn_states_400_4_4_7_then_the_last_error() -> None:
    msg, blocks = _parse(build_dsn(_req("delayed")))
    assert msg["Subject"] == "Delivery delayed: Plan" and "X-MS-Exchange-Message-Is-Ndr" not in msg
    assert blocks[1]["Action"] == "delayed" and blocks[1]["Will-Retry-Until"]
    assert (blocks[1]["Status"], blocks[1]["Diagnostic-Code"]) == ("4.4.7", "smtp;400 4.4.7 Message delayed")
    assert "Original-Recipient" not in blocks[1] and "Remote-MTA" not in blocks[1]
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
    text, _ = _alternative(msg)
    assert ("Receiving server: mx.example (198.51.100.77)\n\nramki@cloudmonkeys.xyz\n"
            "Remote Server at mx.example (198.51.100.77) returned '400 4.4.7 Message delayed'\n"
            "5/6/2026 8:01:00 AM - Remote Server at mx.example (198.51.100.77) returned '451 4.4.0 DNS query failed'"
            ) in text
    assert "The server will keep trying to deliver this message for the next 1 days, 0 hours and 0 minutes." in text


def test_exo_layout() -> None:
    rcpt = DsnRecipient("priya@cloudmonkeys.xyz", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found "
                        "by SMTP address lookup")
    req = _req(recipients=[rcpt])
    req.layout = "exo"
    req.generating_server = "BL02EPF0001A0FB.namprd03.prod.outlook.com"
    msg, blocks = _parse(build_dsn(req))
    text, page = _alternative(msg)
    for body in (text, page):
        assert "Your message to priya@cloudmonkeys.xyz couldn't be delivered." in body.replace("&#x27;", "'")
        assert "Action Required" in body and "More Info for Email Admins" in body
        assert "Status code: 550 5.1.10" in body
    assert "DSN generated by:\tBL02EPF0001A0FB.namprd03.prod.outlook.com" in text
    assert blocks[1]["Status"] == "5.1.10"
    assert msg["Thread-Topic"] == "Plan" and msg["Thread-Index"]


def test_thread_index_of_a_reply_keeps_the_originals_header_block() -> None:
    original = ORIGINAL.replace(b"Message-ID", b"Thread-Index: AQHT8m5B7Fria4Mh8EClsxhX8M4YpQ==\r\nMessage-ID")
    req = _req()
    req.original_data = original
    msg, _ = _parse(build_dsn(req))
    assert msg["Thread-Topic"] == "Plan"
    assert msg["Thread-Index"].startswith("AQHT8m5B7Fria4Mh8EClsxhX8M4Yp") and len(msg["Thread-Index"]) == 36
    assert "Thread-Index" not in _parse(build_dsn(_req()))[0]  # on-prem, an original without one


@given(st.lists(st.emails(), min_size=1, max_size=4, unique=True),
       st.sampled_from(["550 4.4.7 QUEUE.Expired; message expired", "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; "
                        "nonexistent domain", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found"]),
       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip))
@settings(max_examples=40, deadline=None)
def test_every_recipient_gets_a_block(addresses: list[str], response: str, subject: str) -> None:
    rcpts = [DsnRecipient(a, response) for a in addresses]
    msg, blocks = _parse(build_dsn(_req(recipients=rcpts, subject=subject)))
    assert [b["Final-Recipient"] for b in blocks[1:]] == [f"rfc822;{a}" for a in addresses]
    assert {b["Status"] for b in blocks[1:]} == {enhanced_status(response)}
    assert msg["Subject"] == subject_for("failed", subject)


def test_enhanced_status() -> None:
    assert enhanced_status("550 4.4.7 QUEUE.Expired; message expired") == "4.4.7"
    assert enhanced_status("451 4.4.0 Primary target IP address responded with: \"421 4.2.1 Unable to connect.\"") \
        == "4.4.0"
    assert enhanced_status("421 Service not available") == "4.0.0"
