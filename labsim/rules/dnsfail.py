"""What a failed next-hop lookup means for a delivery queue: retry or NDR, and in which words.

Theory of operation (docs/transport-fidelity.md §2). The resolver's outcome is first mapped to the
DNS status Exchange's own DNS client reports (`dns_status`): NXDOMAIN -> `InfoDomainNonexistent`,
NOERROR without data -> `InfoNoRecords`, SERVFAIL/REFUSED and no answer at all -> `ErrorRetry`
(`MxRequest`/`AddressRequest` turn server failures and timeouts into ErrorRetry; seed 001 error 7
quotes `DNS query failed with error ErrorRetry` for unreachable resolvers). Then one table per
product decides, with the *delivery type* as the second key:

- on-premises (`onprem_dns_outcome`, [V-code] `SmtpOutConnection.NextHopResolutionFailed`):
  a nonexistent domain on an MX-routed (DNS connector) delivery fails at once with
  `554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain`; the same on a smart-host
  delivery, or with `ErrorPolicies DowngradeDnsFailures`, is retried with
  `451 4.4.0 DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; nonexistent domain`;
  every other status is retried with `451 4.4.0 DNS query failed. The error was: DNS query failed
  with error <Status>` until the message expires.
- Exchange Online (`exo_dns_outcome`): a connector (smart host) delivery retries with
  `450 4.4.312 DNS query failed` for 24 hours ([V-doc] mail flow intelligence); an MX delivery to a
  nonexistent domain fails at once with `550 5.4.310 DNS domain <domain> does not exist
  [Message=InfoDomainNonexistent] [LastAttemptedServerName=<domain>] [<server>]` [INFERRED shape,
  from NDR parsers' fixtures]; other MX failures retry with the 4.4.312 text [INFERRED].
"""

from __future__ import annotations

from dataclasses import dataclass

INFO_DOMAIN_NONEXISTENT = "InfoDomainNonexistent"
INFO_NO_RECORDS = "InfoNoRecords"
ERROR_RETRY = "ErrorRetry"

# the resolver's error classes (net.resolver) -> Exchange's DnsStatus
_STATUS_OF_ERROR = {
    "DnsNameError": INFO_DOMAIN_NONEXISTENT,
    "DnsNoData": INFO_NO_RECORDS,
    "DnsServerFailure": ERROR_RETRY,
    "DnsTimeout": ERROR_RETRY,
}

NONEXISTENT_DOMAIN_NDR = "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain"
DNS_QUERY_FAILED = "451 4.4.0 DNS query failed. The error was: {error}"
NONEXISTENT_DOMAIN_ERROR = "SMTPSEND.DNS.NonExistentDomain; nonexistent domain"
DNS_STATUS_ERROR = "DNS query failed with error {status}"
EXO_DNS_QUERY_FAILED = "450 4.4.312 DNS query failed"
EXO_NONEXISTENT_DOMAIN = ("550 5.4.310 DNS domain {domain} does not exist [Message=InfoDomainNonexistent] "
                          "[LastAttemptedServerName={domain}] [{server}]")


@dataclass(frozen=True)
class DnsOutcome:
    """What the queue does with the failed lookup: `permanent` -> NDR now, else Retry."""

    status: str      # Exchange's DnsStatus name
    permanent: bool
    text: str        # the queue's LastError (retry) or the NDR's reply (permanent)


def dns_status(error_kind: str, *, qname: str, domain: str | None = None) -> str:
    """Exchange's DnsStatus for the resolver's `error_kind` (a net.resolver error class name).

    `domain`: for an MX-routed delivery, the recipient domain. NXDOMAIN then says the *domain*
    does not exist only when the name asked was the domain itself (its MX, or its A as the
    implicit MX); an MX whose exchange host does not exist leaves the domain without a usable
    record: `InfoNoRecords` [INFERRED from MxRequest dropping unresolvable exchanges]. For a smart
    host or a server (`domain` None) the name asked is the next hop itself."""
    status = _STATUS_OF_ERROR.get(error_kind, ERROR_RETRY)
    if (status == INFO_DOMAIN_NONEXISTENT and domain is not None
            and qname.rstrip(".").lower() != domain.rstrip(".").lower()):
        return INFO_NO_RECORDS
    return status


def onprem_dns_outcome(status: str, *, dns_connector: bool, downgrade_dns_failures: bool = False) -> DnsOutcome:
    """On-premises Hub/Edge (and a DNS-routing Front End): [V-code] NextHopResolutionFailed.

    `dns_connector`: the delivery is routed by MX (a send connector without smart hosts);
    smart-host deliveries, intra-org relays and EdgeSync connectors are never failed by DNS."""
    if status == INFO_DOMAIN_NONEXISTENT:
        if dns_connector and not downgrade_dns_failures:
            return DnsOutcome(status, True, NONEXISTENT_DOMAIN_NDR)
        return DnsOutcome(status, False, DNS_QUERY_FAILED.format(error=NONEXISTENT_DOMAIN_ERROR))
    return DnsOutcome(status, False, DNS_QUERY_FAILED.format(error=DNS_STATUS_ERROR.format(status=status)))


def exo_dns_outcome(status: str, *, connector: bool, domain: str, server: str) -> DnsOutcome:
    """Exchange Online: connector deliveries retry 24 h with 4.4.312 ([V-doc] MFI, which lists an
    expired domain among the causes, so NXDOMAIN too); MX deliveries to a nonexistent domain fail
    at once with 5.4.310 [INFERRED shape]; other MX failures retry [INFERRED]."""
    if status == INFO_DOMAIN_NONEXISTENT and not connector:
        return DnsOutcome(status, True, EXO_NONEXISTENT_DOMAIN.format(domain=domain, server=server))
    return DnsOutcome(status, False, EXO_DNS_QUERY_FAILED)
