"""Exchange's replies to bad client behaviour, over real SMTP sessions on loopback.

Two levels: the session shell alone (smtp.server with a stub policy, raw asyncio streams: fast,
property-based for MaxProtocolErrors), and the running lab (raw sessions from lab hosts to the
Edge and the Front End, through `Send-LabSmtpCommands`, evidence read from the protocol logs).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import folder_rows, run_cli, scenario_text, sessions
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.net.vnet import start_tcp_server
from labsim.rules import replies as R
from labsim.smtp.policy import ReceivePolicy
from labsim.smtp.server import ServerSession, is_protocol_error


# --- the session shell with a stub policy -------------------------------------------------------------
class StubPolicy(ReceivePolicy):
    """Accepts EHLO and NOOP; everything else is the shell's own business."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.runtime = None

    def clock_now(self):
        from datetime import datetime, timezone
        return datetime(2026, 5, 1, tzinfo=timezone.utc)

    async def open(self, session: ServerSession) -> bool:
        session.state = object()
        return True

    def banner(self, session: ServerSession) -> str:
        return "220 stub ready"

    def max_protocol_errors(self, session: ServerSession) -> int | None:
        return self.limit

    async def ehlo(self, session: ServerSession, arg: str, *, extended: bool) -> None:
        await session.reply("250 stub Hello")


async def talk(limit: int | None, lines: list[bytes]) -> tuple[list[str], str | None]:
    """Send `lines`, collect one reply line per line until the server closes."""
    ended: list[str | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = ServerSession(StubPolicy(limit), reader, writer, now=StubPolicy(limit).clock_now(), context={})
        await session.run()
        ended.append(session.disconnect_reason)

    srv = await start_tcp_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    await reader.readline()
    for line in lines:
        writer.write(line + b"\r\n")
        await writer.drain()
        got = await asyncio.wait_for(reader.readline(), 2.0)
        if not got:
            break
        replies.append(got.decode().rstrip("\r\n"))
        if replies[-1].startswith("421"):
            break
    writer.close()
    for _ in range(50):
        if ended:
            break
        await asyncio.sleep(0.01)
    srv.close()
    return replies, ended[0] if ended else None


commands = st.lists(st.sampled_from([b"EHLO x", b"NOOP", b"FOO", b"MAIL", b"RCPT", b"BAR baz", b""]),
                    min_size=1, max_size=14)


@settings(max_examples=40, deadline=None)
@given(commands, st.integers(min_value=0, max_value=6))
def test_the_error_over_max_protocol_errors_is_answered_421_and_drops_the_session(lines, limit):
    replies, reason = asyncio.run(talk(limit, lines))
    errors = [r for r in replies if r[:1] == "5"]
    if R.TOO_MANY_ERRORS in replies:
        assert replies[-1] == R.TOO_MANY_ERRORS and len(errors) == limit and reason == "TooManyErrors"
    else:
        assert len(errors) <= limit


def test_unlimited_protocol_errors_never_close():
    replies, _ = asyncio.run(talk(None, [b"FOO"] * 12 + [b"QUIT"]))
    assert replies[:12] == [R.UNRECOGNIZED] * 12 and replies[-1] == R.CLOSING


def test_command_too_long_and_empty_and_non_alpha_verbs():
    replies, _ = asyncio.run(talk(None, [b"EHLO " + b"a" * 40000, b"", b"HELP-ME", b"EHLO x"]))
    assert replies == [R.COMMAND_TOO_LONG, R.UNRECOGNIZED, R.UNRECOGNIZED, "250 stub Hello"]


@pytest.mark.parametrize("reply, counts", [
    ("503 5.5.2 Send hello first", True), ("500 5.3.3 Unrecognized command", True),
    ("550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain", True),
    ("535 5.7.3 Authentication unsuccessful", False), ("451 4.7.0 Temporary server error", False),
    ("250 2.0.0 OK", False),
])
def test_which_replies_count_as_protocol_errors(reply, counts):
    assert is_protocol_error(reply) is counts


def test_every_protocol_reply_is_in_the_table_with_code_and_enhanced_status():
    for name in ("SEND_HELLO_FIRST", "UNRECOGNIZED_AUTH", "UNRECOGNIZED", "ONE_STARTTLS", "TOO_LARGE",
                 "TOO_MANY_ERRORS", "COMMAND_TOO_LONG", "NEED_MAIL", "NEED_RCPT", "EHLO_DOMAIN_REQUIRED"):
        text = getattr(R, name)
        code, enhanced = text.split()[:2]
        assert code.isdigit() and enhanced[0] == code[0] and enhanced.count(".") == 2


# --- the running lab -----------------------------------------------------------------------------------
def lab_session(write_scenario, tmp_path: Path, source: str, target: str, port: int, lines: list[str],
                extra: str = "", name: str = "s") -> tuple[list[list[str]], list[str]]:
    quoted = ", ".join('"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"' for x in lines)
    path = write_scenario(scenario_text(extra + f"""
        [[change]]
        at = "+00:01:00"
        cmdlet = "Send-LabSmtpCommands"
        Source = "{source}"
        Target = "{target}"
        Port = {port}
        Commands = [{quoted}]
        """, sid=name), f"{name}.toml")
    out = tmp_path / f"out-{name}"
    rc, stdout, stderr = run_cli(["run", str(path), "--out", str(out)])
    assert rc == 0, stdout + stderr
    import json
    transcript = json.loads((out / "summary.json").read_text())["services"]["smtp_sessions"][0]["transcript"]
    return out, transcript


def replies_of(transcript: list[str]) -> list[str]:
    """The last line of each reply (multi-line EHLO replies collapse to their final line)."""
    out, current = [], None
    for line in transcript[1:]:
        if line.startswith("S: "):
            current = line[3:]
            if current[3:4] != "-":
                out.append(current)
    return out


def test_sequence_errors_on_the_edge(write_scenario, tmp_path):
    out, tr = lab_session(write_scenario, tmp_path, "FABRIKAM-MX", "27.7.57.242", 25, [
        "MAIL FROM:<alex@fabrikam.com>", "EHLO", "HELO", "EHLO mx.fabrikam.com", "RCPT TO:<raghu@cloudmonkeys.xyz>",
        "QUIT"])
    assert replies_of(tr)[:5] == [R.SEND_HELLO_FIRST, R.EHLO_DOMAIN_REQUIRED, R.HELO_DOMAIN_REQUIRED,
                                  "250 XSHADOWREQUEST", R.NEED_MAIL]  # the Edge: no XRDST (not a bridgehead)
    rows = folder_rows(out, "CMEDGE01", "Edge", "SmtpReceive")
    assert [r[7] for r in rows if r[6] == ">" and r[7].startswith("5")] == \
        [R.SEND_HELLO_FIRST, R.EHLO_DOMAIN_REQUIRED, R.HELO_DOMAIN_REQUIRED, R.NEED_MAIL]


def test_starttls_rules_on_the_front_end(write_scenario, tmp_path):
    out, tr = lab_session(write_scenario, tmp_path, "EXO-OUT", "27.7.57.241", 25, [
        "STARTTLS", "EHLO test.example", "STARTTLS now", "STARTTLS", "EHLO test.example", "STARTTLS", "QUIT"])
    assert replies_of(tr) == [R.SEND_HELLO_FIRST, next(x for x in replies_of(tr) if x.startswith("250 ")),
                              R.INVALID_ARGS, R.STARTTLS_GO, replies_of(tr)[4], R.ONE_STARTTLS, R.CLOSING]
    assert "TLS started" in tr


def test_no_starttls_without_a_certificate(write_scenario, tmp_path):
    # an Edge whose store has no certificate for its FQDN does not offer (or accept) STARTTLS
    out, tr = lab_session(write_scenario, tmp_path, "DC01", "CMEDGE01", 25, ["EHLO app.example", "STARTTLS", "QUIT"],
                          extra="""
        [[change]]
        cmdlet = "Remove-ExchangeCertificate"
        Server = "CMEDGE01"
        Certificate = "mail-cloudmonkeys"

        [[change]]
        cmdlet = "Remove-ExchangeCertificate"
        Server = "CMEDGE01"
        Certificate = "cmedge01-selfsigned"
        """)
    assert "S: 250-STARTTLS" not in tr
    assert replies_of(tr)[1] == R.UNRECOGNIZED


def test_auth_before_tls_on_basic_auth_require_tls_connector(write_scenario, tmp_path):
    logging = """
        [[change]]
        cmdlet = "Set-ReceiveConnector"
        Identity = 'CMHYBD01\\Client Frontend CMHYBD01'
        ProtocolLoggingLevel = "Verbose"
        """
    out, tr = lab_session(write_scenario, tmp_path, "DC01", "CMHYBD01", 587, [
        "AUTH LOGIN", "EHLO app01.cloudmonkeys.xyz", "AUTH LOGIN", "AUTH", "STARTTLS", "EHLO app01.cloudmonkeys.xyz",
        "AUTH LOGIN", "dXNlcg==", "cGFzcw==", "QUIT"], extra=logging)
    r = replies_of(tr)
    assert r[0] == R.SEND_HELLO_FIRST and r[2] == R.UNRECOGNIZED_AUTH and r[3] == R.UNRECOGNIZED_AUTH
    assert "S: 250-AUTH NTLM LOGIN" in tr  # LOGIN is offered once TLS is up
    assert r[-2] == R.AUTH_UNSUCCESSFUL and r[-1] == R.CLOSING
    rows = folder_rows(out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    infos = [x[8] for x in rows if x[6] == "*"]
    assert infos.count("Inbound ExchangeAuth negotiation failed because connection is not TLS") == 1
    assert "Inbound AUTH LOGIN failed because of LogonDenied" in infos


def test_oversized_message_by_size_parameter_and_by_content(write_scenario, tmp_path):
    small_limit = """
        [[change]]
        cmdlet = "Set-ReceiveConnector"
        Identity = 'CMEDGE01\\Default internal receive connector CMEDGE01'
        MaxMessageSize = 65536
        """  # the smallest MaxMessageSize Set-ReceiveConnector accepts
    out, tr = lab_session(write_scenario, tmp_path, "FABRIKAM-MX", "27.7.57.242", 25, [
        "EHLO mx.fabrikam.com", "MAIL FROM:<alex@fabrikam.com> SIZE=70000", "MAIL FROM:<alex@fabrikam.com>",
        "RCPT TO:<raghu@cloudmonkeys.xyz>", "DATA", "<BODY 90000>", "QUIT"], extra=small_limit)
    r = replies_of(tr)
    assert "S: 250-SIZE 65536" in tr
    assert r[1] == R.TOO_LARGE and r[2] == R.SENDER_OK and r[5] == R.TOO_LARGE and r[-1] == R.CLOSING


def test_max_protocol_errors_follows_the_connector_setting(write_scenario, tmp_path):
    limit = """
        [[change]]
        cmdlet = "Set-ReceiveConnector"
        Identity = 'CMEDGE01\\Default internal receive connector CMEDGE01'
        MaxProtocolErrors = 2
        """
    out, tr = lab_session(write_scenario, tmp_path, "FABRIKAM-MX", "27.7.57.242", 25,
                          ["FOO", "BAR", "BAZ", "EHLO never.answered"], extra=limit)
    assert replies_of(tr) == [R.UNRECOGNIZED, R.UNRECOGNIZED, R.TOO_MANY_ERRORS]
    rows = folder_rows(out, "CMEDGE01", "Edge", "SmtpReceive")
    (session,) = sessions(rows).values()
    assert session[-1][6] == "-" and session[-1][8] == "TooManyErrors"


def test_proto_scenario_holds_its_expectations(tmp_path):
    rc, stdout, _ = run_cli(["run", "proto-client-errors", "--out", str(tmp_path / "p")])
    assert rc == 0, stdout


def test_help_is_exchanges_two_line_214(write_scenario, tmp_path):
    """HELP, before or after EHLO and with any argument: SmtpResponse.Help (no enhanced code)."""
    out, tr = lab_session(write_scenario, tmp_path, "EXO-OUT", "27.7.57.241", 25,
                          ["HELP", "EHLO test.example", "HELP MAIL", "QUIT"], name="help")
    assert [x for x in tr if x.startswith("S: 214")] == ["S: " + R.HELP[0], "S: " + R.HELP[1]] * 2
    assert R.HELP == ["214-This server supports the following commands:",
                      "214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT"]
    rows = folder_rows(out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    assert not any(r[6] == ">" and r[7].startswith("500") for r in rows)
    # one row, as the receive log writes any multi-line reply (EHLO's: QAZ)
    assert [r[7] for r in rows if r[6] == ">" and r[7].startswith("214")] == [
        "214  This server supports the following commands: HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT"] * 2
