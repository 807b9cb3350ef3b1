"""What an Exchange sender says after EHLO: the security step, XPROXYFROM, MAIL FROM's parameters, BDAT.

Source: docs/transport-fidelity.md §1.2-§1.5 (decompiled Exchange 2013 CU23:
`EHLOSmtpCommand.EvaluateOutboundAuthRequirements`, `XProxyFromSmtpCommand.OutboundFormatCommand`,
`MailSmtpCommand.FormatCommand`, `RcptSmtpCommand.SetNextStateForSuccessfulRecipients`). Plain
functions over the peer's EHLO keywords (`rules.ehlo.offered`) and the sender's own settings; the
client shell (smtp.client) only carries out what they return.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from . import replies as R


class Security(StrEnum):
    """The step after the first EHLO (or after the second one, once the session is secure)."""

    TLS_POLICY = "tls-policy"  # not Exchange server authentication: the connector's TLS plan decides (STARTTLS)
    ANONYMOUS_TLS = "X-ANONYMOUSTLS"
    EXCHANGE_AUTH = "X-EXPS EXCHANGEAUTH"
    DONE = "done"  # secure and authenticated as far as this pair goes (the Edge: by its certificate only)


@dataclass(frozen=True)
class Sender:
    """What kind of SMTP client the sending party is.

    `exchange`: Exchange's own SmtpOut (on-prem transport services, EOP) rather than a plain MTA:
    BDAT when the peer offers CHUNKING, BODY= and AUTH= on MAIL FROM. `exchange_server_auth`: the send
    connector authenticates as an Exchange server (SmartHostAuthMechanism ExchangeServer: the implicit
    intra-organization connector, the proxy connectors, EdgeSync connectors), as opposed to a
    DNS-routed or smart-host connector that uses opportunistic/required STARTTLS. `bridgehead`:
    the sending server is a 2013+ Mailbox server (the Edge is not). `mdb_guid`: see below.
    """

    exchange: bool = True
    exchange_server_auth: bool = False
    bridgehead: bool = True
    # the mailbox database the session delivers to (a Hub's SmtpDeliveryToMailbox queue: its
    # NextHopConnector is the database's GUID); said with XSESSIONPARAMS MDBGUID= after X-EXPS
    mdb_guid: str | None = None


PLAIN_MTA = Sender(exchange=False)

# Exchange's log rows for these steps [V-code AuthSmtpCommand.cs line 1046; V-obs CN].
EXCHANGEAUTH_LOGGED = "X-EXPS EXCHANGEAUTH SHA256 "  # the command as logged: the blob left out, a trailing space
# The 235's blob is never logged [V-code SmtpInSession]; the send side's row is [INFERRED] the same.
EXCHANGEAUTH_REPLY_LOGGED = "235 <authentication response>"
OUTBOUND_AUTH_FAILED = "Outbound Authentication failed with LogonDenied"
AUTH_AS_HEADER = "X-MS-Exchange-Organization-AuthAs"  # where the item's authentication status travels
ORIGINATOR_ORG_HEADER = "X-OriginatorOrg"  # the item's originator organisation (XOORG=)
XPROXYFROM_ACCEPTED = "250 XProxyFrom accepted"  # SmtpResponse.XProxyFromAccepted (no enhanced code)


def logged_command(line: str) -> str:
    """A received command as the protocol log shows it: X-EXPS without its blob (the same form the
    sender logs, `X-EXPS EXCHANGEAUTH SHA256 ` [INFERRED for the receive side: the blob is a
    credential and Exchange never logs one]); any other line unchanged."""
    if line[:7].upper() != "X-EXPS ":
        return line
    words = line.split()
    return " ".join(words[:3]) + " " if len(words) > 3 else line


def security_step(sender: Sender, peer: dict[str, list[str]], *, secure: bool, anonymous_tls: bool) -> Security:
    """EvaluateOutboundAuthRequirements for the lab's connectors.

    ExchangeServer auth: X-ANONYMOUSTLS if the peer offers it and the session is not secure; once
    secured that way, a bridgehead authenticates with X-EXPS EXCHANGEAUTH when the peer offers it,
    and the Edge (no bridgehead) is done with the direct-trust certificate alone. Any other connector
    follows its TLS plan (STARTTLS). A peer that offers no X-ANONYMOUSTLS to an ExchangeServer
    connector gets the TLS plan too [INFERRED: the lab's simplification; Exchange would try X-EXPS
    GSSAPI (Kerberos) in the clear, which the lab does not model].
    """
    if not sender.exchange_server_auth:
        return Security.TLS_POLICY
    if not secure:
        return Security.ANONYMOUS_TLS if "X-ANONYMOUSTLS" in peer else Security.TLS_POLICY
    if not anonymous_tls:
        return Security.DONE
    if sender.bridgehead and "EXCHANGEAUTH" in peer.get("X-EXPS", []):
        return Security.EXCHANGE_AUTH
    return Security.DONE


# XSESSIONPARAMS (Hub -> Mailbox Transport Delivery) [V-code AuthSmtpCommand.cs lines 1116-1120,
# XSessionParamsSmtpCommand.OutboundFormatCommand, XSessionParamsSmtpCommandParser, SmtpResponse]:
# after X-EXPS succeeded, a Hub whose queue is SmtpDeliveryToMailbox sends it once per session when
# the peer's EHLO offered `XSESSIONPARAMS MDBGUID`; the value is the GUID in "N" form (32 hex digits).
XSESSIONPARAMS_OK = "250 2.0.0 XSESSIONPARAMS OK"  # SmtpResponse.XSessionParamsOk
NOT_AUTHORIZED = "550 5.7.1 Not authorized"  # SmtpResponse.NotAuthorized (no SMTPAcceptXSessionParams)


def xsessionparams_command(sender: Sender, peer: dict[str, list[str]]) -> str | None:
    """`XSESSIONPARAMS MDBGUID=<guid N>` when this session delivers to a database the peer takes it for."""
    if sender.mdb_guid is None or "MDBGUID" not in peer.get("XSESSIONPARAMS", []):
        return None
    return f"XSESSIONPARAMS MDBGUID={sender.mdb_guid.replace('-', '').lower()}"


def parse_xsessionparams(arg: str, offered: list[str]) -> tuple[str | None, str]:
    """(the MDB GUID, "") or (None, the reply) for an XSESSIONPARAMS argument string, as
    XSessionParamsSmtpCommandParser.ParseArguments: `name=value` pairs; MDBGUID (at most 32 hex
    digits, once, required) and TYPE, each only if advertised; anything else is ignored."""
    mdb: str | None = None
    for word in arg.split():
        name, sep, value = word.partition("=")
        if not sep or not name or not value:
            return None, R.INVALID_ARGS
        key = name.upper()
        if key in ("MDBGUID", "TYPE") and key not in offered:
            return None, R.COMMAND_NOT_IMPLEMENTED
        if key == "MDBGUID":
            if mdb is not None or len(value) > 32 or not re.fullmatch(r"[0-9A-Fa-f]{32}", value):
                return None, R.INVALID_ARGS
            mdb = value.lower()
    if mdb is None:
        return None, R.INVALID_ARGS
    return mdb, ""


def uses_bdat(sender: Sender, peer: dict[str, list[str]]) -> bool:
    """BDAT whenever the peer advertised CHUNKING (Exchange's SmtpOut); a plain MTA keeps DATA."""
    return sender.exchange and "CHUNKING" in peer


def pipelines(sender: Sender, peer: dict[str, list[str]]) -> bool:
    """MAIL FROM and its RCPT TOs as one pipelined group whenever the peer advertised PIPELINING
    (Exchange's SmtpOut: a receiving Exchange server logs the sender's RCPT before its own reply to
    MAIL, docs/transport-fidelity.md §1.6a); a plain MTA waits for each reply."""
    return sender.exchange and "PIPELINING" in peer


def bdat_command(size: int) -> str:
    """The whole message in one chunk (`BDAT {0} LAST`)."""
    return f"BDAT {size} LAST"


@dataclass(frozen=True)
class ProxyFrom:
    """The Front End's inbound session a proxied message came in on."""

    session_id: int
    ip: str
    port: int
    domain: str | None  # the client's EHLO/HELO domain, if it gave one


def xproxyfrom_command(p: ProxyFrom, seqnum: int) -> str:
    """`XPROXYFROM SID= IP= PORT= DOMAIN= SEQNUM=` (XProxyFromSmtpCommand.OutboundFormatCommand).

    PERMS=/AUTHSRC= are left out: they are sent only with app.config SendNewXProxyFromArguments, and
    neither that default nor the permission bit values are known [GAP, docs/transport-fidelity.md §1.3].
    """
    parts = [f"SID={p.session_id:016X}", f"IP={p.ip}", f"PORT={p.port}"]
    if p.domain:
        parts.append(f"DOMAIN={p.domain}")
    parts.append(f"SEQNUM={seqnum}")
    return "XPROXYFROM " + " ".join(parts)


def parse_xproxyfrom(arg: str) -> dict[str, str] | None:
    """The keyword=value pairs of an XPROXYFROM argument; None unless SID, IP and PORT are there."""
    out: dict[str, str] = {}
    for tok in arg.split():
        key, sep, value = tok.partition("=")
        if not sep or not value:
            return None
        out[key.upper()] = value
    return out if {"SID", "IP", "PORT"} <= out.keys() and out["PORT"].isdigit() else None


def header_of(data: bytes, name: str) -> str | None:
    """The value of the first header `name` in the message's header block (unfolded), or None."""
    end = data.find(b"\r\n\r\n")
    head = b"\r\n" + (data if end < 0 else data[:end + 2])
    key = b"\r\n" + name.encode().lower() + b":"
    at = head.lower().find(key)
    if at < 0:
        return None
    start = at + len(key)
    stop = start
    while True:
        stop = head.find(b"\r\n", stop)
        if stop < 0:
            stop = len(head)
            break
        if head[stop + 2:stop + 3] not in (b" ", b"\t"):
            break
        stop += 2
    return " ".join(head[start:stop].decode("utf-8", "replace").split())


def body_type(data: bytes, declared: str | None = None) -> str:
    """The item's BodyType: what the client declared (BODY=), else 8BITMIME when a byte is 8-bit."""
    if declared:
        return declared.upper()
    return "7BIT" if data.isascii() else "8BITMIME"  # (isascii: every byte <= 0x7F, the test in C)


def needs_smtputf8(mail_from: str, recipients: list[str]) -> bool:
    """ShouldSendOutboundSmtpUtf8: the sender or a recipient address is not ASCII."""
    return not mail_from.isascii() or any(not r.isascii() for r in recipients)


def mail_from_params(sender: Sender, peer: dict[str, list[str]], *, size: int, auth_as: str | None,
                     body: str, oorg: str | None, smtputf8: bool) -> list[str]:
    """MAIL FROM's parameters in MailSmtpCommand.FormatCommand's order: SIZE, AUTH, (XSHADOW: E14 only),
    (ENVID/RET: DSN requests, none in the lab), BODY, XOORG, ..., SMTPUTF8.

    AUTH=<> for mail received anonymously (the item's AuthAs is Anonymous) when the peer offers any
    AUTH or X-EXPS mechanism; mail authenticated as internal carries no AUTH= parameter.
    """
    if not sender.exchange:
        return [f"SIZE={size}"]
    params = []
    if "SIZE" in peer:
        params.append(f"SIZE={size}")
    if auth_as is not None and auth_as.lower() == "anonymous" and ("AUTH" in peer or "X-EXPS" in peer):
        params.append("AUTH=<>")
    if "8BITMIME" in peer or "BINARYMIME" in peer:
        if body == "7BIT":
            params.append("BODY=7BIT")
        elif body == "8BITMIME" and "8BITMIME" in peer:
            params.append("BODY=8BITMIME")
        elif body == "BINARYMIME" and "BINARYMIME" in peer and "CHUNKING" in peer:
            params.append("BODY=BINARYMIME")
    if oorg and "XOORG" in peer:
        params.append(f"XOORG={oorg}")
    if smtputf8 and "SMTPUTF8" in peer:
        params.append("SMTPUTF8")
    return params
