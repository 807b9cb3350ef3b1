"""Exchange's own verbs between servers as rules (labsim.rules.ehlo, labsim.rules.verbs).

Tables from docs/transport-fidelity.md §1.1-§1.5 (decompiled Exchange 2013 CU23, real samples);
the golden tests feed real logs (tests/golden/logs) through the rules.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import folder_rows, sessions

from labsim.rules.ehlo import EHLO_ORDER, EhloInputs, ehlo_keywords, offered
from labsim.rules.verbs import (
    EXCHANGEAUTH_LOGGED,
    OUTBOUND_AUTH_FAILED,
    PLAIN_MTA,
    ProxyFrom,
    Security,
    Sender,
    body_type,
    header_of,
    logged_command,
    mail_from_params,
    needs_smtputf8,
    parse_xproxyfrom,
    parse_xsessionparams,
    security_step,
    uses_bdat,
    xproxyfrom_command,
    xsessionparams_command,
)

GOLDEN = Path(__file__).parent / "golden" / "logs"
CN = GOLDEN / "cn-blog-smtp-send-exchange2013-authfail.log"  # a 2013 Intra-Organization send session

FRONTEND = frozenset({"Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer"})
HUB = frozenset({"Tls", "BasicAuth", "ExchangeServer", "Integrated"})
EDGE = frozenset({"Tls", "ExchangeServer"})
SIZE = 37748736


def kw(role, auth, **flags) -> str:
    return " ".join(ehlo_keywords(EhloInputs(role=role, auth=auth, max_message_size=SIZE, **flags)))


# --- EHLO per role and state (§1.1) -------------------------------------------------------------

EHLO_TABLE = [
    # QAZ (2016: no SMTPUTF8), Default Frontend before and after STARTTLS [V-obs]
    ("FrontEnd", FRONTEND, dict(smtputf8=False),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES STARTTLS X-ANONYMOUSTLS AUTH NTLM X-EXPS GSSAPI NTLM "
     "8BITMIME BINARYMIME CHUNKING XRDST"),
    ("FrontEnd", FRONTEND, dict(smtputf8=False, secure=True),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES AUTH NTLM LOGIN X-EXPS GSSAPI NTLM 8BITMIME BINARYMIME "
     "CHUNKING XRDST"),
    # JPB (2019, no usable certificate: no STARTTLS, X-ANONYMOUSTLS still there) [V-obs]
    ("FrontEnd", FRONTEND, dict(certificate=False),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES X-ANONYMOUSTLS AUTH NTLM X-EXPS GSSAPI NTLM 8BITMIME "
     "BINARYMIME CHUNKING SMTPUTF8 XRDST"),
    # Hub Default <server> (2525) before and after X-ANONYMOUSTLS [INFERRED from the rules, §1.1]
    ("Hub", HUB, {},
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES STARTTLS X-ANONYMOUSTLS AUTH NTLM LOGIN X-EXPS GSSAPI NTLM "
     "8BITMIME BINARYMIME CHUNKING XEXCH50 SMTPUTF8 XRDST XSHADOWREQUEST"),
    ("Hub", HUB, dict(secure=True, anonymous_tls=True),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES AUTH NTLM LOGIN X-EXPS EXCHANGEAUTH GSSAPI NTLM "
     "X-EXCHANGEAUTH SHA256 8BITMIME BINARYMIME CHUNKING XEXCH50 SMTPUTF8 XRDST XSHADOWREQUEST XPROXY XPROXYFROM "
     "XSYSPROBE XORIGFROM"),
    # after STARTTLS (not X-ANONYMOUSTLS): no EXCHANGEAUTH, no proxy keywords
    ("Hub", HUB, dict(secure=True),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES AUTH NTLM LOGIN X-EXPS GSSAPI NTLM 8BITMIME BINARYMIME "
     "CHUNKING XEXCH50 SMTPUTF8 XRDST XSHADOWREQUEST"),
    # Edge Default internal receive connector: no AUTH, X-EXPS NTLM only, no XRDST [INFERRED, §1.1]
    ("Edge", EDGE, {},
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES STARTTLS X-ANONYMOUSTLS X-EXPS NTLM 8BITMIME BINARYMIME "
     "CHUNKING XEXCH50 SMTPUTF8 XSHADOWREQUEST"),
    ("Edge", EDGE, dict(secure=True, anonymous_tls=True),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES X-EXPS NTLM 8BITMIME BINARYMIME CHUNKING XEXCH50 SMTPUTF8 "
     "XSHADOWREQUEST XPROXY XSYSPROBE XORIGFROM"),
    # Mailbox Transport Delivery (475) after X-ANONYMOUSTLS: XSESSIONPARAMS and XMSGID, no shadow keyword
    ("MailboxDelivery", EDGE, dict(secure=True, anonymous_tls=True),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES X-EXPS EXCHANGEAUTH GSSAPI NTLM X-EXCHANGEAUTH SHA256 "
     "8BITMIME BINARYMIME CHUNKING XEXCH50 SMTPUTF8 XRDST XPROXY XSESSIONPARAMS MDBGUID TYPE XSYSPROBE XMSGID "
     "XORIGFROM"),
    # E14 (Exchange 2010) compatibility: XSHADOW instead of XSHADOWREQUEST [V-obs CN]
    ("Hub", EDGE, dict(e14_compatible=True, internal_certificate=False),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES STARTTLS X-EXPS GSSAPI NTLM 8BITMIME BINARYMIME CHUNKING "
     "XEXCH50 SMTPUTF8 XRDST XSHADOW"),
    # a connector without ExchangeServer auth offers none of Exchange's own keywords
    ("FrontEnd", frozenset({"Tls"}), {},
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES STARTTLS 8BITMIME BINARYMIME CHUNKING SMTPUTF8"),
    # XOORG follows the AcceptOorgProtocol capability
    ("FrontEnd", frozenset({"Tls"}), dict(secure=True, capabilities=frozenset({"AcceptOorgProtocol"})),
     "SIZE 37748736 PIPELINING DSN ENHANCEDSTATUSCODES 8BITMIME BINARYMIME CHUNKING SMTPUTF8 XOORG"),
]


@pytest.mark.parametrize("role, auth, flags, expected", EHLO_TABLE)
def test_ehlo_keywords_per_role_connector_and_state(role, auth, flags, expected):
    assert kw(role, auth, **flags) == expected


@pytest.mark.parametrize("role, auth, flags, expected", EHLO_TABLE)
def test_ehlo_keywords_keep_exchanges_order(role, auth, flags, expected):
    heads = [k.split()[0] for k in ehlo_keywords(EhloInputs(role=role, auth=auth, max_message_size=SIZE, **flags))]
    ranks = [EHLO_ORDER.index(h) for h in heads]
    assert ranks == sorted(ranks)


def test_front_end_never_offers_shadow_or_xexch50():
    for secure in (False, True):
        words = kw("FrontEnd", FRONTEND, secure=secure, anonymous_tls=secure).split()
        assert not {"XEXCH50", "XSHADOW", "XSHADOWREQUEST"} & set(words)


# --- the sender's step after EHLO (§1.2) -------------------------------------------------------

BRIDGEHEAD = Sender(exchange_server_auth=True)
EDGE_SENDER = Sender(exchange_server_auth=True, bridgehead=False)
DNS_CONNECTOR = Sender(exchange_server_auth=False)
HUB_PEER = offered(ehlo_keywords(EhloInputs("Hub", HUB, SIZE)))
HUB_PEER_ANON = offered(ehlo_keywords(EhloInputs("Hub", HUB, SIZE, secure=True, anonymous_tls=True)))
EDGE_PEER_ANON = offered(ehlo_keywords(EhloInputs("Edge", EDGE, SIZE, secure=True, anonymous_tls=True)))
EOP_PEER = offered(["SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "8BITMIME",
                    "BINARYMIME", "CHUNKING", "SMTPUTF8"])
POSTFIX_PEER = offered(["PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME",
                        "DSN", "SMTPUTF8", "CHUNKING"])


@pytest.mark.parametrize("sender, peer, secure, anon, step", [
    (BRIDGEHEAD, HUB_PEER, False, False, Security.ANONYMOUS_TLS),  # Front End / Hub -> Hub
    (BRIDGEHEAD, HUB_PEER_ANON, True, True, Security.EXCHANGE_AUTH),
    (EDGE_SENDER, HUB_PEER, False, False, Security.ANONYMOUS_TLS),  # Edge -> Mailbox server
    (EDGE_SENDER, HUB_PEER_ANON, True, True, Security.DONE),  # the Edge never sends X-EXPS
    (BRIDGEHEAD, EDGE_PEER_ANON, True, True, Security.DONE),  # the Edge offers no EXCHANGEAUTH
    (DNS_CONNECTOR, HUB_PEER, False, False, Security.TLS_POLICY),  # Outbound to Office 365: STARTTLS
    (DNS_CONNECTOR, EOP_PEER, False, False, Security.TLS_POLICY),
    (BRIDGEHEAD, EOP_PEER, False, False, Security.TLS_POLICY),  # a peer without X-ANONYMOUSTLS [INFERRED]
    (PLAIN_MTA, POSTFIX_PEER, False, False, Security.TLS_POLICY),
    (BRIDGEHEAD, HUB_PEER, True, False, Security.DONE),  # secured by STARTTLS: no X-EXPS EXCHANGEAUTH
])
def test_security_step_after_ehlo(sender, peer, secure, anon, step):
    assert security_step(sender, peer, secure=secure, anonymous_tls=anon) is step


@pytest.mark.parametrize("sender, peer, bdat", [
    (BRIDGEHEAD, HUB_PEER_ANON, True), (DNS_CONNECTOR, EOP_PEER, True), (Sender(), POSTFIX_PEER, True),
    (PLAIN_MTA, POSTFIX_PEER, False), (Sender(), offered(["SIZE 1", "8BITMIME"]), False),
])
def test_bdat_whenever_the_peer_offers_chunking_and_the_sender_is_exchange(sender, peer, bdat):
    assert uses_bdat(sender, peer) is bdat


# --- MAIL FROM parameters (§1.4) -----------------------------------------------------------------

@pytest.mark.parametrize("peer, auth_as, body, oorg, utf8, expected", [
    (HUB_PEER_ANON, "Anonymous", "7BIT", None, False, ["SIZE=100", "AUTH=<>", "BODY=7BIT"]),
    (HUB_PEER_ANON, "Internal", "7BIT", None, False, ["SIZE=100", "BODY=7BIT"]),
    (HUB_PEER_ANON, None, "8BITMIME", None, True, ["SIZE=100", "BODY=8BITMIME", "SMTPUTF8"]),
    (EOP_PEER, "Anonymous", "7BIT", None, False, ["SIZE=100", "BODY=7BIT"]),  # EOP offers no AUTH: no AUTH=
    (EDGE_PEER_ANON, "Anonymous", "7BIT", None, False, ["SIZE=100", "AUTH=<>", "BODY=7BIT"]),  # X-EXPS counts
    (offered(["XOORG", "8BITMIME", "SIZE 5", "AUTH LOGIN"]), "Anonymous", "7BIT", "contoso.com", False,
     ["SIZE=100", "AUTH=<>", "BODY=7BIT", "XOORG=contoso.com"]),
    (offered(["SIZE 5"]), "Anonymous", "8BITMIME", None, True, ["SIZE=100"]),  # nothing the peer did not offer
    (offered(["BINARYMIME", "CHUNKING"]), None, "BINARYMIME", None, False, ["BODY=BINARYMIME"]),
    (offered(["BINARYMIME"]), None, "BINARYMIME", None, False, []),  # BINARYMIME needs CHUNKING too
])
def test_mail_from_parameters_in_exchanges_order(peer, auth_as, body, oorg, utf8, expected):
    assert mail_from_params(Sender(), peer, size=100, auth_as=auth_as, body=body, oorg=oorg,
                            smtputf8=utf8) == expected


def test_a_plain_mta_says_size_only():
    assert mail_from_params(PLAIN_MTA, POSTFIX_PEER, size=7, auth_as="Anonymous", body="8BITMIME", oorg=None,
                            smtputf8=True) == ["SIZE=7"]


def test_body_type_and_smtputf8_follow_the_message():
    assert body_type(b"Subject: a\r\n\r\nplain\r\n") == "7BIT"
    assert body_type("Subject: a\r\n\r\nna\u00efve\r\n".encode()) == "8BITMIME"
    assert body_type(b"x", "8bitmime") == "8BITMIME"  # the client's BODY= passes through the proxy
    assert needs_smtputf8("a@b.com", ["c@d.com"]) is False
    assert needs_smtputf8("a@b.com", ["j\u00f6rg@d.com"]) is True


def test_header_of_reads_the_header_block_only_and_unfolds():
    data = (b"X-MS-Exchange-Organization-AuthAs: Anonymous\r\nSubject: a\r\n long\r\n\r\n"
            b"X-OriginatorOrg: body.example\r\n")
    assert header_of(data, "x-ms-exchange-organization-authas") == "Anonymous"
    assert header_of(data, "Subject") == "a long"
    assert header_of(data, "X-OriginatorOrg") is None


# --- XPROXYFROM (§1.3) ---------------------------------------------------------------------------

def test_xproxyfrom_command_and_its_parse():
    cmd = xproxyfrom_command(ProxyFrom(0x08DEA419D5B95653, "40.93.131.26", 40274, "mail.example"), 1)
    assert cmd == ("XPROXYFROM SID=08DEA419D5B95653 IP=40.93.131.26 PORT=40274 DOMAIN=mail.example SEQNUM=1")
    assert parse_xproxyfrom(cmd.split(" ", 1)[1]) == {"SID": "08DEA419D5B95653", "IP": "40.93.131.26",
                                                      "PORT": "40274", "DOMAIN": "mail.example", "SEQNUM": "1"}
    assert "DOMAIN=" not in xproxyfrom_command(ProxyFrom(1, "192.0.2.1", 25, None), 2)
    for bad in ("", "SID=1 IP=2", "SID=1 IP=2 PORT=x", "SID=1 IP=2 PORT=3 junk"):
        assert parse_xproxyfrom(bad) is None


def test_x_exps_is_logged_without_its_blob():
    assert logged_command("X-EXPS EXCHANGEAUTH SHA256 c2VjcmV0") == EXCHANGEAUTH_LOGGED
    assert EXCHANGEAUTH_LOGGED.endswith("SHA256 ")  # the trailing space Exchange logs
    assert logged_command("MAIL FROM:<a@b.c> SIZE=1") == "MAIL FROM:<a@b.c> SIZE=1"


# --- golden: a real 2013 intra-organization send session ---------------------------------------

def cn_rows() -> list[list[str]]:
    assert CN.is_file(), f"the golden sample {CN.name} ships in tests/golden/logs"
    return [next(csv.reader([ln])) for ln in CN.read_text(encoding="utf-8").splitlines()
            if ln and not ln.startswith("#")]


def test_real_peer_ehlo_leads_a_bridgehead_to_exchangeauth_and_its_failure_row_is_exchanges():
    rows = cn_rows()
    ehlo = [r[7] for r in rows if r[6] == "<" and r[7].startswith("250")]
    peer = offered([ln[4:] for ln in ehlo[1:]])  # after the greeting line, without "250-"/"250 "
    assert peer["X-EXPS"] == ["EXCHANGEAUTH", "GSSAPI", "NTLM"] and "XSHADOW" in peer
    # the session is secure (X-ANONYMOUSTLS, then this EHLO): a bridgehead authenticates next
    assert security_step(BRIDGEHEAD, peer, secure=True, anonymous_tls=True) is Security.EXCHANGE_AUTH
    assert rows[-1][8] == OUTBOUND_AUTH_FAILED


def test_real_e14_peer_ehlo_is_what_the_rules_give_a_2013_hub_without_the_2013_additions():
    # CN's peer (an Exchange 2010-compatible org, E14 shadow mode, no SMTPUTF8, SIZE without a value)
    rows = cn_rows()
    real = [r[7][4:] for r in rows if r[6] == "<" and r[7].startswith("250")][1:]
    ours = ehlo_keywords(EhloInputs("Hub", HUB, SIZE, secure=True, anonymous_tls=True, smtputf8=False,
                                    e14_compatible=True))
    later = {"XPROXY", "XPROXYFROM", "XSYSPROBE", "XORIGFROM"}  # 2013+ additions after X-ANONYMOUSTLS
    assert ["SIZE" if k.startswith("SIZE ") else k for k in ours if k not in later] == real


def test_xsessionparams_only_for_a_database_the_peer_takes():
    hub = Sender(exchange_server_auth=True, mdb_guid="7675dddd-ad07-5170-a99e-91634bd84246")
    peer = {"XSESSIONPARAMS": ["MDBGUID", "TYPE"]}
    # XSessionParamsSmtpCommand.OutboundFormatCommand: the GUID in "N" form, no TYPE
    assert xsessionparams_command(hub, peer) == "XSESSIONPARAMS MDBGUID=7675ddddad075170a99e91634bd84246"
    assert xsessionparams_command(hub, {"XSESSIONPARAMS": ["TYPE"]}) is None
    assert xsessionparams_command(hub, {}) is None
    assert xsessionparams_command(Sender(exchange_server_auth=True), peer) is None


@pytest.mark.parametrize(("arg", "offered", "result"), [
    ("MDBGUID=7675ddddad075170a99e91634bd84246", ["MDBGUID", "TYPE"], ("7675ddddad075170a99e91634bd84246", "")),
    ("MDBGUID=7675DDDDAD075170A99E91634BD84246 TYPE=Primary", ["MDBGUID", "TYPE"],
     ("7675ddddad075170a99e91634bd84246", "")),
    ("", ["MDBGUID", "TYPE"], (None, "501 5.5.4 Invalid arguments")),            # MDBGUID is required
    ("MDBGUID", ["MDBGUID"], (None, "501 5.5.4 Invalid arguments")),              # name=value pairs only
    ("MDBGUID=xyz", ["MDBGUID"], (None, "501 5.5.4 Invalid arguments")),
    ("MDBGUID=7675ddddad075170a99e91634bd84246 MDBGUID=7675ddddad075170a99e91634bd84246", ["MDBGUID"],
     (None, "501 5.5.4 Invalid arguments")),                                      # once
    ("TYPE=Primary MDBGUID=7675ddddad075170a99e91634bd84246", ["MDBGUID"],
     (None, "502 5.3.3 Command not implemented")),                                # TYPE not advertised
])
def test_xsessionparams_parse_is_exchanges(arg, offered, result):
    assert parse_xsessionparams(arg, offered) == result


def test_hub_says_xsessionparams_to_mailbox_delivery_after_x_exps(baseline):
    rows = folder_rows(baseline.out, "CMHYBD01", "Hub", "SmtpSend")
    to_475 = [s for s in sessions(rows).values() if s[0][5].endswith(":475")]
    assert to_475
    for s in to_475:
        said = [r[7] for r in s if r[6] in (">", "<")]
        i = said.index(next(x for x in said if x.startswith("XSESSIONPARAMS MDBGUID=")))
        assert said[i - 1] == "235 <authentication response>" and said[i + 1] == "250 2.0.0 XSESSIONPARAMS OK"
        assert said[i + 2].startswith("MAIL FROM:")
