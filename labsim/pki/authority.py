"""The lab's certificate authorities, leaf certificates and CRLs, byte-identical for a seed.

Thumbprints and serial numbers appear in Exchange's logs, so every certificate must be the same
on every run of the same scenario and seed. That rules out random keys and trustme (which cannot
set names, serials or CRL distribution points either). Instead:

- each key is RSA 2048 generated from a deterministic stream seeded by HMAC-SHA256(seed, name)
  (Exchange's and real CAs' key type; pki.keys, cached on disk), or, for a CA or certificate with
  `KeyAlgorithm ECDSA`, an EC P-256 key whose private value is HMAC-SHA256(seed, name) mod the order;
- every signature is deterministic: RSA PKCS#1 v1.5, or ECDSA per RFC 6979 (`pki.x509build`
  encodes what this module decides: names, keys, serials, validity, CDPs);
- serials are 16 bytes drawn from the same HMAC (positive, top bit clear, bit 126 set so the
  encoding is always exactly 16 bytes and Exchange's upper-case hex is always 32 characters);
- validity is relative to `lab.start` (timespec.resolve_time), CRL times to a fixed grid from it.

Since a key and a certificate are pure functions of their inputs, the process keeps what it built
(pki.keys.derive_key, _built): a second LabPki over the same specs and seed (the next run of `labsim run
A B ...`, a reconfiguration that rebuilds the PKI) takes the same objects instead of doing the
elliptic-curve arithmetic and the signing again. A certificate is cached under everything it is
built from: the seed, the lab's start, its spec (as JSON), the CRL host and, recursively, the same
for its issuer; so a cache hit is byte-identical to a fresh build.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..topology.model import CaSpec, CertificateSpec, Lab, Site
from ..topology.timespec import resolve_time
from .errors import PkiError
from .keys import PrivateKey, derive_key
from .names import parse_dn
from .x509build import ca_certificate, crl_der, leaf_certificate

__all__ = ["LabPki", "CaMaterial", "IssuedCert", "thumbprint", "serial_hex", "crl_url_for"]

UTC = timezone.utc
_PEM = serialization.Encoding.PEM


_CACHE_MAX = 4096  # certificates kept per process; the whole built-in catalog needs about 100

# build key (see _ca_build_key / the leaf's in issued()) -> the certificate built from it
_built: dict[tuple[Any, ...], x509.Certificate] = {}


def _remember(build_key: tuple[Any, ...], cert: x509.Certificate) -> x509.Certificate:
    if len(_built) >= _CACHE_MAX:
        _built.clear()
    _built[build_key] = cert
    return cert


def thumbprint(cert: x509.Certificate) -> str:
    """Windows' certificate thumbprint: SHA-1 of the DER, upper-case hex, no separators.

    Asked for the same certificate objects session after session (the stores' own, a resumed
    session's chain, pki.store.peer_chain's), so kept per object: the entry holds the object, so
    its id cannot name another certificate while it is kept."""
    kept = _THUMBPRINTS.get(id(cert))
    if kept is not None and kept[0] is cert:
        return kept[1]
    text = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S324 - it is what Windows shows
    if len(_THUMBPRINTS) >= 1024:
        _THUMBPRINTS.clear()
    _THUMBPRINTS[id(cert)] = (cert, text)
    return text


_THUMBPRINTS: dict[int, tuple[x509.Certificate, str]] = {}


def serial_hex(cert: x509.Certificate) -> str:
    """The serial as Exchange prints it: upper-case hex of whole bytes."""
    text = f"{cert.serial_number:X}"
    return text if len(text) % 2 == 0 else "0" + text


def crl_url_for(lab: Lab, ca_name: str) -> str:
    """Where the lab publishes a CA's CRL (the CDP of everything that CA issues)."""
    host = next((c.cdp for c in lab.certificate_authorities if c.name == ca_name and c.cdp), None)
    return f"http://{host or lab.network.crl_host_name}/{ca_name}.crl"


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _second(when: datetime) -> datetime:
    return _utc(when).replace(microsecond=0)


@dataclass(frozen=True, eq=False)
class CaMaterial:
    """A lab CA: its spec, certificate and signing key."""

    spec: CaSpec
    cert: x509.Certificate
    key: PrivateKey

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_root(self) -> bool:
        return self.spec.parent is None


@dataclass(frozen=True, eq=False)
class IssuedCert:
    """A leaf certificate with its key and the intermediates above it (issuer first, root excluded)."""

    spec: CertificateSpec
    cert: x509.Certificate
    key: PrivateKey
    issuer_chain: list[x509.Certificate]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def self_signed(self) -> bool:
        return self.spec.issuer == "self"

    @property
    def chain(self) -> list[x509.Certificate]:
        """Leaf plus every intermediate up to (not including) the root: a complete TLS chain."""
        return [self.cert, *self.issuer_chain]

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.cert)


_RSA_SECRET = b"labsim-pki-rsa\x00v1"  # see LabPki._key


class LabPki:
    """Every CA, leaf and CRL of one lab, derived from (lab, seed) and built once on first use.

    CRLs are published on a grid of `crl_interval` from `lab.start`, and also at the moment of each
    revocation (an admin runs `certutil -CRL` after revoking), each valid for `crl_validity`. The
    CRL for a CA at time `now` is therefore a pure function of (seed, lab, revocations, now) and
    byte-identical for identical inputs. Clients that cache a CRL until its nextUpdate (as Windows
    does) do not see a later revocation until then - the same surprise real admins meet.
    """

    crl_interval = timedelta(days=1)
    crl_validity = timedelta(days=7)

    def __init__(self, lab: Lab, seed: int) -> None:
        self.lab = lab
        self.seed = seed
        self._start = _second(lab.start)
        self._secret = f"labsim-pki\x00{seed}".encode()
        self._cas: dict[str, CaMaterial] = {}
        self._build_keys: dict[str, tuple[Any, ...]] = {}  # CA name -> what its certificate is built from
        self._issued: dict[str, IssuedCert] = {}
        self._crls: dict[tuple[object, ...], bytes] = {}
        self._revoked: dict[str, tuple[datetime, x509.ReasonFlags]] = {}
        for spec in lab.certificates:
            if spec.revoked:
                self.revoke(spec.name)

    # -- derivation -------------------------------------------------------------------------

    def _digest(self, *parts: str) -> bytes:
        return hmac.new(self._secret, "\x00".join(parts).encode(), hashlib.sha256).digest()

    def _key(self, kind: str, name: str, algorithm: str) -> PrivateKey:
        # An RSA key costs about a second to generate (pki.keys), so it depends on the name only: a
        # machine makes each name's key once, whatever the seed. The certificate around it (serial,
        # validity, signature, so its thumbprint) still comes from the seed. EC keys are instant.
        secret = _RSA_SECRET if algorithm == "RSA" else self._secret
        return derive_key(secret, kind, name, algorithm)

    def _build_key(self, kind: str, spec: CaSpec | CertificateSpec, issuer: str | None) -> tuple[Any, ...]:
        """Everything a certificate is built from (its issuer's by reference to the issuer's own)."""
        return (kind, self._secret, self._start, spec.model_dump_json(), self.lab.network.crl_host_name,
                self._build_keys[issuer] if issuer else None)

    def _serial(self, kind: str, name: str) -> int:
        raw = int.from_bytes(self._digest("serial", kind, name)[:16], "big")
        return (raw & ((1 << 126) - 1)) | (1 << 126)

    def _validity(self, not_before: str, not_after: str, what: str) -> tuple[datetime, datetime]:
        nb = _second(resolve_time(not_before, self._start))
        na = _second(resolve_time(not_after, self._start))
        if na <= nb:
            raise PkiError(f"{what}: NotAfter {na:%Y-%m-%d %H:%M:%S} is not after NotBefore {nb:%Y-%m-%d %H:%M:%S}")
        return nb, na

    def crl_url(self, ca_name: str) -> str:
        return crl_url_for(self.lab, ca_name)

    # -- CAs ---------------------------------------------------------------------------------

    def _ca_spec(self, name: str) -> CaSpec:
        try:
            return self.lab.ca(name)
        except KeyError:
            raise PkiError(f"no lab CA named {name!r}") from None

    def ca(self, name: str) -> CaMaterial:
        """The CA `name` (and, first, its parents)."""
        return self._build_ca(name, ())

    def _build_ca(self, name: str, below: tuple[str, ...]) -> CaMaterial:
        if name in self._cas:
            return self._cas[name]
        if name in below:
            raise PkiError(f"CA {name!r} is its own ancestor ({' -> '.join((*below, name))})")
        spec = self._ca_spec(name)
        parent = self._build_ca(spec.parent, (*below, name)) if spec.parent else None
        key = self._key("ca", name, spec.key_algorithm)
        build_key = self._build_key("ca", spec, spec.parent)
        cert = _built.get(build_key) or _remember(build_key, self._build_ca_cert(spec, key, parent))
        material = CaMaterial(spec=spec, cert=cert, key=key)
        self._cas[name] = material
        self._build_keys[name] = build_key
        return material

    def _build_ca_cert(self, spec: CaSpec, key: PrivateKey,
                       parent: CaMaterial | None) -> x509.Certificate:
        subject = parse_dn(spec.subject)
        validity = self._validity(spec.not_before, spec.not_after, f"CA {spec.name!r}")
        return ca_certificate(subject, key, issuer=parent.cert.subject if parent else subject,
                              signer=parent.key if parent else key, serial=self._serial("ca", spec.name),
                              validity=validity, crl_url=self.crl_url(parent.name) if parent else None)

    def all_ca_certs(self) -> list[x509.Certificate]:
        """Every CA certificate (roots and intermediates), in the lab's order."""
        return [self.ca(s.name).cert for s in self.lab.certificate_authorities]

    def roots(self) -> list[x509.Certificate]:
        return [self.ca(s.name).cert for s in self.lab.certificate_authorities if s.parent is None]

    def intermediates(self) -> list[x509.Certificate]:
        return [self.ca(s.name).cert for s in self.lab.certificate_authorities if s.parent is not None]

    def trust_anchors(self, site: Site | str) -> list[x509.Certificate]:
        """The roots a site's machines trust (CaSpec.trusted_by), i.e. its Trusted Root store."""
        want = str(site)
        return [self.ca(s.name).cert for s in self.lab.certificate_authorities
                if s.parent is None and want in {str(t) for t in s.trusted_by}]

    # -- leaves ------------------------------------------------------------------------------

    def issued(self, cert_name: str) -> IssuedCert:
        """The leaf certificate `cert_name` with its key and issuer chain."""
        if cert_name in self._issued:
            return self._issued[cert_name]
        try:
            spec = self.lab.certificate(cert_name)
        except KeyError:
            raise PkiError(f"no lab certificate named {cert_name!r}") from None
        key = self._key("cert", cert_name, spec.key_algorithm)
        issuer = None if spec.issuer == "self" else self.ca(spec.issuer)
        build_key = self._build_key("cert", spec, None if issuer is None else issuer.name)
        cert = _built.get(build_key) or _remember(build_key, self._build_leaf_cert(spec, key, issuer))
        chain: list[x509.Certificate] = []
        ca = issuer
        while ca is not None and ca.spec.parent is not None:
            chain.append(ca.cert)
            ca = self.ca(ca.spec.parent)
        result = IssuedCert(spec=spec, cert=cert, key=key, issuer_chain=chain)
        self._issued[cert_name] = result
        return result

    def _build_leaf_cert(self, spec: CertificateSpec, key: PrivateKey,
                         issuer: CaMaterial | None) -> x509.Certificate:
        subject = parse_dn(spec.subject)
        validity = self._validity(spec.not_before, spec.not_after, f"certificate {spec.name!r}")
        return leaf_certificate(spec, subject, key, issuer=subject if issuer is None else issuer.cert.subject,
                                signer=key if issuer is None else issuer.key, serial=self._serial("cert", spec.name),
                                validity=validity, crl_url=None if issuer is None else self.crl_url(issuer.name))

    def all_issued(self) -> list[IssuedCert]:
        return [self.issued(s.name) for s in self.lab.certificates]

    def all_leaf_certs(self) -> list[x509.Certificate]:
        """Every leaf (CA-issued and self-signed): what a lab TLS server accepts as client certs."""
        return [i.cert for i in self.all_issued()]

    # -- revocation and CRLs -----------------------------------------------------------------

    def revoke(self, cert_name: str, when: datetime | None = None,
               reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise) -> None:
        """Revoke a CA-issued certificate at `when` (default: a day before the lab starts).

        The issuing CA publishes a new CRL at that moment, so `crl_der(ca, now >= when)` lists it.
        """
        spec = self.issued(cert_name).spec
        if spec.issuer == "self":
            raise PkiError(f"certificate {cert_name!r} is self-signed: there is no CA to revoke it")
        at = _second(when) if when is not None else self._start - timedelta(days=1)
        self._revoked[cert_name] = (at, reason)

    def is_revoked(self, cert_name: str, now: datetime | None = None) -> bool:
        entry = self._revoked.get(cert_name)
        return entry is not None and (now is None or entry[0] <= _utc(now))

    def crl_this_update(self, ca_name: str, now: datetime) -> datetime:
        """The thisUpdate of the CRL `ca_name` has published by `now` (latest grid or revocation time)."""
        now = _utc(now)
        steps = (now - self._start) // self.crl_interval
        published = self._start + steps * self.crl_interval
        for name, (when, _reason) in self._revoked.items():
            if self.lab.certificate(name).issuer == ca_name and published < when <= now:
                published = when
        return published

    def crl_der(self, ca_name: str, now: datetime) -> bytes:
        """The DER CRL of `ca_name` as published at `now` (cached per content)."""
        ca = self.ca(ca_name)
        this_update = self.crl_this_update(ca_name, now)
        entries = sorted(
            (self.issued(name).cert.serial_number, when, reason)
            for name, (when, reason) in self._revoked.items()
            if self.lab.certificate(name).issuer == ca_name and when <= this_update
        )
        cache_key = (ca_name, this_update, tuple(entries))
        if cache_key in self._crls:
            return self._crls[cache_key]
        der = crl_der(ca.cert.subject, ca.key, this_update, this_update + self.crl_validity, entries)
        self._crls[cache_key] = der
        return der

    # -- export ------------------------------------------------------------------------------

    def write_certs(self, out_dir: Path) -> list[Path]:
        """Export PEM files so real tools (swaks, openssl s_client -CAfile) can use the lab PKI.

        `<ca>.crt` per CA, `<cert>.crt` (leaf + intermediates) and `<cert>.key` (PKCS8, mode 0600)
        per leaf, and `lab-roots.pem` with every root and every self-signed leaf (the Edge's and the
        Mailbox server's own certificates are their own anchors: a client that verifies, such as
        `swaks --tls-verify --tls-ca-path lab-roots.pem`, needs them there). Returns the paths written.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        clash = {c.name for c in self.lab.certificate_authorities} & {c.name for c in self.lab.certificates}
        if clash:
            raise PkiError(f"CA and certificate share a file name: {', '.join(sorted(clash))}")
        written: list[Path] = []
        for spec in self.lab.certificate_authorities:
            written.append(_write(out_dir / f"{spec.name}.crt", self.ca(spec.name).cert.public_bytes(_PEM), 0o644))
        for issued in self.all_issued():
            pem = b"".join(c.public_bytes(_PEM) for c in issued.chain)
            written.append(_write(out_dir / f"{issued.name}.crt", pem, 0o644))
            written.append(_write(out_dir / f"{issued.name}.key", key_pem(issued.key), 0o600))
        self_signed = [i.cert for i in self.all_issued() if i.spec.issuer == "self"]
        roots = b"".join(c.public_bytes(_PEM) for c in [*self.roots(), *self_signed])
        written.append(_write(out_dir / "lab-roots.pem", roots, 0o644))
        return written


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> Path:
    """Write atomically with `mode` from the first byte (a key is never briefly world-readable)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
