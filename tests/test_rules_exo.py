"""Exchange Online's rules, no sockets: tenant attribution (§7.2) and routing out of the tenant."""

from __future__ import annotations

import pytest

from labsim.rules.exo import attribute, recipient_accepted, route_exo
from labsim.topology.changes import apply_change

HYBRID_CERT = ["mail.cloudmonkeys.xyz", "autodiscover.cloudmonkeys.xyz", "smtp.cloudmonkeys.xyz"]
INTERNAL_CERT = ["CMHYBD01", "cmhybd01.cloudmonkeys.xyz"]
INBOUND = "Inbound from 8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10"


def attr(lab, names, *, valid=True, ip="27.7.57.241", mail_from="cloudmonkeys.xyz"):
    return attribute(lab.tenant, cert_names=names, cert_valid=valid, source_ip=ip, mail_from_domain=mail_from)


def test_hybrid_certificate_makes_on_prem_mail_originating(lab):
    a = attr(lab, HYBRID_CERT)
    assert (a.directionality, a.reason, a.connector.name) == ("Originating", "certificate", INBOUND)


def test_other_certificates_leave_mail_incoming(lab):
    assert attr(lab, INTERNAL_CERT).directionality == "Incoming"   # internal self-signed (seed 001 error 6)
    assert attr(lab, ["mx.fabrikam.com"]).directionality == "Incoming"
    assert attr(lab, None).directionality == "Incoming"


def test_matching_certificate_that_does_not_validate_is_incoming(lab):
    assert attr(lab, HYBRID_CERT, valid=False).directionality == "Incoming"


def test_wildcard_tls_sender_certificate_name(lab):
    apply_change(lab, "Set-InboundConnector", {"Identity": INBOUND, "TlsSenderCertificateName": "*.cloudmonkeys.xyz"})
    assert attr(lab, HYBRID_CERT).directionality == "Originating"
    assert attr(lab, ["mail.fabrikam.com"]).directionality == "Incoming"


def test_certificate_domain_must_be_an_accepted_domain_of_the_tenant(lab):
    apply_change(lab, "Set-InboundConnector", {"Identity": INBOUND, "TlsSenderCertificateName": "mx.fabrikam.com"})
    assert attr(lab, ["mx.fabrikam.com"]).directionality == "Incoming"


def test_disabled_inbound_connector_attributes_nothing(lab):
    apply_change(lab, "Set-InboundConnector", {"Identity": INBOUND, "Enabled": False})
    assert attr(lab, HYBRID_CERT).directionality == "Incoming"


def test_ip_based_connector_needs_an_accepted_mail_from_domain(lab):
    apply_change(lab, "Set-InboundConnector", {"Identity": INBOUND, "TlsSenderCertificateName": None,
                                               "SenderIPAddresses": ["27.7.57.0/24"]})
    a = attr(lab, None, ip="27.7.57.241", mail_from="cloudmonkeys.xyz")
    assert (a.directionality, a.reason) == ("Originating", "ip")
    assert attr(lab, None, ip="27.7.57.241", mail_from="fabrikam.com").directionality == "Incoming"
    assert attr(lab, None, ip="198.51.100.1", mail_from="cloudmonkeys.xyz").directionality == "Incoming"


@pytest.mark.parametrize("rcpt, kind, target", [
    ("ramki@cloudmonkeys.xyz", "mailbox", "ramki@cloudmonkeys.xyz"),
    ("Ramki@cloudfield.mail.onmicrosoft.com", "mailbox", "ramki@cloudmonkeys.xyz"),   # proxy address
    ("raghu@cloudmonkeys.xyz", "connector", "raghu@cloudmonkeys.xyz"),               # synced mail user
    ("alex@fabrikam.com", "mx", "alex@fabrikam.com"),
])
def test_route_exo(lab, rcpt, kind, target):
    r = route_exo(lab.tenant, rcpt)
    assert (r.kind, r.recipient) == (kind, target)
    if kind == "connector":
        assert r.connector.name == "Outbound to 8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10"
        assert r.connector.smart_hosts == ["mail.cloudmonkeys.xyz"]


def test_unknown_recipient_in_an_authoritative_tenant_domain_is_rejected(lab):
    r = route_exo(lab.tenant, "nobody@cloudfield.onmicrosoft.com")
    assert r.kind == "reject"
    assert r.error == "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"


def test_disabled_outbound_connector_falls_back_to_mx(lab):
    apply_change(lab, "Set-OutboundConnector", {"Identity": "Outbound to 8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10",
                                                "Enabled": False})
    assert route_exo(lab.tenant, "raghu@cloudmonkeys.xyz").kind == "mx"


def test_recipient_accepted(lab):
    assert recipient_accepted(lab.tenant, "x@CLOUDMONKEYS.xyz")
    assert recipient_accepted(lab.tenant, "x@cloudfield.mail.onmicrosoft.com")
    assert not recipient_accepted(lab.tenant, "alex@fabrikam.com")
