"""The server shell's decisions without I/O (smtp.commands) and its input (smtp.wire): what a command
line means, which replies count as protocol errors, which timeout ran out, and the session input's
lines and watchdog over a plain asyncio.StreamReader (no socket)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim.rules import replies as R
from labsim.smtp.commands import (
    VERBS,
    BdatArgs,
    MailArgs,
    expired,
    has_bare_lf,
    header_over,
    parse_bdat,
    parse_mail,
    parse_rcpt,
    split_command,
)
from labsim.smtp.framing import command_verb
from labsim.smtp.wire import TOO_LONG_LINE, SessionInput


# --- verbs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, verb, arg", [
    ("EHLO mx.example", "EHLO", "mx.example"), ("ehlo  mx.example ", "EHLO", "mx.example"),
    ("x-anonymoustls", "X-ANONYMOUSTLS", ""), ("MAIL FROM:<a@b.c>", "MAIL", "FROM:<a@b.c>"),
    ("QUIT", "QUIT", ""), ("FOO bar", None, ""), ("", None, ""), ("HELP-ME", None, ""),
    ("ſTARTTLS", None, ""),  # 'ſ'.upper() == 'S': a non-ASCII verb is never upper-cased into a known one
    ("EHLO\tx", None, ""),
])
def test_split_command_finds_the_verbs_the_shell_answers(line: str, verb: str | None, arg: str) -> None:
    assert split_command(line) == (verb, arg)


@given(st.text(max_size=30))
def test_split_command_agrees_with_command_verb(line: str) -> None:
    verb, arg = split_command(line)
    expected = command_verb(line)
    assert verb == (expected if expected in VERBS else None)
    if verb is not None:
        assert arg == line[len(line.split(" ", 1)[0]):].strip()


# --- arguments -----------------------------------------------------------------------------------
def test_mail_arguments_and_their_refusals() -> None:
    assert parse_mail("FROM:<alex@fabrikam.com> SIZE=1200 BODY=8BITMIME") == \
        MailArgs("alex@fabrikam.com", {"SIZE": "1200", "BODY": "8BITMIME"}, 1200)
    assert parse_mail("FROM:<>") == MailArgs("", {}, None)
    assert parse_mail("FROM:alex@fabrikam.com") == R.INVALID_ARGS
    assert parse_mail("FROM:<alex@fabrikam.com> =x") == R.INVALID_ARGS
    assert parse_mail("FROM:<al\x01ex@fabrikam.com>") == R.INVALID_SENDER
    assert parse_mail("FROM:<a@b.c> SIZE=12x") == R.INVALID_ARGS
    assert parse_mail("FROM:<a@b.c> SIZE=99999999999999999999") == R.TOO_LARGE


def test_rcpt_arguments_and_their_refusals() -> None:
    assert parse_rcpt("TO:<bo@contoso.com> NOTIFY=NEVER") == ("bo@contoso.com", None)
    assert parse_rcpt("TO:<>") == ("", R.INVALID_RECIPIENT)
    assert parse_rcpt("TO:<no-at-sign>") == ("", R.INVALID_RECIPIENT)
    assert parse_rcpt("bo@contoso.com") == ("", R.INVALID_ARGS)


@pytest.mark.parametrize("arg, parsed", [
    ("100", BdatArgs(100, False)), ("0 LAST", BdatArgs(0, True)), ("7 last", BdatArgs(7, True)),
    ("", BdatArgs(None, False)), ("7 MORE", BdatArgs(None, False)), ("1 LAST x", BdatArgs(None, False)),
    ("-1", BdatArgs(None, False)), ("²", BdatArgs(None, False)),
    ("99999999999999999999", BdatArgs(None, False, overflow=True)),  # 20 digits: too large for a long
    ("999999999999999999999", BdatArgs(None, False)),  # 21 digits: malformed
])
def test_bdat_arguments(arg: str, parsed: BdatArgs) -> None:
    assert parse_bdat(arg) == parsed


_BARE_LF = re.compile(rb"(?<!\r)\n")


@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"."]), max_size=20).map(b"".join))
def test_bare_lf_is_an_lf_without_cr_before_it(data: bytes) -> None:
    assert has_bare_lf(data) == (_BARE_LF.search(data) is not None)


def test_header_over_max_header_size() -> None:
    header = b"X-A: " + b"h" * 40 + b"\r\n"
    assert header_over(header * 3, 100)  # no blank line within the limit
    assert not header_over(header + b"\r\nbody" * 40, 100)  # the header ends within it
    assert not header_over(b"\r\n" + b"b" * 200, 100)  # no header at all
    assert not header_over(header, 100)  # not over the limit yet


def test_expired_names_the_timeout_and_when_it_ran_out() -> None:
    t0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
    assert expired(t0 + timedelta(seconds=60), t0, t0, 60.0, 300.0) is None
    assert expired(t0 + timedelta(seconds=61), t0, t0, 60.0, 300.0) == ("inactivity", t0 + timedelta(seconds=60))
    assert expired(t0 + timedelta(seconds=61), t0, t0, 60.0, 300.0, data=True) is None  # DATA: not inactivity
    late = t0 + timedelta(seconds=301)
    assert expired(late, late, t0, 60.0, 300.0) == ("session", late)
    assert expired(late, t0, t0, None, None) is None


# --- the session input -----------------------------------------------------------------------------
class _Owner:
    def __init__(self, timeout: float | None, patient: int = 0) -> None:
        self.disconnect_reason: str | None = None
        self.timeout = timeout
        self.patient = patient  # how many expired waits count as the lab's own silence
        self.waits = 0
        self.before_waits = 0

    def wall_timeout(self) -> float | None:
        return self.timeout

    def silence_is_expected(self) -> bool:
        self.waits += 1
        return self.waits <= self.patient

    def waited_too_long(self) -> BaseException:
        return LookupError("timed out")

    def before_wait(self) -> None:
        self.before_waits += 1


async def test_pipelined_lines_come_from_the_buffer_and_an_overlong_one_is_reported_once() -> None:
    reader = asyncio.StreamReader()
    inp = SessionInput(reader, _Owner(None))
    reader.feed_data(b"EHLO a\r\nNOOP\n" + b"x" * (R.MAX_COMMAND_LENGTH + 10))
    assert await inp.fill()
    assert inp.next_line() == b"EHLO a\r\n" and inp.next_line() == b"NOOP\n"
    assert inp.next_line() is None  # the overlong rest is dropped as it comes
    reader.feed_data(b"yyy\r\nQUIT\r\n")
    reader.feed_eof()
    assert await inp.fill()
    assert inp.next_line() is TOO_LONG_LINE
    assert inp.next_line() == b"QUIT\r\n"
    assert not await inp.fill() and inp.eof


async def test_a_silent_client_times_out_and_the_labs_own_silence_is_waited_out() -> None:
    owner = _Owner(0.01, patient=2)
    inp = SessionInput(asyncio.StreamReader(), owner)
    with pytest.raises(LookupError):
        await inp.fill()
    assert owner.waits == 3  # twice the lab's silence, then the client's
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # every cancellation of the watchdog taken back
    inp.close()


async def test_many_reads_share_one_watchdog_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    real_call_at = loop.call_at

    def call_at(when: float, callback, *args, **kwargs):  # noqa: ANN001, ANN202
        timers.append(when)
        return real_call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", call_at)
    reader = asyncio.StreamReader()
    inp = SessionInput(reader, _Owner(30.0))
    for i in range(50):
        loop.call_soon(reader.feed_data, b"NOOP %d\r\n" % i)  # arrives while the read waits
        assert await inp.fill()
        assert inp.next_line() == b"NOOP %d\r\n" % i
    assert len(timers) == 1  # one timer for the session, not one per read
    inp.close()


async def test_a_cancellation_that_is_not_the_watchdogs_goes_through() -> None:
    inp = SessionInput(asyncio.StreamReader(), _Owner(30.0))
    task = asyncio.ensure_future(inp.fill())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    inp.close()
