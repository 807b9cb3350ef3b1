"""labsim.pki: deterministic PKI, .NET names, stores, TLS contexts and peer chains."""

from __future__ import annotations

import asyncio
import ssl
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.errors import LabsimError
from labsim.pki import (
    CertStore,
    LabPki,
    NoCredentialsError,
    PkiError,
    dotnet_dn,
    parse_dn,
    parse_tls_certificate_name,
    peer_chain,
    serial_hex,
    thumbprint,
    tls_certificate_name,
)
from labsim.pki.store import CIPHERS
from labsim.topology.defaults import HYBRID_CERT_NAME, default_lab
from labsim.topology.model import StoreEntry

UTC = timezone.utc


@pytest.fixture(scope="module")
def lab():
    return default_lab()


@pytest.fixture(scope="module")
def pki(lab):
    return LabPki(lab, 1)


# -- determinism ------------------------------------------------------------------------------

def _all_der(p: LabPki) -> list[bytes]:
    out = [c.public_bytes(Encoding.DER) for c in p.all_ca_certs()]
    out += [i.cert.public_bytes(Encoding.DER) for i in p.all_issued()]
    out += [p.crl_der(ca.name, p.lab.start) for ca in p.lab.certificate_authorities]
    return out


def test_same_seed_same_bytes_other_seed_other_certificates(lab):
    a, b, c = LabPki(lab, 42), LabPki(lab, 42), LabPki(lab, 43)
    assert _all_der(a) == _all_der(b)
    assert [thumbprint(i.cert) for i in a.all_issued()] == [thumbprint(i.cert) for i in b.all_issued()]
    ta = {thumbprint(x) for x in a.all_ca_certs() + a.all_leaf_certs()}
    tc = {thumbprint(x) for x in c.all_ca_certs() + c.all_leaf_certs()}
    assert not ta & tc
    # An RSA key depends on the name only (generating one costs a second: a machine makes it once);
    # the certificate around it - serial, validity, signature, thumbprint - comes from the seed.
    assert a.issued("eop").key.private_numbers() == c.issued("eop").key.private_numbers()
    assert a.issued("eop").cert.serial_number != c.issued("eop").cert.serial_number
    # The same object comes back: everything is built once.
    assert a.issued("eop") is a.issued("eop") and a.ca("public-root") is a.ca("public-root")


def test_serials_are_16_byte_positive_upper_hex(pki):
    for cert in pki.all_ca_certs() + pki.all_leaf_certs():
        text = serial_hex(cert)
        assert len(text) == 32 and text == text.upper() and int(text, 16) == cert.serial_number
        assert cert.serial_number.bit_length() == 127  # top bit clear, always 16 bytes encoded
        assert len(thumbprint(cert)) == 40 and thumbprint(cert) == thumbprint(cert).upper()


def test_validity_is_relative_to_lab_start(lab, pki):
    mail = pki.issued("mail-cloudmonkeys").cert
    assert mail.not_valid_before_utc == datetime(2026, 3, 2, 6, tzinfo=UTC)  # start - 60d
    assert mail.not_valid_after_utc == datetime(2027, 3, 2, 6, tzinfo=UTC)   # start + 305d


# -- names ------------------------------------------------------------------------------------

def test_dn_round_trip_default_lab(lab, pki):
    specs = [(c.subject, pki.ca(c.name).cert) for c in lab.certificate_authorities]
    specs += [(c.subject, pki.issued(c.name).cert) for c in lab.certificates]
    for text, cert in specs:
        assert dotnet_dn(cert.subject) == text
        assert dotnet_dn(parse_dn(text)) == text
    eop = pki.issued("eop").cert.subject
    # Encoded as real certificates are: C first, CN last.
    assert [a.oid for a in eop] == [NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME,
                                   NameOID.LOCALITY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]
    org = pki.ca("org-root").cert.subject
    assert [a.oid for a in org] == [NameOID.DOMAIN_COMPONENT, NameOID.DOMAIN_COMPONENT, NameOID.COMMON_NAME]
    assert org.rfc4514_string() == "CN=cloudmonkeys-DC01-CA,DC=cloudmonkeys,DC=xyz"


def test_dn_quoting_and_aliases():
    assert dotnet_dn(parse_dn('CN=x, O="Contoso, Ltd", OU="say ""hi"""')) == 'CN=x, O="Contoso, Ltd", OU="say ""hi"""'
    assert dotnet_dn(parse_dn("CN=a, ST=Washington, E=a@b.c")) == "CN=a, S=Washington, E=a@b.c"
    assert dotnet_dn(parse_dn("CN=a + OU=b, C=US")) == "CN=a + OU=b, C=US"
    with pytest.raises(ValueError):
        parse_dn("XX=1")
    for bad in ['CN="unterminated', "CN=a,", "CN=a, ", "CN=a +", "no equals sign"]:
        with pytest.raises(ValueError):
            parse_dn(bad)


_value = st.text(st.characters(min_codepoint=32, max_codepoint=0x24F, blacklist_categories=("Cs",)),
                 min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["CN", "O", "OU", "L", "S"]), _value), min_size=1, max_size=4))
def test_dn_round_trip_property(parts):
    text = dotnet_dn(x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(
        {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
         "L": NameOID.LOCALITY_NAME, "S": NameOID.STATE_OR_PROVINCE_NAME}[k], v)]) for k, v in parts]))
    assert dotnet_dn(parse_dn(text)) == text


def test_tls_certificate_name(pki):
    mail = pki.issued("mail-cloudmonkeys").cert
    assert tls_certificate_name(mail) == HYBRID_CERT_NAME
    assert parse_tls_certificate_name(HYBRID_CERT_NAME) == (
        "CN=labsim Public Issuing CA 1, O=labsim Public Trust, C=US", "CN=mail.cloudmonkeys.xyz")
    assert tls_certificate_name(pki.issued("cmhybd01-selfsigned").cert) == "<I>CN=CMHYBD01<S>CN=CMHYBD01"
    with pytest.raises(ValueError):
        parse_tls_certificate_name("CN=mail.cloudmonkeys.xyz")


# -- extensions -------------------------------------------------------------------------------

def _ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def test_leaf_and_ca_extensions(pki):
    eop = pki.issued("eop")
    cert = eop.cert
    assert _ext(cert, x509.BasicConstraints).critical and not _ext(cert, x509.BasicConstraints).value.ca
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH,
                                                             ExtendedKeyUsageOID.CLIENT_AUTH]
    san = _ext(cert, x509.SubjectAlternativeName)
    assert not san.critical and "*.mail.protection.outlook.com" in san.value.get_values_for_type(x509.DNSName)
    cdp = _ext(cert, x509.CRLDistributionPoints).value[0].full_name[0].value
    assert cdp == "http://crl.labsim-pki.net/public-issuing.crl"
    assert eop.issuer_chain == [pki.ca("public-issuing").cert]
    inter = pki.ca("public-issuing").cert
    assert _ext(inter, x509.CRLDistributionPoints).value[0].full_name[0].value == \
        "http://crl.labsim-pki.net/public-root.crl"
    assert _ext(inter, x509.BasicConstraints).value.ca
    root = pki.ca("public-root").cert
    with pytest.raises(x509.ExtensionNotFound):
        _ext(root, x509.CRLDistributionPoints)
    ss = pki.issued("cmhybd01-selfsigned")
    assert ss.cert.issuer == ss.cert.subject and ss.issuer_chain == []
    ss.cert.verify_directly_issued_by(ss.cert)
    with pytest.raises(x509.ExtensionNotFound):
        _ext(ss.cert, x509.CRLDistributionPoints)


def test_trust_anchors_per_site(pki):
    names = lambda certs: [dotnet_dn(c.subject) for c in certs]  # noqa: E731
    assert names(pki.trust_anchors("onprem")) == ["CN=labsim Public Root CA, O=labsim Public Trust, C=US",
                                                  "CN=cloudmonkeys-DC01-CA, DC=cloudmonkeys, DC=xyz"]
    assert names(pki.trust_anchors("exo")) == ["CN=labsim Public Root CA, O=labsim Public Trust, C=US"]


def test_errors_are_labsim_errors(pki):
    with pytest.raises(PkiError):
        pki.issued("nope")
    assert issubclass(NoCredentialsError, LabsimError)
    with pytest.raises(PkiError):
        pki.revoke("cmhybd01-selfsigned")


# -- export -----------------------------------------------------------------------------------

def test_write_certs_modes_and_bundle(pki, tmp_path: Path):
    written = pki.write_certs(tmp_path / "certs")
    out = tmp_path / "certs"
    assert {p.name for p in written} >= {"public-root.crt", "eop.crt", "eop.key", "lab-roots.pem"}
    for key in out.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "eop.crt").stat().st_mode) == 0o644
    assert len(x509.load_pem_x509_certificates((out / "eop.crt").read_bytes())) == 2
    bundle = x509.load_pem_x509_certificates((out / "lab-roots.pem").read_bytes())
    # the two roots, then the self-signed certificates of CMHYBD01 and CMEDGE01 (their own anchors)
    assert [c.subject.rfc4514_string() for c in bundle][2:] == ["CN=CMHYBD01", "CN=CMEDGE01"]
    assert len(bundle) == 4
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(out / "eop.crt", out / "eop.key")  # usable by real TLS stacks
    ctx.load_verify_locations(out / "lab-roots.pem")
    assert not list(tmp_path.rglob(".*.tmp"))


# -- stores and contexts ----------------------------------------------------------------------

def test_store_order_and_material_modes(lab, pki):
    with CertStore.for_server(pki, lab.organization.server("CMHYBD01")) as store:
        assert [e.name for e in store.entries] == ["mail-cloudmonkeys", "cmhybd01-selfsigned"]
        assert store.entries[0].services == ["SMTP", "IIS"] and store.entries[1].index == 1
        chain_path, key_path = store.tls_material(store.entries[0])
        assert store.tls_material(store.entries[0]) == (chain_path, key_path)
        assert stat.S_IMODE(chain_path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert len(x509.load_pem_x509_certificates(chain_path.read_bytes())) == 2
        runtime = chain_path.parent
    assert not runtime.exists()


def test_no_private_key_is_no_credentials(pki):
    store = CertStore(pki, [StoreEntry(certificate="mail-cloudmonkeys", has_private_key=False)], owner="T")
    stored = store.entries[0]
    assert store.tls_material(stored)[1] is None
    with pytest.raises(NoCredentialsError) as info:
        store.server_context(stored)
    assert isinstance(info.value.__cause__, ssl.SSLError)
    assert info.value.thumbprint == stored.thumbprint
    with pytest.raises(NoCredentialsError):
        store.client_context(stored)
    with pytest.raises(NoCredentialsError):
        store.server_context(None)
    store.client_context(None)  # no client certificate: fine
    store.close()


def test_server_context_refuses_ca_certs(pki):
    store = CertStore(pki, [StoreEntry(certificate="mail-cloudmonkeys")])
    with pytest.raises(ValueError, match="leaf certificates only"):
        store.server_context(store.entries[0], pki.all_ca_certs())
    store.close()


async def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext):
    """A real TLS handshake over 127.0.0.1; returns (client sees, server sees, cipher, version)."""
    seen: dict[str, object] = {}
    done = asyncio.Event()

    async def handle(reader, writer):
        try:
            await writer.start_tls(server_ctx)
            seen["server"] = peer_chain(writer.get_extra_info("ssl_object"))
            writer.write(b"ok")
            await writer.drain()
        except Exception as exc:  # pragma: no cover - shown in the assertion
            seen["server_error"] = exc
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(writer.start_tls(client_ctx), 5)
        obj = writer.get_extra_info("ssl_object")
        seen["client"] = peer_chain(obj)
        seen["cipher"], seen["version"] = obj.cipher()[0], obj.version()
        assert await asyncio.wait_for(reader.read(2), 5) == b"ok"
        writer.close()
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
    assert "server_error" not in seen, seen.get("server_error")
    return seen


async def test_tls_full_chain_both_ways(lab, pki):
    hyb = CertStore.for_server(pki, lab.organization.server("CMHYBD01"))
    exo = CertStore(pki, [StoreEntry(certificate="eop")], owner="EXO")
    try:
        seen = await _handshake(hyb.server_context(hyb.get("mail-cloudmonkeys")),
                                exo.client_context(exo.get("eop")))
        assert seen["cipher"] == CIPHERS.split(":")[0] and seen["version"] == "TLSv1.2"
        assert [thumbprint(c) for c in seen["client"]] == [
            thumbprint(pki.issued("mail-cloudmonkeys").cert), thumbprint(pki.ca("public-issuing").cert)]
        # Server side: OpenSSL's peer chain, with the client's leaf first.
        assert [thumbprint(c) for c in seen["server"]] == [
            thumbprint(pki.issued("eop").cert), thumbprint(pki.ca("public-issuing").cert)]
    finally:
        hyb.close()
        exo.close()


async def test_tls_missing_intermediate_is_not_auto_completed(pki):
    # The server lacks the intermediate: it must send the bare leaf, although OpenSSL would happily
    # complete the chain from CA certificates in the verify store.
    server = CertStore(pki, [StoreEntry(certificate="mail-cloudmonkeys")], intermediate_store=[])
    client = CertStore(pki, [StoreEntry(certificate="eop")], intermediate_store=[])
    try:
        seen = await _handshake(server.server_context(server.entries[0]), client.client_context(client.entries[0]))
        assert [thumbprint(c) for c in seen["client"]] == [thumbprint(pki.issued("mail-cloudmonkeys").cert)]
        # The leaf-only client certificate was accepted all the same.
        assert [thumbprint(c) for c in seen["server"]] == [thumbprint(pki.issued("eop").cert)]
    finally:
        server.close()
        client.close()


async def test_tls_accepts_client_certs_expired_by_wall_clock():
    # A lab in 2010: every certificate is long expired by the wall clock, yet the handshake
    # completes, because the lab judges certificates at virtual time, not OpenSSL.
    old = LabPki(default_lab(start=datetime(2010, 1, 1, tzinfo=UTC)), 5)
    assert old.issued("eop").cert.not_valid_after_utc < datetime.now(UTC)
    server = CertStore(old, [StoreEntry(certificate="mail-cloudmonkeys")])
    client = CertStore(old, [StoreEntry(certificate="eop")])
    selfsigned = CertStore(old, [StoreEntry(certificate="cmedge01-selfsigned")])
    try:
        seen = await _handshake(server.server_context(server.entries[0]), client.client_context(client.entries[0]))
        assert len(seen["server"]) == 2 and len(seen["client"]) == 2
        seen = await _handshake(server.server_context(server.entries[0]),
                                selfsigned.client_context(selfsigned.entries[0]))
        assert [thumbprint(c) for c in seen["server"]] == [thumbprint(old.issued("cmedge01-selfsigned").cert)]
    finally:
        for s in (server, client, selfsigned):
            s.close()


async def test_tls_without_client_certificate(pki):
    server = CertStore(pki, [StoreEntry(certificate="eop")])
    try:
        seen = await _handshake(server.server_context(server.entries[0]), server.client_context(None))
        assert seen["server"] == [] and len(seen["client"]) == 2
    finally:
        server.close()
