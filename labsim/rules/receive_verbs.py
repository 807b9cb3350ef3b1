"""What an Exchange receive connector answers to the verbs around the envelope, before it acts:
HELO/EHLO, STARTTLS, X-ANONYMOUSTLS, X-EXPS EXCHANGEAUTH, AUTH, XPROXYFROM and XSESSIONPARAMS.

Plain functions over `rules.receive.ReceiveState`: each returns the refusal to send (None: go on),
or the reply and what the session takes from the argument. The policy (smtp.policy's
`ExchangeReceivePolicy`) carries out the rest: the TLS handshake, the prompts, the log rows. The
checks run in Exchange's order, named beside each (decompiled Exchange 2013 CU23, as in
rules.verbs; docs/transport-fidelity.md §1).
"""

from __future__ import annotations

from functools import lru_cache

from ..topology.model import AuthMechanism
from . import replies as R
from . import verbs as V
from .receive import ReceiveState, ehlo_keywords

AUTH_LOGIN_NOT_TLS = "Inbound ExchangeAuth negotiation failed because connection is not TLS"


@lru_cache(maxsize=256)  # every session's EHLO names, twice a session: a pure function of the text
def valid_helo_domain(arg: str) -> bool:
    """A domain name or an address literal ([192.0.2.1], [IPv6:...]): what EHLO/HELO accept.

    Exchange's HeloSmtpCommandParser.IsValidHeloDomain takes the whole argument and asks
    RoutingAddress.IsValidDomain / IsDomainIPLiteral; the character rules here are [INFERRED]: letters
    and digits (any script), '-', '.', '_', no space, no control character, no raw byte.
    """
    text = arg.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        if inner[:5].upper() == "IPV6:":
            inner = inner[5:]
        return bool(inner) and all(c in "0123456789abcdefABCDEF:." for c in inner)
    return bool(text) and all(c.isalnum() or c in "-._" for c in text)


def helo_refusal(arg: str, *, extended: bool) -> str | None:
    """HELO/EHLO: a domain is required, and it must be a valid one."""
    if not arg:
        return R.EHLO_DOMAIN_REQUIRED if extended else R.HELO_DOMAIN_REQUIRED
    if not valid_helo_domain(arg):
        return R.INVALID_DOMAIN
    return None


def starttls_refusal(state: ReceiveState, arg: str) -> str | None:
    """StartTlsSmtpCommand: hello first, then no arguments, then offered at all, then only once."""
    if state.helo is None:
        return R.SEND_HELLO_FIRST
    if arg:
        return R.INVALID_ARGS
    if not state.starttls_available or AuthMechanism.TLS not in set(state.connector.auth_mechanism):
        return R.UNRECOGNIZED
    if state.tls:
        return R.ONE_STARTTLS
    return None


def anonymous_tls_refusal(state: ReceiveState, arg: str) -> str | None:
    """X-ANONYMOUSTLS: TLS without STARTTLS, with the internal transport (direct-trust)
    certificate, offered only on ExchangeServer connectors before the session is secure (rules.ehlo)."""
    if state.helo is None:
        return R.SEND_HELLO_FIRST
    if arg:
        return R.INVALID_ARGS
    if "X-ANONYMOUSTLS" not in ehlo_keywords(state):
        return R.UNRECOGNIZED
    return None


def exchange_auth_refusal(state: ReceiveState, words: list[str]) -> str | None:
    """X-EXPS EXCHANGEAUTH SHA256 <blob> (`words`: the argument split): offered to bridgeheads after
    X-ANONYMOUSTLS; it succeeds when the peer's direct-trust certificate is an Exchange server's of
    this organisation."""
    if state.helo is None:
        return R.SEND_HELLO_FIRST
    offered = next((k.split()[1:] for k in ehlo_keywords(state) if k.startswith("X-EXPS ")), [])
    if not words or words[0].upper() != "EXCHANGEAUTH" or "EXCHANGEAUTH" not in offered:
        return R.UNRECOGNIZED_AUTH
    if not state.authenticated_as_server or len(words) < 3:
        return R.AUTH_UNSUCCESSFUL
    return None


def auth_refusal(state: ReceiveState, mech: str) -> tuple[str, str | None] | None:
    """AuthSmtpCommandParser: hello first; no mechanism or one the connector lacks -> 504 5.7.4;
    LOGIN before STARTTLS on a BasicAuthRequireTLS connector -> the same 504 after an info row.
    Returns (the reply, the info row to log first, if any); None: the mechanism's exchange starts."""
    if state.helo is None:
        return R.SEND_HELLO_FIRST, None
    mechs = set(state.connector.auth_mechanism)
    if mech == "LOGIN" and AuthMechanism.BASIC_AUTH in mechs and not state.tls \
            and AuthMechanism.BASIC_AUTH_REQUIRE_TLS in mechs:
        return R.UNRECOGNIZED_AUTH, AUTH_LOGIN_NOT_TLS
    offered = next((k for k in ehlo_keywords(state) if k.startswith("AUTH ")), "AUTH").split()[1:]
    if mech not in offered:
        return R.UNRECOGNIZED_AUTH, None
    return None


def xproxyfrom_reply(state: ReceiveState, arg: str) -> tuple[str, dict[str, str] | None]:
    """XPROXYFROM from the Front End (SMTPAcceptXProxyFrom): the reply, and the original client for
    the next message when accepted."""
    if state.helo is None:
        return R.SEND_HELLO_FIRST, None
    if "XPROXYFROM" not in ehlo_keywords(state) or "SMTPAcceptXProxyFrom" not in state.rights:
        return R.UNRECOGNIZED, None
    parsed = V.parse_xproxyfrom(arg)
    if parsed is None:
        return R.INVALID_ARGS, None
    return V.XPROXYFROM_ACCEPTED, parsed


def xsessionparams_reply(state: ReceiveState, arg: str) -> tuple[str, str | None]:
    """XSESSIONPARAMS MDBGUID=<guid> from a Hub to Mailbox Transport Delivery
    (SMTPAcceptXSessionParams; rules.verbs.parse_xsessionparams): the reply, and the database the
    session delivers to when accepted."""
    if state.helo is None:
        return R.SEND_HELLO_FIRST, None
    offered = next((k.split()[1:] for k in ehlo_keywords(state) if k.split()[0] == "XSESSIONPARAMS"), None)
    if offered is None:
        return R.UNRECOGNIZED, None
    if "SMTPAcceptXSessionParams" not in state.rights:
        return V.NOT_AUTHORIZED, None
    mdb, error = V.parse_xsessionparams(arg, offered)
    if mdb is None:
        return error, None
    return V.XSESSIONPARAMS_OK, mdb
