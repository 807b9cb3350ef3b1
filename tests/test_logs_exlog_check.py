"""The independent checker (shared/tools/exlog_check.py) accepts what labsim.logs writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from conftest import exlog_check

from labsim.logs.message_tracking import MessageTrackingLog
from labsim.logs.protocol_log import ProtocolLog, SessionWriter, protocol_log_folder
from labsim.logs.protocol_text import (
    ATTEMPTING_TO_CONNECT,
    SENDING_CERTIFICATE,
    SET_SESSION_PERMISSIONS,
    certificate_row_data,
    ehlo_reply_receive,
    ehlo_reply_send,
    session_permissions_data,
    tls_negotiation_failed,
)


class Clock:
    def __init__(self, start: str) -> None:
        self.now = datetime.fromisoformat(start)

    def __call__(self) -> datetime:
        return self.now


def build_tree(root: Path) -> None:
    c = Clock("2024-03-13T09:59:59.990Z")
    recv = ProtocolLog(root, "recv", protocol_log_folder("EX1", "FrontEnd", "recv"))
    s = SessionWriter(recv, r"EX1\Default Frontend EX1", 0x08DC42C8FF236A1F, "10.0.0.5:25", "[2001:db8::7]:50000", c, True)
    s.connect()
    s.sent("220 ex1.contoso.com Microsoft ESMTP MAIL Service ready at Wed, 13 Mar 2024 10:59:59 +0100")
    s.received('EHLO weird,"name"\rwith\nbreaks')
    s.sent(ehlo_reply_receive(["250-ex1.contoso.com Hello [2001:db8::7]", "250-SIZE 37748736", "250 XRDST"]))
    s.info(certificate_row_data("CN=ex1.contoso.com, O=Contoso", "CN=Contoso CA", "0A1B", "AB" * 20, c.now, c.now,
                                ["ex1.contoso.com", "mail.contoso.com"]), SENDING_CERTIFICATE)
    s.disconnect("Remote(ConnectionReset)")
    send = ProtocolLog(root, "send", protocol_log_folder("EX1", "Hub", "send"))
    t = SessionWriter(send, "Outbound to Office 365 - 6b1d4c8e-0000-4000-8000-000000000001", 0x08DC42C8FF236A20,
                      None, "192.0.2.25:25", c, True)
    t.info(session_permissions_data([]), SET_SESSION_PERMISSIONS)
    t.info(context=ATTEMPTING_TO_CONNECT)
    t.set_local("10.0.0.5:40000")
    t.connect()
    t.received("220 x.mail.protection.outlook.com Microsoft ESMTP MAIL Service ready")
    t.received("\r\n".join(ehlo_reply_send(["250-x Hello [203.0.113.1]", "250-STARTTLS", "250 SMTPUTF8"])))
    t.info(context=tls_negotiation_failed("NoCredentials"))
    t.disconnect("Local")
    mt = MessageTrackingLog(root, "EX1", "MSGTRK")
    mt.add(c.now, client_ip="10.0.0.5", event_id="RECEIVE", source="SMTP", message_subject="a, b",
           custom_data="S:DeliveryPriority=Normal", recipient_count=1)
    for log in (recv, send, mt):
        assert log.flush()


def test_exlog_check_reports_no_errors(tmp_path: Path) -> None:
    checker = exlog_check()
    build_tree(tmp_path)
    python = shutil.which("python3") or sys.executable
    res = subprocess.run([python, str(checker), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert "errors=0" in res.stdout, res.stdout + res.stderr
    assert "files recv=1 send=1 mt=1" in res.stdout, res.stdout
    assert res.returncode == 0
