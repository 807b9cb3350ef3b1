"""Which certificate a connector presents for STARTTLS (transport-behavior.md §3).

Inbound and outbound follow the same two paths:
1. `TlsCertificateName` (`<I>issuer<S>subject`): certificates with that issuer and subject that are
   valid *now*; among duplicates the one with the latest expiry wins (TLS-blog). Neither the
   private key nor the SMTP binding is checked here, which is how a renewed duplicate without
   its key gets picked and then fails with NoCredentials (seeds 002/004).
2. Otherwise the connector's FQDN (or the server's) against subject CN / SANs: the certificate
   must match, have a private key and be valid now; newest NotBefore first; a CA-issued
   certificate is preferred to a self-signed one, which is only a fallback.
Nothing found: no STARTTLS (event 12014).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CertView:
    """What selection needs to know of one certificate in a store (plain data)."""

    key: object  # an opaque handle the caller maps back to its stored certificate
    index: int
    subject: str
    issuer: str
    names: tuple[str, ...]  # subject CN first, then SAN DNS names
    not_before: datetime
    not_after: datetime
    has_private_key: bool
    self_signed: bool
    server_auth: bool = True


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


def by_tls_certificate_name(certs: list[CertView], value: str, now: datetime) -> CertView | None:
    issuer, subject = split_tls_certificate_name(value)
    found = [c for c in certs if _dn_equal(c.issuer, issuer) and _dn_equal(c.subject, subject)
             and c.not_before <= now <= c.not_after]
    if not found:
        return None
    return max(found, key=lambda c: (c.not_after, c.index))


def by_fqdn(certs: list[CertView], fqdn: str, now: datetime) -> CertView | None:
    found = [c for c in certs if c.has_private_key and c.server_auth and c.not_before <= now <= c.not_after
             and any(name_matches(n, fqdn) for n in c.names)]
    if not found:
        return None
    # CA-issued first, then newest NotBefore, then store order.
    return sorted(found, key=lambda c: (c.self_signed, -c.not_before.timestamp(), c.index))[0]


def select_certificate(certs: list[CertView], *, tls_certificate_name: str | None, fqdn: str,
                       now: datetime) -> CertView | None:
    if tls_certificate_name:
        return by_tls_certificate_name(certs, tls_certificate_name, now)
    return by_fqdn(certs, fqdn, now)
