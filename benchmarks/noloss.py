"""No-loss load test for `labsim up`: every message that got 250 ends delivered, NDR'd or queued, once.

Not a timed test. It starts `labsim up` as a child process and drives it from outside, as real
MTAs and clients would, through the four entry points of the lab's listen table:

    edge            Internet MTA -> CMEDGE01 (public 27.7.57.242:25)   Internet -> on-prem
    exo-inbound     Internet MTA -> EOP (52.101.194.15:25)              Internet -> EXO, EXO -> on-prem
    frontend        client -> CMHYBD01 Front End (27.7.57.241:25)       on-prem -> EXO (Outbound to Office 365)
    exo-submission  client -> smtp.office365.com (52.98.152.178:25)     EXO -> on-prem (outbound connector)

(The lab's outside clients are anonymous, so Exchange refuses to relay them to the Internet:
`550 5.7.54` on-prem, `550 5.7.64 TenantAttribution` in EXO. Mail leaves for the Internet only as
NDRs to the Internet senders.)

While the messages flow, the scenario's own timeline (the script writes the scenario file; `up
--traffic` plays its timeline on wall-clock time) stops and starts the Edge's transport service
and removes and restores the Mailbox server's A record on DC01 (twice), then runs Retry-Queue;
the script resets
some connections in the middle of DATA; half-way through it stops `up` with SIGTERM (expecting
exit 143 within 2 s and no traceback) and starts it again on the same output folder, where every
server takes up its queued messages. A sender whose message was not answered 250 (reset, 421,
4xx, refused connection) sends it again later, as an MTA would.

Then it waits for the queues to drain and counts, by Message-ID: accepted (got 250), delivered
(a mailbox .eml), NDR'd (a DSN naming it in a mailbox), still queued (a record in a queue folder),
lost (accepted, nowhere) and duplicated (more than one of the above). Exit status 0 when lost and
duplicated are both 0.

    python benchmarks/noloss.py --messages 3000
"""

from __future__ import annotations

import argparse
import asyncio
import email
import json
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from email.policy import compat32
from pathlib import Path

import aiosmtplib

REPO = Path(__file__).resolve().parents[1]

ENTRIES = {
    "edge": (("CMEDGE01", "27.7.57.242:25"), "alex@fabrikam.com", ["raghu@cloudmonkeys.xyz"]),
    "exo-inbound": (("EXO", "52.101.194.15:25"), "alex@fabrikam.com",
                    ["ramki@cloudmonkeys.xyz", "raghu@cloudmonkeys.xyz"]),
    "frontend": (("CMHYBD01", "27.7.57.241:25"), "alex@fabrikam.com", ["ramki@cloudmonkeys.xyz"]),
    "exo-submission": (("EXO-SUBMISSION", "52.98.152.178:25"), "ramki@cloudmonkeys.xyz",
                       ["raghu@cloudmonkeys.xyz"]),
}
KILL_AT = 26  # seconds into the first `up` (times `scale`): after the faults, during the second DNS outage
TRAINING = """
[training]
symptom = "load test"
evidence = "load test"
root_cause = "load test"
fix = "load test"
"""


def scenario_text(sid: str, faults: bool, scale: float) -> str:
    """The scenario `up --traffic` plays: faults on a timeline (first run) or just a Retry-Queue."""
    def at(seconds: float) -> str:
        s = max(1, round(seconds * scale))
        return f"+00:{s // 60:02d}:{s % 60:02d}"

    # DC01 loses the Mailbox server's A record: the Front End cannot find its Hub (PRX2, 451 to its
    # clients and to EXO), the Edge cannot reach the Hub, the Hub cannot reach its mailbox database
    remove_a = ('cmdlet = "Remove-LabDnsRecord"\nServer = "DC01"\nZoneName = "cloudmonkeys.xyz"\n'
                'Name = "cmhybd01.cloudmonkeys.xyz"\nType = "A"')
    restore_a = ('cmdlet = "Set-LabDnsRecord"\nServer = "DC01"\nZoneName = "cloudmonkeys.xyz"\n'
                 'Name = "cmhybd01.cloudmonkeys.xyz"\nType = "A"\nValue = "192.168.1.13"')
    retry = 'cmdlet = "Retry-Queue"\nFilter = "Status -eq \'Retry\'"'
    if faults:  # the first `up` is stopped at KILL_AT, in the second DNS outage
        steps = [
            (at(5), 'cmdlet = "Stop-Service"\nName = "MSExchangeTransport"\nServer = "CMEDGE01"'),
            (at(10), 'cmdlet = "Start-Service"\nName = "MSExchangeTransport"\nServer = "CMEDGE01"'),
            (at(13), remove_a), (at(18), restore_a), (at(19), retry), (at(23), remove_a),
        ]
    else:  # after the restart: the topology is the scenario's own again (DNS repaired)
        steps = [(at(2), retry), (at(6), retry)]
    body = "".join(f'\n[[change]]\nat = "{when}"\n{text}\n' for when, text in steps)
    return f'id = "{sid}"\ntitle = "no-loss load test"\nseed = 7\n{TRAINING}{body}'


@dataclass
class Msg:
    index: int
    entry: str
    mail_from: str
    rcpt: str
    message_id: str
    attempts: int = 0

    def data(self, pad: int) -> bytes:
        body = "".join(f"line {n} of message {self.index} ..........................................\r\n"
                       for n in range(pad))
        return (f"From: {self.mail_from}\r\nTo: {self.rcpt}\r\nSubject: noloss {self.index} via {self.entry}\r\n"
                f"Message-ID: {self.message_id}\r\n\r\n{body}").encode()


@dataclass
class State:
    pending: dict[str, list[Msg]]
    accepted: dict[str, Msg] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    lab_up: bool = False
    resets: int = 0
    retries: int = 0
    attempts: int = 0
    in_flight: int = 0


class LabProcess:
    """`labsim up` as a child process: its listen table, and a stop by signal."""

    def __init__(self, scenario: Path, out: Path, log: Path) -> None:
        self.scenario, self.out, self.log = scenario, out, log
        self.proc: asyncio.subprocess.Process | None = None
        self.table: dict[tuple[str, str], tuple[str, int]] = {}
        self.taken_up = 0

    async def start(self) -> None:
        err = open(self.log, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labsim.cli", "up", str(self.scenario), "--out", str(self.out), "--traffic",
            stdout=asyncio.subprocess.PIPE, stderr=err, cwd=REPO)
        err.close()
        assert self.proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
            if not line:
                raise RuntimeError(f"labsim up ended before listening (see {self.log})")
            m = re.match(r"\s+(\S+)\s+(\S+)\s+(127\.[\d.]+):(\d+)\s+SMTP", line)
            if m:
                self.table[(m[1], m[2])] = (m[3], int(m[4]))
            taken = re.match(r"\s+(\d+) queued message\(s\) taken up", line)
            if taken:
                self.taken_up = int(taken[1])
            if line.strip().startswith("try:"):
                break
        asyncio.get_running_loop().create_task(self.proc.stdout.read())  # keep the pipe drained

    async def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = await asyncio.wait_for(self.proc.wait(), 60)
        return rc, time.monotonic() - t0


# --- senders ------------------------------------------------------------------------------------------
async def reset_mid_data(host: str, port: int, msg: Msg, data: bytes) -> None:
    """Send MAIL, RCPT, DATA and half the message, then reset the connection."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)

    async def reply() -> str:
        while True:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode()
            if len(line) < 4 or line[3] != "-":
                return line

    try:
        await reply()
        for cmd in (b"EHLO loadtest.example", f"MAIL FROM:<{msg.mail_from}>".encode(),
                    f"RCPT TO:<{msg.rcpt}>".encode(), b"DATA"):
            writer.write(cmd + b"\r\n")
            await writer.drain()
            await reply()
        writer.write(data[: len(data) // 2])
        await writer.drain()
    finally:
        writer.transport.abort()  # RST, mid-DATA


async def sender(name: str, entry: str, st: State, stop: asyncio.Event, *, per_session: int, reset_every: int,
                 pace: asyncio.Queue[None] | None, pad: int, rng: random.Random) -> None:
    queue = st.pending[entry]
    while not stop.is_set():
        if not queue or not st.lab_up:
            await asyncio.sleep(0.1)
            continue
        batch = [queue.pop(0) for _ in range(min(per_session, len(queue)))]
        st.in_flight += len(batch)
        host, port = st.addresses[entry]
        try:
            smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="loadtest.example",
                                   timeout=20)
            await smtp.connect()
            while batch:
                msg = batch[0]
                if pace is not None:
                    await pace.get()
                if reset_every and rng.randrange(reset_every) == 0:
                    st.resets += 1
                    st.attempts += 1
                    try:
                        await reset_mid_data(host, port, msg, msg.data(pad))
                    except (OSError, asyncio.TimeoutError):
                        pass
                    queue.append(batch.pop(0))  # not accepted: sent again later
                    continue
                st.attempts += 1
                msg.attempts += 1
                try:
                    errors, _ = await smtp.sendmail(msg.mail_from, [msg.rcpt], msg.data(pad))
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    code = exc.recipients[0].code
                    if code >= 500:
                        st.rejected[msg.message_id] = f"{code} {exc.recipients[0].message}"
                        batch.pop(0)
                        continue
                    raise
                except aiosmtplib.SMTPResponseException as exc:
                    if exc.code >= 500:
                        st.rejected[msg.message_id] = f"{exc.code} {exc.message}"
                        batch.pop(0)
                        continue
                    raise
                batch.pop(0)
                if errors:
                    st.rejected[msg.message_id] = str(errors)
                else:
                    st.accepted[msg.message_id] = msg
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                pass
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
            st.retries += 1
            await asyncio.sleep(0.2 + rng.random() * 0.3)
        finally:
            queue[:0] = [m for m in batch if m.message_id not in st.accepted and m.message_id not in st.rejected]
            st.in_flight -= len(batch)


async def pacer(pace: asyncio.Queue[None], rate: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if pace.qsize() < 5:
            pace.put_nowait(None)
        await asyncio.sleep(1 / rate)


# --- counting -------------------------------------------------------------------------------------------
_MID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def mailbox_counts(out: Path) -> tuple[Counter[str], Counter[str]]:
    """Message-IDs delivered to a mailbox, and Message-IDs named by a DSN in a mailbox."""
    delivered: Counter[str] = Counter()
    ndr: Counter[str] = Counter()
    for path in (out / "mailboxes").rglob("*.eml"):
        raw = path.read_bytes()
        msg = email.message_from_bytes(raw, policy=compat32)
        if msg.get_content_type() == "multipart/report":
            for part in msg.walk():
                if part.get_content_type() in ("text/rfc822-headers", "message/rfc822"):
                    payload = part.get_payload(decode=True) or b"".join(
                        p.as_bytes() for p in part.get_payload() if hasattr(p, "as_bytes"))
                    m = _MID.search(payload)
                    if m:
                        ndr[m.group(1).decode()] += 1
                        break
            continue
        mid = str(msg.get("Message-ID", "")).strip()
        if mid:
            delivered[mid] += 1
    return delivered, ndr


def queued_counts(out: Path) -> Counter[str]:
    """Message-IDs (of the message, or of the original a queued DSN is about) in the queue folders."""
    queued: Counter[str] = Counter()
    for path in out.glob("*/**/data/Queue/*.json"):
        try:
            item = json.loads(path.read_text(encoding="utf-8"))["item"]
        except FileNotFoundError:
            continue  # the message left that server while we looked (it is counted where it went)
        queued[item["dsn_of"] if item.get("dsn_kind") == "failed" and item.get("dsn_of") else item["message_id"]] += 1
    return queued


@dataclass
class Figures:
    messages: int
    accepted: int
    rejected: int
    delivered: int
    ndr: int
    queued: int
    lost: int
    duplicated: int
    resets: int
    attempts: int
    retries: int
    stops: list[tuple[int, float, bool]]  # (exit status, seconds, traceback on stderr)
    taken_up: int

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and all(rc == 143 and secs < 2 and not tb
                                                               for rc, secs, tb in self.stops)

    def table(self) -> str:
        rows = [
            ("messages planned", self.messages), ("sent attempts (incl. resends)", self.attempts),
            ("connections reset mid-DATA", self.resets), ("sessions failed and retried", self.retries),
            ("accepted (got 250)", self.accepted), ("refused with 5xx (never accepted)", self.rejected),
            ("delivered exactly once", self.delivered), ("NDR'd to sender", self.ndr),
            ("still queued (on disk)", self.queued), ("taken up again after restart", self.taken_up),
            ("lost", self.lost), ("duplicated", self.duplicated),
        ]
        rows += [(f"stop {i + 1}: exit status / seconds / traceback", f"{rc} / {secs:.2f} / {'yes' if tb else 'no'}")
                 for i, (rc, secs, tb) in enumerate(self.stops)]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def count(out: Path, st: State, messages: int, stops: list[tuple[int, float, bool]], taken_up: int) -> Figures:
    delivered, ndr = mailbox_counts(out)
    queued = queued_counts(out)
    lost = duplicated = n_del = n_ndr = n_q = 0
    for mid in st.accepted:
        d, n, q = delivered.get(mid, 0), ndr.get(mid, 0), queued.get(mid, 0)
        total = d + n + q
        if total == 0:
            lost += 1
        elif total > 1:
            duplicated += 1
        elif d:
            n_del += 1
        elif n:
            n_ndr += 1
        else:
            n_q += 1
    return Figures(messages=messages, accepted=len(st.accepted), rejected=len(st.rejected), delivered=n_del,
                   ndr=n_ndr, queued=n_q, lost=lost, duplicated=duplicated, resets=st.resets,
                   attempts=st.attempts, retries=st.retries, stops=stops, taken_up=taken_up)


# --- the run ----------------------------------------------------------------------------------------------
async def run(out: Path, *, messages: int, rate: float | None, scale: float = 1.0, reset_every: int = 30,
              drain_timeout: float = 600.0, settle: float = 90.0, pad: int = 20, seed: int = 7,
              progress: bool = True) -> Figures:
    out.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    run_id = f"{int(time.time()):x}{os.getpid():x}"
    plan = []
    names = list(ENTRIES)
    for i in range(messages):
        entry = names[i % len(names)]
        _, sender_addr, rcpts = ENTRIES[entry]
        plan.append(Msg(i, entry, sender_addr, rcpts[(i // len(names)) % len(rcpts)],
                        f"<noloss-{run_id}-{i}@loadtest.example>"))
    st = State(pending={e: [m for m in plan if m.entry == e] for e in names})
    faults = out / "noloss-faults.toml"
    faults.write_text(scenario_text("noloss-faults", True, scale), encoding="utf-8")
    calm = out / "noloss-restart.toml"
    calm.write_text(scenario_text("noloss-restart", False, scale), encoding="utf-8")
    lab_dir, log = out / "lab", out / "labsim-up.stderr"
    stops: list[tuple[int, float, bool]] = []
    taken_up = 0

    async def start(scenario: Path) -> LabProcess:
        lab = LabProcess(scenario, lab_dir, log)
        await lab.start()
        st.addresses = {e: lab.table[ENTRIES[e][0]] for e in names}
        st.lab_up = True
        return lab

    async def stop(lab: LabProcess) -> None:
        st.lab_up = False
        before = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        rc, secs = await lab.stop(signal.SIGTERM)
        after = log.read_text(encoding="utf-8", errors="replace")[len(before):]
        stops.append((rc, secs, "Traceback" in after))
        say(f"  labsim up stopped: exit {rc} after {secs:.2f} s")

    stop_senders = asyncio.Event()
    pace: asyncio.Queue[None] | None = asyncio.Queue() if rate else None
    tasks = [asyncio.create_task(sender(f"{e}-{k}", e, st, stop_senders, per_session=10, reset_every=reset_every,
                                        pace=pace, pad=pad, rng=random.Random(seed * 100 + k * 10 + j)))
             for j, e in enumerate(names) for k in range(2)]
    if pace is not None and rate:
        tasks.append(asyncio.create_task(pacer(pace, rate, stop_senders)))
    say(f"noloss: {messages} messages into {lab_dir}/")
    lab = await start(faults)
    t0 = time.monotonic()
    try:
        # the first `up`: faults on its timeline; stop it once half the mail is in and the faults are over
        while len(st.accepted) + len(st.rejected) < messages // 2 or time.monotonic() - t0 < KILL_AT * scale:
            await asyncio.sleep(0.2)
        say(f"  {len(st.accepted)} accepted; SIGTERM mid-flow")
        await stop(lab)
        lab = await start(calm)
        taken_up = lab.taken_up
        say(f"  restarted: {taken_up} queued message(s) taken up again")
        while len(st.accepted) + len(st.rejected) < messages:
            await asyncio.sleep(0.2)
        stop_senders.set()
        say(f"  all sent: {len(st.accepted)} accepted, {len(st.rejected)} refused; waiting for the queues to drain")
        deadline = time.monotonic() + drain_timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            figures = count(lab_dir, st, messages, stops, taken_up)
            if figures.delivered + figures.ndr + figures.duplicated >= figures.accepted:
                break
            state = (figures.delivered, figures.ndr, figures.queued, figures.duplicated, figures.lost)
            if state != last:
                last, since = state, time.monotonic()
            elif figures.lost == 0 and time.monotonic() - since >= settle:
                # what is left waits for its own retry time (a message a next hop deferred waits
                # MessageRetryInterval, 15 min): it is counted as still queued
                break
            await asyncio.sleep(1.0)
        await stop(lab)
    finally:
        stop_senders.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if lab.proc is not None and lab.proc.returncode is None:
            lab.proc.kill()
            await lab.proc.wait()
    return count(lab_dir, st, messages, stops, taken_up)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=3000, help="messages in all (default 3000)")
    ap.add_argument("--out", help="output folder (default labsim-out/noloss-<time>)")
    ap.add_argument("--rate", type=float, default=20.0,
                    help="messages per second offered (default 20, about what the lab delivers: a lab that falls "
                         "behind runs its timeline late, since `up` runs one action at a time)")
    ap.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait for the queues to drain")
    ap.add_argument("--settle", type=float, default=90.0,
                    help="stop waiting once nothing has moved for this long (what is left waits for its retry time)")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else REPO / "labsim-out" / time.strftime("noloss-%Y%m%d-%H%M%S")
    # the faults span the first half of the sending, which ends with the SIGTERM
    scale = max(0.3, args.messages / 2 / args.rate / KILL_AT)
    figures = asyncio.run(run(out, messages=args.messages, rate=args.rate, scale=scale,
                              drain_timeout=args.drain_timeout, settle=args.settle))
    print(figures.table())
    print("noloss: " + ("OK - nothing lost, nothing duplicated" if figures.ok else "FAILED"))
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
