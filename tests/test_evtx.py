"""logs.evtx: the binary .evtx files beside Application.xml / System.xml, read back by the two parsers
event tools use (python-evtx; the Rust `evtx` crate behind Chainsaw and Hayabusa) with the same records
as the XML text form; logs.scm: the System log's Service Control Manager events."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import Evtx.Evtx as pyevtx
import pytest
from conftest import run_cli
from evtx import PyEvtxParser

from labsim.engine.eventlog import render_xml
from labsim.engine.runtime import LabEvent
from labsim.logs.evtx import (
    CHUNK_SIZE,
    FILE_HEADER_SIZE,
    EvtxError,
    EvtxLog,
    evtx_bytes,
    name_hash,
)
from labsim.logs.scm import (
    render_scm_text,
    render_scm_xml,
    scm_message,
    state_change_strings,
)

NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
T0 = datetime(2026, 5, 1, 6, 0, 5, 212000, tzinfo=UTC)


def app_event(i: int, strings: list[str] | None = None, event_id: int = 11022) -> str:
    ev = LabEvent(T0 + timedelta(seconds=i, microseconds=7 * i), "CMEDGE01", "MSExchangeTransport", event_id,
                  strings if strings is not None else [f"domain{i}", "Inbound from Office 365", "RevocationOffline",
                                                       "mail.protection.outlook.com"])
    return render_xml(ev, 41000 + i, "CMEDGE01.cloudmonkeys.xyz")


def canonical(xml_text: str) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
    """An event as (tag, attributes, text) rows with the parsers' renderings normalised: times to
    microseconds, keywords to an integer, binary data to hex."""
    rows = []
    for el in ET.fromstring(xml_text).iter():
        tag = el.tag.replace(NS, "")
        attrs = []
        for k, v in sorted(el.attrib.items()):
            if k == "SystemTime":
                v = v.replace(" ", "T").replace("+00:00", "").rstrip("Z")
                when = datetime.fromisoformat(v[:26])  # python-evtx computes FILETIMEs in floats: ms
                v = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{round(when.microsecond / 1000):03d}"
            attrs.append((k, v))
        text = (el.text or "").strip()
        if tag == "Keywords":
            text = hex(int(text, 16))
        if tag == "Binary" and text and not all(c in "0123456789ABCDEF" for c in text):
            text = base64.b64decode(text).hex().upper()
        rows.append((tag, tuple(attrs), text))
    return rows


def read_python_evtx(path: Path) -> list[tuple[int, str]]:
    with pyevtx.Evtx(str(path)) as log:
        header = log.get_file_header()
        assert header.verify(), "file header magic, version 3.1 and CRC32"
        for chunk in header.chunks():
            assert chunk.verify(), "chunk header and record-data CRC32s"
        return [(r.record_num(), r.xml()) for r in log.records()]


def read_rust_evtx(path: Path) -> list[tuple[int, str]]:
    return [(r["event_record_id"], r["data"]) for r in PyEvtxParser(str(path)).records()]


def test_python_evtx_and_the_rust_parser_read_the_same_events_as_the_xml(tmp_path: Path) -> None:
    events = [app_event(0), app_event(1, ["a & <b>", "", "'quoted'", "ünïcode ✓"]), app_event(2, [], 12014),
              render_scm_xml(7036, state_change_strings("MSExchangeTransport", "stopped"), T0, 900, "EX.c.x"),
              render_scm_xml(7023, ["Microsoft Exchange ADAM", "The system cannot find the file specified."],
                             T0, 901, "EX.c.x")]
    path = tmp_path / "Application.evtx"
    path.write_bytes(evtx_bytes(events))
    for reader in (read_python_evtx, read_rust_evtx):
        got = reader(path)
        assert [n for n, _ in got] == [41000, 41001, 41002, 900, 901]
        assert [canonical(x) for _, x in got] == [canonical(x) for x in events], reader.__name__
    # the written time is exact to the microsecond (the Rust parser computes FILETIMEs in integers)
    stamps = [r["timestamp"] for r in PyEvtxParser(str(path)).records()]
    assert stamps[1] == "2026-05-01T06:00:06.212007Z UTC"


def test_a_long_log_spans_chunks_and_every_record_is_read_back(tmp_path: Path) -> None:
    events = [app_event(i) for i in range(1500)]
    data = evtx_bytes(events)
    chunks = (len(data) - FILE_HEADER_SIZE) // CHUNK_SIZE
    assert chunks >= 3 and (len(data) - FILE_HEADER_SIZE) % CHUNK_SIZE == 0
    path = tmp_path / "big.evtx"
    path.write_bytes(data)
    got = read_python_evtx(path)
    assert [n for n, _ in got] == list(range(41000, 42500))
    assert canonical(got[-1][1]) == canonical(events[-1])
    assert len(read_rust_evtx(path)) == 1500


def test_same_events_same_bytes_and_templates_are_shared() -> None:
    events = [app_event(i) for i in range(20)]
    one, two = evtx_bytes(events), evtx_bytes(list(events))
    assert one == two
    # the template (and the names) are stored once: 20 records cost far less than 20 first records
    first = len(evtx_bytes(events[:1]).rstrip(b"\x00"))
    assert len(one.rstrip(b"\x00")) - first < 19 * (first - FILE_HEADER_SIZE) / 2


def test_an_empty_log_is_a_valid_file_with_no_records(tmp_path: Path) -> None:
    path = tmp_path / "System.evtx"
    path.write_bytes(EvtxLog().to_bytes())
    assert read_python_evtx(path) == []
    assert read_rust_evtx(path) == []


def test_name_hash_is_the_binxml_hash() -> None:
    # hash = hash * 65599 + code unit, low 16 bits (MS-EVEN6 / omerbenamram/evtx)
    h = 0
    for ch in "Event":
        h = (h * 65599 + ord(ch)) & 0xFFFFFFFF
    assert name_hash("Event") == h & 0xFFFF


@pytest.mark.parametrize("bad, problem", [
    ("<Event><System>", "not well-formed"),
    ("<Other/>", "exactly one <Event>"),
    ("<Event><System><EventRecordID>x</EventRecordID></System></Event>", "EventRecordID"),
])
def test_bad_event_xml_is_one_clear_error(bad: str, problem: str) -> None:
    with pytest.raises(EvtxError, match=problem):
        EvtxLog().add(bad)


def test_scm_7036_has_the_real_shape_text_and_binary() -> None:
    strings = state_change_strings("MSExchangeTransport", "running")
    root = ET.fromstring(render_scm_xml(7036, strings, T0, 5, "CMHYBD01.cloudmonkeys.xyz"))
    provider = root.find(f"{NS}System/{NS}Provider")
    assert provider is not None and provider.attrib == {
        "Name": "Service Control Manager", "Guid": "{555908d1-a6d7-4695-8e1e-26931d2012f4}",
        "EventSourceName": "Service Control Manager"}
    assert root.find(f"{NS}System/{NS}EventID").attrib["Qualifiers"] == "16384"  # type: ignore[union-attr]
    assert [d.attrib["Name"] for d in root.iter(f"{NS}Data")] == ["param1", "param2"]
    binary = root.find(f"{NS}EventData/{NS}Binary").text  # type: ignore[union-attr]
    assert bytes.fromhex(binary).decode("utf-16-le") == "MSExchangeTransport/4\x00"
    assert scm_message(7036, strings) == "The Microsoft Exchange Transport service entered the running state."
    text = render_scm_text(7036, strings, T0, 0, "CMHYBD01.cloudmonkeys.xyz", 60)
    assert "  Log Name: System\r\n  Source: Service Control Manager\r\n  Date: 2026-05-01T07:00:05.212" in text


def test_a_stopped_and_started_service_writes_7036_to_the_system_log(tmp_path: Path) -> None:
    out = tmp_path / "o"
    code, _, err = run_cli(["run", "svc-transport-stopped", "--out", str(out)])
    assert code == 0, err
    folder = out / "CMHYBD01" / "EventLog"
    text = (folder / "System.txt").read_text(encoding="utf-8")
    assert text.count("Event ID: 7036") == 2
    assert "Microsoft Exchange Transport service entered the stopped state." in text
    assert "Microsoft Exchange Transport service entered the running state." in text
    for server in ("CMHYBD01", "CMEDGE01"):
        for channel in ("Application", "System"):
            xml_lines = (out / server / "EventLog" / f"{channel}.xml").read_text(encoding="utf-8").splitlines()
            got = read_python_evtx(out / server / "EventLog" / f"{channel}.evtx")
            assert [canonical(x) for _, x in got] == [canonical(x) for x in xml_lines]
