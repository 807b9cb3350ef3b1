"""Which certificate a connector presents for STARTTLS (transport-behavior.md §3).

Inbound and outbound follow the same two paths:
1. `TlsCertificateName` (`<I>issuer<S>subject`): certificates with that issuer and subject that are
   valid *now*; among duplicates the one with the latest expiry wins, a later import breaking a
   tie (TLS-blog: "the one with the latest expiration is chosen"). Neither the private key nor the
   SMTP binding is checked here (TLS-blog: "Exchange does not check that the matched certificate is
   enabled for the SMTP service"), which is how a renewed duplicate without its key gets picked
   and then fails with NoCredentials (seeds 002/004).
2. Otherwise the connector's FQDN (or the server's) against subject CN / SANs: the certificate
   must match, its key must be usable by the transport (present, and the certificate enabled for
   SMTP: Enable-ExchangeCertificate -Services SMTP is what grants the service access to the key,
   as event 12014's own text says), it must allow server authentication and be valid now; a
   CA-issued certificate whose chain the server trusts is preferred, newest NotBefore first; a
   self-signed one is only a fallback; a CA-issued one the server cannot chain is rejected.
Nothing found: no STARTTLS (event 12014). Only expired candidates: event 12016 as well.

Time validity is the only validity checked at selection [INFERRED]: Exchange 2013 internals used
.NET's `Find(..., validOnly: true)` (which would also run a revocation check); the lab keeps the
revocation verdict for the peer's side, where the seeds show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "CertView", "name_matches", "split_tls_certificate_name", "by_tls_certificate_name", "by_fqdn",
    "select_certificate", "expired_candidates", "expiring_soon", "EXPIRY_WARNING",
]

# How long before NotAfter event 12018 (STARTTLSCertificateExpiresSoon) is raised. [INFERRED]: the
# threshold is not documented publicly; 30 days is what Exchange's own certificate expiry
# notification in the EAC uses for "expires soon".
EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True)
class CertView:
    """What selection needs to know of one certificate in a store (plain data)."""

    key: object  # an opaque handle the caller maps back to its stored certificate
    index: int
    subject: str
    issuer: str
    names: tuple[str, ...]  # SAN DNS names (or the CN when there are none)
    not_before: datetime
    not_after: datetime
    has_private_key: bool
    self_signed: bool
    server_auth: bool = True
    services: tuple[str, ...] = ("SMTP",)
    chain_trusted: bool = True  # the server can chain it to a root it trusts (self-signed: True)
    thumbprint: str = ""

    @property
    def key_usable(self) -> bool:
        """The transport service can use the private key: it exists and SMTP was enabled on it."""
        return self.has_private_key and any(s.upper() == "SMTP" for s in self.services)

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after


def name_matches(pattern: str, name: str) -> bool:
    """DNS name match with a single-label wildcard, case-insensitive."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if pattern.startswith("*."):
        head, _, tail = name.partition(".")
        return bool(head) and tail == pattern[2:]
    return False


def _dn_equal(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


def split_tls_certificate_name(value: str) -> tuple[str, str]:
    issuer, _, subject = value[3:].partition("<S>")
    return issuer, subject


def _named(certs: list[CertView], value: str) -> list[CertView]:
    issuer, subject = split_tls_certificate_name(value)
    return [c for c in certs if _dn_equal(c.issuer, issuer) and _dn_equal(c.subject, subject)]


def by_tls_certificate_name(certs: list[CertView], value: str, now: datetime) -> CertView | None:
    found = [c for c in _named(certs, value) if c.valid_at(now)]
    if not found:
        return None
    return max(found, key=lambda c: (c.not_after, c.index))


def _fqdn_candidates(certs: list[CertView], fqdn: str) -> list[CertView]:
    return [c for c in certs if c.key_usable and c.server_auth and (c.self_signed or c.chain_trusted)
            and any(name_matches(n, fqdn) for n in c.names)]


def by_fqdn(certs: list[CertView], fqdn: str, now: datetime) -> CertView | None:
    found = [c for c in _fqdn_candidates(certs, fqdn) if c.valid_at(now)]
    if not found:
        return None
    # CA-issued first, then newest NotBefore, then store order.
    return sorted(found, key=lambda c: (c.self_signed, -c.not_before.timestamp(), c.index))[0]


def select_certificate(certs: list[CertView], *, tls_certificate_name: str | None, fqdn: str,
                       now: datetime) -> CertView | None:
    if tls_certificate_name:
        return by_tls_certificate_name(certs, tls_certificate_name, now)
    return by_fqdn(certs, fqdn, now)


def expired_candidates(certs: list[CertView], *, tls_certificate_name: str | None, fqdn: str,
                       now: datetime) -> list[CertView]:
    """Certificates that would have been chosen but for having expired (event 12016's case)."""
    pool = _named(certs, tls_certificate_name) if tls_certificate_name else _fqdn_candidates(certs, fqdn)
    return [c for c in pool if c.not_after < now]


def expiring_soon(view: CertView, now: datetime, warning: timedelta = EXPIRY_WARNING) -> int | None:
    """Whole hours left when the selected certificate expires within `warning` (event 12018)."""
    left = view.not_after - now
    if timedelta(0) <= left <= warning:
        return int(left.total_seconds() // 3600)
    return None
