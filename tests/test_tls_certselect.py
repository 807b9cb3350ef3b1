"""rules.certselect beyond the basics (tests/test_rules_certselect.py): the key the transport may
use (SMTP enabled), chains the server cannot build, and the inputs of events 12016 / 12018."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from labsim.rules.certselect import (
    EXPIRY_WARNING,
    CertView,
    by_fqdn,
    by_tls_certificate_name,
    expired_candidates,
    expiring_soon,
)
from labsim.topology.defaults import HYBRID_CERT_NAME, PUBLIC_ISSUING

NOW = datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc)
FQDN = "mail.cloudmonkeys.xyz"


def cert(key: str, *, services=("SMTP",), trusted=True, key_present=True, nb=-30, na=300, index=0,
         self_signed=False) -> CertView:
    return CertView(key=key, index=index, subject="CN=mail.cloudmonkeys.xyz", issuer=PUBLIC_ISSUING, names=(FQDN,),
                    not_before=NOW + timedelta(days=nb), not_after=NOW + timedelta(days=na),
                    has_private_key=key_present, self_signed=self_signed, services=tuple(services),
                    chain_trusted=trusted, thumbprint=key.upper())


def test_fqdn_path_needs_the_certificate_enabled_for_smtp():
    """12014's text: 'run Enable-ExchangeCertificate -Services SMTP to make sure that the Microsoft
    Exchange Transport service has access to the certificate key'."""
    iis_only = cert("iis", services=("IIS",))
    assert not iis_only.key_usable and by_fqdn([iis_only], FQDN, NOW) is None
    assert by_fqdn([iis_only, cert("smtp", na=10, index=1)], FQDN, NOW).key == "smtp"


def test_tls_certificate_name_does_not_check_smtp_or_the_key():
    """TLS-blog: the TlsCertificateName lookup does not check the SMTP binding (KB 4051498 then
    fails with UnknownCredentials)."""
    assert by_tls_certificate_name([cert("iis", services=("IIS",), key_present=False)], HYBRID_CERT_NAME, NOW).key == "iis"


def test_fqdn_path_rejects_a_ca_issued_certificate_the_server_cannot_chain():
    untrusted = cert("ca", trusted=False)
    self_signed = cert("self", self_signed=True, trusted=False, index=1)
    assert by_fqdn([untrusted], FQDN, NOW) is None
    assert by_fqdn([untrusted, self_signed], FQDN, NOW).key == "self"  # the self-signed fallback


def test_expired_candidates_feed_event_12016():
    old = cert("old", nb=-400, na=-2)
    assert [c.key for c in expired_candidates([old], tls_certificate_name=HYBRID_CERT_NAME, fqdn="x", now=NOW)] == ["old"]
    assert [c.key for c in expired_candidates([old], tls_certificate_name=None, fqdn=FQDN, now=NOW)] == ["old"]
    assert expired_candidates([old], tls_certificate_name=None, fqdn="other.example", now=NOW) == []
    assert expired_candidates([cert("fine")], tls_certificate_name=None, fqdn=FQDN, now=NOW) == []


@given(days=st.integers(min_value=-5, max_value=400))
def test_expiring_soon_window(days):
    hours = expiring_soon(cert("c", na=days), NOW)
    if 0 <= days <= EXPIRY_WARNING.days:
        assert hours == days * 24
    else:
        assert hours is None
