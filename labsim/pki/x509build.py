"""The X.509 encoding of the lab's certificates and CRLs: plain functions from what `pki.authority`
decided (names, keys, serial, validity, where the CRL is published) to signed objects.

Every signature is deterministic (RSA PKCS#1 v1.5, or ECDSA per RFC 6979) and the extensions are
added in a fixed order, so the same inputs give the same DER bytes, hence the same thumbprint.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..topology.model import CertificateSpec
from .keys import PrivateKey

_DER = serialization.Encoding.DER


def sign(builder: Any, key: PrivateKey) -> Any:
    """Sign with SHA-256: RSA PKCS#1 v1.5 (deterministic by construction) or deterministic ECDSA."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    return builder.sign(key, hashes.SHA256())


def crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None, crl_issuer=None)])


def general_name(text: str) -> x509.GeneralName:
    """A subject alternative name: an IP address if it reads as one, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def _builder(subject: x509.Name, issuer: x509.Name, key: PrivateKey, serial: int,
             validity: tuple[datetime, datetime]) -> x509.CertificateBuilder:
    """What every certificate of the lab starts with: names, public key, serial, validity."""
    nb, na = validity
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(serial).not_valid_before(nb).not_valid_after(na))


def ca_certificate(subject: x509.Name, key: PrivateKey, *, issuer: x509.Name, signer: PrivateKey, serial: int,
                   validity: tuple[datetime, datetime], crl_url: str | None) -> x509.Certificate:
    """A CA certificate (a root signs itself: `signer` is `key`); `crl_url` is the parent's CDP."""
    builder = (
        _builder(subject, issuer, key, serial, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                       critical=False)
    )
    if crl_url is not None:
        builder = builder.add_extension(crl_distribution_points(crl_url), critical=False)
    return sign(builder, signer)


def leaf_certificate(spec: CertificateSpec, subject: x509.Name, key: PrivateKey, *, issuer: x509.Name,
                     signer: PrivateKey, serial: int, validity: tuple[datetime, datetime],
                     crl_url: str | None) -> x509.Certificate:
    """A leaf certificate (self-signed: `signer` is `key` and `crl_url` None) with the spec's
    purposes and subject alternative names."""
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if spec.server_auth else []) + \
             ([ExtendedKeyUsageOID.CLIENT_AUTH] if spec.client_auth else [])
    # A certificate for neither TLS purpose gets emailProtection: with no EKU at all, TLS
    # stacks would treat it as good for anything.
    usages = usages or [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    builder = (
        _builder(subject, issuer, key, serial, validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # ECDHE needs only digitalSignature; an RSA server certificate also carries
        # keyEncipherment, as Exchange's and public CAs' do (keyAgreement is for static ECDH,
        # which the lab's cipher suites never use).
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=isinstance(key, rsa.RSAPrivateKey),
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                       critical=False)
    )
    if spec.sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([general_name(s) for s in spec.sans]), critical=False)
    if crl_url is not None:
        builder = builder.add_extension(crl_distribution_points(crl_url), critical=False)
    return sign(builder, signer)


def crl_der(issuer: x509.Name, key: PrivateKey, this_update: datetime, next_update: datetime,
            entries: list[tuple[int, datetime, x509.ReasonFlags]]) -> bytes:
    """A CRL listing `entries` (serial, revocation time, reason), as DER."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        # Seconds since the epoch: deterministic and increasing with every publication.
        .add_extension(x509.CRLNumber(int(this_update.timestamp())), critical=False)
    )
    for serial, when, reason in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason != x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    der: bytes = sign(builder, key).public_bytes(_DER)
    return der
