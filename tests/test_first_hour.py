"""Issue 14's first hour: what a new user trips over first, each as a test of what they rely on."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import aiosmtplib
import pytest
from conftest import folder_rows, listen_address, run_cli, serving, sessions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _foreign_client_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A CA the lab has never seen, and a client certificate it issued (PEM files)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stranger Root CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.stranger.example")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mail.stranger.example")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt, pem_key = tmp_path / "stranger.crt", tmp_path / "stranger.key"
    crt.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    pem_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return crt, pem_key


async def test_a_client_certificate_from_an_unknown_ca_completes_the_handshake_and_is_classified(tmp_path: Path):
    crt, key = _foreign_client_cert(tmp_path)
    out = tmp_path / "live"

    async def drive(rt) -> None:  # noqa: ANN001
        host, port = listen_address(rt, host="CMHYBD01", what="SMTP FrontEnd")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.load_cert_chain(str(crt), str(key))
        smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, local_hostname="mail.stranger.example")
        await smtp.connect()
        await smtp.ehlo()
        await smtp.starttls(tls_context=ctx)
        code, _ = await smtp.ehlo()  # the session goes on after TLS: the server did not drop it
        assert code == 250
        await smtp.quit()

    await serving("hybrid-baseline", out, drive)
    rows = folder_rows(out, "CMHYBD01", "FrontEnd", "SmtpReceive")
    tls = [s for s in sessions(rows).values() if any(r[6] == "<" and r[7] == "STARTTLS" for r in s)]
    assert tls, "no STARTTLS session in the Front End's receive log"
    texts = [(r[7], r[8]) for r in tls[0]]
    assert not any("IllegalMessage" in c for _, c in texts)
    remote = [d for d, c in texts if c.startswith("Remote certificate")]
    assert remote and "CN=mail.stranger.example" in remote[0] and "CN=Stranger Root CA" in remote[0]
    assert ("", "Client certificate chain validation status: 'UntrustedRoot'") in texts
    assert texts[-1] == ("", "Local")  # the client's QUIT ended it, not a failed handshake


# --- the command line ---------------------------------------------------------------------------------
def test_version(capsys):
    from labsim import __version__, cli

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"labsim {__version__}"


def test_every_argument_of_every_command_has_help():
    import argparse

    from labsim.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, sp in sub.choices.items():
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_cmdlets_descriptions_are_whole_first_paragraphs():
    import inspect

    from labsim.engine import operations
    from labsim.topology import changes

    rc, out, err = run_cli(["cmdlets"])
    assert rc == 0
    flat = " ".join(out.split())
    for table, names in ((changes.CMDLETS, changes.CMDLET_NAMES), (operations.OPERATIONS, operations.OPERATION_NAMES)):
        for key, fn in table.items():
            para = " ".join((inspect.getdoc(fn) or "").split("\n\n", 1)[0].split())
            assert f"{names[key]} {para}" in flat, names[key]


def test_certs_out_follows_the_output_safety_rule(tmp_path: Path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me", encoding="utf-8")
    rc, out, err = run_cli(["certs", "--out", str(mine)])
    assert rc == 2 and err.count("\n") == 1 and "was not written by labsim" in err
    assert [p.name for p in mine.iterdir()] == ["todo.txt"]
    rc, out, err = run_cli(["certs", "--out", str(mine / "todo.txt")])
    assert rc == 2 and "is a file" in err
    fresh = tmp_path / "certs"
    assert run_cli(["certs", "--out", str(fresh)])[0] == 0
    assert run_cli(["certs", "--out", str(fresh)])[0] == 0  # labsim's own folder: written again
    bundle = x509.load_pem_x509_certificates((fresh / "lab-roots.pem").read_bytes())
    assert "CN=CMEDGE01" in [c.subject.rfc4514_string() for c in bundle]


def test_track_prints_times_as_the_cmdlets_do(baseline):
    rc, out, err = run_cli(["track", str(baseline.out), "--event-id", "RECEIVE", "--server", "CMEDGE01"])
    assert rc == 0
    first = out.splitlines()[2]
    assert first.startswith("5/1/2026 6:") and " AM " in first  # en-US DateTime, as `trace` prints Received
    rc, csv_out, _ = run_cli(["track", str(baseline.out), "--event-id", "RECEIVE", "--csv"])
    assert ',"5/1/2026 6:' in csv_out and "T06:" not in csv_out.split("\r\n")[1].split(",")[1]
