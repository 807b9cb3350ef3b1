"""Exchange Online's side: tenant attribution of inbound mail, and routing out of the tenant.

Sources: transport-behavior.md §7.1 (connectors), §7.2 (attribution: certificate first, then
source IP with the MAIL FROM domain; otherwise Incoming by RCPT TO; relay only for
Originating mail, else `550 5.7.64 TenantAttribution; Relay Access Denied`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..topology.model import ExoTenant, InboundConnector, OutboundConnector
from .certselect import name_matches
from .iprange import parse_range
from .routing import domain_of


@dataclass(frozen=True)
class Attribution:
    directionality: str  # "Originating" | "Incoming"
    connector: InboundConnector | None
    reason: str


def _domain_matches(pattern: str, domain: str) -> bool:
    p = pattern.lower()
    if ":" in p:
        p = p.split(":", 1)[1]
    p = p.split(";", 1)[0]
    return p == "*" or name_matches(p, domain) or p == domain


def attribute(tenant: ExoTenant, *, cert_names: list[str] | None, cert_valid: bool, source_ip: str,
              mail_from_domain: str) -> Attribution:
    """Decide whether a session's mail is the tenant's own (Originating) or Incoming."""
    accepted = {d.domain_name.lower() for d in tenant.accepted_domains}
    onprem = [c for c in tenant.inbound_connectors if c.enabled and c.connector_type == "OnPremises"]
    if cert_names and cert_valid:
        for c in onprem:
            if c.tls_sender_certificate_name and any(
                    name_matches(c.tls_sender_certificate_name, n) or name_matches(n, c.tls_sender_certificate_name)
                    for n in cert_names):
                cert_domain = c.tls_sender_certificate_name.lstrip("*.").lower()
                if any(cert_domain == a or cert_domain.endswith("." + a) for a in accepted):
                    return Attribution("Originating", c, "certificate")
    for c in onprem:
        if c.sender_ip_addresses and any(source_ip in parse_range(r) for r in c.sender_ip_addresses):
            if mail_from_domain in accepted and any(_domain_matches(s, mail_from_domain) for s in c.sender_domains):
                return Attribution("Originating", c, "ip")
    return Attribution("Incoming", None, "recipient")


@dataclass(frozen=True)
class ExoRoute:
    recipient: str
    kind: str  # "mailbox" | "connector" | "mx" | "reject"
    connector: OutboundConnector | None = None
    error: str | None = None


def _mailbox(tenant: ExoTenant, address: str):
    a = address.lower()
    for mb in tenant.mailboxes:
        if mb.primary_smtp_address.lower() == a or a in (x.lower() for x in mb.email_addresses):
            return mb
    return None


def _mail_user(tenant: ExoTenant, address: str):
    a = address.lower()
    for mu in tenant.mail_users:
        if mu.primary_smtp_address.lower() == a:
            return mu
    return None


def _outbound_for(tenant: ExoTenant, domain: str) -> OutboundConnector | None:
    matches = [c for c in tenant.outbound_connectors if c.enabled and any(
        _domain_matches(d, domain) for d in c.recipient_domains)]
    if not matches:
        return None
    return sorted(matches, key=lambda c: c.name.lower())[0]


def route_exo(tenant: ExoTenant, recipient: str) -> ExoRoute:
    """Route a recipient out of EXO: a tenant mailbox, an outbound connector, or MX."""
    mb = _mailbox(tenant, recipient)
    if mb is not None:
        return ExoRoute(recipient=mb.primary_smtp_address, kind="mailbox")
    target = recipient
    mu = _mail_user(tenant, recipient)
    if mu is not None:
        target = mu.external_email_address
    domain = domain_of(target)
    accepted = {d.domain_name.lower(): d.domain_type for d in tenant.accepted_domains}
    if accepted.get(domain) == "Authoritative" and mu is None:
        # Authoritative: EXO holds every recipient of the domain, so one it cannot resolve does not
        # exist - even if an outbound connector covers the domain (only InternalRelay passes the
        # unknown ones on; ExDocs fix-error-code-550-5-1-10-in-exchange-online).
        return ExoRoute(recipient=target, kind="reject",
                        error="550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup")
    conn = _outbound_for(tenant, domain)
    if conn is not None:
        return ExoRoute(recipient=target, kind="connector", connector=conn)
    return ExoRoute(recipient=target, kind="mx")


def recipient_accepted(tenant: ExoTenant, recipient: str) -> bool:
    return domain_of(recipient) in {d.domain_name.lower() for d in tenant.accepted_domains}
