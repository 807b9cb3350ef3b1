"""The public API (labsim.api, re-exported by `labsim`): run a scenario by id, path, TOML text or
dict, sync and async; the frozen result read back from the run's manifest; a live lab."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import aiosmtplib
import pytest
from conftest import scenario_text

import labsim

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@pytest.fixture(scope="module")
def expired(tmp_path_factory: pytest.TempPathFactory) -> labsim.Result:
    return labsim.run("cert-expired", out=tmp_path_factory.mktemp("api") / "out")


def test_import_labsim_stays_cheap() -> None:
    probe = ("import sys, labsim; labsim.__version__; "
             "print([m for m in ('asyncio', 'labsim.api', 'labsim.engine', 'cryptography') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_public_surface_is_the_documented_one() -> None:
    assert set(labsim.__all__) == {"Evidence", "Fault", "Hop", "InputError", "Lab", "LabsimError", "Listener",
                                   "Message", "Queue", "Recipient", "Result", "ScenarioError", "__version__",
                                   "read_result", "run", "run_async"}
    for name in labsim.__all__:
        assert getattr(labsim, name) is not None
    with pytest.raises(AttributeError):
        labsim.run_loaded  # noqa: B018 - the engine's names are not labsim's


def test_result_of_a_fault_scenario(expired: labsim.Result) -> None:
    r = expired
    assert r.scenario == "cert-expired" and r.seed == 1 and r.ok
    assert dataclasses.is_dataclass(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.ok = False  # type: ignore[misc]
    m = r.message("onprem-to-exo")
    assert m.fate == "pending" and m.sender == "raghu@cloudmonkeys.xyz" and m.recipients == ("ramki@cloudmonkeys.xyz",)
    assert m.message_id.startswith("<") and m.network_message_ids and m.internal_ids["CMHYBD01"]
    receive = next(h for h in m.hops if h.event == "RECEIVE" and h.server == "CMHYBD01")
    assert receive.connector and receive.session_id
    defer = next(h for h in m.hops if h.event == "DEFER")
    assert defer.connector == "Outbound to Office 365" and defer.session_id
    assert "454 4.7.5" in (defer.reply or "") and defer.evidence
    (pending,) = m.results
    assert pending.fate == "pending" and pending.reply and pending.reply.startswith("454 4.7.5")
    (fault,) = r.faults
    assert fault.cmdlet == "Set-LabCertificate" and fault.target == "mail-cloudmonkeys" and fault.at is None
    assert any(e.record_id for e in fault.evidence)  # the Application log's 12014/12016
    assert any(q.identity == "CMHYBD01\\1" and q.message_count == 1 for q in r.queues)
    rel = {p.relative_to(r.out).as_posix() for p in r.files}
    assert {"summary.json", "manifest.json", "queues.json"} <= rel
    assert all(p.is_file() for p in r.files)


def test_every_evidence_line_shows_what_it_claims(expired: labsim.Result) -> None:
    for f in expired.faults:
        for e in f.evidence:
            lines = (expired.out / e.file).read_text(encoding="utf-8-sig").splitlines()
            for n in e.lines:
                assert e.shows in lines[n - 1]
                if e.record_id is not None:
                    assert f"<EventRecordID>{e.record_id}</EventRecordID>" in lines[n - 1]


def test_read_result_gives_the_same_result(expired: labsim.Result) -> None:
    again = labsim.read_result(expired.out)
    assert again == expired


def test_toml_text_dict_and_path_give_the_same_bytes(tmp_path: Path) -> None:
    path = SCENARIOS / "hybrid-baseline.toml"
    text = path.read_text(encoding="utf-8")
    a = labsim.run(text, out=tmp_path / "text", seed=5)
    b = labsim.run(tomllib.loads(text), out=tmp_path / "dict", seed=5)
    c = labsim.run(path, out=tmp_path / "path", seed=5)
    assert a.seed == b.seed == c.seed == 5
    for name in ("summary.json", "queues.json"):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes() == (c.out / name).read_bytes()
    ma, mc = (json.loads((x.out / "manifest.json").read_text()) for x in (a, c))
    assert ma["scenario"]["file"] is None and mc["scenario"]["file"] == "hybrid-baseline.toml"
    ma["scenario"]["file"] = mc["scenario"]["file"]
    assert ma == mc
    assert [m.fate for m in a.messages] == ["delivered"] * 4


async def test_run_async_inside_a_loop(tmp_path: Path) -> None:
    r = await labsim.run_async(scenario_text(), out=tmp_path / "o")
    assert r.ok and r.scenario == "t"
    with pytest.raises(RuntimeError, match="use `await labsim.run_async"):
        labsim.run(scenario_text(), out=tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(labsim.ScenarioError, match="no scenario with this id"):
        labsim.run("no-such-scenario", out=tmp_path / "a")
    with pytest.raises(labsim.ScenarioError, match=r"<inline scenario>: not valid TOML"):
        labsim.run("id = [\n", out=tmp_path / "b")
    with pytest.raises(labsim.ScenarioError, match=r"<inline scenario>: message\[0\].from"):
        labsim.run({"id": "x", "title": "t", "training": {"symptom": "s", "evidence": "e", "root_cause": "r",
                                                            "fix": "f"},
                    "message": [{"id": "m", "from": "nobody@nowhere.example", "to": ["a@b.c"]}]}, out=tmp_path / "c")
    with pytest.raises(labsim.ScenarioError, match="every key of a scenario is a string"):
        labsim.run({1: 2}, out=tmp_path / "d")
    with pytest.raises(labsim.InputError, match="no readable manifest.json"):
        labsim.read_result(tmp_path)


async def test_live_lab_serves_a_client_of_the_test(tmp_path: Path) -> None:
    async with labsim.Lab("hybrid-baseline", out=tmp_path / "live") as lab:
        host, port = lab.address("CMHYBD01", "SMTP FrontEnd")
        assert host.startswith("127.")
        assert {x.host for x in lab.listeners} >= {"CMHYBD01", "CMEDGE01", "EXO"}
        msg = (b"From: alex@fabrikam.com\r\nTo: raghu@cloudmonkeys.xyz\r\nSubject: from a test\r\n"
               b"Message-ID: <api-live-1@outside.example>\r\n\r\nhello\r\n")
        smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="outside.example")
        await smtp.connect()
        errors, reply = await smtp.sendmail("alex@fabrikam.com", ["raghu@cloudmonkeys.xyz"], msg)
        await smtp.quit()
        assert not errors and "Queued mail for delivery" in reply
        with pytest.raises(KeyError, match="listeners:"):
            lab.address("NOPE")
    manifest = json.loads((tmp_path / "live" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["expectations"] is None and manifest["scenario"]["id"] == "hybrid-baseline"
    assert lab.result().scenario == "hybrid-baseline"


async def _wait_for(folder: Path, pattern: str) -> None:
    import asyncio

    for _ in range(400):  # the lab runs on wall-clock time: up to 20 s for the mailbox copy
        if list(folder.glob(pattern)):
            return
        await asyncio.sleep(0.05)


async def test_a_live_labs_own_client_mail_is_in_the_result(tmp_path: Path) -> None:
    """Mail the test's own SMTP client hands to a live lab is ground truth like a scenario's: in
    Result.messages under its Message-ID, with its hops (evidence on lines that show it), its
    recipients' fates and the NDR it caused; the lab's own NDR is not taken for a client's message."""
    out = tmp_path / "live"
    msg = (b"From: alex@fabrikam.com\r\nTo: raghu@cloudmonkeys.xyz\r\nSubject: two recipients\r\n"
           b"Message-ID: <api-live-2@outside.example>\r\n\r\nhello\r\n")
    async with labsim.Lab("hybrid-baseline", out=out) as lab:
        host, port = lab.address("CMHYBD01", "SMTP FrontEnd")
        smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="mail.fabrikam.com")
        await smtp.connect()
        errors, reply = await smtp.sendmail("alex@fabrikam.com", ["raghu@cloudmonkeys.xyz", "nobody@cloudmonkeys.xyz"],
                                            msg)
        await smtp.quit()
        assert not errors and "Queued mail for delivery" in reply
        await _wait_for(out / "mailboxes", "onprem-*/raghu@cloudmonkeys.xyz/*.eml")
        await _wait_for(out / "mailboxes", "internet-*/alex@fabrikam.com/*.eml")  # the NDR, back through the Edge
    result = lab.result()
    (m,) = result.messages  # the client's message, and nothing else (hybrid-baseline sends nothing live)
    assert result.message("<api-live-2@outside.example>") is m and m.id == m.message_id
    assert m.sender == "alex@fabrikam.com" and m.subject == "two recipients"
    assert m.recipients == ("raghu@cloudmonkeys.xyz", "nobody@cloudmonkeys.xyz")
    assert m.fate == "partial" and m.internal_ids["CMHYBD01"] and m.network_message_ids
    fates = {r.address: r for r in m.results}
    assert fates["raghu@cloudmonkeys.xyz"].fate == "delivered" and fates["raghu@cloudmonkeys.xyz"].mailbox
    assert fates["nobody@cloudmonkeys.xyz"].fate == "failed" and "5.1.1" in (fates["nobody@cloudmonkeys.xyz"].reply or "")
    events = [(h.server, h.event) for h in m.hops]
    assert ("CMHYBD01", "RECEIVE") in events and ("CMHYBD01", "DELIVER") in events and ("CMHYBD01", "FAIL") in events
    receive = next(h for h in m.hops if h.event == "RECEIVE")
    assert receive.session_id and receive.connector and str(m.internal_ids["CMHYBD01"][0]) == receive.internal_id
    for h in m.hops:
        for e in h.evidence:
            lines = (out / e.file).read_text(encoding="utf-8-sig").splitlines()
            assert all(e.shows in lines[n - 1] for n in e.lines)
    (ndr,) = result.manifest["messages"][0]["notifications"]
    assert ndr["action"] == "failed" and ndr["about"] == "nobody@cloudmonkeys.xyz"


async def test_the_live_lab_example_in_docs_api_md_runs_as_written(tmp_path: Path) -> None:
    """docs/api.md's aiosmtplib example, taken from the file and run: the message goes in over
    verified STARTTLS, is delivered, and the Hub's tracking log shows it received and delivered."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "async def send_from_the_internet" in b]
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    reply, sent = await namespace["send_from_the_internet"](tmp_path / "live")  # type: ignore[operator]
    assert reply.startswith("2.6.0 <site-visit-1@fabrikam.com> [InternalId=") and "Queued mail for delivery" in reply
    assert isinstance(sent, labsim.Message) and sent.fate == "delivered"
    events = [h.event for h in sent.hops]
    assert "RECEIVE" in events and "DELIVER" in events
    assert any("/MessageTracking/" in e.file for h in sent.hops if h.event == "DELIVER" for e in h.evidence)
    assert list((tmp_path / "live" / "mailboxes").rglob("*.eml"))
    session = [line for f in (tmp_path / "live").glob("CMHYBD01/TransportRoles/Logs/FrontEnd/ProtocolLog/SmtpReceive/*.LOG")
               for line in f.read_text(encoding="utf-8-sig").splitlines() if "STARTTLS" in line]
    assert session  # the client negotiated TLS with the Front End
