"""`labsim up` keeps every message it accepted: queues on disk, mailboxes never overwritten, a clean stop.

The restart tests run `serve()` twice in-process on one output folder (a restart of `up`); the
signal tests run `labsim up` as a child process and stop it as a person (or systemd) would.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiosmtplib
import pytest
from conftest import REPO, folder_rows, listen_address, scenario_text, serving, sessions

from labsim.engine.outdir import claim_live
from labsim.scenario.loader import load_scenario
from labsim.transport.store import MailboxStore

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
STOPPING = "421 4.3.2 Service not available, closing transmission channel"


async def _wait_for(predicate, what: str, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _message(i: int) -> bytes:
    return (f"From: alex@fabrikam.com\r\nTo: ramki@cloudmonkeys.xyz\r\nSubject: durable {i}\r\n"
            f"Message-ID: <durable-{i}@outside.example>\r\n\r\nbody {i}\r\n").encode()


async def test_restarted_up_delivers_what_it_had_queued(tmp_path: Path, write_scenario) -> None:  # noqa: ANN001
    claim_live(tmp_path, scenario="dns-broken", seed=1).release()  # an earlier `up` of this folder
    broken = write_scenario(scenario_text(DNS_BROKEN, sid="dns-broken"))
    queue_dir = tmp_path / "CMHYBD01" / "TransportRoles" / "data" / "Queue"
    exo_box = tmp_path / "mailboxes" / "exo" / "ramki@cloudmonkeys.xyz"
    exo_box.mkdir(parents=True)
    (exo_box / "0001.eml").write_bytes(b"Message-ID: <earlier@outside.example>\r\n\r\nfrom an earlier run\r\n")
    ids: list[str] = []

    async def send_while_broken(rt) -> None:  # noqa: ANN001
        host, port = listen_address(rt, host="CMHYBD01", vaddr="27.7.57.241:25")
        smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="outside.example")
        await smtp.connect()
        for i in range(3):
            _, reply = await smtp.sendmail("alex@fabrikam.com", ["ramki@cloudmonkeys.xyz"], _message(i))
            ids.append(re.search(r"InternalId=(\d+)", reply).group(1))
        await smtp.quit()
        # the Hub tries EOP, fails on DNS and keeps the three messages queued
        await _wait_for(lambda: any(q.status == "Retry" for q in rt.servers["CMHYBD01"].queues.all()),
                        "the Office 365 queue to go to Retry")

    await serving(broken, tmp_path, send_while_broken)
    on_disk = sorted(p.stem for p in queue_dir.glob("*.json"))
    assert on_disk == sorted(ids)  # committed under the InternalId the 250 reply named
    record = json.loads((queue_dir / f"{ids[0]}.json").read_text(encoding="utf-8"))
    assert record["item"]["message_id"] == "<durable-0@outside.example>"
    assert "Retry" in {c["status"] for c in record["copies"]}
    assert not list(exo_box.glob("0002.eml"))

    async def restarted(rt) -> None:  # noqa: ANN001
        assert rt.taken_up == 3
        await _wait_for(lambda: len(list(exo_box.glob("*.eml"))) == 4, "the queued messages to reach EXO")

    await serving("hybrid-baseline", tmp_path, restarted)  # DNS is healthy in the baseline
    assert not list(queue_dir.glob("*.json")) and not list(queue_dir.glob("*.eml"))
    files = sorted(p.name for p in exo_box.glob("*.eml"))
    assert files == ["0001.eml", "0002.eml", "0003.eml", "0004.eml"]
    assert b"from an earlier run" in (exo_box / "0001.eml").read_bytes()  # never overwritten
    delivered = sorted(re.search(rb"Message-ID: (<durable-\d@outside.example>)", (exo_box / f).read_bytes()).group(1)
                       for f in files[1:])
    assert delivered == [f"<durable-{i}@outside.example>".encode() for i in range(3)]


def test_mailbox_numbering_continues_and_never_overwrites(tmp_path: Path) -> None:
    box = tmp_path / "mailboxes" / "exo" / "ramki@cloudmonkeys.xyz"
    box.mkdir(parents=True)
    (box / "0007.eml").write_bytes(b"kept")
    (box / "notes.txt").write_bytes(b"not ours")
    first, second = MailboxStore(tmp_path), MailboxStore(tmp_path)  # two processes on one folder
    paths = [first.deliver("exo", "Ramki@cloudmonkeys.xyz", b"a"), second.deliver("exo", "ramki@cloudmonkeys.xyz", b"b"),
             first.deliver("exo", "ramki@cloudmonkeys.xyz", b"c")]
    assert [Path(p).name for p in paths] == ["0008.eml", "0009.eml", "0010.eml"]
    assert [(box / n).read_bytes() for n in ("0007.eml", "0008.eml", "0009.eml", "0010.eml")] == [b"kept", b"a", b"b", b"c"]
    assert (box / "notes.txt").read_bytes() == b"not ours"


def test_run_mode_keeps_no_queue_database(tmp_path: Path) -> None:
    from labsim.engine.driver import run_scenario

    run_scenario(load_scenario("hybrid-baseline"), out=tmp_path)
    assert not list(tmp_path.rglob("data/Queue"))


# --- `labsim up` as a process ---------------------------------------------------------------------------
def _start_up(out: Path) -> tuple[subprocess.Popen[bytes], dict[tuple[str, str], tuple[str, int]]]:
    proc = subprocess.Popen([sys.executable, "-m", "labsim.cli", "up", "hybrid-baseline", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    table = {}
    for raw in proc.stdout:
        line = raw.decode()
        m = re.match(r"\s+(\S+)\s+(\S+)\s+(127\.[\d.]+):(\d+)\s+SMTP", line)
        if m:
            table[(m[1], m[2])] = (m[3], int(m[4]))
        if line.strip().startswith("try:"):
            return proc, table
    raise AssertionError(f"labsim up did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


def _stop(proc: subprocess.Popen[bytes], sig: int) -> tuple[int, float, str]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - t0
    assert proc.stderr is not None
    return rc, elapsed, proc.stderr.read().decode()


async def test_sigterm_answers_open_sessions_421_and_exits_143(tmp_path: Path) -> None:
    proc, table = _start_up(tmp_path)
    try:
        reader, writer = await asyncio.open_connection(*table[("CMHYBD01", "27.7.57.241:25")])
        assert (await reader.readline()).startswith(b"220 ")
        writer.write(b"EHLO outside.example\r\n")
        while not (line := await reader.readline()).startswith(b"250 "):
            assert line.startswith(b"250-")
        rc, elapsed, stderr = await asyncio.to_thread(_stop, proc, signal.SIGTERM)
        assert (await asyncio.wait_for(reader.readline(), 5)).decode() == STOPPING + "\r\n"
        assert await reader.read() == b""  # then the server closed the connection
        writer.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 143
    assert elapsed < 2.0
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and "stopped (SIGTERM)" in stderr
    rows = folder_rows(tmp_path, "CMHYBD01", "FrontEnd", "SmtpReceive")
    ours = [rs for rs in sessions(rows).values() if any("EHLO outside.example" in r[7] for r in rs)]
    assert len(ours) == 1
    session = ours[0]
    assert [r[6:8] for r in session[-2:]] == [[">", STOPPING], ["-", ""]]
    assert session[-1][8] == "Local"


def test_sigint_exits_130(tmp_path: Path) -> None:
    proc, _ = _start_up(tmp_path)
    rc, elapsed, stderr = _stop(proc, signal.SIGINT)
    assert rc == 130
    assert elapsed < 2.0
    assert "Traceback" not in stderr and "stopped (SIGINT)" in stderr


# --- the no-loss load test, small -------------------------------------------------------------------------
def _noloss_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("noloss", REPO / "benchmarks" / "noloss.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("noloss", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


async def test_no_loss_through_faults_and_a_restart(tmp_path: Path) -> None:
    noloss = _noloss_module()
    figures = await noloss.run(tmp_path, messages=40, rate=4.0, scale=0.3, reset_every=8, drain_timeout=60, settle=8,
                               progress=False)
    assert figures.accepted == 40  # every message got its 250 in the end (senders resend the rest)
    assert figures.lost == 0 and figures.duplicated == 0
    assert figures.delivered + figures.ndr + figures.queued == 40
    assert figures.resets > 0
    assert [(rc, tb) for rc, _, tb in figures.stops] == [(143, False), (143, False)]
    assert all(secs < 2.0 for _, secs, _ in figures.stops)


# --- the queue folder itself --------------------------------------------------------------------------------
def _item(internal_id: int):  # noqa: ANN202
    from datetime import datetime, timezone

    from labsim.transport.message import MailItem

    return MailItem(server="CMHYBD01", internal_id=internal_id, mail_from="alex@fabrikam.com",
                    recipients=["raghu@cloudmonkeys.xyz"], data=b"Subject: x\r\n\r\nbody\r\n", message_id="<x@y>",
                    network_message_id="n", subject="x", arrived=datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc))


def test_queue_folder_round_trip_and_cleanup(tmp_path: Path) -> None:
    from labsim.transport.persist import QueueStore
    from labsim.transport.queues import QueuedMessage, QueueSet

    queues = QueueSet("CMHYBD01")
    q = queues.for_route(("SmtpDeliveryToMailbox", "db01"), "SmtpDeliveryToMailbox", "DB01", None)
    item = _item(42)
    qm = QueuedMessage(item=item, recipients=["raghu@cloudmonkeys.xyz"], status="Retry", retry_count=3,
                       last_error="451 4.4.0 DNS query failed")
    q.messages.append(qm)
    store = QueueStore(tmp_path)
    store.save(item, [(q, qm)], queues)
    (tmp_path / "77.eml").write_bytes(b"a body whose record was never committed")
    (tmp_path / "README.txt").write_text("not ours")
    [saved] = QueueStore(tmp_path).load()
    assert saved.item.data == item.data and saved.item.arrived == item.arrived and saved.item.internal_id == 42
    assert saved.copies[0].state["retry_count"] == 3 and saved.copies[0].state["status"] == "Retry"
    assert not (tmp_path / "77.eml").exists()  # an uncommitted body of ours is cleared
    assert (tmp_path / "README.txt").read_text() == "not ours"
    store.drop(item)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.txt"]


def test_unreadable_queue_record_is_one_clear_error(tmp_path: Path) -> None:
    from labsim.transport.persist import QueueStore

    (tmp_path / "5.json").write_text("{not json")
    (tmp_path / "5.eml").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"5\.json: unreadable queued message"):
        QueueStore(tmp_path).load()


def test_up_refuses_an_unreadable_queue_database_in_one_line(tmp_path: Path) -> None:
    from conftest import run_cli

    folder = tmp_path / "CMEDGE01" / "TransportRoles" / "data" / "Queue"
    claim_live(tmp_path, scenario="hybrid-baseline", seed=1).release()  # an earlier `up` of this folder
    folder.mkdir(parents=True)
    (folder / "5.json").write_text("{not json")
    rc, _, err = run_cli(["up", "hybrid-baseline", "--out", str(tmp_path)])
    assert rc == 1
    assert err.count("\n") == 1 and "CMEDGE01's queue database" in err and "5.json" in err


async def test_internal_ids_stay_unique_across_restarts(tmp_path: Path) -> None:
    seen: list[int] = []
    used: list[int] = []  # every InternalId the Hub handed out in the first run is below this

    async def one_message(rt) -> None:  # noqa: ANN001
        host, port = listen_address(rt, host="CMHYBD01", vaddr="27.7.57.241:25")
        smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="outside.example")
        await smtp.connect()
        _, reply = await smtp.sendmail("alex@fabrikam.com", ["raghu@cloudmonkeys.xyz"], _message(len(seen)))
        await smtp.quit()
        seen.append(int(re.search(r"InternalId=(\d+)", reply).group(1)))
        await _wait_for(lambda: len(list((tmp_path / "mailboxes").rglob("*.eml"))) == len(seen), "delivery")
        used.append(rt.servers["CMHYBD01"].internal_ids.upcoming)

    await serving("hybrid-baseline", tmp_path, one_message)
    await serving("hybrid-baseline", tmp_path, one_message)  # same seed: the same counter start
    assert seen[1] >= used[0]  # as Exchange's: never the id of an earlier message
