"""What an Exchange receive connector advertises in its EHLO reply, by rule.

Source: docs/transport-fidelity.md §1.1 (decompiled Exchange 2013 CU23: `EhloOptions.CreateSmtpResponse`
for the order, `EHLOSmtpCommand.InboundProcessCommand`, `SmtpInSessionUtils.ApplyRoleBasedEhloOptionsOverrides`
and `ShadowRedundancyManager.SetSmtpInEhloOptions` for which keyword appears), checked against the
real replies QAZ (2016 Default Frontend, before/after STARTTLS) and JPB (2019 Front End, no usable
certificate). The reply is a function of the listening role, the connector's authentication
mechanisms and the session's security state; nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["FrontEnd", "Hub", "MailboxDelivery", "Edge"]

# EhloOptions.CreateSmtpResponse: the fixed order of the keywords [V-code].
EHLO_ORDER = (
    "SIZE", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "X-ANONYMOUSTLS", "AUTH", "X-EXPS",
    "X-EXCHANGEAUTH", "8BITMIME", "BINARYMIME", "CHUNKING", "XEXCH50", "SMTPUTF8", "XLONGADDR", "XORAR",
    "XRDST", "XSHADOW", "XSHADOWREQUEST", "XOORG", "XPROXY", "XPROXYFROM", "XPROXYTO", "X-MESSAGECONTEXT",
    "XSESSIONPARAMS", "XATTR", "XSYSPROBE", "XMSGID", "XORIGFROM",
)


@dataclass(frozen=True)
class EhloInputs:
    """What decides the keywords: the service that listens, its connector, the session's state."""

    role: Role
    auth: frozenset[str]  # the connector's AuthMechanism values (Tls, BasicAuth, ExchangeServer, ...)
    max_message_size: int
    certificate: bool = True  # a certificate for STARTTLS was found for the connector's FQDN
    internal_certificate: bool = True  # anonymous TLS is possible (the internal transport certificate)
    secure: bool = False  # STARTTLS or X-ANONYMOUSTLS done
    anonymous_tls: bool = False  # secured by X-ANONYMOUSTLS (not STARTTLS)
    capabilities: frozenset[str] = frozenset()  # TlsDomainCapabilities granted to this session
    smtputf8: bool = True  # SmtpUtf8Enabled: on in 2019 [V-obs JPB], absent in 2016 [V-obs QAZ]
    # Set-TransportConfig Xexch50Enabled [INFERRED default $true: CN's 2013 peer advertises XEXCH50].
    xexch50: bool = True
    # Shadow redundancy at E15 compatibility (no Exchange 2010 in the org): XSHADOWREQUEST, not XSHADOW.
    shadow_redundancy: bool = True
    e14_compatible: bool = False
    enable_gssapi: bool = False  # EnableAuthGSSAPI (off by default)


def is_bridgehead(role: Role) -> bool:
    """TransportServerConfiguration: every transport service of a 2013+ Mailbox server; never the Edge."""
    return role != "Edge"


def ehlo_keywords(e: EhloInputs) -> list[str]:
    """The keywords after `<fqdn> Hello [<ip>]`, in EhloOptions order (docs/transport-fidelity.md §1.1)."""
    auth = e.auth
    exchange = "ExchangeServer" in auth
    authoritative = exchange or "ExternalAuthoritative" in auth
    bridgehead = is_bridgehead(e.role)
    after_anon = e.secure and e.anonymous_tls
    kw = [f"SIZE {e.max_message_size}", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES"]
    if not e.secure and "Tls" in auth and e.certificate:
        kw.append("STARTTLS")
    if not e.secure and exchange and e.internal_certificate:
        kw.append("X-ANONYMOUSTLS")
    mechs = []
    if "Integrated" in auth:
        mechs += (["GSSAPI"] if e.enable_gssapi else []) + ["NTLM"]
    if "BasicAuth" in auth and (e.secure or "BasicAuthRequireTLS" not in auth):
        mechs.append("LOGIN")
    if mechs:
        kw.append("AUTH " + " ".join(mechs))
    if exchange:
        exps = (["EXCHANGEAUTH"] if bridgehead and after_anon else []) + (["GSSAPI"] if bridgehead else []) + ["NTLM"]
        kw.append("X-EXPS " + " ".join(exps))
        if "EXCHANGEAUTH" in exps:
            kw.append("X-EXCHANGEAUTH SHA256")
    kw += ["8BITMIME", "BINARYMIME", "CHUNKING"]
    if e.xexch50 and authoritative and e.role != "FrontEnd":
        kw.append("XEXCH50")
    if e.smtputf8:
        kw.append("SMTPUTF8")
    if bridgehead and exchange:
        kw.append("XRDST")
    if e.shadow_redundancy and authoritative and e.role in ("Hub", "Edge"):
        kw.append("XSHADOW" if e.e14_compatible else "XSHADOWREQUEST")
    if "AcceptOorgProtocol" in e.capabilities:
        kw.append("XOORG")
    if after_anon:
        kw.append("XPROXY")
        if e.role in ("Hub", "FrontEnd"):
            kw.append("XPROXYFROM")
        if e.role == "FrontEnd":
            kw.append("XPROXYTO XRSETPROXYTO")
        if e.role == "MailboxDelivery":
            kw.append("XSESSIONPARAMS MDBGUID TYPE")
        kw.append("XSYSPROBE")
        if e.role == "MailboxDelivery":
            kw.append("XMSGID")
        kw.append("XORIGFROM")
    return kw


def offered(ehlo_text_lines: list[str]) -> dict[str, list[str]]:
    """The keywords of a peer's EHLO reply (its lines after the greeting): keyword -> its arguments."""
    out: dict[str, list[str]] = {}
    for line in ehlo_text_lines:
        parts = line.split()
        if parts:
            out[parts[0].upper()] = [p.upper() for p in parts[1:]]
    return out
