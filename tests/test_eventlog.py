"""engine.eventlog: the Application log as `wevtutil qe Application /f:xml` and `/f:text` print it.

Checked against a real MSExchangeTransport event in wevtutil XML (Qualifiers 32772 for a Warning,
Task 1 = SmtpReceive), Windows Server 2016+ classic events, wevtutil /f:text captures, seed 000's
11022 text and the Exchange 2010 event reference texts (docs/tls-and-certificates.md §Events).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import pytest
from conftest import SEEDS

from labsim.engine.eventlog import (
    CATEGORIES,
    EVENTS,
    computer_name,
    message_text,
    read_text_log,
    render_text,
    render_xml,
)
from labsim.engine.events import LabEvent

NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
WHEN = datetime(2026, 5, 1, 6, 0, 20, 138000, tzinfo=timezone.utc)
E11022 = LabEvent(WHEN, "CMEDGE01", "MSExchangeTransport", 11022,
                  ["mail.protection.outlook.com:AcceptOorgProtocol", "Inbound from Office 365", "RevocationOffline",
                   "mail.protection.outlook.com"])


def seed000_text() -> str:
    raw = next(SEEDS.glob("000_*.txt")).read_text(encoding="utf-8")
    line = next(ln for ln in raw.splitlines() if ln.startswith("Failed to confirm domain capabilities"))
    return line.replace("‘", "'").replace("’", "'")  # the blog's typographic quotes; Windows writes '


def test_11022_is_seed_000_verbatim():
    assert message_text(11022, E11022.insertion_strings) == seed000_text()


def test_xml_has_the_classic_event_shape():
    xml = render_xml(E11022, 778609, "CMEDGE01.cloudmonkeys.xyz")
    assert xml.startswith("<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
                          "<Provider Name='MSExchangeTransport'/><EventID Qualifiers='49156'>11022</EventID>")
    root = ET.fromstring(xml)
    system = root.find(f"{NS}System")
    assert system.find(f"{NS}Level").text == "2"
    assert system.find(f"{NS}Task").text == str(CATEGORIES.index("MessageSecurity") + 1) == "11"
    assert system.find(f"{NS}Keywords").text == "0x80000000000000"
    assert system.find(f"{NS}TimeCreated").get("SystemTime") == "2026-05-01T06:00:20.1380000Z"
    assert system.find(f"{NS}EventRecordID").text == "778609"
    assert system.find(f"{NS}Channel").text == "Application"
    assert system.find(f"{NS}Computer").text == "CMEDGE01.cloudmonkeys.xyz"
    assert [d.text for d in root.find(f"{NS}EventData")] == E11022.insertion_strings
    assert "\n" not in xml


def test_qualifiers_and_task_match_a_real_msexchangetransport_warning():
    """IPBan's sample: <Provider Name='MSExchangeTransport'/><EventID Qualifiers='32772'>1035</EventID>
    <Level>3</Level><Task>1</Task> for 'Inbound authentication failed ...'."""
    ev = LabEvent(WHEN, "CMHYBD01", "MSExchangeTransport", 1035, ["LogonDenied", "Default DC", "Ntlm", "212.48.88.133"])
    xml = render_xml(ev, 1, "DC.sicoir.local")
    assert "<EventID Qualifiers='32772'>1035</EventID><Version>0</Version><Level>3</Level><Task>1</Task>" in xml


def test_insertion_strings_are_escaped():
    name = "<I>CN=labsim Public Issuing CA 1, O=labsim Public Trust, C=US<S>CN=mail.cloudmonkeys.xyz"
    ev = LabEvent(WHEN, "CMHYBD01", "MSExchangeFrontEndTransport", 12014, [name, "Default Frontend CMHYBD01", name])
    xml = render_xml(ev, 5, "CMHYBD01.cloudmonkeys.xyz")
    assert "&lt;I&gt;CN=labsim" in xml
    assert ET.fromstring(xml).find(f"{NS}EventData")[0].text == name


def test_text_form_is_wevtutil_f_text():
    text = render_text(E11022, 0, "CMEDGE01.cloudmonkeys.xyz", 330)
    lines = text.split("\r\n")
    assert lines[:13] == [
        "Event[0]:", "  Log Name: Application", "  Source: MSExchangeTransport",
        "  Date: 2026-05-01T11:30:20.138", "  Event ID: 11022", "  Task: MessageSecurity", "  Level: Error",
        "  Opcode: Info", "  Keyword: Classic", "  User: N/A", "  User Name: N/A",
        "  Computer: CMEDGE01.cloudmonkeys.xyz", "  Description:"]
    assert lines[13] == seed000_text()
    assert text.endswith("\r\n\r\n")


def test_text_log_round_trip(tmp_path):
    path = tmp_path / "Application.txt"
    other = LabEvent(WHEN, "CMEDGE01", "MSExchangeTransport", 2015, ["Outbound to Office 365", "d", "r"])
    path.write_bytes((render_text(E11022, 0, "C", 0) + render_text(other, 1, "C", 0)).encode())
    events = read_text_log(path)
    assert [e["Event ID"] for e in events] == ["11022", "2015"]
    assert events[0]["Description"] == seed000_text() and events[1]["Source"] == "MSExchangeTransport"
    assert read_text_log(tmp_path / "missing.txt") == []


def test_text_not_public_renders_what_is_known_never_a_placeholder():
    """2022's text is not public ([GAP], docs/event-logs.md): the description is its insertion
    strings in order, never Event Viewer's "cannot be found" placeholder nor an invented sentence."""
    strings = ["UntrustedRoot", "Outbound to Office 365", "DomainValidation", "d"]
    text = message_text(2022, strings)
    assert text == "UntrustedRoot\r\nOutbound to Office 365\r\nDomainValidation\r\nd"
    assert "cannot be found" not in text
    assert len(EVENTS[2022].fields) == len(strings)  # what each string is, documented with the gap
    with pytest.raises(KeyError, match="not in the event table"):
        message_text(9999, [])


def test_every_event_in_the_table_renders_without_placeholder():
    for event_id, d in EVENTS.items():
        n = len(d.fields) if d.text is None else max((int(m) for m in re.findall(r"%(\d+)", d.text)), default=0)
        text = message_text(event_id, [f"v{i}" for i in range(1, n + 1)])
        assert "cannot be found" not in text and "%1" not in text, event_id
        assert d.text is not None or d.fields, event_id  # a [GAP] text documents its strings


@pytest.mark.parametrize("event_id", sorted(EVENTS))
def test_event_table_is_consistent(event_id):
    d = EVENTS[event_id]
    assert d.category in CATEGORIES and d.level in ("Error", "Warning", "Information")
    if d.text is not None:
        used = sorted({int(n) for n in re.findall(r"%(\d+)", d.text)})
        assert used == list(range(1, len(used) + 1)), "insertion strings are numbered without gaps"


def test_computer_name():
    assert computer_name("CMHYBD01", "cmhybd01.cloudmonkeys.xyz") == "CMHYBD01.cloudmonkeys.xyz"
    assert computer_name("solo", "solo") == "SOLO"
