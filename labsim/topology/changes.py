"""Changes to the world, written the way an admin would: Exchange cmdlets and a few lab verbs.

A scenario describes its fault as changes (`Set-ReceiveConnector ... -Fqdn x`, `Set-LabDnsRecord`,
`Set-LabCertificate -Revoked $true`); the fix is the same kind of change. Each cmdlet is a plain
function over the topology that mutates it in place (so a running lab sees the change) and
validates with Exchange's own rules; a bad change raises `TopologyError` naming the cmdlet, the
identity and the parameter.

Parameters accept Exchange's PascalCase names (or snake_case).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import TopologyError
from .cmdlet_kit import (
    CMDLET_NAMES,
    CMDLETS,
    Handler,
    _by_name,
    _error_text,
    _field_name_or_none,
    _new_in,
    _pop_identity,
    _receive_connector,
    _remove_in,
    _server,
    _set_in,
    _validate,
    cmdlet,
    set_fields,
)
from .model import (
    EDGE_RECEIVE_DEFAULTS,
    AcceptedDomain,
    CertificateSpec,
    DnsRecord,
    InboundConnector,
    Lab,
    OutboundConnector,
    ReceiveConnector,
    SendConnector,
    StoreEntry,
)


@cmdlet("Set-ReceiveConnector")
def set_receive_connector(lab: Lab, params: dict[str, Any]) -> str:
    """Set-ReceiveConnector -Identity SERVER\\Name with Exchange's parameters."""
    where = "Set-ReceiveConnector"
    identity = _pop_identity(params, where)
    server, rc = _receive_connector(lab, identity, f"{where} {identity}")
    set_fields(rc, params, f"{where} {identity}")
    return f"{server.name}\\{rc.name}"


@cmdlet("New-ReceiveConnector")
def new_receive_connector(lab: Lab, params: dict[str, Any]) -> str:
    """New-ReceiveConnector -Server X -Name ... with Exchange's parameters (Bindings, RemoteIPRanges, ...)."""
    where = "New-ReceiveConnector"
    server_name = next((str(params.pop(k)) for k in list(params) if k.lower() == "server"), None)
    if server_name is None:
        raise TopologyError(where, "-Server is required")
    server = _server(lab, server_name, where)
    if server.role == "Edge":  # an Edge's connectors have shorter timeouts by default
        given = {_field_name_or_none(ReceiveConnector, k) for k in params}
        for key, value in EDGE_RECEIVE_DEFAULTS.items():
            if _field_name_or_none(ReceiveConnector, key) not in given:
                params[key] = value
    rc = _validate(ReceiveConnector, params, where)
    if any(x.name.lower() == rc.name.lower() for x in server.receive_connectors):
        raise TopologyError(where, f"{server.name} already has a receive connector named {rc.name!r}")
    server.receive_connectors.append(rc)
    return f"{server.name}\\{rc.name}"


@cmdlet("Remove-ReceiveConnector")
def remove_receive_connector(lab: Lab, params: dict[str, Any]) -> str:
    """Remove-ReceiveConnector -Identity SERVER\\Name."""
    where = "Remove-ReceiveConnector"
    identity = _pop_identity(params, where)
    server, rc = _receive_connector(lab, identity, f"{where} {identity}")
    server.receive_connectors.remove(rc)
    return identity


@cmdlet("Set-SendConnector")
def set_send_connector(lab: Lab, params: dict[str, Any]) -> str:
    """Set-SendConnector -Identity Name with Exchange's parameters."""
    return _set_in(lab.organization.send_connectors, params, "Set-SendConnector", "send connector").name


@cmdlet("New-SendConnector")
def new_send_connector(lab: Lab, params: dict[str, Any]) -> str:
    """New-SendConnector -Name -AddressSpaces ... (SmartHosts or DNS routing, TLS settings, SourceTransportServers)."""
    return _new_in(lab.organization.send_connectors, SendConnector, params, "New-SendConnector", "send connector").name


@cmdlet("Remove-SendConnector")
def remove_send_connector(lab: Lab, params: dict[str, Any]) -> str:
    """Remove-SendConnector -Identity Name."""
    return _remove_in(lab.organization.send_connectors, params, "Remove-SendConnector", "send connector")


def _service(lab: Lab, params: dict[str, Any], where: str, frontend: bool) -> str:
    identity = _pop_identity(params, where)
    server = _server(lab, identity, f"{where} {identity}")
    cfg = server.frontend if frontend else server.transport
    if cfg is None:
        raise TopologyError(f"{where} {identity}", "this server has no Front End Transport service")
    set_fields(cfg, params, f"{where} {identity}")
    return server.name


@cmdlet("Set-TransportService")
def set_transport_service(lab: Lab, params: dict[str, Any]) -> str:
    """Set-TransportService -Identity SERVER: DNS servers, retry/expiry intervals, intra-org logging,
    outbound connection limits."""
    return _service(lab, params, "Set-TransportService", frontend=False)


@cmdlet("Set-FrontendTransportService")
def set_frontend_transport_service(lab: Lab, params: dict[str, Any]) -> str:
    """Set-FrontendTransportService -Identity SERVER: DNS servers and adapter use, intra-org logging."""
    return _service(lab, params, "Set-FrontendTransportService", frontend=True)


@cmdlet("Set-AcceptedDomain")
def set_accepted_domain(lab: Lab, params: dict[str, Any]) -> str:
    """Set-AcceptedDomain -Identity -DomainType Authoritative|InternalRelay|ExternalRelay (on-prem)."""
    return _set_in(lab.organization.accepted_domains, params, "Set-AcceptedDomain", "accepted domain").name


@cmdlet("New-AcceptedDomain")
def new_accepted_domain(lab: Lab, params: dict[str, Any]) -> str:
    """New-AcceptedDomain -Name -DomainName [-DomainType Authoritative|InternalRelay|ExternalRelay]."""
    ad = _validate(AcceptedDomain, params, "New-AcceptedDomain")  # no duplicate check for accepted domains
    lab.organization.accepted_domains.append(ad)
    return ad.name


@cmdlet("Set-InboundConnector")
def set_inbound_connector(lab: Lab, params: dict[str, Any]) -> str:
    """EXO Set-InboundConnector: TlsSenderCertificateName, SenderIPAddresses, RequireTls, Enabled, ..."""
    c: InboundConnector = _set_in(lab.tenant.inbound_connectors, params, "Set-InboundConnector", "inbound connector")
    return c.name


@cmdlet("Set-OutboundConnector")
def set_outbound_connector(lab: Lab, params: dict[str, Any]) -> str:
    """EXO Set-OutboundConnector: SmartHosts, UseMXRecord, TlsSettings, TlsDomain, RecipientDomains, ..."""
    c: OutboundConnector = _set_in(lab.tenant.outbound_connectors, params, "Set-OutboundConnector",
                                   "outbound connector")
    return c.name


def _dns_zone(lab: Lab, params: dict[str, Any], where: str):
    server_name = next((str(params.pop(k)) for k in list(params) if k.lower() == "server"), None)
    if server_name is None:
        raise TopologyError(where, "-Server is required (the DNS server, e.g. DC01 or PUBLIC-DNS)")
    server = _by_name(lab.dns_servers, server_name, "name", "DNS server", where)
    zone_name = next((str(params.pop(k)) for k in list(params) if k.lower() == "zonename"), None)
    if zone_name is None:
        raise TopologyError(where, "-ZoneName is required")
    zone = _by_name(server.zones, zone_name, "name", f"zone on {server.name}", where)
    return server, zone


@cmdlet("Set-LabDnsRecord")
def set_lab_dns_record(lab: Lab, params: dict[str, Any]) -> str:
    """Replace every record of (Name, Type) in a zone by the given value (or add it)."""
    where = "Set-LabDnsRecord"
    server, zone = _dns_zone(lab, params, where)
    rec = _validate(DnsRecord, params, where)
    zone.records[:] = [r for r in zone.records if not (r.name.lower() == rec.name.lower() and r.type == rec.type)]
    zone.records.append(rec)
    return f"{server.name}:{rec.name}/{rec.type}"


@cmdlet("Remove-LabDnsRecord")
def remove_lab_dns_record(lab: Lab, params: dict[str, Any]) -> str:
    """Remove the records of -Name (and -Type) from a zone on a lab DNS server (-Server, -ZoneName)."""
    where = "Remove-LabDnsRecord"
    server, zone = _dns_zone(lab, params, where)
    name = next((str(params.pop(k)) for k in list(params) if k.lower() == "name"), None)
    rtype = next((str(params.pop(k)).upper() for k in list(params) if k.lower() == "type"), None)
    if name is None:
        raise TopologyError(where, "-Name is required")
    before = len(zone.records)
    zone.records[:] = [r for r in zone.records
                       if not (r.name.lower() == name.lower() and (rtype is None or r.type == rtype))]
    if len(zone.records) == before:
        raise TopologyError(where, f"no record {name} {rtype or ''} in zone {zone.name} on {server.name}")
    return f"{server.name}:{name}"


@cmdlet("New-LabCertificate")
def new_lab_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """Define a certificate (issued by a lab CA, or self-signed)."""
    return _new_in(lab.certificates, CertificateSpec, params, "New-LabCertificate", "certificate", exact_case=True).name


@cmdlet("Set-LabCertificate")
def set_lab_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """Change a certificate's definition (-Identity name): validity, subject, SANs, Revoked, usages."""
    return _set_in(lab.certificates, params, "Set-LabCertificate", "certificate").name


@cmdlet("Import-ExchangeCertificate")
def import_exchange_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """Put a lab certificate into a server's personal store (at the end, as Windows does)."""
    where = "Import-ExchangeCertificate"
    server_name = next((str(params.pop(k)) for k in list(params) if k.lower() == "server"), None)
    if server_name is None:
        raise TopologyError(where, "-Server is required")
    server = _server(lab, server_name, where)
    entry = _validate(StoreEntry, params, where)
    if entry.certificate not in {c.name for c in lab.certificates}:
        raise TopologyError(where, f"certificate {entry.certificate!r} is not defined (New-LabCertificate first)")
    server.certificates.append(entry)
    return f"{server.name}:{entry.certificate}"


@cmdlet("Remove-ExchangeCertificate")
def remove_exchange_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """Remove a certificate from a server's personal store (-Server, -Certificate)."""
    where = "Remove-ExchangeCertificate"
    server_name = next((str(params.pop(k)) for k in list(params) if k.lower() == "server"), None)
    cert = next((str(params.pop(k)) for k in list(params) if k.lower() in ("certificate", "identity")), None)
    if server_name is None or cert is None:
        raise TopologyError(where, "-Server and -Certificate are required")
    server = _server(lab, server_name, where)
    before = len(server.certificates)
    server.certificates[:] = [e for e in server.certificates if e.certificate != cert]
    if len(server.certificates) == before:
        raise TopologyError(where, f"{server.name} has no certificate {cert!r}")
    return f"{server.name}:{cert}"


def apply_change(lab: Lab, cmdlet_name: str, params: dict[str, Any]) -> str:
    """Apply one change; returns the identity it touched."""
    handler = CMDLETS.get(cmdlet_name.lower())
    if handler is None:
        raise TopologyError(cmdlet_name, f"unknown cmdlet (known: {', '.join(sorted(known_cmdlets()))})")
    before = lab.model_copy(deep=True)
    try:
        result = handler(lab, dict(params))
        Lab.model_validate(lab.model_dump())
    except ValidationError as exc:
        _restore(lab, before)
        raise TopologyError(cmdlet_name, _error_text(exc)) from None
    except TopologyError:
        _restore(lab, before)
        raise
    return result


def _restore(lab: Lab, before: Lab) -> None:
    """All or nothing: a rejected change leaves the topology as it was (not half-applied)."""
    for fname in Lab.model_fields:
        object.__setattr__(lab, fname, getattr(before, fname))


def known_cmdlets() -> list[str]:
    return sorted(CMDLET_NAMES.values())
from . import cmdlets_pki  # noqa: E402,F401,I001  (registers the certificate and PKI cmdlets)
from . import cmdlets_net  # noqa: E402,F401  (registers the network, DNS and tenant cmdlets)
from . import cmdlets_svc  # noqa: E402,F401  (registers the Windows host fault cmdlets)
from . import cmdlets_org  # noqa: E402,F401  (registers the site, server, DAG and Edge subscription cmdlets)
from . import cmdlets_build  # noqa: E402,F401  (registers Set-LabServerBuild)

__all__ = ["CMDLETS", "CMDLET_NAMES", "Handler", "apply_change", "cmdlet", "known_cmdlets", "set_fields"]
