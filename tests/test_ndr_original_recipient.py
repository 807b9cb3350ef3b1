"""A DSN names the address the sender used (ORCPT), even when routing rewrote it to a targetAddress."""

from __future__ import annotations

import email
from email.policy import compat32
from pathlib import Path

from labsim.engine.driver import run_scenario
from labsim.scenario.loader import load_scenario


def test_remote_mailbox_ndr_reports_the_original_recipient(tmp_path: Path) -> None:
    run_scenario(load_scenario("queue-retry-until-expiry"), out=tmp_path)
    reports = []
    for path in sorted((tmp_path / "mailboxes" / "onprem-DB01" / "raghu@cloudmonkeys.xyz").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=compat32)
        if msg.get_content_type() == "multipart/report":
            status = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
            reports.append(status.as_string())
    assert reports, "the sender got no DSN"
    for text in reports:
        assert "Original-Recipient: rfc822;ramki@cloudmonkeys.xyz" in text
        assert "Final-Recipient: rfc822;ramki@cloudfield.mail.onmicrosoft.com" in text
