"""Receive limits and framing over real loopback sockets against a running lab (`labsim up`).

The client here is a raw socket from 127.0.0.1, a stranger to the lab (like telnet or a fuzzer),
so every byte it sends is exactly what the server reads. Connector settings come from scenario
changes (Set-ReceiveConnector), as an admin would make them. docs/smtp-limits.md has the sources.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import listen_address, scenario_text, serving

from labsim.net.vnet import start_tcp_server
from labsim.rules import replies as R
from labsim.smtp.policy import ReceivePolicy
from labsim.smtp.server import READ_CHUNK, ServerSession

EDGE_RC = "CMEDGE01\\Default internal receive connector CMEDGE01"
FE_RC = "CMHYBD01\\Default Frontend CMHYBD01"
MAILBOX = ("mailboxes", "onprem-DB01", "raghu@cloudmonkeys.xyz")


def set_rc(identity: str, **settings: object) -> str:
    lines = "".join(f"{k} = {v!r}\n" if isinstance(v, str) else f"{k} = {v}\n" for k, v in settings.items())
    return f"\n[[change]]\ncmdlet = \"Set-ReceiveConnector\"\nIdentity = '{identity}'\n{lines}"


async def run_live(tmp_path: Path, changes: str, body) -> None:  # noqa: ANN001 - body(rt, out) is async
    path = tmp_path / "s.toml"
    path.write_text(scenario_text(changes, sid="limits"), encoding="utf-8")
    out = tmp_path / "out"
    await serving(path, out, lambda rt: body(rt, out))


def listener(rt, what: str, host: str) -> tuple[str, int]:  # noqa: ANN001
    return listen_address(rt, what=what, host=host)


class Raw:
    """A raw SMTP client: bytes out, reply lines in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, addr: tuple[str, int]) -> "Raw":
        reader, writer = await asyncio.open_connection(*addr)
        return cls(reader, writer)

    async def reply(self, timeout: float = 10.0) -> str:
        """The last line of the next reply ('' when the server closed)."""
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                return ""
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line[3:4] != "-":
                return line

    async def send(self, data: bytes, timeout: float = 10.0) -> str:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reply(timeout)

    async def cmd(self, line: str | bytes) -> str:
        return await self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def close(self) -> None:
        self.writer.close()


async def envelope(c: Raw) -> None:
    assert (await c.reply()).startswith("220 ")
    assert (await c.cmd("EHLO outside.example")).startswith("250 ")
    assert await c.cmd("MAIL FROM:<alex@fabrikam.com>") == R.SENDER_OK
    assert await c.cmd("RCPT TO:<raghu@cloudmonkeys.xyz>") == R.RECIPIENT_OK


def delivered(out: Path) -> list[Path]:
    return sorted(out.joinpath(*MAILBOX).glob("*.eml"))


async def wait_for_mail(out: Path, count: int, seconds: float = 20.0) -> list[Path]:
    for _ in range(int(seconds / 0.05)):
        if len(delivered(out)) >= count:
            break
        await asyncio.sleep(0.05)
    return delivered(out)


def receive_log_text(out: Path, server: str, service: str) -> bytes:
    folder = out / server / "TransportRoles" / "Logs" / service / "ProtocolLog" / "SmtpReceive"
    return b"".join(p.read_bytes() for p in sorted(folder.glob("RECV*.LOG")))


SMUGGLED = (b"MAIL FROM:<admin@cloudmonkeys.xyz>\r\nRCPT TO:<raghu@cloudmonkeys.xyz>\r\nDATA\r\n"
            b"From: admin@cloudmonkeys.xyz\r\nSubject: smuggled\r\n\r\nspoofed text\r\n")
PAYLOADS = {"LF.LF": b"\n.\n", "CRLF.LF": b"\r\n.\n", "LF.CRLF": b"\n.\r\n"}


def smuggling_message(end: bytes) -> bytes:
    return (b"From: alex@fabrikam.com\r\nTo: raghu@cloudmonkeys.xyz\r\nSubject: outer\r\n\r\nfirst part"
            + end + SMUGGLED + b"\r\n.\r\n")


# --- 1. SMTP smuggling ------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [("SMTP Edge", "CMEDGE01"), ("SMTP FrontEnd", "CMHYBD01")])
async def test_a_non_standard_end_of_data_never_ends_a_message(tmp_path: Path, target: tuple[str, str]) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        addr = listener(rt, *target)
        for end in PAYLOADS.values():
            c = await Raw.open(addr)
            await envelope(c)
            assert await c.cmd("DATA") == R.START_DATA
            reply = await c.send(smuggling_message(end))
            assert reply.startswith("250 2.6.0 ") and "Queued mail for delivery" in reply
            assert await c.cmd("QUIT") == R.CLOSING  # the smuggled MAIL/RCPT/DATA were message text
            c.close()
        mails = await wait_for_mail(out, len(PAYLOADS))
        await asyncio.sleep(0.5)  # a second message per try would show up now
        mails = delivered(out)
        assert len(mails) == len(PAYLOADS)  # one message per DATA, never two
        for m in mails:
            assert b"Subject: outer" in m.read_bytes() and b"spoofed text" in m.read_bytes()

    await run_live(tmp_path, "", drive)


async def test_the_hardened_postfix_refuses_bare_lf_and_delivers_nothing(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        addr = listener(rt, "SMTP Internet MTA", "FABRIKAM-MX")
        for end in PAYLOADS.values():
            c = await Raw.open(addr)
            assert (await c.reply()).startswith("220 ")
            assert (await c.cmd("EHLO outside.example")).startswith("250 ")
            assert (await c.cmd("MAIL FROM:<x@outside.example>")).startswith("250 ")
            assert (await c.cmd("RCPT TO:<alex@fabrikam.com>")).startswith("250 ")
            assert (await c.cmd("DATA")).startswith("354 ")
            assert await c.send(smuggling_message(end)) == "550 5.5.2 mx.fabrikam.com Error: bare <LF> received"
            assert (await c.cmd("QUIT")).startswith("221")
            c.close()
        await asyncio.sleep(0.3)
        assert not list(out.joinpath("mailboxes").rglob("*.eml"))

    await run_live(tmp_path, "", drive)


# --- 2. connector limits --------------------------------------------------------------------------
async def test_rcpt_over_max_recipients_per_message_gets_452(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener(rt, "SMTP Edge", "CMEDGE01"))
        assert (await c.reply()).startswith("220 ")
        await c.cmd("EHLO outside.example")
        await c.cmd("MAIL FROM:<alex@fabrikam.com>")
        c.writer.write(b"RCPT TO:<raghu@cloudmonkeys.xyz>\r\n" * 201)  # pipelined
        replies = [await c.reply() for _ in range(201)]
        assert replies[:200] == [R.RECIPIENT_OK] * 200
        assert replies[200] == "452 4.5.3 Too many recipients"
        assert await c.cmd("NOOP") == R.OK  # not a protocol error, the session goes on
        c.close()

    await run_live(tmp_path, "", drive)


async def test_an_oversize_bdat_chunk_is_refused_and_the_session_continues(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener(rt, "SMTP Edge", "CMEDGE01"))
        await envelope(c)
        size = 4 * 1024 * 1024 + 17
        c.writer.write(f"BDAT {size} LAST\r\n".encode())
        for _ in range(size // 65536):
            c.writer.write(b"x" * 65536)
            await c.writer.drain()
        c.writer.write(b"x" * (size % 65536))
        assert await c.send(b"") == R.TOO_LARGE
        assert await c.cmd("NOOP") == R.OK
        assert await c.cmd("MAIL FROM:<alex@fabrikam.com>") == R.SENDER_OK  # the transaction was reset
        c.close()

    await run_live(tmp_path, set_rc(EDGE_RC, MaxMessageSize=1048576), drive)


async def test_a_bdat_chunk_is_read_in_bounded_pieces_and_dropped_when_refused() -> None:
    reader = asyncio.StreamReader(limit=2**20)
    reader.feed_data(b"y" * (3 * READ_CHUNK + 5))
    reader.feed_eof()
    asked: list[int] = []
    real_read = reader.read

    async def read(n: int = -1) -> bytes:
        asked.append(n)
        return await real_read(n)

    reader.read = read  # type: ignore[method-assign]
    session = ServerSession(ReceivePolicy(None), reader, writer=None, now=datetime.now(timezone.utc), context={})  # type: ignore[arg-type]
    assert await session.input.read_exactly(3 * READ_CHUNK + 5, keep=False) == b""
    assert asked and max(asked) <= READ_CHUNK and len(session.input.buffer) == 0


async def test_an_idle_client_is_dropped_at_connection_inactivity_timeout(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener(rt, "SMTP Edge", "CMEDGE01"))
        assert (await c.reply()).startswith("220 ")
        assert (await c.cmd("EHLO outside.example")).startswith("250 ")
        assert await c.reply(timeout=10) == R.TIMEOUT  # nothing sent: the server speaks first
        assert await c.reply(timeout=5) == ""  # and closes
        c.close()
        await asyncio.sleep(0.2)
        rt.flush_logs()
        text = receive_log_text(out, "CMEDGE01", "Edge").decode("utf-8-sig")
        session_rows = [r for r in text.split("\r\n") if r and not r.startswith("#")]
        assert session_rows[-2].split(",")[6:8] == [">", R.TIMEOUT]
        assert session_rows[-1].split(",")[6] == "-" and session_rows[-1].split(",")[8] == "Local"

    await run_live(tmp_path, set_rc(EDGE_RC, ConnectionInactivityTimeout="00:00:01"), drive)


async def test_an_idle_outside_client_does_not_hold_up_the_lab(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        idle = await Raw.open(listener(rt, "SMTP FrontEnd", "CMHYBD01"))
        assert (await idle.reply()).startswith("220 ")  # ... and then says nothing at all
        for n in (1, 2):
            c = await Raw.open(listener(rt, "SMTP FrontEnd", "CMHYBD01"))
            await envelope(c)
            await c.cmd("DATA")
            reply = await c.send(f"Subject: m{n}\r\n\r\nhello\r\n.\r\n".encode())
            assert reply.startswith("250 2.6.0 ")
            c.close()
            # each delivery is a lab action; with the idle stranger counted, the second one
            # would wait out settle()'s 15 s
            assert len(await wait_for_mail(out, n, seconds=10)) == n
        idle.close()

    await run_live(tmp_path, "", drive)


async def test_connection_limits_answer_exchanges_421s(tmp_path: Path) -> None:
    changes = (set_rc(EDGE_RC, MaxInboundConnection=2, MaxInboundConnectionPercentagePerSource=100)
               + set_rc(FE_RC, MaxInboundConnectionPerSource=2))

    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        for target, refusal in ((("SMTP Edge", "CMEDGE01"), R.TOO_MANY_CONNECTIONS),
                                (("SMTP FrontEnd", "CMHYBD01"), R.TOO_MANY_CONNECTIONS_PER_SOURCE)):
            held = [await Raw.open(listener(rt, *target)) for _ in range(2)]
            for h in held:
                assert (await h.reply()).startswith("220 ")
            third = await Raw.open(listener(rt, *target))
            assert await third.reply() == refusal
            assert await third.reply() == ""  # closed after the 421
            third.close()
            held[0].close()
            await asyncio.sleep(0.3)  # a slot is free again
            again = await Raw.open(listener(rt, *target))
            assert (await again.reply()).startswith("220 ")
            for c in (again, held[1]):
                c.close()
            await asyncio.sleep(0.3)

    await run_live(tmp_path, changes, drive)


async def test_a_burst_beyond_the_old_backlog_gets_a_banner_or_a_421_each(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        addr = listener(rt, "SMTP FrontEnd", "CMHYBD01")
        clients = await asyncio.gather(*(Raw.open(addr) for _ in range(250)))
        firsts = await asyncio.gather(*(c.reply(timeout=20) for c in clients))
        for c in clients:
            c.close()
        assert all(f.startswith("220 ") or f == R.TOO_MANY_CONNECTIONS_PER_SOURCE for f in firsts)
        assert sum(f.startswith("220 ") for f in firsts) >= 20  # MaxInboundConnectionPerSource 20

    await run_live(tmp_path, "", drive)


# --- 3. numbers, verbs, logs -------------------------------------------------------------------------
async def test_bad_numbers_and_lookalike_verbs_are_refused_and_the_session_goes_on(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener(rt, "SMTP Edge", "CMEDGE01"))
        assert (await c.reply()).startswith("220 ")
        assert (await c.cmd("EHLO outside.example")).startswith("250 ")
        assert await c.cmd("MAIL FROM:<alex@fabrikam.com> SIZE=\u00b2") == R.INVALID_ARGS
        assert await c.cmd("MAIL FROM:<alex@fabrikam.com> SIZE=" + "9" * 5000) == R.INVALID_ARGS
        assert await c.cmd("MAIL FROM:<alex@fabrikam.com>") == R.SENDER_OK
        assert await c.cmd("RCPT TO:<raghu@cloudmonkeys.xyz>") == R.RECIPIENT_OK
        assert await c.cmd("\u017fTARTTLS") == R.UNRECOGNIZED  # 'ſ'.upper() == 'S'
        assert await c.cmd(b"NOOP\x00x") == R.UNRECOGNIZED
        assert await c.cmd("NOOP") == R.OK
        # a BDAT whose count does not parse ends the session (BdatSmtpInCommand.Parse: disconnect)
        assert await c.cmd("BDAT " + "9" * 5000 + " LAST") == R.INVALID_ARGS
        assert await asyncio.wait_for(c.reader.read(), 5) == b""
        c.close()
        await asyncio.sleep(0.2)
        rt.flush_logs()
        log = receive_log_text(out, "CMEDGE01", "Edge")
        assert b"\x00" not in log
        assert b"NOOP\\x00x" in log

    await run_live(tmp_path, set_rc(EDGE_RC, MaxProtocolErrors=20), drive)


# --- virtual time: the session times out when the client's next command comes too late --------------
class _ClockPolicy(ReceivePolicy):
    def __init__(self, now: datetime) -> None:
        self.runtime = None
        self.t = now

    def clock_now(self) -> datetime:
        return self.t

    async def open(self, session: ServerSession) -> bool:
        session.state = object()
        return True

    def banner(self, session: ServerSession) -> str:
        return "220 ready"

    def timeouts(self, session: ServerSession) -> tuple[float | None, float | None]:
        return 60.0, 300.0

    async def ehlo(self, session: ServerSession, arg: str, *, extended: bool) -> None:
        await session.reply("250 hello")


async def test_in_run_mode_an_inactivity_timeout_happens_at_its_virtual_time() -> None:
    start = datetime(2026, 5, 1, tzinfo=timezone.utc)
    policy = _ClockPolicy(start)
    sessions: list[ServerSession] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = ServerSession(policy, reader, writer, now=start, context={})
        sessions.append(s)
        await s.run()

    srv = await start_tcp_server(handle, "127.0.0.1", 0)
    c = await Raw.open(srv.sockets[0].getsockname()[:2])
    assert await c.reply() == "220 ready"
    assert await c.cmd("EHLO a") == "250 hello"
    policy.t = start + timedelta(seconds=90)  # the client took 90 virtual seconds for its next line
    assert await c.cmd("NOOP") == R.TIMEOUT
    assert await c.reply() == ""
    assert sessions[0].cursor == start + timedelta(seconds=60)  # it happened 60 s after the reply
    c.close()
    srv.close()


# --- run mode end to end: a lab client that stalls -----------------------------------------------------
def test_a_lab_client_that_stalls_is_timed_out_at_the_right_virtual_time(write_scenario, tmp_path: Path) -> None:
    import json

    from conftest import folder_rows, run_cli, sessions

    path = write_scenario(scenario_text("""
        [[change]]
        at = "+00:01:00"
        cmdlet = "Send-LabSmtpCommands"
        Source = "FABRIKAM-MX"
        Target = "27.7.57.242"
        Port = 25
        Commands = ["EHLO mx.fabrikam.com", "<WAIT 00:03:00>", "NOOP"]
        """, sid="stall"), "stall.toml")
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli(["run", str(path), "--out", str(out)])
    assert rc == 0, stdout + stderr
    transcript = json.loads((out / "summary.json").read_text())["services"]["smtp_sessions"][0]["transcript"]
    assert "C: <silent for 00:03:00>" in transcript and f"S: {R.TIMEOUT}" in transcript
    (rows,) = sessions(folder_rows(out, "CMEDGE01", "Edge", "SmtpReceive")).values()
    ehlo_reply = next(r for r in rows if r[6] == ">" and r[7].startswith("250 "))
    timeout_row = next(r for r in rows if r[6] == ">" and r[7] == R.TIMEOUT)
    stamp = lambda r: datetime.fromisoformat(r[0].replace("Z", "+00:00"))  # noqa: E731
    assert stamp(timeout_row) - stamp(ehlo_reply) == timedelta(minutes=1)  # the Edge's 00:01:00 default
    assert rows[-1][6] == "-" and rows[-1][8] == "Local"
    assert not any(r[6] == "<" and r[7] == "NOOP" for r in rows)  # the late command was never read as one


async def test_a_header_over_max_header_size_is_refused_with_evidence(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener(rt, "SMTP Edge", "CMEDGE01"))
        await envelope(c)
        assert await c.cmd("DATA") == R.START_DATA
        header = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"h" * 60) for i in range(40))  # ~3 KB, no blank line yet
        assert await c.send(header + b"\r\nbody\r\n.\r\n") == R.HEADERS_TOO_LARGE
        assert await c.cmd("MAIL FROM:<alex@fabrikam.com>") == R.SENDER_OK  # the transaction was reset
        c.close()
        await asyncio.sleep(0.2)
        rt.flush_logs()
        log = receive_log_text(out, "CMEDGE01", "Edge").decode("utf-8-sig")
        assert "MaxHeaderSize: 1 KB (1,024 bytes)" in log and "AccumulatedMessageSize: " in log
        assert not delivered(out)

    await run_live(tmp_path, set_rc(EDGE_RC, MaxHeaderSize=1024), drive)


async def test_the_hardened_postfix_closes_on_a_command_ended_by_a_bare_lf(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener(rt, "SMTP Internet MTA", "FABRIKAM-MX"))
        assert (await c.reply()).startswith("220 ")
        assert await c.send(b"EHLO outside.example\n") == "550 5.5.2 mx.fabrikam.com Error: bare <LF> received"
        assert await c.reply() == ""
        c.close()

    await run_live(tmp_path, "", drive)


class _StubPolicy(ReceivePolicy):
    def __init__(self) -> None:
        self.runtime = None

    def clock_now(self) -> datetime:
        return datetime(2026, 5, 1, tzinfo=timezone.utc)

    async def open(self, session: ServerSession) -> bool:
        session.state = object()
        return True

    def banner(self, session: ServerSession) -> str:
        return "220 ready"


async def test_shutdown_tells_the_client_and_closes() -> None:
    opened: list[ServerSession] = []
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = ServerSession(_StubPolicy(), reader, writer, now=datetime(2026, 5, 1, tzinfo=timezone.utc), context={})
        opened.append(s)
        await s.run()
        done.set()

    srv = await start_tcp_server(handle, "127.0.0.1", 0)
    c = await Raw.open(srv.sockets[0].getsockname()[:2])
    assert await c.reply() == "220 ready"
    await opened[0].shutdown()
    assert await c.reply() == R.SERVICE_SHUTTING_DOWN == "421 4.3.2 Service not available, closing transmission channel"
    assert await c.reply() == ""
    await asyncio.wait_for(done.wait(), 5)
    await opened[0].shutdown()  # a second call is harmless
    c.close()
    srv.close()


async def test_a_busy_session_ends_at_connection_timeout(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener(rt, "SMTP Edge", "CMEDGE01"))
        assert (await c.reply()).startswith("220 ")
        replies = []
        for _ in range(12):  # never idle for a whole second, but on for more than two
            await asyncio.sleep(0.4)
            replies.append(await c.cmd("NOOP"))
            if replies[-1] != R.OK:
                break
        assert replies[-1] == R.CONNECTION_TIMED_OUT == "421 4.4.1 Connection timed out"
        assert R.OK in replies and await c.reply() == ""
        c.close()

    await run_live(tmp_path, set_rc(EDGE_RC, ConnectionTimeout="00:00:02", ConnectionInactivityTimeout="00:00:01"),
                   drive)
