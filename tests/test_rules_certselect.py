"""Which certificate a connector presents for STARTTLS (transport-behavior.md §3), no sockets.

TlsCertificateName: issuer+subject, currently valid, latest expiry among duplicates, private key not
checked (the renewed-duplicate trap of seeds 002/004). Otherwise the FQDN: must match, must have a
private key and server auth, must be valid now; CA-issued preferred; newest NotBefore first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from labsim.rules.certselect import (
    CertView,
    by_fqdn,
    by_tls_certificate_name,
    name_matches,
    select_certificate,
    split_tls_certificate_name,
)
from labsim.topology.defaults import HYBRID_CERT_NAME, PUBLIC_ISSUING

NOW = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
ISSUER = PUBLIC_ISSUING
SUBJECT = "CN=mail.cloudmonkeys.xyz"


def cert(index: int, *, subject: str = SUBJECT, issuer: str = ISSUER, names=("mail.cloudmonkeys.xyz",),
         nb_days: int = -30, na_days: int = 300, key: bool = True, self_signed: bool = False,
         server_auth: bool = True) -> CertView:
    return CertView(key=f"cert{index}", index=index, subject=subject, issuer=issuer, names=tuple(names),
                    not_before=NOW + timedelta(days=nb_days), not_after=NOW + timedelta(days=na_days),
                    has_private_key=key, self_signed=self_signed, server_auth=server_auth)


def chosen(view: CertView | None) -> str | None:
    return view.key if view else None


# --- TlsCertificateName ---------------------------------------------------------------------------

def test_split_tls_certificate_name():
    assert split_tls_certificate_name(HYBRID_CERT_NAME) == (ISSUER, SUBJECT)


def test_latest_expiring_duplicate_wins_even_without_private_key():
    old = cert(0, na_days=10)
    renewed_without_key = cert(1, na_days=400, key=False)  # a botched renewal (seed 004 comments)
    assert chosen(by_tls_certificate_name([old, renewed_without_key], HYBRID_CERT_NAME, NOW)) == "cert1"
    assert chosen(by_tls_certificate_name([renewed_without_key, old], HYBRID_CERT_NAME, NOW)) == "cert1"


def test_tls_certificate_name_ignores_expired_and_not_yet_valid_duplicates():
    current = cert(0, na_days=10)
    expired = cert(1, nb_days=-400, na_days=-1)
    future = cert(2, nb_days=5, na_days=800)
    assert chosen(by_tls_certificate_name([expired, current, future], HYBRID_CERT_NAME, NOW)) == "cert0"
    assert by_tls_certificate_name([expired, future], HYBRID_CERT_NAME, NOW) is None


def test_tls_certificate_name_needs_both_issuer_and_subject():
    other_issuer = cert(0, issuer="CN=cloudmonkeys-DC01-CA, DC=cloudmonkeys, DC=xyz")
    other_subject = cert(1, subject="CN=smtp.cloudmonkeys.xyz")
    assert by_tls_certificate_name([other_issuer, other_subject], HYBRID_CERT_NAME, NOW) is None


def test_tls_certificate_name_compares_names_without_case_or_extra_spaces():
    spaced = cert(0, issuer="cn=labsim Public Issuing CA 1,  O=labsim Public Trust,   C=US")
    assert chosen(by_tls_certificate_name([spaced], HYBRID_CERT_NAME, NOW)) == "cert0"


def test_tls_certificate_name_does_not_fall_back_to_the_fqdn():
    """A TlsCertificateName that matches nothing means no certificate (event 12014, no STARTTLS)."""
    by_name_only = cert(0, subject="CN=mail.cloudmonkeys.xyz", issuer="CN=someone else")
    assert select_certificate([by_name_only], tls_certificate_name=HYBRID_CERT_NAME,
                              fqdn="mail.cloudmonkeys.xyz", now=NOW) is None
    assert chosen(select_certificate([by_name_only], tls_certificate_name=None,
                                     fqdn="mail.cloudmonkeys.xyz", now=NOW)) == "cert0"


# --- FQDN -----------------------------------------------------------------------------------------

def test_fqdn_path_needs_a_private_key():
    assert by_fqdn([cert(0, key=False)], "mail.cloudmonkeys.xyz", NOW) is None
    assert chosen(by_fqdn([cert(0, key=False), cert(1, na_days=20)], "mail.cloudmonkeys.xyz", NOW)) == "cert1"


def test_fqdn_path_prefers_ca_issued_over_a_newer_self_signed():
    self_signed = cert(0, nb_days=-1, self_signed=True, issuer=SUBJECT)
    ca_issued = cert(1, nb_days=-300, na_days=60)
    assert chosen(by_fqdn([self_signed, ca_issued], "mail.cloudmonkeys.xyz", NOW)) == "cert1"
    assert chosen(by_fqdn([self_signed], "mail.cloudmonkeys.xyz", NOW)) == "cert0"  # the fallback


def test_fqdn_path_takes_the_newest_not_before_among_ca_issued():
    older, newer = cert(0, nb_days=-200), cert(1, nb_days=-10)
    assert chosen(by_fqdn([older, newer], "mail.cloudmonkeys.xyz", NOW)) == "cert1"
    assert chosen(by_fqdn([newer, older], "mail.cloudmonkeys.xyz", NOW)) == "cert1"


def test_fqdn_path_ignores_expired_and_client_only_certificates():
    expired = cert(0, nb_days=-400, na_days=-1)
    client_only = cert(1, server_auth=False)
    assert by_fqdn([expired, client_only], "mail.cloudmonkeys.xyz", NOW) is None


def test_fqdn_matches_subject_alternative_names_and_wildcards():
    sans = cert(0, names=("mail.cloudmonkeys.xyz", "autodiscover.cloudmonkeys.xyz", "smtp.cloudmonkeys.xyz"))
    assert chosen(by_fqdn([sans], "SMTP.cloudmonkeys.xyz", NOW)) == "cert0"
    wildcard = cert(1, names=("*.cloudmonkeys.xyz",))
    assert chosen(by_fqdn([wildcard], "cmhybd01.cloudmonkeys.xyz", NOW)) == "cert1"
    assert by_fqdn([wildcard], "a.b.cloudmonkeys.xyz", NOW) is None
    assert by_fqdn([wildcard], "cloudmonkeys.xyz", NOW) is None


def test_name_matches():
    assert name_matches("*.mail.protection.outlook.com", "cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com")
    assert name_matches("mail.cloudmonkeys.xyz.", "MAIL.cloudmonkeys.xyz")
    assert not name_matches("*.outlook.com", "outlook.com")
    assert not name_matches("mail.cloudmonkeys.xyz", "mail.cloudmonkeys.xyz.evil.example")
