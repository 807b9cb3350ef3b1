"""What the fuzz found (tests/test_fuzz_smtp.py), pinned: transaction state after RSET and EHLO,
addresses and HELO names with control characters or raw bytes, BDAT counts a receiver refuses
before reading. Pure rules first, then the same over loopback against a running lab.
docs/smtp-limits.md has the sources.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_smtp_limits import Raw, envelope, run_live

from labsim.rules import replies as R
from labsim.rules.receive import check_data
from labsim.smtp.policy import postfix_helo_name, valid_helo_domain
from labsim.smtp.server import mail_size, valid_address


# --- addresses -------------------------------------------------------------------------------------
@pytest.mark.parametrize("addr", ["", "alex@fabrikam.com", "first.last+tag@mail.fabrikam.com", "åsa@fabrikam.com"])
def test_plain_and_utf8_addresses_and_the_null_path_are_valid(addr: str) -> None:
    assert valid_address(addr)


@pytest.mark.parametrize("addr", ["al\x00ex@fabrikam.com", "al\x1bex@fabrikam.com", "al\x7fex@fabrikam.com",
                                  "al\x85ex@fabrikam.com", "al\udcffex@fabrikam.com", "al ex@fabrikam.com",
                                  "alex@fabrikam.com\n", "alex@fab\x00rikam.com", "alex", "@fabrikam.com"])
def test_an_address_with_a_control_character_or_a_raw_byte_is_invalid(addr: str) -> None:
    assert not valid_address(addr)


# --- HELO names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fuzz.example", "mx-1.fabrikam.com", "[192.0.2.1]", "[IPv6:2001:db8::1]", "ylmf-pc"])
def test_host_names_and_address_literals_are_valid_helo_domains(name: str) -> None:
    assert valid_helo_domain(name)


@pytest.mark.parametrize("name", ["fu\x00zz.example", "fuzz.\udcff\udcfeexample", "good.example \x1b[2J",
                                  "[\x00]", "[]", "a b", "host;rm", ""])
def test_a_helo_domain_with_controls_raw_bytes_or_spaces_is_invalid(name: str) -> None:
    assert not valid_helo_domain(name)


def test_postfix_keeps_a_helo_name_with_unprintable_and_neutered_characters_masked() -> None:
    assert postfix_helo_name("fuzz.example") == "fuzz.example"
    assert postfix_helo_name("fu\x00zz.\udcffexample") == "fu?zz.?example"
    assert postfix_helo_name("a <b>;c@d") == "a??b??c?d"
    assert postfix_helo_name("mx.bücher.example") == "mx.bücher.example"  # valid UTF-8 is printable


# --- the transaction after RSET --------------------------------------------------------------------
def test_data_without_a_sender_or_recipients_is_a_sequence_error() -> None:
    from labsim.rules.receive import ReceiveState

    state = ReceiveState(connector=None, fqdn="x", remote_ip="192.0.2.1",  # type: ignore[arg-type]
                         starttls_available=False, is_edge=True)
    state.mail_from, state.recipients = "alex@fabrikam.com", ["raghu@cloudmonkeys.xyz"]
    assert check_data(state) == R.START_DATA
    state.reset_transaction()  # what RSET does to the policy's state
    assert check_data(state) == R.NEED_MAIL


# --- over loopback ---------------------------------------------------------------------------------
def listener_for(rt, what: str) -> tuple[str, int]:  # noqa: ANN001
    row = next(r for r in rt.listen_table if r[4] == what and (r[1].endswith(":25") or what == "SMTP Hub"))
    return row[2], row[3]


async def test_rset_ends_the_transaction_at_every_receiver(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        for what, mta in (("SMTP Edge", False), ("SMTP FrontEnd", False), ("SMTP EOP front end", False),
                          ("SMTP Internet MTA", True)):
            c = await Raw.open(listener_for(rt, what))
            assert (await c.reply()).startswith("220 ")
            assert (await c.cmd("EHLO outside.example")).startswith("250")
            assert (await c.cmd("MAIL FROM:<alex@fabrikam.com>")).startswith("250")
            await c.cmd("RCPT TO:<raghu@cloudmonkeys.xyz>")
            assert (await c.cmd("RSET")).startswith("250")
            expected = "503 5.5.1 Error: need MAIL command" if mta else R.NEED_MAIL
            assert await c.cmd("DATA") == expected, what
            c.close()

    await run_live(tmp_path, "", drive)


async def test_control_characters_in_addresses_and_helo_are_refused_and_never_logged_raw(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener_for(rt, "SMTP EOP front end"))
        assert (await c.reply()).startswith("220 ")
        assert await c.cmd(b"EHLO fuzz.\xff\xfeexample") == R.INVALID_DOMAIN
        assert await c.cmd(b"EHLO fu\x00zz.example") == R.INVALID_DOMAIN
        assert (await c.cmd("EHLO outside.example")).startswith("250")
        assert await c.cmd(b"MAIL FROM:<al\x00ex@fabrikam.com>") == R.INVALID_SENDER
        assert await c.cmd("MAIL FROM:<alex@fabrikam.com>") == R.SENDER_OK
        assert await c.cmd(b"RCPT TO:<ra\x1bghu@cloudmonkeys.xyz>") == R.INVALID_RECIPIENT
        c.close()
        c = await Raw.open(listener_for(rt, "SMTP FrontEnd"))
        assert (await c.reply()).startswith("220 ")
        assert (await c.cmd("EHLO outside.example")).startswith("250")
        assert await c.cmd(b"MAIL FROM:<al\x00ex@fabrikam.com>") == R.INVALID_SENDER
        c.close()
        await asyncio.sleep(0.2)
        rt.flush_logs()
        for path in out.rglob("*.LOG"):
            assert b"\x00" not in path.read_bytes(), path

    await run_live(tmp_path, "", drive)


async def test_postfix_masks_a_helo_that_is_not_utf8_in_its_received_header(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        mta = rt.model.internet_hosts[0]
        c = await Raw.open(listener_for(rt, "SMTP Internet MTA"))
        assert (await c.reply()).startswith("220 ")
        assert (await c.cmd(b"EHLO fuzz.\xff\xfeexample")).startswith("250")
        assert (await c.cmd("MAIL FROM:<raghu@cloudmonkeys.xyz>")).startswith("250")
        assert (await c.cmd(f"RCPT TO:<{mta.mailboxes[0]}>")).startswith("250")
        assert (await c.cmd("DATA")).startswith("354")
        assert (await c.send(b"Subject: t\r\n\r\nhi\r\n.\r\n")).startswith("250 2.0.0 Ok")
        c.close()
        await asyncio.sleep(0.2)
        boxes = [p for p in out.joinpath("mailboxes").rglob("*.eml") if "internet" in str(p)]
        assert boxes and b"Received: from fuzz.??example (fuzz.??example" in boxes[-1].read_bytes()

    await run_live(tmp_path, "", drive)


async def test_a_bdat_chunk_over_int32_is_refused_at_once_and_the_session_ends(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        c = await Raw.open(listener_for(rt, "SMTP Edge"))
        await envelope(c)
        assert await c.cmd("BDAT 4294967296 LAST") == R.TOO_LARGE  # not one byte of the chunk sent
        assert await asyncio.wait_for(c.reader.read(), 5) == b""
        c = await Raw.open(listener_for(rt, "SMTP Edge"))
        await envelope(c)
        assert await c.cmd("BDAT 99999999999999999999 LAST") == R.TOO_LARGE  # overflows a long
        assert await asyncio.wait_for(c.reader.read(), 5) == b""

    await run_live(tmp_path, "", drive)


async def test_postfix_refuses_a_chunk_over_one_and_a_half_times_its_limit_unread(tmp_path: Path) -> None:
    async def drive(rt, out: Path) -> None:  # noqa: ANN001
        mta = rt.model.internet_hosts[0]
        c = await Raw.open(listener_for(rt, "SMTP Internet MTA"))
        assert (await c.reply()).startswith("220 ")
        assert (await c.cmd("EHLO outside.example")).startswith("250")
        assert (await c.cmd("MAIL FROM:<raghu@cloudmonkeys.xyz>")).startswith("250")
        assert (await c.cmd(f"RCPT TO:<{mta.mailboxes[0]}>")).startswith("250")
        assert await c.cmd("BDAT 37748737 LAST") == "552 5.3.4 Chunk exceeds message size limit"
        assert await asyncio.wait_for(c.reader.read(), 5) == b""

    await run_live(tmp_path, "", drive)


# --- MAIL's SIZE -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "expected"), [
    ("", (None, None)), ("SIZE=1000 BODY=8BITMIME", (1000, None)), ("size=0 SIZE=5", (5, None)),
    ("SIZE=1\u00b2 SIZE=46196123", (None, R.INVALID_ARGS)),  # a bad SIZE is not hidden by a later good one
    ("SIZE=5 SIZE=6", (None, R.INVALID_ARGS)), ("SIZE=" + "9" * 21, (None, R.INVALID_ARGS)),
    ("SIZE=99999999999999999999", (None, R.TOO_LARGE)), ("SIZE=-1", (None, R.INVALID_ARGS)),
])
def test_every_size_parameter_of_mail_is_judged(params: str, expected: tuple) -> None:
    assert mail_size(params) == expected
