"""PIPELINING (RFC 2920) on both ends, as Exchange does it.

The receive side holds the replies of a group's MAIL/RCPT/RSET while the client's next command is
already buffered and logs them when they go out, after the commands they answer (a real Hub receive
log from a Front End proxy: `<,MAIL FROM`, `<,RCPT TO`, `>,250 2.1.0 Sender OK`, `>,250 2.1.5
Recipient OK`). The send side (Exchange's SmtpOut) writes MAIL FROM and its RCPT TOs at once and
reads their replies in order. Server-shell tests use a stub policy over raw loopback streams; the
client's reader is tested against replies that come in pieces; the lab-level tests read a run.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtplib.protocol import SMTPProtocol
from conftest import folder_rows, serving, sessions

from labsim.net.vnet import start_tcp_server
from labsim.rules import verbs as V
from labsim.smtp.client_session import _GroupReplies, _read_group
from labsim.smtp.policy import ReceivePolicy
from labsim.smtp.server import ServerSession
from labsim.web.protolog import Row, Session

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)


# --- the receive side: a stub policy and a log that records ------------------------------------------
class _Log:
    def __init__(self) -> None:
        self.rows: list[str] = []

    def connect(self) -> None:
        self.rows.append("+")

    def sent(self, text: str) -> None:
        self.rows.append(">" + text)

    def received(self, text: str) -> None:
        self.rows.append("<" + text)

    def disconnect(self, reason: str) -> None:
        self.rows.append("-" + reason)


class _Policy(ReceivePolicy):
    """EHLO, MAIL, RCPT (a `bad` recipient is refused), DATA and BDAT; everything accepted."""

    def __init__(self, log: _Log) -> None:
        self.runtime = None
        self.log = log

    def clock_now(self) -> datetime:
        return T0

    async def open(self, session: ServerSession) -> bool:
        session.state = object()
        session.log = self.log
        return True

    def banner(self, session: ServerSession) -> str:
        return "220 stub ready"

    async def ehlo(self, session: ServerSession, arg: str, *, extended: bool) -> None:
        await session.reply(["250-stub Hello", "250-PIPELINING", "250 CHUNKING"])

    async def mail(self, session: ServerSession, address: str, params: dict[str, str], size: int | None) -> str:
        return "250 2.1.0 Sender OK"

    async def rcpt(self, session: ServerSession, address: str) -> str:
        return "550 5.1.10 RESOLVER.ADR.RecipientNotFound" if address.startswith("bad") else "250 2.1.5 Recipient OK"

    def data_start(self, session: ServerSession) -> str:
        return "354 Start mail input; end with <CRLF>.<CRLF>"

    async def deliver(self, session: ServerSession, envelope: Any) -> str:
        return "250 2.6.0 queued"


async def _talk(writes: list[bytes], replies_per_write: list[int]) -> tuple[list[str], list[str]]:
    """Send each piece in one write, read that many reply lines after it; (reply lines, log rows)."""
    log = _Log()
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ServerSession(_Policy(log), reader, writer, now=T0, context={}).run()
        done.set()

    srv = await start_tcp_server(handle, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
    got: list[str] = []
    try:
        await reader.readline()
        for piece, count in zip(writes, replies_per_write):
            writer.write(piece)
            await writer.drain()
            for _ in range(count):
                got.append((await asyncio.wait_for(reader.readline(), 5.0)).decode().rstrip("\r\n"))
        writer.close()
        await asyncio.wait_for(done.wait(), 5.0)
    finally:
        srv.close()
    return got, log.rows


async def test_a_pipelined_group_is_answered_at_its_end_and_logged_after_its_commands() -> None:
    got, rows = await _talk([b"EHLO c\r\n", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<bad@y.test>\r\n",
                             b"QUIT\r\n"], [3, 3, 1])
    assert got[3:6] == ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK", "550 5.1.10 RESOLVER.ADR.RecipientNotFound"]
    i = rows.index("<MAIL FROM:<a@x.test>")
    assert rows[i:i + 6] == ["<MAIL FROM:<a@x.test>", "<RCPT TO:<b@y.test>", "<RCPT TO:<bad@y.test>",
                             ">250 2.1.0 Sender OK", ">250 2.1.5 Recipient OK",
                             ">550 5.1.10 RESOLVER.ADR.RecipientNotFound"]


async def test_a_client_that_waits_for_each_reply_is_logged_command_by_command() -> None:
    got, rows = await _talk([b"EHLO c\r\n", b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<b@y.test>\r\n", b"QUIT\r\n"],
                            [3, 1, 1, 1])
    i = rows.index("<MAIL FROM:<a@x.test>")
    assert rows[i:i + 4] == ["<MAIL FROM:<a@x.test>", ">250 2.1.0 Sender OK", "<RCPT TO:<b@y.test>",
                             ">250 2.1.5 Recipient OK"]


async def test_data_ends_a_group_and_its_354_goes_out_with_the_held_replies() -> None:
    # swaks --pipeline: MAIL, RCPT and DATA at once; DATA may only end a group (RFC 2920)
    got, rows = await _talk([b"EHLO c\r\n", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n",
                             b"Subject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n"], [3, 3, 2])
    assert got[3:] == ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK",
                       "354 Start mail input; end with <CRLF>.<CRLF>", "250 2.6.0 queued",
                       "221 2.0.0 Service closing transmission channel"]
    i = rows.index("<DATA")
    assert rows[i - 2:i + 4] == ["<MAIL FROM:<a@x.test>", "<RCPT TO:<b@y.test>", "<DATA", ">250 2.1.0 Sender OK",
                                 ">250 2.1.5 Recipient OK", ">354 Start mail input; end with <CRLF>.<CRLF>"]


async def test_held_replies_go_out_before_the_server_waits_for_a_chunk() -> None:
    # MAIL, RCPT and a BDAT whose chunk the client sends only after the two replies: were they held
    # while BDAT waits for its bytes, both ends would wait for each other
    got, rows = await _talk([b"EHLO c\r\n", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 4 LAST\r\n",
                             b"hi\r\n", b"QUIT\r\n"], [3, 2, 1, 1])
    assert got[3:] == ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK", "250 2.6.0 queued",
                       "221 2.0.0 Service closing transmission channel"]
    i = rows.index("<BDAT 4 LAST")
    assert rows[i + 1:i + 4] == [">250 2.1.0 Sender OK", ">250 2.1.5 Recipient OK", ">250 2.6.0 queued"]


async def test_a_group_cut_off_by_the_client_still_has_its_replies_logged() -> None:
    # the client pipelines MAIL and RCPT, then a QUIT, and hangs up without reading: nothing held is lost
    got, rows = await _talk([b"EHLO c\r\n", b"MAIL FROM:<a@x.test>\r\nRSET\r\nMAIL FROM:<b@x.test>\r\nQUIT\r\n"],
                            [3, 4])
    assert got[3:] == ["250 2.1.0 Sender OK", "250 2.0.0 Resetting", "250 2.1.0 Sender OK",
                       "221 2.0.0 Service closing transmission channel"]
    assert [r for r in rows if r.startswith(">")][-4:] == [">250 2.1.0 Sender OK", ">250 2.0.0 Resetting",
                                                           ">250 2.1.0 Sender OK",
                                                           ">221 2.0.0 Service closing transmission channel"]


# --- the send side: a group's replies, however they arrive -------------------------------------------
class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def test_a_reply_that_arrives_before_the_reader_took_the_last_one_is_kept() -> None:
    """aiosmtplib drops bytes that come while a parsed reply waits for its reader; in a group they
    are the next replies, so the lab's reader keeps them."""
    protocol = SMTPProtocol(loop=asyncio.get_running_loop())
    transport = _Transport()
    protocol.connection_made(transport)
    task = asyncio.ensure_future(_read_group(protocol, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\n", 3))
    await asyncio.sleep(0)
    assert bytes(transport.written) == b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\n"
    protocol.data_received(b"250 2.1.0 Sender OK\r\n")
    protocol.data_received(b"250 2.1.5 Recipient OK\r\n250-2.1.5 multi\r\n")  # before the reader resumed
    protocol.data_received(b"250 2.1.5 line\r\n")
    replies = await asyncio.wait_for(task, 2.0)
    assert [(r.code, r.message) for r in replies] == [(250, "2.1.0 Sender OK"), (250, "2.1.5 Recipient OK"),
                                                      (250, "2.1.5 multi\n2.1.5 line")]
    assert isinstance(protocol, _GroupReplies) and not protocol.in_group
    # outside a group, aiosmtplib's own rule holds again: unsolicited bytes are dropped
    protocol.data_received(b"250 stray\r\n")
    assert not protocol._buffer


async def test_a_421_ends_the_group_early() -> None:
    protocol = SMTPProtocol(loop=asyncio.get_running_loop())
    protocol.connection_made(_Transport())
    task = asyncio.ensure_future(_read_group(protocol, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n", 2))
    await asyncio.sleep(0)
    protocol.data_received(b"421 4.3.2 Service not available\r\n")
    replies = await asyncio.wait_for(task, 2.0)
    assert [r.code for r in replies] == [421]


async def test_the_group_reads_replies_sent_one_write_at_a_time() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        for _ in range(3):
            await reader.readline()
        for text in (b"250 2.1.0 Sender OK\r\n", b"250 2.1.5 Recipient OK\r\n", b"452 4.5.3 Too many recipients\r\n"):
            writer.write(text)
            await writer.drain()
            await asyncio.sleep(0.01)
        await reader.read()

    srv = await start_tcp_server(handle, "127.0.0.1", 0)
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.sockets[0].getsockname()[1], start_tls=False, timeout=5)
    try:
        await smtp.connect()
        assert smtp.protocol is not None
        replies = await _read_group(smtp.protocol, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\n", 3)
        assert [r.code for r in replies] == [250, 250, 452]
    finally:
        smtp.close()
        srv.close()


def test_exchange_pipelines_where_pipelining_is_offered_and_a_plain_mta_does_not() -> None:
    assert V.pipelines(V.Sender(), {"PIPELINING": []})
    assert not V.pipelines(V.Sender(), {"CHUNKING": []})
    assert not V.pipelines(V.PLAIN_MTA, {"PIPELINING": []})


# --- the lab: Exchange to Exchange, EXO to the Edge -------------------------------------------------
def _envelope_rows(rows: list[list[str]]) -> list[str]:
    """A session's rows from its MAIL FROM to the first reply after its last RCPT TO's reply."""
    out: list[str] = []
    for r in rows:
        if r[7].startswith("MAIL FROM") or out:
            out.append(f"{r[6]},{r[7]}")
        if out and r[7].startswith(("BDAT", "DATA", "RSET")):
            return out
    return out


def test_the_hub_logs_the_front_ends_group_and_the_sender_logs_its_commands_first(baseline: Any) -> None:
    recv = sessions(folder_rows(baseline.out, "CMHYBD01", "Hub", "SmtpReceive"))
    proxied = [rows for rows in recv.values() if any(r[7].startswith("XPROXYFROM") for r in rows)]
    assert proxied
    env = _envelope_rows(proxied[0])
    assert [e.split(",", 1)[0] for e in env] == ["<", "*", "<", ">", ">", "<"]
    assert env[3] == ">,250 2.1.0 Sender OK" and env[4] == ">,250 2.1.5 Recipient OK"
    send = sessions(folder_rows(baseline.out, "CMHYBD01", "Hub", "SmtpSend"))
    groups = [_envelope_rows(rows) for rows in send.values()]
    groups = [g for g in groups if g]
    assert groups
    for g in groups:  # every Exchange sender: the commands, then the replies, then the content
        sides = [e.split(",", 1)[0] for e in g]
        n = sides.count(">") - 1
        assert sides == [">"] * n + ["<"] * n + [">"], g


def test_a_refused_mail_from_is_the_cause_and_the_rcpts_503_its_echo(tmp_path: Path) -> None:
    from conftest import run_cli
    code, _, err = run_cli(["run", "cert-crl-offline", "--out", str(tmp_path / "o")])
    assert code == 0, err
    recv = sessions(folder_rows(tmp_path / "o", "CMEDGE01", "Edge", "SmtpReceive"))
    refused = [rows for rows in recv.values() if any(r[7].startswith("454 4.7.5") for r in rows)]
    assert refused
    replies = [r[7] for r in refused[0] if r[6] == ">"]
    i = replies.index("454 4.7.5 Certificate validation failure")
    assert replies[i + 1] == "503 5.5.2 Need mail command"
    # the queue and the web view name the refusal of MAIL FROM, not its echo
    queued = (tmp_path / "o" / "queues.json").read_text(encoding="utf-8")
    assert "454 4.7.5 Certificate validation failure" in queued and "503 5.5.2" not in queued
    rows = [Row(time=r[0], connector=r[1], session=r[2], seq=int(r[3]), local=r[4], remote=r[5], event=r[6],
                data=r[7], context=r[8], server="CMEDGE01", service="Edge", kind="SmtpReceive", file="")
            for r in refused[0]]
    assert Session("CMEDGE01/Edge/SmtpReceive/" + rows[0].session, rows).outcome() == \
        "454 4.7.5 Certificate validation failure"


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (apt-get install swaks)")
async def test_swaks_pipe_to_the_front_end_is_answered_as_one_group(tmp_path: Path) -> None:
    """A real pipelining client (swaks --pipeline: MAIL, RCPT, RCPT and DATA in one write) to `labsim up`."""
    async def drive(rt: Any) -> None:
        row = next(r for r in rt.listen_table
                   if r[4] == "SMTP FrontEnd" and r[1].startswith(rt.model.organization.servers[0].ip))
        proc = await asyncio.create_subprocess_exec(
            "swaks", "--server", f"{row[2]}:{row[3]}", "--pipeline", "--from", "alex@fabrikam.com",
            "--to", "raghu@cloudmonkeys.xyz,nobody@cloudmonkeys.xyz", stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert b"Queued mail for delivery" in out, out.decode()

    await serving("hybrid-baseline", tmp_path, drive)
    recv = sessions(folder_rows(tmp_path, "CMHYBD01", "FrontEnd", "SmtpReceive"))
    rows = next(rows for rows in recv.values() if any("alex@fabrikam.com" in r[7] for r in rows))
    env = [f"{r[6]},{r[7]}" for r in rows if r[6] in "<>"]
    i = env.index("<,MAIL FROM:<alex@fabrikam.com>")
    assert [e[0] for e in env[i:i + 8]] == ["<", "<", "<", "<", ">", ">", ">", ">"], env[i:i + 8]
    assert env[i + 3] == "<,DATA" and env[i + 7].startswith(">,354")


def test_after_a_refused_message_the_next_one_starts_with_rset_and_none_comes_before_quit(
        write_scenario: Any, tmp_path: Path) -> None:
    """SmtpOutSession.PrepareForNextMessage(true): the between-message RSET goes out first in the next
    message's group; after the session's last message, QUIT comes without one."""
    from conftest import run_text
    body = """
    [[message]]
    id = "m1"
    from = "raghu@cloudmonkeys.xyz"
    to = ["ghost@fabrikam.com"]

    [[message]]
    id = "m2"
    from = "raghu@cloudmonkeys.xyz"
    to = ["alex@fabrikam.com"]

    [[message]]
    id = "m3"
    at = "+00:10:00"
    from = "raghu@cloudmonkeys.xyz"
    to = ["ghost@fabrikam.com"]
    """
    run = run_text(write_scenario, tmp_path, body.replace("\n    ", "\n"), "rs")
    send = sessions(folder_rows(run.out, "CMEDGE01", "Edge", "SmtpSend"))
    internet = [rows for rows in send.values() if any("@fabrikam.com" in r[7] for r in rows)]
    assert len(internet) == 2
    first = [f"{r[6]},{r[7]}" for r in internet[0] if r[6] in "<>"]
    i = first.index(">,RSET")
    assert [e[:6] for e in first[i - 4:i + 7]] == [">,MAIL", ">,RCPT", "<,250 ", "<,550 ", ">,RSET", ">,MAIL", ">,RCPT",
                                                  "<,250 ", "<,250 ", "<,250 ", ">,BDAT"]
    assert first[i - 1].startswith("<,550 5.1.1 <ghost@fabrikam.com>") and first[i + 3] == "<,250 2.0.0 Resetting"
    last = [f"{r[6]},{r[7]}" for r in internet[1] if r[6] in "<>"]
    assert ">,RSET" not in last
    assert last[-2:] == [">,QUIT", "<,221 2.0.0 Service closing transmission channel"]
    assert last[-3].startswith("<,550 5.1.1 <ghost@fabrikam.com>")


# --- the sender's decisions over a scripted session (no sockets) -------------------------------------
class _Scripted:
    """What send_message uses of a ClientSession, answering from a script of replies; a 421 closes."""

    def __init__(self, replies: list[tuple[int, str]], *, sender: V.Sender | None = None) -> None:
        self.spec = type("Spec", (), {"sender": sender or V.Sender()})()
        self.peer = {"PIPELINING": [], "CHUNKING": [], "SIZE": []}
        self.rset_due = False
        self.script = list(replies)
        self.sent: list[list[str]] = []  # one entry per write: the commands written together
        self.smtp = type("Smtp", (), {"protocol": object()})()

    def _answer(self) -> aiosmtplib.SMTPResponse:
        code, text = self.script.pop(0)
        if code == 421:
            self.smtp.protocol = None
        return aiosmtplib.SMTPResponse(code, text)

    async def group(self, lines: list[tuple[str, bytes]]) -> list[aiosmtplib.SMTPResponse]:
        self.sent.append([line for line, _ in lines])
        out = []
        for _ in lines:
            out.append(self._answer())
            if out[-1].code == 421:
                break
        return out

    async def command(self, line: str, data: bytes | None = None, **_: Any) -> aiosmtplib.SMTPResponse:
        if self.smtp.protocol is None:
            raise AssertionError(f"{line} written on a closed connection")
        self.sent.append([line])
        return self._answer()

    def fail(self, kind: str, **kw: Any) -> Any:
        return (kind, kw)


def _msg(*rcpts: str) -> Any:
    from labsim.smtp.send_spec import OutboundMessage
    return OutboundMessage(key="k", mail_from="a@x.test", recipients=list(rcpts), data=b"Subject: s\r\n\r\nhi\r\n")


async def _send(session: _Scripted, msg: Any) -> Any:
    from labsim.smtp.client_message import send_message
    from labsim.smtp.send_spec import MessageResult
    result = MessageResult(key="k")
    await send_message(session, msg, result)  # type: ignore[arg-type]
    return result


async def test_a_refused_mail_from_decides_the_message_even_when_its_503s_close_the_connection() -> None:
    # MaxProtocolErrors: the pipelined RCPTs' 503s can end the session; the MAIL FROM's reply still decides
    rcpts = [f"r{i}@y.test" for i in range(7)]
    script = [(454, "4.7.5 Certificate validation failure")] + [(503, "5.5.2 Need mail command")] * 5 + \
        [(421, "4.7.0 Too many errors on this connection, closing transmission channel")]
    session = _Scripted(script)
    result = await _send(session, _msg(*rcpts))
    assert result.deferred == {r: "454 4.7.5 Certificate validation failure" for r in rcpts}
    assert len(session.sent) == 1 and len(session.sent[0]) == 8 and session.smtp.protocol is None


async def test_a_421_to_mail_from_or_after_an_accepted_rcpt_fails_the_attempt_over() -> None:
    from labsim.smtp.client_rules import Abort
    for script in ([(421, "4.3.2 Service not available")],
                   [(250, "2.1.0 Sender OK"), (250, "2.1.5 Recipient OK"), (421, "4.3.2 Service not available")]):
        with pytest.raises(Abort):
            await _send(_Scripted(list(script)), _msg("b@y.test", "c@y.test"))


async def test_the_between_message_rset_waits_for_the_next_message_and_a_plain_mta_sends_it_at_once() -> None:
    session = _Scripted([(550, "5.1.0 Sender denied"), (503, "5.5.2 Need mail command"),
                         (250, "2.0.0 Resetting"), (250, "2.1.0 Sender OK"), (550, "5.1.1 User unknown")])
    first = await _send(session, _msg("b@y.test"))
    assert first.rejected == {"b@y.test": "550 5.1.0 Sender denied"} and session.rset_due
    assert session.sent == [["MAIL FROM:<a@x.test> SIZE=18", "RCPT TO:<b@y.test>"]]
    second = await _send(session, _msg("c@y.test"))
    assert second.rejected == {"c@y.test": "550 5.1.1 User unknown"} and session.rset_due
    assert session.sent[1] == ["RSET", "MAIL FROM:<a@x.test> SIZE=18", "RCPT TO:<c@y.test>"]
    mta = _Scripted([(550, "5.1.0 Sender denied"), (250, "2.0.0 Ok")], sender=V.PLAIN_MTA)
    await _send(mta, _msg("b@y.test"))
    assert mta.sent == [["MAIL FROM:<a@x.test> SIZE=18"], ["RSET"]] and not mta.rset_due


def test_a_front_end_proxy_session_names_its_inbound_session_and_resets_before_each_next_message(
        tmp_path: Path) -> None:
    """InboundProxySmtpOutSession: "Proxying inbound session with session id {X16}" after the banner
    (ConnectResponseEvent) and again when the session is taken for the next message (ResetSession),
    then RSET and XPROXYFROM again (PrepareForNextMessageOnCachedSession)."""
    from conftest import run_cli
    code, _, err = run_cli(["run", "org-dag-lb-expired-member-cert", "--out", str(tmp_path / "o")])
    assert code == 0, err
    send = sessions(folder_rows(tmp_path / "o", "TSEX01", "FrontEnd", "SmtpSend"))
    reused = [rows for rows in send.values() if any("SEQNUM=2" in r[7] for r in rows)]
    assert reused
    rows = [(r[6], r[7], r[8]) for r in reused[0]]
    sid = next(d for _, d, _ in rows if d.startswith("XPROXYFROM")).split()[1].removeprefix("SID=")
    proxying = ("*", "", f"Proxying inbound session with session id {sid}")
    banner = next(i for i, (e, d, _) in enumerate(rows) if e == "<" and d.startswith("220 "))
    assert rows[banner + 1] == proxying
    i = next(i for i, (_, d, _) in enumerate(rows) if "SEQNUM=2" in d)
    assert rows[i - 3:i] == [proxying, (">", "RSET", ""), ("<", "250 2.0.0 Resetting", "")]
    assert rows[i - 4][1].startswith("250 2.6.0 ")  # right after the previous message's queued reply
    assert [d for _, d, _ in rows].count("RSET") == sum(d.startswith("XPROXYFROM ") for _, d, _ in rows) - 1


def test_the_front_end_proxy_passes_the_content_on_with_the_inbound_clients_verb(baseline: Any, tmp_path: Path) -> None:
    """RcptInboundProxySmtpCommand.SetNextStateForSuccessfulRecipients: BDAT only when the inbound
    client sent BDAT (ProxyLayer.IsBdat), else DATA, though the Hub offers CHUNKING (a real Hub log of
    a Front End proxy shows DATA)."""
    from conftest import run_cli

    def verbs(out: Path) -> list[tuple[str, str]]:
        recv = sessions(folder_rows(out, "CMHYBD01", "FrontEnd", "SmtpReceive"))
        send = sessions(folder_rows(out, "CMHYBD01", "FrontEnd", "SmtpSend"))
        inbound = [r[7].split(" ")[0] for rows in recv.values() for r in rows
                   if r[6] == "<" and r[7].split(" ")[0] in ("DATA", "BDAT")]
        proxied = [r[7].split(" ")[0] for rows in send.values() for r in rows
                   if r[6] == ">" and r[7].split(" ")[0] in ("DATA", "BDAT")]
        return list(zip(inbound, proxied))

    assert verbs(baseline.out) and all(v == ("BDAT", "BDAT") for v in verbs(baseline.out))  # EXO chunks
    code, _, err = run_cli(["run", "net-lb-vip-default-connector", "--out", str(tmp_path / "o")])
    assert code == 0, err
    assert verbs(tmp_path / "o") and all(v == ("DATA", "DATA") for v in verbs(tmp_path / "o"))
