"""What a failed attempt becomes in Get-Queue LastError (on-prem) and in EXO's delivery report.

Expected strings are the exact texts of the seeds and of transport-behavior.md §3.1, §4.2, §4.3.
"""

from __future__ import annotations

import re

import pytest
from conftest import SEEDS

from labsim.rules import replies as R
from labsim.rules.outbound import AttemptFailure, exo_last_error, onprem_last_error

TAIL = ("Attempted failover to alternate host, but that did not succeed. Either there are no alternate hosts, "
        "or delivery failed to all alternate hosts.")


def failure(kind: str, **kw) -> AttemptFailure:
    return AttemptFailure(kind=kind, target_ip="52.101.194.15", target_port=25,
                          target_name="cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com", **kw)


def seed(name: str) -> str:
    path = next(SEEDS.glob(f"{name}_*.txt"))
    return path.read_text(encoding="utf-8")


def test_seed_004_unable_to_connect():
    text = onprem_last_error(failure("connect_timeout"))
    assert text == ('451 4.4.0 Primary target IP address responded with: "421 4.2.1 Unable to connect." '
                    'Attempted failover to alternate host, but that did not succeed. Either there are no '
                    'alternate hosts, or delivery failed to all alternate hosts.')
    # The seed quotes the same queue error with the blog's typo "deliver failed"; everything before it is verbatim.
    line = next(ln for ln in seed("004").splitlines() if ln.startswith("451 4.4.0"))
    assert line.replace("or deliver failed", "or delivery failed") == text


def test_no_credentials_looks_like_a_timeout_in_the_queue():
    """Seed 002 / KB 4495258 / supertekboy: a certificate without its private key."""
    assert onprem_last_error(failure("tls_no_credentials", status="NoCredentials")) == \
        f'451 4.4.0 Primary target IP address responded with: "421 4.4.1 Connection timed out." {TAIL}'
    assert "421 4.4.1" in seed("002")


def test_seed_003_certificate_validation_failure():
    """Seed 003 is Exchange 2010-era transport (FOPE): the failure sits in the failover text."""
    text = onprem_last_error(failure("cert_validation", status="SubjectMismatch"), exchange2010=True)
    quoted = re.search(r"“(451 4\.4\.0 .*?)”", seed("003")).group(1).replace("‘", '"').replace("’", '"')
    assert text.startswith(quoted.removesuffix("."))
    assert text.endswith(TAIL)


def test_exchange_2019_words_its_own_certificate_failure_with_the_status():
    """Microsoft Q&A 1556853 (Exchange 2019 -> EXO): `454 4.7.5 Certificate validation failure, reason:untrustedroot`."""
    assert (onprem_last_error(failure("cert_validation", status="UntrustedRoot"))
            == "454 4.7.5 Certificate validation failure, reason:untrustedroot")


def test_remote_reply_is_quoted_without_its_final_dot():
    """KB 979175's worked example."""
    text = onprem_last_error(failure("response", response="451 5.7.3 Cannot achieve Exchange Server authentication."))
    assert text == ('451 4.4.0 Primary target IP address responded with: "451 5.7.3 Cannot achieve Exchange '
                    f'Server authentication." {TAIL}')


def test_connection_refused_is_a_socket_error():
    assert onprem_last_error(failure("connect_refused")) == (
        '441 4.4.1 Error encountered while communicating with primary target IP address: "Failed to connect. '
        f'Winsock error code: 10061, Win32 error code: 10061." {TAIL}')


def test_tls_certificate_name_not_found():
    assert onprem_last_error(failure("tls_cert_not_found")) == \
        "454 4.7.5 The certificate specified in TlsCertificateName of the SendConnector could not be found."


def test_dns_failure_keeps_the_dns_text():
    detail = "451 4.4.0 DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain"
    assert onprem_last_error(failure("dns", detail=detail)) == detail
    assert R.DNS_QUERY_FAILED.format(error="SMTPSEND.DNS.NonExistentDomain") == detail


def test_exo_starttls_required_is_the_tls_blog_text():
    assert exo_last_error(failure("tls_required")) == \
        "450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail]"


@pytest.mark.parametrize("kind, text", [
    ("dns", "450 4.4.312 DNS query failed"),
    ("connect_timeout", "450 4.4.315 Connection timed out"),
    ("connect_refused", "450 4.4.316 Connection refused"),
    ("socket", "450 4.4.318 Connection was closed abruptly"),
])
def test_exo_mail_flow_intelligence_codes(kind, text):
    assert exo_last_error(failure(kind)) == text


def test_exo_certificate_failure_names_the_status():
    # Current EXO words TLS failures as 4.4.317 (seed 004: "[Message=UntrustedRoot]"; TLS-blog 2025);
    # the 2017 form was 450 4.7.320 Certificate validation failed (issue #3, rules.tls_policy).
    assert exo_last_error(failure("cert_validation", status="SubjectMismatch")) == \
        "450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch]"
    assert exo_last_error(failure("cert_validation", status="UntrustedRoot")) in seed("004")


def test_exo_reports_the_remote_reply():
    assert exo_last_error(failure("response", response="421 4.3.2 Service not available")) == \
        "450 4.4.317 Cannot connect to remote server [Message=421 4.3.2 Service not available]"


def test_reply_constants_are_the_seed_and_reference_texts():
    s001 = " ".join(seed("001").split())
    assert R.NO_MATCHING_CONNECTOR in s001
    assert "451 4.7.0 Temporary server error. PRX2" in s001
    assert R.PROXY_TEMPORARY.format(n=2) == "451 4.7.0 Temporary server error. Please try again later. PRX2"
    assert R.RELAY_DENIED == "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
    assert R.EXO_RELAY_DENIED.format(host="x").startswith("550 5.7.64 TenantAttribution; Relay Access Denied")


@pytest.mark.parametrize(("build", "response"), [
    ("2013", "421 4.4.1 Connection timed out"),       # 2013 CU23 code; KB 4495258 ("2016 or 2013")
    ("2016-early", "421 4.2.1 Unable to connect"),    # seed 004's Exchange 2016 of 2017
    ("2016", "421 4.4.1 Connection timed out"),
    ("2019", "421 4.4.1 Connection timed out"),
])
def test_own_tls_failure_is_worded_by_the_build(build, response):
    f = AttemptFailure(kind="tls_no_credentials", target_ip="198.51.100.1", target_port=25, status="NoCredentials")
    assert onprem_last_error(f, build=build) == (
        f'451 4.4.0 Primary target IP address responded with: "{response}." Attempted failover to alternate '
        "host, but that did not succeed. Either there are no alternate hosts, or delivery failed to all "
        "alternate hosts.")
    # a connection that could not be made reads the same on every build (net-port25-blocked-to-eop)
    timeout = AttemptFailure(kind="connect_timeout", target_ip="198.51.100.1", target_port=25)
    assert '"421 4.2.1 Unable to connect."' in onprem_last_error(timeout, build=build)
