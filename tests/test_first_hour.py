"""Issue 14's first hour: what a new user trips over first, each as a test of what they rely on."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import aiosmtplib
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
