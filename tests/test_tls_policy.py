"""rules.tls_policy: Exchange's TLS decisions as plain functions (no sockets, no lab).

Sources: transport-behavior.md §2.3 (TlsAuthLevel, RequireTLS, opportunistic fallback), §1.3
(TlsDomainCapabilities), §4.3 (EXO's reasons), §5 (events); seeds 000-004.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import SEEDS
from hypothesis import given
from hypothesis import strategies as st

from labsim.rules.certselect import CertView
from labsim.rules.tls_policy import (
    CAPABILITY_STATUS,
    Step,
    TlsPlan,
    after_ehlo,
    capability_outcome,
    event_source,
    exo_certificate_attributes,
    exo_connector_plan,
    exo_mx_plan,
    exo_tls_error,
    fallback_after,
    plain_retry,
    receive_certificate_events,
    send_connector_plan,
    send_failure_event,
    server_certificate_ok,
    validation_domain,
)
from labsim.topology.defaults import HYBRID_CERT_NAME, PUBLIC_ISSUING, default_lab
from labsim.topology.model import OutboundConnector, SendConnector

NOW = datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc)
STATUSES = ["Valid", "ValidSelfSigned", "EmptyCertificate", "SubjectMismatch", "UntrustedRoot",
            "CertificateExpired", "Revoked", "RevocationOffline", "NoRevocationCheck"]


def view(key: str, *, subject: str = "CN=mail.cloudmonkeys.xyz", names=("mail.cloudmonkeys.xyz",),
         na_days: int = 300, key_present: bool = True, index: int = 0) -> CertView:
    return CertView(key=key, index=index, subject=subject, issuer=PUBLIC_ISSUING, names=tuple(names),
                    not_before=NOW - timedelta(days=30), not_after=NOW + timedelta(days=na_days),
                    has_private_key=key_present, self_signed=False, thumbprint=key.upper())


def hcw_connector() -> SendConnector:
    return next(sc for sc in default_lab().organization.send_connectors if sc.name == "Outbound to Office 365")


# --- send connectors ---------------------------------------------------------------------------------

def test_hcw_connector_plan_requires_domain_validation_with_the_named_certificate():
    plan = send_connector_plan(hcw_connector(), [view("good")], server_fqdn="cmhybd01.cloudmonkeys.xyz",
                               recipient_domain="cloudfield.mail.onmicrosoft.com", now=NOW)
    assert plan.require and plan.attempt and not plan.fallback
    assert plan.auth_level == "DomainValidation" and plan.domain == "mail.protection.outlook.com"
    assert plan.client_cert == "good" and not plan.cert_not_found
    assert validation_domain(plan) == "mail.protection.outlook.com"


def test_tls_certificate_name_that_matches_nothing_valid_is_not_found():
    expired = view("old", na_days=-1)
    plan = send_connector_plan(hcw_connector(), [expired], server_fqdn="x", recipient_domain="d", now=NOW)
    assert plan.cert_not_found and plan.client_cert is None
    assert after_ehlo(plan, True) == Step.FAIL_CERT_NOT_FOUND
    assert after_ehlo(plan, False) == Step.FAIL_CERT_NOT_FOUND  # RequireTLS: fails either way


def test_renewed_duplicate_without_key_is_the_one_presented():
    """Seed 004: latest expiry wins among same issuer+subject, the key is not checked."""
    good, renewed = view("good", na_days=300), view("renewed", na_days=395, key_present=False, index=2)
    plan = send_connector_plan(hcw_connector(), [good, renewed], server_fqdn="x", recipient_domain="d", now=NOW)
    assert plan.client_cert == "renewed"


def test_plain_connector_is_opportunistic_and_uses_the_recipient_domain():
    sc = SendConnector(name="Internet", address_spaces=["*"], fqdn="mail.cloudmonkeys.xyz")
    plan = send_connector_plan(sc, [view("c")], server_fqdn="cmhybd01.cloudmonkeys.xyz",
                               recipient_domain="fabrikam.com", now=NOW)
    assert not plan.require and plan.auth_level is None and plan.fallback
    assert plan.domain == "fabrikam.com" and plan.client_cert == "c"  # by the connector's Fqdn
    assert after_ehlo(plan, False) == Step.PLAIN
    assert server_certificate_ok(plan, "UntrustedRoot")  # no checks without an auth level


def test_ignore_starttls_never_sends_starttls():
    sc = SendConnector(name="x", address_spaces=["*"], ignore_starttls=True)
    plan = send_connector_plan(sc, [], server_fqdn="h", recipient_domain="d", now=NOW)
    assert after_ehlo(plan, True) == Step.PLAIN


@pytest.mark.parametrize("level", ["CertificateValidation", "DomainValidation"])
@pytest.mark.parametrize("status", STATUSES)
def test_checked_levels_accept_only_valid(level, status):
    plan = TlsPlan(require=True, auth_level=level, domain="mail.protection.outlook.com")
    assert server_certificate_ok(plan, status) is (status == "Valid")
    assert validation_domain(plan) == ("mail.protection.outlook.com" if level == "DomainValidation" else None)


@pytest.mark.parametrize("status", STATUSES)
def test_encryption_only_accepts_anything(status):
    assert server_certificate_ok(TlsPlan(require=True, auth_level="EncryptionOnly"), status)


def test_fallback_only_for_opportunistic_tls_and_a_remote_handshake_failure():
    opportunistic, required = TlsPlan(), TlsPlan(require=True, fallback=False)
    assert fallback_after(opportunistic, "tls_failed")
    assert not fallback_after(opportunistic, "tls_no_credentials")  # KB 4495258: mail stays queued
    assert not fallback_after(opportunistic, "cert_validation")
    assert not fallback_after(required, "tls_failed")
    plain = plain_retry(opportunistic)
    assert after_ehlo(plain, True) == Step.PLAIN and not fallback_after(plain, "tls_failed")


@given(attempt=st.booleans(), require=st.booleans(), offered=st.booleans(), not_found=st.booleans())
def test_after_ehlo_properties(attempt, require, offered, not_found):
    step = after_ehlo(TlsPlan(attempt=attempt, require=require, cert_not_found=not_found), offered)
    if step == Step.STARTTLS:
        assert attempt and offered and not not_found
    if step == Step.PLAIN:
        assert not require  # RequireTLS never goes on in the clear
    if require and not (attempt and offered):
        assert step in (Step.FAIL_TLS_REQUIRED, Step.FAIL_CERT_NOT_FOUND)


# --- EXO ------------------------------------------------------------------------------------------

def test_exo_connector_plans():
    conn = OutboundConnector(name="o", smart_hosts=["mail.cloudmonkeys.xyz"], tls_settings="DomainValidation")
    plan = exo_connector_plan(conn, "eop")
    assert plan.require and plan.domain == "mail.cloudmonkeys.xyz" and plan.sni == "mail.cloudmonkeys.xyz"
    opportunistic = exo_connector_plan(OutboundConnector(name="o", smart_hosts=["h"], tls_settings=None), "eop")
    assert not opportunistic.require and opportunistic.fallback
    assert exo_mx_plan("eop") == TlsPlan(client_cert="eop")


def test_exo_reasons_are_the_seed_texts():
    seed004 = next(SEEDS.glob("004_*.txt")).read_text(encoding="utf-8")
    assert exo_tls_error("cert_validation", "UntrustedRoot") in seed004
    text = exo_tls_error("cert_validation", "SubjectMismatch", expected="mail.cloudmonkeys.xyz",
                         presented="CN=cmedge01.cloudmonkeys.xyz", thumbprint="AB12")
    # TLS-blog's modern form; seed 001 error 6 names the same three facts.
    assert text == ("450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected Subject: "
                    "mail.cloudmonkeys.xyz. Presented Subject: CN=cmedge01.cloudmonkeys.xyz. Thumbprint: AB12.]")
    assert exo_tls_error("tls_required") == \
        "450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail]"
    assert exo_tls_error("response") is None


@pytest.mark.parametrize("status", STATUSES)
def test_only_a_valid_certificate_attributes_a_session(status):
    assert exo_certificate_attributes(status) is (status == "Valid")


# --- TlsDomainCapabilities --------------------------------------------------------------------------

CAPS = ["mail.protection.outlook.com:AcceptCloudServicesMail"]
EOP_NAMES = ["mail.protection.outlook.com", "*.mail.protection.outlook.com", "*.outbound.protection.outlook.com"]


def test_capability_granted_to_a_valid_eop_certificate():
    out = capability_outcome(CAPS, EOP_NAMES, "Valid")
    assert out.granted == {"AcceptCloudServicesMail"} and out.failed_spec is None
    assert (out.log_capabilities, out.log_status, out.log_domain) == \
        ("AcceptCloudServicesMail", "Success", "mail.protection.outlook.com")


@pytest.mark.parametrize("status", ["RevocationOffline", "UntrustedRoot", "Revoked", "CertificateExpired"])
def test_capability_failure_is_event_11022(status):
    out = capability_outcome(["mail.protection.outlook.com:AcceptOorgProtocol"], EOP_NAMES, status)
    assert not out.granted and out.failure_status == status
    assert out.failed_spec == "mail.protection.outlook.com:AcceptOorgProtocol"
    assert out.log_status == CAPABILITY_STATUS["validation_failed"] and out.log_domain == "mail.protection.outlook.com"


def test_no_certificate_and_other_names():
    assert capability_outcome(CAPS, None, None).log_status == "NoRemoteCertificate"  # [REAL: QAZ]
    other = capability_outcome(CAPS, ["cmedge01.cloudmonkeys.xyz"], "ValidSelfSigned")
    assert other.log_status == CAPABILITY_STATUS["domain_mismatch"] and other.failed_spec is None
    two = capability_outcome(["mail.protection.outlook.com:AcceptOorgProtocol,AcceptCloudServicesMail"],
                             EOP_NAMES, "Valid")
    assert two.granted == {"AcceptOorgProtocol", "AcceptCloudServicesMail"}


# --- events -----------------------------------------------------------------------------------------

def test_send_failure_events():
    assert send_failure_event("tls_required", connector="C", domain="d", remote="r").event_id == 2015
    ev = send_failure_event("cert_validation", connector="C", domain="d", remote="r", status="UntrustedRoot",
                            auth_level="DomainValidation")
    assert ev.event_id == 2022 and ev.strings == ("UntrustedRoot", "C", "DomainValidation", "d")
    assert send_failure_event("tls_no_credentials", connector="C", domain="d", remote="r") is None


def test_receive_certificate_events():
    none = receive_certificate_events(connector="Default Frontend CMHYBD01", tls_certificate_name=HYBRID_CERT_NAME,
                                      fqdn="cmhybd01.cloudmonkeys.xyz", selected=None, expired=[], hours_left=None)
    assert [(e.event_id, e.strings) for e in none] == [
        (12014, (HYBRID_CERT_NAME, "Default Frontend CMHYBD01", HYBRID_CERT_NAME))]
    expired = receive_certificate_events(connector="C", tls_certificate_name=None, fqdn="mail.cloudmonkeys.xyz",
                                         selected=None, expired=[view("old", na_days=-2)], hours_left=None)
    assert [e.event_id for e in expired] == [12016, 12014] and expired[0].strings == ("mail.cloudmonkeys.xyz",)
    soon = receive_certificate_events(connector="C", tls_certificate_name=None, fqdn="f", selected=view("s"),
                                      expired=[], hours_left=100)
    assert [(e.event_id, e.strings) for e in soon] == [(12018, ("CN=mail.cloudmonkeys.xyz", "S", "100"))]


def test_event_sources():
    assert event_source("Mailbox", "FrontEnd") == "MSExchangeFrontEndTransport"
    assert event_source("Mailbox", "Hub") == "MSExchangeTransport"
    assert event_source("Edge", "FrontEnd") == "MSExchangeTransport"
