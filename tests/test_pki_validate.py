"""labsim.pki.validate and crl_server: Exchange ChainValidityStatus at virtual time, real CRLs over HTTP."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from labsim.errors import NetworkGuardError
from labsim.pki import (
    ChainStatus,
    CrlCache,
    CrlServer,
    CrlUnavailable,
    LabPki,
    classify,
    http_get,
    name_matches,
)
from labsim.topology.defaults import default_lab
from labsim.topology.model import CaSpec, CertificateSpec, Site

HANG_TIMEOUT = 0.2


def _lab():
    lab = default_lab()
    lab.certificate_authorities += [
        CaSpec(name="rogue-root", subject="CN=Rogue Root CA, O=Not Trusted", trusted_by=[]),
        CaSpec(name="old-issuing", subject="CN=Old Issuing CA, O=labsim Public Trust, C=US",
               parent="public-root", not_after="+10d"),
    ]
    mail_sans = ["mail.cloudmonkeys.xyz"]
    lab.certificates += [
        CertificateSpec(name="rogue", subject="CN=mail.cloudmonkeys.xyz", sans=mail_sans, issuer="rogue-root"),
        CertificateSpec(name="expired", subject="CN=mail.cloudmonkeys.xyz", sans=mail_sans,
                        issuer="public-issuing", not_before="-400d", not_after="-35d"),
        CertificateSpec(name="future", subject="CN=mail.cloudmonkeys.xyz", sans=mail_sans,
                        issuer="public-issuing", not_before="+10d", not_after="+400d"),
        CertificateSpec(name="revoked", subject="CN=mail.cloudmonkeys.xyz", sans=mail_sans,
                        issuer="public-issuing", revoked=True),
        CertificateSpec(name="under-old", subject="CN=mail.cloudmonkeys.xyz", sans=mail_sans,
                        issuer="old-issuing", not_after="+300d"),
        CertificateSpec(name="internal", subject="CN=cmhybd01.cloudmonkeys.xyz",
                        sans=["cmhybd01.cloudmonkeys.xyz"], issuer="org-root"),
    ]
    return lab


@pytest.fixture(scope="module")
def pki():
    return LabPki(_lab(), 3)


@pytest.fixture
async def crl(pki):
    """A real CRL server on 127.0.0.1 at the lab's (virtual) start time."""
    clock = {"now": pki.lab.start}
    server = CrlServer(pki, lambda: clock["now"])
    await server.start("127.0.0.1", 0)
    server.clock = clock  # type: ignore[attr-defined]
    yield server
    await server.stop()


def _fetcher(server: CrlServer, calls: list[str] | None = None, timeout: float = 1.0):
    """What the lab will do: map the CDP host to the CRL server's real address, GET over HTTP."""
    async def fetch(url: str) -> bytes:
        if calls is not None:
            calls.append(url)
        parts = urlsplit(url)
        assert parts.hostname == "crl.labsim-pki.net"
        return await http_get(server.real_ip, server.real_port, parts.hostname, parts.path, timeout)
    return fetch


async def _no_fetch(url: str) -> bytes:  # pragma: no cover - must not be called
    raise AssertionError(f"unexpected CRL fetch {url}")


async def _classify(pki, name, fetch=_no_fetch, *, site=Site.EXO, domain="mail.cloudmonkeys.xyz",
                    now=None, drop_intermediates=False, **kw):
    issued = pki.issued(name)
    chain = [issued.cert] if drop_intermediates else issued.chain
    return await classify(chain, now=now or pki.lab.start, anchors=pki.trust_anchors(site),
                          known_intermediates=pki.intermediates(), domain=domain, fetch_crl=fetch, **kw)


# -- statuses ---------------------------------------------------------------------------------

async def test_valid_with_real_crls(pki, crl):
    calls: list[str] = []
    result = await _classify(pki, "mail-cloudmonkeys", _fetcher(crl, calls))
    assert result.status == ChainStatus.Valid and result.ok, result.detail
    assert [c.subject for c in result.built_chain] == [
        pki.issued("mail-cloudmonkeys").cert.subject, pki.ca("public-issuing").cert.subject,
        pki.ca("public-root").cert.subject]
    # Leaf and intermediate are checked, the root is not.
    assert calls == ["http://crl.labsim-pki.net/public-issuing.crl", "http://crl.labsim-pki.net/public-root.crl"]


async def test_wildcard_domain_match(pki, crl):
    result = await _classify(pki, "eop", _fetcher(crl),
                             domain="cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com")
    assert result.status == ChainStatus.Valid
    eop = pki.issued("eop").cert
    assert name_matches(eop, "MAIL.protection.outlook.com.")
    assert not name_matches(eop, "a.b.mail.protection.outlook.com")  # one label only
    assert not name_matches(eop, "protection.outlook.com")
    assert name_matches(pki.issued("mail-cloudmonkeys").cert, "*.cloudmonkeys.xyz")  # TlsDomain wildcard


async def test_subject_mismatch(pki):
    result = await _classify(pki, "mail-cloudmonkeys", domain="mail.protection.outlook.com")
    assert result.status == ChainStatus.SubjectMismatch
    assert "mail.protection.outlook.com" in result.detail and "mail.cloudmonkeys.xyz" in result.detail


async def test_expired_and_not_yet_valid(pki):
    expired = await _classify(pki, "expired")
    future = await _classify(pki, "future")
    assert expired.status == future.status == ChainStatus.CertificateExpired
    assert "expired on" in expired.detail and "not valid before" in future.detail
    # The same certificate is fine at another virtual time.
    later = await _classify(pki, "future", now=pki.lab.start + timedelta(days=20), check_revocation=False)
    assert later.status == ChainStatus.Valid


async def test_expired_intermediate(pki):
    result = await _classify(pki, "under-old", now=pki.lab.start + timedelta(days=20))
    assert result.status == ChainStatus.CertificateExpired
    assert "CN=Old Issuing CA" in result.detail


async def test_untrusted_root_foreign_and_incomplete_chain(pki):
    foreign = await _classify(pki, "rogue")
    assert foreign.status == ChainStatus.UntrustedRoot and "trusted root" in foreign.detail
    missing = await _classify(pki, "mail-cloudmonkeys", drop_intermediates=True)
    assert missing.status == ChainStatus.UntrustedRoot
    assert "incomplete chain" in missing.detail and "labsim Public Issuing CA 1" in missing.detail
    # The org's own root is trusted on-prem only.
    assert (await _classify(pki, "internal", domain=None, site=Site.EXO)).status == ChainStatus.UntrustedRoot
    # Missing intermediate *and* expired: trust is judged first, as CAPI does.
    both = await _classify(pki, "expired", drop_intermediates=True)
    assert both.status == ChainStatus.UntrustedRoot and "incomplete chain" in both.detail


async def test_self_signed(pki):
    ss = pki.issued("cmhybd01-selfsigned").cert
    kw = dict(now=pki.lab.start, known_intermediates=[], domain="cmhybd01.cloudmonkeys.xyz", fetch_crl=_no_fetch)
    trusted = await classify([ss], anchors=[*pki.trust_anchors(Site.ONPREM), ss], **kw)
    assert trusted.status == ChainStatus.ValidSelfSigned and trusted.built_chain == [ss]
    untrusted = await classify([ss], anchors=pki.trust_anchors(Site.ONPREM), **kw)
    assert untrusted.status == ChainStatus.UntrustedRoot


async def test_empty_certificate(pki):
    result = await classify([], now=pki.lab.start, anchors=pki.trust_anchors(Site.EXO),
                            known_intermediates=[], domain="x.example", fetch_crl=_no_fetch)
    assert result.status == ChainStatus.EmptyCertificate and result.built_chain == []


async def test_revoked_over_real_http(pki, crl):
    result = await _classify(pki, "revoked", _fetcher(crl))
    assert result.status == ChainStatus.Revoked
    assert "key_compromise" in result.detail.lower() or "keycompromise" in result.detail.lower()
    assert crl.requests >= 1


async def test_runtime_revocation_and_crl_cache(crl):
    pki = LabPki(_lab(), 9)
    crl.pki = pki
    cache = CrlCache()
    start = pki.lab.start
    fetch = _fetcher(crl)
    assert (await _classify(pki, "fabrikam-mx", fetch, domain=None, crl_cache=cache)).status == ChainStatus.Valid
    revoked_at = start + timedelta(minutes=5)
    pki.revoke("fabrikam-mx", revoked_at)
    crl.clock["now"] = start + timedelta(minutes=6)
    # The CA published a new CRL on revocation, but the cached one is still current...
    stale = await _classify(pki, "fabrikam-mx", fetch, domain=None, crl_cache=cache, now=crl.clock["now"])
    assert stale.status == ChainStatus.Valid and cache.hits >= 1
    # ...while a client without that cache sees the revocation at once.
    fresh = await _classify(pki, "fabrikam-mx", fetch, domain=None, now=crl.clock["now"])
    assert fresh.status == ChainStatus.Revoked
    # After the cached CRL's nextUpdate the cache refetches.
    crl.clock["now"] = start + pki.crl_validity + timedelta(hours=1)
    late = await _classify(pki, "fabrikam-mx", fetch, domain=None, crl_cache=cache, now=crl.clock["now"])
    assert late.status == ChainStatus.Revoked


async def test_revocation_offline_server_down(pki, crl):
    await crl.set_mode("down")
    t0 = time.perf_counter()
    result = await _classify(pki, "revoked", _fetcher(crl))
    assert result.status == ChainStatus.RevocationOffline and "connection refused" in result.detail
    assert time.perf_counter() - t0 < 0.5
    await crl.set_mode("up")  # same port again
    assert (await _classify(pki, "mail-cloudmonkeys", _fetcher(crl))).status == ChainStatus.Valid


async def test_revocation_offline_server_hangs(pki, crl):
    await crl.set_mode("hang")
    calls: list[str] = []
    t0 = time.perf_counter()
    result = await _classify(pki, "mail-cloudmonkeys", _fetcher(crl, calls, timeout=HANG_TIMEOUT))
    elapsed = time.perf_counter() - t0
    assert result.status == ChainStatus.RevocationOffline and "timed out" in result.detail
    # One wait per unreachable CRL host, not one per certificate in the chain.
    assert len(calls) == 1 and HANG_TIMEOUT * 0.9 < elapsed < HANG_TIMEOUT + 0.5


async def test_revocation_offline_bad_or_expired_crl(pki):
    async def wrong_issuer(url: str) -> bytes:
        return pki.crl_der("org-root", pki.lab.start)

    result = await _classify(pki, "mail-cloudmonkeys", wrong_issuer)
    assert result.status == ChainStatus.RevocationOffline and "not by" in result.detail

    async def stale(url: str) -> bytes:
        return pki.crl_der(url.rsplit("/", 1)[1][:-4], pki.lab.start)

    later = pki.lab.start + pki.crl_validity + timedelta(days=1)
    result = await _classify(pki, "mail-cloudmonkeys", stale, now=later)
    assert result.status == ChainStatus.RevocationOffline and "CRL expired" in result.detail

    async def garbage(url: str) -> bytes:
        return b"<html>captive portal</html>"

    assert (await _classify(pki, "mail-cloudmonkeys", garbage)).status == ChainStatus.RevocationOffline

    async def boom(url: str) -> bytes:
        raise asyncio.TimeoutError()

    assert (await _classify(pki, "mail-cloudmonkeys", boom)).status == ChainStatus.RevocationOffline


# -- CRLs and the CRL server ------------------------------------------------------------------

def test_crl_contents_are_deterministic(pki):
    start = pki.lab.start
    a = pki.crl_der("public-issuing", start + timedelta(hours=3))
    assert a == LabPki(_lab(), 3).crl_der("public-issuing", start + timedelta(hours=5))
    crl = x509.load_der_x509_crl(a)
    assert crl.last_update_utc == start and crl.next_update_utc == start + pki.crl_validity
    assert crl.is_signature_valid(pki.ca("public-issuing").cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(pki.issued("revoked").cert.serial_number)
    assert not crl.get_revoked_certificate_by_serial_number(pki.issued("eop").cert.serial_number)
    nxt = x509.load_der_x509_crl(pki.crl_der("public-issuing", start + timedelta(days=1, hours=1)))
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert nxt.last_update_utc == start + timedelta(days=1) and number(nxt) > number(crl)


async def test_crl_server_http(pki, crl):
    der = await http_get(crl.real_ip, crl.real_port, "crl.labsim-pki.net", "/public-root.crl", 1.0)
    assert der == pki.crl_der("public-root", pki.lab.start)
    with pytest.raises(CrlUnavailable, match="HTTP 404"):
        await http_get(crl.real_ip, crl.real_port, "crl.labsim-pki.net", "/nope.crl", 1.0)
    with pytest.raises(NetworkGuardError):
        await http_get("192.0.2.80", 80, "crl.labsim-pki.net", "/public-root.crl", 1.0)
    with pytest.raises(NetworkGuardError):
        await CrlServer(pki, lambda: pki.lab.start).start("0.0.0.0", 0)
    await crl.set_mode("down")
    with pytest.raises(CrlUnavailable) as info:
        await http_get(crl.real_ip, crl.real_port, "crl.labsim-pki.net", "/public-root.crl", 1.0)
    assert info.value.reason == "connection refused"
