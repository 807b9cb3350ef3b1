"""A restarted `labsim up` reports the messages it takes back from its queue database (issue 9):
each is registered with the ledger before it is routed again (Ledger.carried_in, as a corpus hour's
carried mail is: engine.durable, engine.carry), so its later hops and its fate are in the restarted
run's summary.json and manifest.json."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiosmtplib
from conftest import listen_address, scenario_text

from labsim.engine.driver import serve
from labsim.scenario.loader import load_scenario

EOP_A = "cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com"
# EOP's address gone from public DNS: the Hub's Outbound to Office 365 queue cannot deliver.
DNS_BROKEN = f"""
[[change]]
cmdlet = "Remove-LabDnsRecord"
Server = "PUBLIC-DNS"
ZoneName = "mail.protection.outlook.com"
Name = "{EOP_A}"
Type = "A"
"""
QUEUED_AT_STOP = """
[[message]]
id = "queued-at-stop"
at = "+00:00:00"
from = "raghu@cloudmonkeys.xyz"
to = ["ramki@cloudmonkeys.xyz"]
subject = "Left in the queue when up stopped"
"""


async def _wait_for(predicate, what: str, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _serve(scenario: Any, out: Path, body: Any, **kw: Any) -> Any:
    """`labsim up` of `scenario` into `out` (kw: traffic, clients) until `body(rt)` returns."""
    loaded = load_scenario(scenario)
    stop = asyncio.Event()
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(loaded, out=out, stop=stop, ready=ready.set_result, **kw))
    await asyncio.wait([ready, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # serve failed before it was ready: its error
    rt = ready.result()
    try:
        await body(rt)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return rt


def _summary(out: Path) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in json.loads((out / "summary.json").read_text(encoding="utf-8"))["messages"]}


def _retrying(rt: Any) -> bool:
    return any(q.status == "Retry" for q in rt.servers["CMHYBD01"].queues.all())


async def test_a_scenario_message_taken_up_after_a_restart_is_reported(tmp_path: Path, write_scenario) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    broken = write_scenario(scenario_text(DNS_BROKEN + QUEUED_AT_STOP, sid="dns-broken"))

    async def until_queued(rt: Any) -> None:
        await _wait_for(lambda: _retrying(rt), "the Office 365 queue to go to Retry")

    await _serve(broken, out, until_queued, traffic=True)
    first = _summary(out)["queued-at-stop"]
    assert first["fate"] == "pending" and "carried_in" not in first
    box = out / "mailboxes" / "exo" / "ramki@cloudmonkeys.xyz"

    async def until_delivered(rt: Any) -> None:
        assert rt.taken_up == 1
        await _wait_for(lambda: len(list(box.glob("*.eml"))) == 1, "the queued message to reach EXO")

    await _serve("hybrid-baseline", out, until_delivered)  # no traffic: only what was queued
    m = _summary(out)["queued-at-stop"]
    assert m["fate"] == "delivered" and m["message_id"] == first["message_id"]
    received = next(h for h in first["hops"] if h["server"] == "CMHYBD01" and h["event"] == "RECEIVE")
    assert [(c["server"], c["internal_id"]) for c in m["carried_in"]] == [("CMHYBD01", received["internal_id"])]
    # `injected` is its arrival in the queue it was taken from (first run), not the restart (live
    # clock: the session's and the ledger's readings of the wall clock may differ by a few ms)
    assert first["injected"] <= m["injected"] < m["carried_in"][0]["time"]
    events = [(h["server"], h["event"]) for h in m["hops"]]
    assert ("CMHYBD01", "SEND") in events and ("EXO", "DELIVER") in events
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    entry = next(x for x in manifest["messages"] if x["id"] == "queued-at-stop")
    assert entry["fate"] == "delivered"
    deliver = next(h for h in entry["hops"] if (h["server"], h["event"]) == ("EXO", "DELIVER"))
    assert deliver["evidence"]  # pointed at in the restarted run's EXO trace


def _message(i: int) -> bytes:
    return (f"From: alex@fabrikam.com\r\nTo: ramki@cloudmonkeys.xyz\r\nSubject: carried {i}\r\n"
            f"Message-ID: <carried-{i}@outside.example>\r\n\r\nbody {i}\r\n").encode()


async def _send_two(rt: Any) -> None:
    host, port = listen_address(rt, host="CMHYBD01", vaddr="27.7.57.241:25")
    smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="outside.example")
    await smtp.connect()
    for i in range(2):
        await smtp.sendmail("alex@fabrikam.com", ["ramki@cloudmonkeys.xyz"], _message(i))
    await smtp.quit()
    await _wait_for(lambda: _retrying(rt), "the Office 365 queue to go to Retry")


async def test_own_client_mail_taken_up_is_reported_when_clients_are(tmp_path: Path, write_scenario) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    broken = write_scenario(scenario_text(DNS_BROKEN, sid="dns-broken"))
    await _serve(broken, out, _send_two, clients=True)
    assert _summary(out)["<carried-0@outside.example>"]["fate"] == "pending"
    box = out / "mailboxes" / "exo" / "ramki@cloudmonkeys.xyz"

    async def until_delivered(rt: Any) -> None:
        assert rt.taken_up == 2
        await _wait_for(lambda: len(list(box.glob("*.eml"))) == 2, "the queued messages to reach EXO")

    await _serve("hybrid-baseline", out, until_delivered, clients=True)
    summary = _summary(out)
    for i in range(2):
        m = summary[f"<carried-{i}@outside.example>"]
        assert m["fate"] == "delivered" and m["carried_in"][0]["server"] == "CMHYBD01"
        assert ("EXO", "DELIVER") in [(h["server"], h["event"]) for h in m["hops"]]


async def test_own_client_mail_taken_up_is_not_reported_without_clients(tmp_path: Path, write_scenario) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    broken = write_scenario(scenario_text(DNS_BROKEN, sid="dns-broken"))
    await _serve(broken, out, _send_two)
    box = out / "mailboxes" / "exo" / "ramki@cloudmonkeys.xyz"

    async def until_delivered(rt: Any) -> None:
        await _wait_for(lambda: len(list(box.glob("*.eml"))) == 2, "the queued messages to reach EXO")

    await _serve("hybrid-baseline", out, until_delivered)
    assert _summary(out) == {}


async def test_labsim_up_reports_its_own_clients_mail(tmp_path: Path) -> None:
    """`labsim up` serves with clients reported: a message sent by one's own SMTP client is in the
    summary.json written at the stop, under its Message-ID, with its fate."""
    import signal
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "labsim.cli", "up", "hybrid-baseline", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None
        address = None
        for raw in proc.stdout:
            line = raw.decode()
            if "CMHYBD01" in line and "27.7.57.241:25" in line:
                ip, port = line.split()[2].rsplit(":", 1)
                address = (ip, int(port))
            if line.strip().startswith("try:"):
                break
        assert address is not None, "labsim up did not start"
        smtp = aiosmtplib.SMTP(hostname=address[0], port=address[1], start_tls=False, local_hostname="outside.example")
        await smtp.connect()
        await smtp.sendmail("alex@fabrikam.com", ["raghu@cloudmonkeys.xyz"], _message(9).replace(
            b"To: ramki@", b"To: raghu@"))
        await smtp.quit()
        await _wait_for(lambda: any(out.glob("mailboxes/*/raghu@cloudmonkeys.xyz/*.eml")), "the delivery")
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    m = _summary(out)["<carried-9@outside.example>"]
    assert m["fate"] == "delivered" and m["delivered"][0]["recipient"] == "raghu@cloudmonkeys.xyz"
