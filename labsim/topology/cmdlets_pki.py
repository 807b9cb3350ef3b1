"""Certificate and PKI changes to the world: real Exchange cmdlets where they exist, lab verbs otherwise.

A certificate fault is a change of state, never a flag that names a symptom: a store entry loses
its private key (a botched import), a renewed duplicate is imported next to the good one, a
server's Intermediate CA store lacks a certificate, a CA's CRL distribution point stops answering,
a server's WinHTTP proxy points to a dead proxy, a root is not trusted on one side. The failure
that follows comes out of the lab's real TLS, HTTP and chain validation.

Real Exchange cmdlets: `Enable-ExchangeCertificate` (here by lab certificate name instead of
thumbprint: thumbprints are derived from the scenario's seed). `Import-ExchangeCertificate` and
`Remove-ExchangeCertificate` are in topology.changes.
Lab verbs: `Set-LabCrlServer`, `Set-LabWinHttpProxy` (what `netsh winhttp set proxy` sets),
`Set-LabServerCertificate`, `Copy-LabCertificate`, `Revoke-LabCertificate`,
`Set-LabIntermediateStore`, `Remove-LabIntermediateCertificate`, `Import-LabIntermediateCertificate`,
`New-LabCertificateAuthority`, `Set-LabCertificateAuthority`.
"""

from __future__ import annotations

from typing import Any

from ..errors import TopologyError
from .cmdlet_kit import (
    _by_name,
    _new_in,
    _pop_identity,
    _refuse_duplicate,
    _server,
    _validate,
    cmdlet,
    set_fields,
)
from .model import CaSpec, CertificateSpec, Lab, StoreEntry
from .values import winhttp_proxy

__all__: list[str] = []

_MODES = ("up", "down", "hang", "stale")


def _take(params: dict[str, Any], *names: str) -> Any:
    """Pop the first parameter named like one of `names` (case-insensitive); None if absent."""
    for k in list(params):
        if k.lower() in {n.lower() for n in names}:
            return params.pop(k)
    return None


def _required(params: dict[str, Any], where: str, *names: str) -> str:
    value = _take(params, *names)
    if value is None or str(value).strip() == "":
        raise TopologyError(where, f"-{names[0]} is required")
    return str(value)


def _no_more(params: dict[str, Any], where: str, known: str) -> None:
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: {known})")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def _store_entry(lab: Lab, params: dict[str, Any], where: str) -> tuple[Any, StoreEntry]:
    server = _server(lab, _required(params, where, "Server"), where)
    name = _required(params, where, "Certificate", "Identity")
    entries = [e for e in server.certificates if e.certificate == name]
    if not entries:
        have = ", ".join(e.certificate for e in server.certificates) or "none"
        raise TopologyError(where, f"{server.name} has no certificate {name!r} in its store (it has: {have})")
    return server, entries[-1]  # the most recently imported copy


@cmdlet("Set-LabCrlServer")
def set_lab_crl_server(lab: Lab, params: dict[str, Any]) -> str:
    """A CRL distribution point: `up`, `down` (nothing listens: refused at once), `hang` (accepts
    and never answers: every fetch waits for its timeout) or `stale` (serves a CRL whose NextUpdate
    has passed). `-Name` picks one CA's own CDP host (Network.CdpHosts); without it, the shared CDP."""
    where = "Set-LabCrlServer"
    mode = str(_required(params, where, "Mode")).lower()
    name = params.pop("Name", None)
    _no_more(params, where, "Mode, Name")
    if mode not in _MODES:
        raise TopologyError(where, f"-Mode {mode!r} is not one of {', '.join(_MODES)}")
    if name is not None and str(name).lower() != lab.network.crl_host_name.lower():
        host = next((c for c in lab.network.cdp_hosts if c.name.lower() == str(name).lower()), None)
        if host is None:
            known = ", ".join([lab.network.crl_host_name, *(c.name for c in lab.network.cdp_hosts)])
            raise TopologyError(where, f"-Name {name!r} is not a CDP host of the lab (CDP hosts: {known})")
        host.mode = mode  # type: ignore[assignment]
        return f"CRL {host.name}: {mode}"
    lab.network.crl_mode = mode  # type: ignore[assignment]
    return f"CRL {lab.network.crl_host_name}: {mode}"


@cmdlet("Set-LabWinHttpProxy")
def set_lab_winhttp_proxy(lab: Lab, params: dict[str, Any]) -> str:
    """`netsh winhttp set proxy` on a server: CryptoAPI fetches CRLs through it. `-ProxyServer ""`
    is `netsh winhttp reset proxy` (direct access)."""
    where = "Set-LabWinHttpProxy"
    server = _server(lab, _required(params, where, "Server"), where)
    proxy = _take(params, "ProxyServer", "Proxy")
    _no_more(params, where, "Server, ProxyServer")
    try:
        value = winhttp_proxy(str(proxy) if proxy else None)
    except ValueError as exc:
        raise TopologyError(f"{where} {server.name}", f"-ProxyServer: {exc}") from None
    set_fields(server, {"winhttp_proxy": value}, f"{where} {server.name}")
    return f"{server.name}: WinHTTP proxy {server.winhttp_proxy or 'direct access'}"


@cmdlet("Enable-ExchangeCertificate")
def enable_exchange_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """Add services to a certificate in a server's store (`-Services None` removes them all).

    Enabling SMTP is what lets the transport service use the private key (event 12014's text).
    """
    where = "Enable-ExchangeCertificate"
    server, entry = _store_entry(lab, params, where)
    services = _as_list(_take(params, "Services"))
    _take(params, "Force")
    _no_more(params, where, "Server, Certificate, Services, Force")
    if not services:
        raise TopologyError(where, "-Services is required (SMTP, IIS, POP, IMAP, UM, None)")
    if [s.lower() for s in services] == ["none"]:
        merged: list[str] = []
    else:
        known = {"smtp": "SMTP", "iis": "IIS", "pop": "POP", "imap": "IMAP", "um": "UM", "umcallrouter": "UMCallRouter"}
        bad = [s for s in services if s.lower() not in known]
        if bad:
            raise TopologyError(where, f"-Services {bad[0]!r} is not one of {', '.join(known.values())}, None")
        merged = list(entry.services)
        for s in services:
            if known[s.lower()] not in merged:
                merged.append(known[s.lower()])
    set_fields(entry, {"services": merged}, f"{where} {server.name}:{entry.certificate}")
    return f"{server.name}:{entry.certificate} services {','.join(merged) or 'None'}"


@cmdlet("Set-LabServerCertificate")
def set_lab_server_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """Change a store entry: `-HasPrivateKey $false` is a certificate imported without its key (a
    .cer instead of the .pfx, a botched renewal); `-Services` as stored."""
    where = "Set-LabServerCertificate"
    server, entry = _store_entry(lab, params, where)
    set_fields(entry, params, f"{where} {server.name}:{entry.certificate}")
    return f"{server.name}:{entry.certificate}"


@cmdlet("Copy-LabCertificate")
def copy_lab_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """A new certificate from an existing one (a renewal or a duplicate: same subject and issuer
    unless told otherwise, new key and serial); any CertificateSpec field may be overridden."""
    where = "Copy-LabCertificate"
    source = _by_name(lab.certificates, _pop_identity(params, where), "name", "certificate", where)
    name = _required(params, where, "Name")
    _refuse_duplicate(lab.certificates, name, where, "certificate", exact_case=True)
    data = source.model_dump(by_alias=True)
    data["Name"] = name
    data["Revoked"] = False
    fields = CertificateSpec.model_fields
    for key, value in params.items():
        alias = next((info.alias or f for f, info in fields.items()
                      if key.lower() in ((info.alias or f).lower(), f.replace("_", ""))), None)
        if alias is None:
            known = ", ".join(sorted(info.alias or f for f, info in fields.items()))
            raise TopologyError(where, f"unknown parameter -{key} (known: Identity, {known})")
        data[alias] = value
    spec = _validate(CertificateSpec, data, where)
    lab.certificates.append(spec)
    return spec.name


@cmdlet("Revoke-LabCertificate")
def revoke_lab_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """The issuing CA revokes a certificate (key compromise); its next CRL lists the serial."""
    where = "Revoke-LabCertificate"
    spec = _by_name(lab.certificates, _pop_identity(params, where), "name", "certificate", where)
    _no_more(params, where, "Identity")
    if spec.issuer == "self":
        raise TopologyError(f"{where} {spec.name}", "a self-signed certificate has no CA to revoke it")
    spec.revoked = True
    return spec.name


def _intermediate_names(lab: Lab, server: Any) -> list[str]:
    if server.intermediate_store is not None:
        return list(server.intermediate_store)
    return [c.name for c in lab.certificate_authorities if c.parent is not None]


def _check_cas(lab: Lab, names: list[str], where: str) -> None:
    known = {c.name: c for c in lab.certificate_authorities}
    for n in names:
        if n not in known:
            raise TopologyError(where, f"no lab CA {n!r} (CAs: {', '.join(known)})")
        if known[n].parent is None:
            raise TopologyError(where, f"{n!r} is a root CA; the Intermediate store holds intermediates")


@cmdlet("Set-LabIntermediateStore")
def set_lab_intermediate_store(lab: Lab, params: dict[str, Any]) -> str:
    """Exactly these intermediate CAs in a server's Intermediate Certification Authorities store."""
    where = "Set-LabIntermediateStore"
    server = _server(lab, _required(params, where, "Server"), where)
    names = _as_list(_take(params, "CertificateAuthorities", "CertificateAuthority"))
    _no_more(params, where, "Server, CertificateAuthorities")
    _check_cas(lab, names, where)
    server.intermediate_store = names
    return f"{server.name}: intermediates {', '.join(names) or 'none'}"


@cmdlet("Remove-LabIntermediateCertificate")
def remove_lab_intermediate_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """Take an intermediate CA certificate out of a server's Intermediate store (-Server, -CertificateAuthority)."""
    where = "Remove-LabIntermediateCertificate"
    server = _server(lab, _required(params, where, "Server"), where)
    name = _required(params, where, "CertificateAuthority")
    _no_more(params, where, "Server, CertificateAuthority")
    _check_cas(lab, [name], where)
    have = _intermediate_names(lab, server)
    if name not in have:
        raise TopologyError(where, f"{server.name} does not have {name!r} in its Intermediate store")
    server.intermediate_store = [n for n in have if n != name]
    return f"{server.name}: removed intermediate {name}"


@cmdlet("Import-LabIntermediateCertificate")
def import_lab_intermediate_certificate(lab: Lab, params: dict[str, Any]) -> str:
    """Put a lab intermediate CA certificate into a server's Intermediate store (-Server, -CertificateAuthority)."""
    where = "Import-LabIntermediateCertificate"
    server = _server(lab, _required(params, where, "Server"), where)
    name = _required(params, where, "CertificateAuthority")
    _no_more(params, where, "Server, CertificateAuthority")
    _check_cas(lab, [name], where)
    have = _intermediate_names(lab, server)
    server.intermediate_store = have if name in have else [*have, name]
    return f"{server.name}: imported intermediate {name}"


@cmdlet("New-LabCertificateAuthority")
def new_lab_certificate_authority(lab: Lab, params: dict[str, Any]) -> str:
    """A new lab CA (-Name -Subject [-Parent] [-TrustedBy onprem,exo,internet]): a root or an intermediate."""
    where = "New-LabCertificateAuthority"
    return _new_in(lab.certificate_authorities, CaSpec, params, where, "CA", exact_case=True).name


@cmdlet("Set-LabCertificateAuthority")
def set_lab_certificate_authority(lab: Lab, params: dict[str, Any]) -> str:
    """E.g. `-TrustedBy exo,internet`: the on-prem servers' Trusted Root store lacks this root (a
    server that has not had its root certificate updates)."""
    where = "Set-LabCertificateAuthority"
    ca = _by_name(lab.certificate_authorities, _pop_identity(params, where), "name", "CA", where)
    if "TrustedBy" in params or "trustedby" in {k.lower() for k in params}:
        key = next(k for k in params if k.lower() == "trustedby")
        params[key] = _as_list(params[key])
    set_fields(ca, params, f"{where} {ca.name}")
    return ca.name
