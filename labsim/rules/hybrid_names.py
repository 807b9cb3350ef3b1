"""Which names the hybrid certificate must hold (seed 003, S18), and which ones it lacks.

A hybrid deployment names the on-premises organisation in several places, and each name must be on
the certificate that is presented where that name is checked:

- **Exchange Online's outbound connector** (to on-premises) with `TlsSettings DomainValidation`
  checks the certificate the on-premises server presents against its `TlsDomain` (the HCW sets it
  to the on-premises FQDN, e.g. mail.contoso.com; without a TlsDomain the lab checks the smart host
  name, rules.tls_policy.exo_connector_plan). Missing: Exchange Online defers the mail with
  `450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch ...]`
  (transport-behavior.md §5; seed 001 error 6).
- **Exchange Online's inbound connector** (from on-premises) attributes a session to the tenant when
  the certificate the on-premises send connector presents (its `TlsCertificateName`) matches the
  connector's `TlsSenderCertificateName` (transport-behavior.md §7.2). Missing: the mail is
  anonymous Internet mail to Exchange Online (`Incoming`, AuthAs Anonymous), and relaying it on to
  another domain is refused with `550 5.7.64 TenantAttribution; Relay Access Denied`.
- **Autodiscover** for every SMTP domain of the hybrid deployment: `autodiscover.<domain>` on the
  certificate the Mailbox servers' IIS presents (Learn, "Certificate requirements for hybrid
  deployments": Autodiscover as a subject alternative name; seed 003: "the SAN certificate has to
  include all used autodiscover DNS records in the SAN list", unless one domain is set as the
  Autodiscover domain with `Set-HybridConfiguration -Domains ..., "autod:<domain>"`, which the lab
  does not model). Autodiscover is HTTPS: free/busy, MailTips and the HCW itself use it, mail
  flow does not. A missing name is reported as a warning, never as a broken mail path.

A certificate with subject alternative names is matched on those names only; the subject's CN
counts only when there are none (pki.validate.certificate_names, RFC 6125 §6.4.4). Names match
case-insensitively with one-label wildcards, either side (rules.certselect.name_matches).

Pure functions over the topology; the caller says which certificate is presented where
(engine.validate_connectors reads it from the lab's own selection and sessions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..topology.model import ExoTenant, Organization, OutboundConnector
from .certselect import name_matches

__all__ = [
    "NameNeed", "SanCheck", "covers", "exo_outbound_need", "exo_inbound_needs", "hybrid_domains",
    "autodiscover_needs", "check_names",
]


@dataclass(frozen=True)
class NameNeed:
    """One name the hybrid configuration uses, who uses it, and what fails without it."""

    name: str
    used_by: str
    breaks: str
    mail_flow: bool = True  # False: Autodiscover (HTTPS), reported as a warning


@dataclass
class SanCheck:
    """A presented certificate against the names needed where it is presented."""

    where: str  # e.g. "CMHYBD01\\Default Frontend CMHYBD01 (to Exchange Online)"
    certificate: str  # subject and thumbprint
    names: tuple[str, ...]
    satisfied: list[NameNeed] = field(default_factory=list)
    missing: list[NameNeed] = field(default_factory=list)
    any_of: bool = False  # the needs are alternatives: one covered name is enough

    @property
    def ok(self) -> bool:
        """No mail-flow name is missing (Autodiscover gaps are warnings)."""
        if self.any_of:
            return bool(self.satisfied) or not any(n.mail_flow for n in self.missing)
        return not any(n.mail_flow for n in self.missing)

    @property
    def warnings(self) -> list[NameNeed]:
        return [n for n in self.missing if not n.mail_flow]


def covers(names: Sequence[str], wanted: str) -> bool:
    """Does a certificate with these names cover `wanted` (wildcards on either side)?"""
    return any(name_matches(n, wanted) or name_matches(wanted, n) for n in names)


def exo_outbound_need(conn: OutboundConnector) -> NameNeed | None:
    """The name Exchange Online checks on the on-premises certificate for this connector, if any."""
    if not conn.enabled or conn.connector_type != "OnPremises" or conn.tls_settings != "DomainValidation":
        return None
    name = conn.tls_domain or (conn.smart_hosts[0] if conn.smart_hosts else None)
    if not name:
        return None
    return NameNeed(name, f"TlsDomain of Exchange Online's outbound connector '{conn.name}' (DomainValidation)",
                    "Exchange Online defers mail to on-premises: 450 4.4.317 Cannot connect to remote server "
                    "[Message=SubjectMismatch ...]")


def exo_inbound_needs(tenant: ExoTenant) -> list[NameNeed]:
    """The TlsSenderCertificateName of every OnPremises inbound connector (any one suffices)."""
    return [NameNeed(c.tls_sender_certificate_name,
                     f"TlsSenderCertificateName of Exchange Online's inbound connector '{c.name}'",
                     "Exchange Online does not attribute on-premises mail to the tenant: it arrives as anonymous "
                     "Internet mail (Incoming), and relay through Exchange Online is refused with 550 5.7.64 "
                     "TenantAttribution; Relay Access Denied")
            for c in tenant.inbound_connectors
            if c.enabled and c.connector_type == "OnPremises" and c.tls_sender_certificate_name]


def hybrid_domains(org: Organization, tenant: ExoTenant) -> list[str]:
    """The SMTP domains both sides accept (the shared namespace), without the tenant's own
    onmicrosoft.com domains."""
    cloud = {d.domain_name.lower() for d in tenant.accepted_domains}
    return [d.domain_name.lower() for d in org.accepted_domains
            if d.domain_name.lower() in cloud and not d.domain_name.lower().endswith(".onmicrosoft.com")]


def autodiscover_needs(org: Organization, tenant: ExoTenant) -> list[NameNeed]:
    return [NameNeed(f"autodiscover.{d}", f"Autodiscover of the hybrid domain {d}",
                     "Autodiscover over HTTPS fails with a certificate name error: free/busy, MailTips and the "
                     "Hybrid Configuration Wizard (not mail flow)", mail_flow=False)
            for d in hybrid_domains(org, tenant)]


def check_names(where: str, certificate: str, names: Sequence[str], needs: Sequence[NameNeed], *,
                any_of: bool = False) -> SanCheck:
    """Split `needs` into the names the certificate covers and those it lacks."""
    check = SanCheck(where, certificate, tuple(names), any_of=any_of)
    for need in needs:
        (check.satisfied if covers(names, need.name) else check.missing).append(need)
    return check
