"""Exchange's TLS decisions, on-premises and in Exchange Online, as plain functions over plain data.

Theory of operation. A sending session follows a `TlsPlan` made before it connects:
- `send_connector_plan` (on-prem send connectors: RequireTLS, TlsAuthLevel, TlsDomain,
  TlsCertificateName, IgnoreSTARTTLS), `intra_org_plan` (server to server inside the
  organisation), `exo_connector_plan` / `exo_mx_plan` (EXO's outbound connectors and MX delivery);
- after the EHLO reply, `after_ehlo` says STARTTLS, go on in the clear, or fail (the certificate
  TlsCertificateName names is not there; TLS required but not offered);
- after the handshake, the peer's chain is classified (pki.validate) and `server_certificate_ok`
  applies the auth level; a handshake that fails on the remote side may be retried in the clear
  (`fallback_after`) only when TLS is opportunistic.
A receiving session asks `capability_outcome` whether the client certificate earns the
TlsDomainCapabilities of the connector (event 11022 when its validation fails), and EXO asks
`exo_certificate_attributes` whether a client certificate may attribute a session to a tenant.

What each outcome is called - in Exchange's logs, replies, queue errors, EXO's reasons and the
Application log - lives in one table per kind below (`CAPABILITY_STATUS`, `exo_tls_error`,
`send_failure_event`, `receive_certificate_events`), so the same mechanism always yields the same
words. Sources: transport-behavior.md §2.3, §3, §4, §5, §7; seeds 000-004; docs/tls-and-certificates.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .certselect import CertView, by_fqdn, by_tls_certificate_name, name_matches

__all__ = [
    "TlsPlan", "Step", "send_connector_plan", "intra_org_plan", "exo_connector_plan", "exo_mx_plan",
    "after_ehlo", "validation_domain", "server_certificate_ok", "fallback_after", "plain_retry",
    "CapabilityOutcome", "CAPABILITY_STATUS", "parse_capability", "capability_outcome",
    "exo_certificate_attributes", "exo_tls_error", "send_failure_event", "EventSpec",
    "receive_certificate_events", "event_source", "OK_STATUSES",
]

OK_STATUSES = frozenset({"Valid", "ValidSelfSigned"})
_CHECKED_LEVELS = ("CertificateValidation", "DomainValidation")
# Failures of the local side: the credentials cannot be loaded, so no retry in the clear helps
# (KB 4495258: the mail stays queued even on a connector that does not require TLS). [INFERRED]
_LOCAL_TLS_FAILURES = frozenset({"tls_no_credentials"})


# --- sending ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TlsPlan:
    """How a sending session uses TLS. `client_cert` is the caller's handle (CertView.key)."""

    attempt: bool = True  # issue STARTTLS when the peer offers it
    require: bool = False  # fail when TLS cannot be established
    auth_level: str | None = None  # None/EncryptionOnly: no certificate checks
    domain: str | None = None  # the name DomainValidation checks the server certificate against
    client_cert: Any = None
    cert_not_found: bool = False  # TlsCertificateName names no certificate valid now
    fallback: bool = True  # opportunistic: retry the host without STARTTLS after a failed handshake
    sni: str | None = None


def send_connector_plan(sc: Any, certs: list[CertView], *, server_fqdn: str, recipient_domain: str,
                        now: Any) -> TlsPlan:
    """An on-prem send connector (transport-behavior.md §2.3, §3.2).

    TlsAuthLevel only applies with RequireTLS (Set-SendConnector refuses it otherwise); TlsDomain
    empty means the recipient domain. The client certificate is the TlsCertificateName one, else
    the best one for the connector's Fqdn (the server's when empty).
    """
    if sc.tls_certificate_name:
        view = by_tls_certificate_name(certs, sc.tls_certificate_name, now)
        not_found = view is None
    else:
        view = by_fqdn(certs, sc.fqdn or server_fqdn, now)
        not_found = False
    level = sc.tls_auth_level if sc.require_tls else None
    return TlsPlan(attempt=not sc.ignore_starttls, require=bool(sc.require_tls), auth_level=level,
                   domain=sc.tls_domain or recipient_domain, client_cert=view.key if view else None,
                   cert_not_found=not_found, fallback=not sc.require_tls)


def intra_org_plan(client_cert: Any) -> TlsPlan:
    """Exchange server to Exchange server: opportunistic TLS with the internal transport certificate."""
    return TlsPlan(attempt=True, client_cert=client_cert)


def exo_connector_plan(conn: Any, client_cert: Any) -> TlsPlan:
    """An EXO outbound connector with smart hosts (New-OutboundConnector -TlsSettings/-TlsDomain).

    TlsSettings $null is opportunistic TLS; any level requires TLS. DomainValidation without a
    TlsDomain checks the smart host name [INFERRED: the HCW always sets TlsDomain].
    """
    level = conn.tls_settings
    first = conn.smart_hosts[0] if conn.smart_hosts else None
    return TlsPlan(attempt=True, require=level is not None, auth_level=level,
                   domain=conn.tls_domain or first, client_cert=client_cert, fallback=level is None, sni=first)


def exo_mx_plan(client_cert: Any) -> TlsPlan:
    """EXO delivering by MX: opportunistic TLS, no certificate checks."""
    return TlsPlan(attempt=True, client_cert=client_cert)


class Step(StrEnum):
    STARTTLS = "starttls"
    PLAIN = "plain"
    FAIL_CERT_NOT_FOUND = "tls_cert_not_found"
    FAIL_TLS_REQUIRED = "tls_required"


def after_ehlo(plan: TlsPlan, starttls_offered: bool) -> Step:
    """What a sender does after the EHLO reply."""
    if plan.attempt and starttls_offered:
        return Step.FAIL_CERT_NOT_FOUND if plan.cert_not_found else Step.STARTTLS
    if plan.require:
        return Step.FAIL_CERT_NOT_FOUND if plan.cert_not_found else Step.FAIL_TLS_REQUIRED
    return Step.PLAIN


def validation_domain(plan: TlsPlan) -> str | None:
    """The name to check the server certificate against (DomainValidation only)."""
    return plan.domain if plan.auth_level == "DomainValidation" else None


def needs_validation(plan: TlsPlan) -> bool:
    return plan.auth_level in _CHECKED_LEVELS


def server_certificate_ok(plan: TlsPlan, status: str) -> bool:
    """Does the classified server chain satisfy the plan's auth level?

    CertificateValidation and DomainValidation want `Valid` (a revocation check that cannot be
    done is a failure: seed 000; expta.com 2014: "If Exchange or O365 can't read the CRL it will
    not trust the certificate"). EncryptionOnly accepts anything.
    """
    if not needs_validation(plan):
        return True
    return status == "Valid"


def fallback_after(plan: TlsPlan, failure_kind: str) -> bool:
    """Retry the same host without STARTTLS? Only for opportunistic TLS and a remote-side failure."""
    return plan.fallback and not plan.require and failure_kind not in _LOCAL_TLS_FAILURES \
        and failure_kind == "tls_failed"


def plain_retry(plan: TlsPlan) -> TlsPlan:
    return replace(plan, attempt=False, fallback=False)


# --- receiving: TlsDomainCapabilities --------------------------------------------------------------

# Status words of the `TlsDomainCapabilities='…'; Status='…'` row. [REAL: QAZ for NoRemoteCertificate;
# UNVERIFIED template for Success; INFERRED for the two failure words, see docs/tls-and-certificates.md]
CAPABILITY_STATUS = {
    "no_certificate": "NoRemoteCertificate",
    "success": "Success",
    "validation_failed": "CertificateValidationFailure",
    "domain_mismatch": "DomainMismatch",
}


@dataclass(frozen=True)
class CapabilityOutcome:
    """What the capability check grants and how it is logged; `failed_spec` is set when event 11022
    must be raised (the certificate matched a capability domain but did not validate)."""

    granted: frozenset[str]
    log_capabilities: str
    log_status: str
    log_domain: str | None = None
    failure_status: str | None = None
    failed_spec: str | None = None


def parse_capability(spec: str) -> tuple[str, frozenset[str]]:
    """`mail.protection.outlook.com:AcceptCloudServicesMail,AcceptOorgProtocol` -> (domain, caps)."""
    domain, _, caps = spec.partition(":")
    return domain.strip(), frozenset(c.strip() for c in caps.split(",") if c.strip())


def capability_outcome(capabilities: list[str], cert_names: list[str] | None,
                       chain_status: str | None) -> CapabilityOutcome:
    """TlsDomainCapabilities against the client certificate (transport-behavior.md §1.3).

    `cert_names` None: no client certificate. The first capability whose domain the certificate
    covers decides; its capabilities are granted only when the chain validated.
    """
    if not cert_names:
        return CapabilityOutcome(frozenset(), "None", CAPABILITY_STATUS["no_certificate"])
    for spec in capabilities:
        domain, caps = parse_capability(spec)
        if not any(name_matches(n, domain) for n in cert_names):
            continue
        text = ",".join(sorted(caps)) if len(caps) > 1 else next(iter(caps), "None")
        if chain_status in OK_STATUSES:
            return CapabilityOutcome(caps, text, CAPABILITY_STATUS["success"], domain)
        return CapabilityOutcome(frozenset(), "None", CAPABILITY_STATUS["validation_failed"], domain,
                                 failure_status=chain_status or "EmptyCertificate", failed_spec=spec)
    return CapabilityOutcome(frozenset(), "None", CAPABILITY_STATUS["domain_mismatch"])


# --- Exchange Online ----------------------------------------------------------------------------------

def exo_certificate_attributes(chain_status: str | None) -> bool:
    """May a client certificate attribute a session to a tenant (TlsSenderCertificateName)? Only a
    certificate that validates (Attr-blog: attribution by certificate needs a trusted cert)."""
    return chain_status == "Valid"


def exo_tls_error(kind: str, status: str | None = None, *, expected: str | None = None,
                  presented: str | None = None, thumbprint: str | None = None) -> str | None:
    """EXO's reason for a TLS failure towards a connector's host (message trace `LED=`).

    Current EXO words every TLS failure as 4.4.317 with the reason in `[Message=…]`
    (TLS-blog 2025: `[Message=SubjectMismatch Expected Subject: … Presented Subject: … Thumbprint: …]`;
    seed 004: `450 4.4.317 Cannot connect to remote server [Message=UntrustedRoot]`). The 2017 form
    `450 4.7.320 Certificate validation failed` is older. None: not a TLS failure.
    """
    head = "450 4.4.317 Cannot connect to remote server"
    if kind == "cert_validation":
        if status == "SubjectMismatch" and expected and presented:
            return (f"{head} [Message=SubjectMismatch Expected Subject: {expected}. Presented Subject: "
                    f"{presented}. Thumbprint: {thumbprint or ''}.]")
        return f"{head} [Message={status}]"
    if kind == "tls_required":
        return f"{head} [Message=451 5.7.3 STARTTLS is required to send mail]"
    if kind in ("tls_failed", "tls_no_credentials"):
        return f"{head} [Message=451 4.4.0 Security status {status or 'IllegalMessage'}]"
    return None


# --- the Application log ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventSpec:
    """An event to raise: its id and insertion strings (texts live in engine.eventlog)."""

    event_id: int
    strings: tuple[str, ...]


def event_source(role: str, service: str) -> str:
    """Front End Transport logs as MSExchangeFrontEndTransport; Transport and Edge as MSExchangeTransport
    (transport-behavior.md §5; 12014 observed with MSExchangeFrontEndTransport)."""
    return "MSExchangeFrontEndTransport" if role == "Mailbox" and service == "FrontEnd" else "MSExchangeTransport"


def send_failure_event(kind: str, *, connector: str, domain: str, remote: str, status: str | None = None,
                       auth_level: str | None = None) -> EventSpec | None:
    """2015 SmtpSendTLSRequiredFailed / 2022 SmtpSendOutboundAtTLSAuthLevelFailed (transport-behavior.md §5)."""
    if kind == "tls_required":
        return EventSpec(2015, (connector, domain, remote))
    if kind == "cert_validation":
        return EventSpec(2022, (status or "", connector, auth_level or "", domain))
    return None


def receive_certificate_events(*, connector: str, tls_certificate_name: str | None, fqdn: str,
                               selected: CertView | None, expired: list[CertView],
                               hours_left: int | None) -> list[EventSpec]:
    """Events of a receive connector's certificate lookup: 12014 (none), 12016 (expired), 12018 (soon).

    12014's %1/%3 are the TlsCertificateName when the connector has one (blackmarble), else the FQDN.
    12016's %1 is the FQDN the expired certificate was for [INFERRED: the connector FQDN when the
    certificate covers it, else the certificate's first name].
    """
    events: list[EventSpec] = []
    if selected is None:
        name = tls_certificate_name or fqdn
        if expired:
            newest = max(expired, key=lambda c: c.not_after)
            shown = fqdn if any(name_matches(n, fqdn) for n in newest.names) else (newest.names or (fqdn,))[0]
            events.append(EventSpec(12016, (shown,)))
        events.append(EventSpec(12014, (name, connector, name)))
    elif hours_left is not None:
        events.append(EventSpec(12018, (selected.subject, selected.thumbprint, str(hours_left))))
    return events
