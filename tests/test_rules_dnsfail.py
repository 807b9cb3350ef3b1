"""rules.dnsfail: what a failed next-hop lookup means, per product and delivery type
(docs/transport-fidelity.md §2: Exchange's SmtpOutConnection.NextHopResolutionFailed, MFI)."""

from __future__ import annotations

import pytest

from labsim.rules.dnsfail import (
    ERROR_RETRY,
    INFO_DOMAIN_NONEXISTENT,
    INFO_NO_RECORDS,
    dns_status,
    exo_dns_outcome,
    onprem_dns_outcome,
)

NXDOMAIN_NDR = "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain"
SMART_HOST_RETRY = "451 4.4.0 DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; nonexistent domain"


@pytest.mark.parametrize(("kind", "status"), [
    ("DnsNameError", INFO_DOMAIN_NONEXISTENT), ("DnsNoData", INFO_NO_RECORDS),
    ("DnsServerFailure", ERROR_RETRY), ("DnsTimeout", ERROR_RETRY),
])
def test_resolver_errors_map_to_exchange_dns_statuses(kind, status):
    assert dns_status(kind, qname="fabrikam.co", domain="fabrikam.co") == status
    assert dns_status(kind, qname="smarthost.example.net") == status


def test_nxdomain_of_an_mx_exchange_is_not_a_nonexistent_recipient_domain():
    assert dns_status("DnsNameError", qname="mx.gone.fabrikam.com", domain="fabrikam.com") == INFO_NO_RECORDS
    assert dns_status("DnsNameError", qname="Fabrikam.COM.", domain="fabrikam.com") == INFO_DOMAIN_NONEXISTENT


def test_onprem_nonexistent_domain_on_a_dns_connector_fails_at_once_with_554():
    out = onprem_dns_outcome(INFO_DOMAIN_NONEXISTENT, dns_connector=True)
    assert out.permanent and out.text == NXDOMAIN_NDR


def test_onprem_nonexistent_smart_host_or_downgraded_policy_retries_with_451():
    for out in (onprem_dns_outcome(INFO_DOMAIN_NONEXISTENT, dns_connector=False),
                onprem_dns_outcome(INFO_DOMAIN_NONEXISTENT, dns_connector=True, downgrade_dns_failures=True)):
        assert not out.permanent and out.text == SMART_HOST_RETRY


@pytest.mark.parametrize("status", [ERROR_RETRY, INFO_NO_RECORDS, "ErrorTimeout"])
@pytest.mark.parametrize("dns_connector", [True, False])
def test_onprem_other_statuses_always_retry_naming_the_status(status, dns_connector):
    out = onprem_dns_outcome(status, dns_connector=dns_connector)
    assert not out.permanent
    assert out.text == f"451 4.4.0 DNS query failed. The error was: DNS query failed with error {status}"


def test_exo_connector_retries_every_dns_failure_with_4_4_312():
    for status in (INFO_DOMAIN_NONEXISTENT, ERROR_RETRY, INFO_NO_RECORDS):
        out = exo_dns_outcome(status, connector=True, domain="cloudmonkeys.xyz", server="FE")
        assert not out.permanent and out.text == "450 4.4.312 DNS query failed"


def test_exo_mx_delivery_to_a_nonexistent_domain_fails_with_5_4_310():
    out = exo_dns_outcome(INFO_DOMAIN_NONEXISTENT, connector=False, domain="fabrikam.co",
                          server="AM0PR01MB1234.eurprd01.prod.outlook.com")
    assert out.permanent
    assert out.text == ("550 5.4.310 DNS domain fabrikam.co does not exist [Message=InfoDomainNonexistent] "
                        "[LastAttemptedServerName=fabrikam.co] [AM0PR01MB1234.eurprd01.prod.outlook.com]")
    assert not exo_dns_outcome(ERROR_RETRY, connector=False, domain="fabrikam.com", server="FE").permanent
