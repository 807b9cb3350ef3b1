"""Exchange-style certificate chain classification at the lab's virtual time.

OpenSSL stops at its first error, judges validity against the wall clock, cannot tell an untrusted
root from a missing intermediate and cannot fetch a CRL named in a certificate. So the lab
handshakes without verification and classifies the presented chain here, into the names of
Exchange's `ChainValidityStatus` (transport-behavior.md §4.1).

Order of the checks, and why:
1. no certificate                   -> EmptyCertificate
2. name (when a domain is required)  -> SubjectMismatch: Exchange checks the name itself, before
                                       chain validation, so a wrong name wins over a bad chain.
3. chain to a trust anchor           -> UntrustedRoot (also for a missing intermediate: Exchange and
                                       EXO report UntrustedRoot; `detail` says "incomplete chain")
4. validity at virtual time          -> CertificateExpired (expired and not yet valid alike, as
                                       CAPI's CERT_E_EXPIRED); CAPI ranks it after trust
5. revocation of leaf + intermediates -> Revoked, then RevocationOffline, then NoRevocationCheck.

Chain building uses cryptography's verifier with a client-verifier policy whose end-entity
extension policy is `permit_all()`: that checks signatures, CA constraints and validity of the
whole path but not EKU or SAN presence (the server verifier insists on a SAN and on serverAuth).
Steps 3 and 4 are told apart by verifying again at a moment when every certificate of the likely
path is valid (then only time was wrong), and with the known intermediates added (then only an
intermediate was missing). The verifier checks the anchor's validity too: an expired root gives
CertificateExpired, as on Windows. The classifier does no I/O except through `fetch_crl`.
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store

from .names import dotnet_dn

__all__ = [
    "ChainStatus", "HRESULTS", "ValidationResult", "CrlCache", "classify", "certificate_names",
    "name_matches", "cdp_urls",
]

UTC = timezone.utc


class ChainStatus(StrEnum):
    """Exchange's ChainValidityStatus names (they appear verbatim in logs and EXO messages)."""

    Valid = "Valid"
    ValidSelfSigned = "ValidSelfSigned"
    EmptyCertificate = "EmptyCertificate"
    SubjectMismatch = "SubjectMismatch"
    SignatureFailure = "SignatureFailure"
    UntrustedRoot = "UntrustedRoot"
    UntrustedTestRoot = "UntrustedTestRoot"
    InternalChainFailure = "InternalChainFailure"
    WrongUsage = "WrongUsage"
    CertificateExpired = "CertificateExpired"
    ValidityPeriodNesting = "ValidityPeriodNesting"
    PurposeError = "PurposeError"
    BasicConstraintsError = "BasicConstraintsError"
    WrongRole = "WrongRole"
    NoCNMatch = "NoCNMatch"
    Revoked = "Revoked"
    RevocationOffline = "RevocationOffline"
    CertificateRevoked = "CertificateRevoked"
    RevocationFailure = "RevocationFailure"
    NoRevocationCheck = "NoRevocationCheck"

    @property
    def ok(self) -> bool:
        return self in (ChainStatus.Valid, ChainStatus.ValidSelfSigned)


# The Win32 HRESULT behind each status, for event texts (transport-behavior.md §4.1).
HRESULTS: dict[ChainStatus, int] = {
    ChainStatus.SignatureFailure: 0x80096004, ChainStatus.UntrustedRoot: 0x800B0109,
    ChainStatus.UntrustedTestRoot: 0x800B010D, ChainStatus.InternalChainFailure: 0x800B010A,
    ChainStatus.WrongUsage: 0x800B0110, ChainStatus.CertificateExpired: 0x800B0101,
    ChainStatus.ValidityPeriodNesting: 0x800B0102, ChainStatus.PurposeError: 0x800B0106,
    ChainStatus.BasicConstraintsError: 0x80096019, ChainStatus.WrongRole: 0x800B0103,
    ChainStatus.NoCNMatch: 0x800B010F, ChainStatus.Revoked: 0x80092010,
    ChainStatus.RevocationOffline: 0x80092013, ChainStatus.CertificateRevoked: 0x800B010C,
    ChainStatus.RevocationFailure: 0x800B010E, ChainStatus.NoRevocationCheck: 0x80092012,
}


@dataclass(frozen=True)
class ValidationResult:
    """The status Exchange would report, a human detail for the lab's own diagnostics, and the
    chain that was built (leaf .. anchor; [leaf] for a self-signed one; [] when none was built)."""

    status: ChainStatus
    detail: str
    built_chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status.ok


class CrlCache:
    """Parsed, verified CRLs per URL until their nextUpdate (virtual time), like Windows' cache."""

    def __init__(self) -> None:
        self._crls: dict[str, x509.CertificateRevocationList] = {}
        self.hits = 0
        self.misses = 0

    def get(self, url: str, now: datetime) -> x509.CertificateRevocationList | None:
        crl = self._crls.get(url)
        if crl is not None and crl.last_update_utc <= now and (
                crl.next_update_utc is None or now <= crl.next_update_utc):
            self.hits += 1
            return crl
        self.misses += 1
        return None

    def put(self, url: str, crl: x509.CertificateRevocationList) -> None:
        self._crls[url] = crl

    def clear(self) -> None:
        self._crls.clear()


# -- names -----------------------------------------------------------------------------------

class _Kept:
    """Answers worked out once per certificate (a pure function of it), for the certificates every
    TLS session presents again. x509.Certificate hashes and compares by value, so a certificate
    parsed afresh for a new session (the server side's `peer_chain`) finds the answer of an equal
    one; a different certificate is a different key. Bounded: emptied when full."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._values: dict[x509.Certificate, Any] = {}
        # the same object again (a resumed chain, pki.store.peer_chain's): found by id without
        # hashing the certificate; the entry holds the object, so the id is no other's meanwhile
        self._objects: dict[int, tuple[x509.Certificate, Any]] = {}

    def get(self, cert: x509.Certificate, compute: Callable[[x509.Certificate], Any]) -> Any:
        seen = self._objects.get(id(cert))
        if seen is not None and seen[0] is cert:
            return seen[1]
        try:
            value = self._values[cert]
        except KeyError:
            value = compute(cert)
            if len(self._values) >= self.limit:
                self._values.clear()
            self._values[cert] = value
        if len(self._objects) >= self.limit:
            self._objects.clear()
        self._objects[id(cert)] = (cert, value)
        return value

    def clear(self) -> None:
        self._values.clear()
        self._objects.clear()


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The names a certificate is for: its SAN DNS names, or its CNs when it has none."""
    return list(_NAMES.get(cert, _names))


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        if names:
            return tuple(names)
    except x509.ExtensionNotFound:
        pass
    return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


_NAMES = _Kept()


def _labels(name: str) -> list[str]:
    return name.strip().rstrip(".").lower().split(".")


def _match_one(cert_name: str, domain: str) -> bool:
    c, d = _labels(cert_name), _labels(domain)
    if c == d:
        return True
    if len(c) != len(d) or len(c) < 3:
        return False
    # A wildcard is a whole leftmost label and stands for exactly one non-empty label, on either
    # side: SAN *.contoso.com matches mail.contoso.com; TlsDomain *.contoso.com accepts any host.
    if c[0] == "*" and d[0] and d[0] != "*":
        return c[1:] == d[1:]
    if d[0] == "*" and c[0] and c[0] != "*":
        return c[1:] == d[1:]
    return False


def name_matches(cert: x509.Certificate, domain: str) -> bool:
    """Does the certificate cover `domain` (case-insensitive, one-label wildcards)?"""
    try:
        ip = ipaddress.ip_address(domain)
    except ValueError:
        ip = None
    names = certificate_names(cert)
    if ip is not None:
        return any(n == str(ip) for n in names)
    return any(_match_one(n, domain) for n in names)


# -- chain building --------------------------------------------------------------------------

def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _build(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
           anchors: Sequence[x509.Certificate], when: datetime) -> list[x509.Certificate] | None:
    """leaf..anchor if the chain verifies at `when` (signatures, CA rules, validity), else None.

    Every TLS session validates its peer's chain; the verifier's answer depends on the
    certificates and on `when` only through which of them are inside their validity period, so
    the answer is kept per (certificates, which are valid at `when`)."""
    if not anchors:
        return None
    certs = (leaf, *intermediates, None, *anchors)
    valid = tuple(c is None or _within(c, when) for c in certs)
    # First by object: the same certificate objects come back session after session (the lab's
    # stores, pki.store.peer_chain's one object per DER), found without hashing each certificate;
    # the entry holds the objects, so their ids name no others while it is kept.
    by_id = (tuple(map(id, certs)), valid)
    seen = _BUILT_BY_ID.get(by_id)
    if seen is not None and all(map(operator.is_, seen[0], certs)):
        built = seen[1]
        return None if built is None else list(built)
    key = (certs, valid)
    built = _BUILT.get(key, _UNKNOWN)  # one lookup: the key hashes every certificate in it
    if built is _UNKNOWN:
        if len(_BUILT) >= 512:
            _BUILT.clear()
        chain = _verify(leaf, intermediates, anchors, when)
        built = _BUILT[key] = None if chain is None else tuple(chain)
    if len(_BUILT_BY_ID) >= 512:
        _BUILT_BY_ID.clear()
    _BUILT_BY_ID[by_id] = (certs, built)
    return None if built is None else list(built)


def _within(cert: x509.Certificate, when: datetime) -> bool:
    """Is `when` inside the certificate's validity period (the bounds kept per object)?"""
    kept = _VALIDITY.get(id(cert))
    if kept is None or kept[0] is not cert:
        if len(_VALIDITY) >= 1024:
            _VALIDITY.clear()
        kept = _VALIDITY[id(cert)] = (cert, cert.not_valid_before_utc, cert.not_valid_after_utc)
    return kept[1] <= when <= kept[2]


_BUILT: dict[tuple[Any, ...], tuple[x509.Certificate, ...] | None] = {}
_BUILT_BY_ID: dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[x509.Certificate, ...] | None]] = {}
_VALIDITY: dict[int, tuple[x509.Certificate, datetime, datetime]] = {}
_UNKNOWN: Any = object()


def _verify(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
            anchors: Sequence[x509.Certificate], when: datetime) -> list[x509.Certificate] | None:
    try:
        verifier = (
            PolicyBuilder().store(Store(list(anchors))).time(when)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                ee_policy=ExtensionPolicy.permit_all())
            .build_client_verifier()
        )
        return list(verifier.verify(leaf, list(intermediates)).chain)
    except Exception:  # VerificationError, or ValueError for certificates it cannot parse
        return None


def _validity_problem(chain: Sequence[x509.Certificate], now: datetime) -> str:
    for cert in chain:
        who = dotnet_dn(cert.subject)
        if now < cert.not_valid_before_utc:
            return f"{who} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z"
        if now > cert.not_valid_after_utc:
            return f"{who} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z"
    return "outside its validity period"


def _probe_times(leaf: x509.Certificate, pool: Sequence[x509.Certificate], now: datetime) -> list[datetime]:
    """Times at which the path leaf -> issuer -> ... (followed by name and signature through
    `pool`) is entirely valid: `now` moved into the intersection of their validity periods, and
    the leaf's own midpoint as a fallback."""
    lo, hi = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    cert, seen = leaf, {leaf}
    while cert.issuer != cert.subject:
        issuer = next((c for c in pool if c not in seen and c.subject == cert.issuer and _signed_by(cert, c)), None)
        if issuer is None:
            break
        lo, hi = max(lo, issuer.not_valid_before_utc), min(hi, issuer.not_valid_after_utc)
        cert = issuer
        seen.add(cert)
    times = [min(max(now, lo), hi)] if lo <= hi else []
    middle = leaf.not_valid_before_utc + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 2
    return times + [middle] if middle not in times else times


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except Exception:
        return False


def _is_self_signed(cert: x509.Certificate) -> bool:
    # the signature check is the costly part (the lab's internal transport certificates are
    # self-signed and presented on every X-ANONYMOUSTLS session): kept per certificate
    return _SELF_SIGNED.get(cert, _signs_itself)


def _signs_itself(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signed_by(cert, cert)


_SELF_SIGNED = _Kept()


def cdp_urls(cert: x509.Certificate) -> list[str]:
    """HTTP(S) URLs of the certificate's CRL distribution points, in order (kept per certificate:
    every validation of a chain asks for those of each of its certificates)."""
    return list(_CDPS.get(cert, _cdp_urls))


def _cdp_urls(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    urls = []
    for dp in cdp:
        for gn in dp.full_name or []:
            if isinstance(gn, x509.UniformResourceIdentifier) and gn.value.lower().startswith(("http://", "https://")):
                urls.append(gn.value)
    return tuple(urls)


_CDPS = _Kept()


# -- the classifier --------------------------------------------------------------------------

async def classify(
    chain: Sequence[x509.Certificate], *, now: datetime, anchors: Sequence[x509.Certificate],
    known_intermediates: Sequence[x509.Certificate], domain: str | None,
    fetch_crl: Callable[[str], Awaitable[bytes]], crl_cache: CrlCache | None = None,
    check_revocation: bool = True, local_intermediates: Sequence[x509.Certificate] = (),
) -> ValidationResult:
    """Classify the chain a peer presented (leaf first) as Exchange would, at virtual `now`.

    `anchors`: the trusted roots of the validating side; `known_intermediates`: every intermediate
    the lab has, used only to tell "incomplete chain" from "foreign root" in `detail`;
    `domain`: the name that must match (TlsDomain / the host connected to), or None;
    `local_intermediates`: the validating machine's own Intermediate CA store, which Windows'
    chain engine uses to complete what the peer sent (a Windows server that has the intermediate
    accepts a bare leaf; a validator without it - EXO in seed 004's comments - does not).
    """
    if not chain:
        return ValidationResult(ChainStatus.EmptyCertificate, "no certificate was presented")
    now = _utc(now)
    leaf, sent_by_peer = chain[0], list(chain[1:])
    presented = sent_by_peer + [c for c in local_intermediates if c not in sent_by_peer]

    if domain and not name_matches(leaf, domain):
        return ValidationResult(
            ChainStatus.SubjectMismatch,
            f"expected {domain}; presented {dotnet_dn(leaf.subject)} for "
            f"{', '.join(certificate_names(leaf)) or 'no names'}")

    if _is_self_signed(leaf):
        subject = dotnet_dn(leaf.subject)
        if not any(a == leaf for a in anchors):
            return ValidationResult(ChainStatus.UntrustedRoot,
                                    f"self-signed certificate {subject} is not a trusted root")
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            return ValidationResult(ChainStatus.CertificateExpired, _validity_problem([leaf], now), [leaf])
        return ValidationResult(ChainStatus.ValidSelfSigned, f"self-signed {subject} is trusted", [leaf])

    built = _build(leaf, presented, anchors, now)
    if built is None:
        subject = dotnet_dn(leaf.subject)
        # Retry at a moment when every certificate of the likely path is valid: if the chain then
        # verifies, only time is wrong.
        for when in _probe_times(leaf, [*presented, *anchors], now):
            at_when = _build(leaf, presented, anchors, when)
            if at_when is not None:
                return ValidationResult(ChainStatus.CertificateExpired, _validity_problem(at_when, now), at_when)
        for when in [now, *_probe_times(leaf, [*presented, *known_intermediates, *anchors], now)]:
            completed = _build(leaf, [*presented, *known_intermediates], anchors, when)
            if completed is not None:
                sent = set(presented)
                missing = [dotnet_dn(c.subject) for c in completed[1:-1] if c not in sent]
                return ValidationResult(
                    ChainStatus.UntrustedRoot,
                    f"incomplete chain: intermediate {'; '.join(missing) or '?'} was not presented")
        return ValidationResult(
            ChainStatus.UntrustedRoot,
            f"{subject} does not chain to a trusted root (issuer {dotnet_dn(leaf.issuer)})")

    if not check_revocation:
        return ValidationResult(ChainStatus.Valid, "chain is trusted; revocation not checked", built)
    return await _check_revocation(built, now, fetch_crl, crl_cache)


async def _check_revocation(built: list[x509.Certificate], now: datetime,
                            fetch_crl: Callable[[str], Awaitable[bytes]],
                            crl_cache: CrlCache | None) -> ValidationResult:
    """Check leaf and intermediates (not the anchor) against their issuers' CRLs."""
    offline: list[str] = []
    unchecked: list[str] = []
    dead_hosts: set[str] = set()  # like CryptNet's offline marking: do not wait twice per host
    for cert, issuer in zip(built[:-1], built[1:]):
        urls = cdp_urls(cert)
        if not urls:
            unchecked.append(f"{dotnet_dn(cert.subject)} has no CRL distribution point")
            continue
        crl: x509.CertificateRevocationList | None = None
        problems: list[str] = []
        for url in urls:
            crl = crl_cache.get(url, now) if crl_cache is not None else None
            if crl is not None:
                break
            host = urlsplit(url).netloc.lower()
            if host in dead_hosts:
                problems.append(f"{url}: server already unreachable")
                continue
            try:
                data = await fetch_crl(url)
            except Exception as exc:  # any failure to get the bytes is "offline" for CAPI
                dead_hosts.add(host)
                problems.append(f"{url}: {_reason(exc)}")
                continue
            crl, problem = _accept_crl(data, issuer, now)
            if crl is None:
                problems.append(f"{url}: {problem}")
                continue
            if crl_cache is not None:
                crl_cache.put(url, crl)
            break
        if crl is None:
            offline.append(f"revocation of {dotnet_dn(cert.subject)} unknown ({'; '.join(problems)})")
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            who = dotnet_dn(cert.subject)
            reason = ""
            try:
                reason = f", reason {entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value}"
            except x509.ExtensionNotFound:
                pass
            return ValidationResult(
                ChainStatus.Revoked,
                f"{who} (serial {cert.serial_number:X}) revoked on "
                f"{entry.revocation_date_utc:%Y-%m-%d %H:%M:%S}Z{reason}", built)
    if offline:
        return ValidationResult(ChainStatus.RevocationOffline, "; ".join(offline), built)
    if unchecked:
        return ValidationResult(ChainStatus.NoRevocationCheck, "; ".join(unchecked), built)
    return ValidationResult(ChainStatus.Valid, "chain is trusted and not revoked", built)


def _accept_crl(data: bytes, issuer: x509.Certificate,
                now: datetime) -> tuple[x509.CertificateRevocationList | None, str]:
    try:
        crl = x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
    except Exception:
        return None, "not a CRL"
    if crl.issuer != issuer.subject:
        return None, f"CRL issued by {dotnet_dn(crl.issuer)}, not by {dotnet_dn(issuer.subject)}"
    try:
        good = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except Exception:
        good = False
    if not good:
        return None, "bad CRL signature"
    if crl.last_update_utc > now:
        return None, f"CRL not valid before {crl.last_update_utc:%Y-%m-%d %H:%M:%S}Z"
    if crl.next_update_utc is not None and now > crl.next_update_utc:
        return None, f"CRL expired on {crl.next_update_utc:%Y-%m-%d %H:%M:%S}Z"
    return crl, ""


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
