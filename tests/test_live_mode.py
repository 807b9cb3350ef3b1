"""`labsim up`: the lab on wall-clock time, driven by an outside SMTP client as a person would.

The client here is a plain aiosmtplib session from 127.0.0.1 (like swaks or telnet): it is not a
lab party, so the lab learns nothing about it out of band and must treat it as a stranger.
"""

from __future__ import annotations

import asyncio
import email
import ipaddress
import shutil
import ssl
import subprocess
from pathlib import Path

import aiosmtplib
import pytest
from conftest import serving
from cryptography.hazmat.primitives.serialization import Encoding


def _frontend(rt) -> tuple[str, int]:  # noqa: ANN001
    row = next(r for r in rt.listen_table if r[4] == "SMTP FrontEnd" and r[1].startswith(rt.model.organization.servers[0].ip))
    return row[2], row[3]


async def test_up_lists_every_host_on_loopback_and_accepts_an_outside_client(tmp_path: Path) -> None:
    async def drive(rt) -> None:  # noqa: ANN001
        hosts = {r[0] for r in rt.listen_table}
        assert {"CMHYBD01", "CMEDGE01", "EXO", "DC01", "PUBLIC-DNS", "CRL"} <= hosts
        for _, _, real_ip, real_port, _ in rt.listen_table:
            assert ipaddress.ip_address(real_ip) in ipaddress.ip_network("127.0.0.0/8")
            assert real_port >= 1024  # an ordinary user can run the lab
        host, port = _frontend(rt)
        roots = "".join(c.public_bytes(Encoding.PEM).decode() for c in rt.pki.roots())
        ctx = ssl.create_default_context(cadata=roots)
        ctx.check_hostname = False  # we dial an IP literal, as swaks --server does
        smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="outside.example")
        await smtp.connect()
        await smtp.ehlo()
        assert smtp.supports_extension("starttls")
        await smtp.starttls(tls_context=ctx)  # verifies the chain against the lab roots
        msg = (b"From: alex@fabrikam.com\r\nTo: raghu@cloudmonkeys.xyz\r\nSubject: by hand\r\n"
               b"Message-ID: <by-hand-1@outside.example>\r\n\r\nhello\r\n")
        errors, reply = await smtp.sendmail("alex@fabrikam.com", ["raghu@cloudmonkeys.xyz"], msg)
        assert not errors
        assert reply.startswith("2.6.0 <by-hand-1@outside.example> [InternalId=")
        assert "Queued mail for delivery" in reply
        await smtp.quit()
        for _ in range(100):  # the Hub delivers on its own, in real time
            if list((tmp_path / "mailboxes").rglob("*.eml")):
                break
            await asyncio.sleep(0.05)

    await serving("hybrid-baseline", tmp_path, drive)
    delivered = list((tmp_path / "mailboxes" / "onprem-DB01" / "raghu@cloudmonkeys.xyz").glob("*.eml"))
    assert len(delivered) == 1
    parsed = email.message_from_bytes(delivered[0].read_bytes())
    assert parsed["Subject"] == "by hand"
    assert any("via Frontend Transport" in h for h in parsed.get_all("Received", []))
    logs = list((tmp_path / "CMHYBD01" / "TransportRoles" / "Logs" / "FrontEnd" / "ProtocolLog" / "SmtpReceive").glob("RECV*.LOG"))
    text = "".join(p.read_text(encoding="utf-8-sig") for p in logs)
    assert "EHLO outside.example" in text
    assert "127.0.0.1:" in text  # a stranger is logged with its real address
    assert "<by-hand-1@outside.example>" in text and "Queued mail for delivery" in text


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (apt-get install swaks)")
async def test_up_accepts_a_message_from_swaks(tmp_path: Path) -> None:
    async def drive(rt) -> None:  # noqa: ANN001
        host, port = _frontend(rt)
        proc = await asyncio.create_subprocess_exec(
            "swaks", "--server", f"{host}:{port}", "--from", "alex@fabrikam.com", "--to", "raghu@cloudmonkeys.xyz",
            "--tls", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
        assert b"Queued mail for delivery" in out

    await serving("hybrid-baseline", tmp_path, drive)
    logs = list((tmp_path / "CMHYBD01" / "TransportRoles" / "Logs" / "FrontEnd" / "ProtocolLog" / "SmtpReceive").glob("RECV*.LOG"))
    assert "STARTTLS" in "".join(p.read_text(encoding="utf-8-sig") for p in logs)
