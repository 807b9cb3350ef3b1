"""Exchange's own verbs on each hop of hybrid-baseline, read from the protocol logs the run wrote.

What each hop must say (docs/transport-fidelity.md §1.2-§1.5): X-ANONYMOUSTLS between Exchange
servers, X-EXPS EXCHANGEAUTH between Mailbox servers only, XPROXYFROM on the Front End's proxy, BDAT
to every CHUNKING peer, AUTH=<> for mail received anonymously, STARTTLS on DNS-routed connectors.
"""

from __future__ import annotations

import pytest
from conftest import Run, folder_rows, sessions

pytestmark = pytest.mark.integration

PERMISSIONS = "Set Session Permissions"


def sent(session: list[list[str]]) -> list[str]:
    return [r[7] for r in session if r[6] == ">"]


def got(session: list[list[str]]) -> list[str]:
    return [r[7] for r in session if r[6] == "<"]


def send_session(baseline: Run, server: str, service: str, connector: str, remote: str) -> list[list[str]]:
    found = [s for s in sessions(folder_rows(baseline.out, server, service, "SmtpSend")).values()
             if s[0][1] == connector and s[0][5] == remote]
    assert found, f"no {connector} session to {remote}"
    return found[0]


def commands(session: list[list[str]]) -> list[str]:
    """The commands a send session issued, EHLO's argument and MAIL's address cut off."""
    return [c.split(":")[0] if c.startswith(("MAIL", "RCPT")) else c.split()[0] if c.startswith("EHLO")
            else c.split(" SID=")[0] if c.startswith("XPROXYFROM") else c.split()[0] if c.startswith("BDAT")
            else c for c in sent(session)]


def test_front_end_to_hub_is_anonymous_tls_exchangeauth_xproxyfrom_and_bdat(baseline: Run):
    s = send_session(baseline, "CMHYBD01", "FrontEnd", "Inbound Proxy Internal Send Connector", "192.168.1.13:2525")
    assert commands(s) == ["EHLO", "X-ANONYMOUSTLS", "EHLO", "X-EXPS EXCHANGEAUTH SHA256 ", "XPROXYFROM",
                           "MAIL FROM", "RCPT TO", "BDAT", "QUIT"]
    replies = got(s)
    assert "220 2.0.0 SMTP server ready" in replies and "235 <authentication response>" in replies
    assert "250 XProxyFrom accepted" in replies
    proxy = next(c for c in sent(s) if c.startswith("XPROXYFROM"))
    assert " IP=40.93.131.26 " in proxy and " DOMAIN=" in proxy and proxy.endswith(" SEQNUM=1")  # EXO's session
    mail = next(c for c in sent(s) if c.startswith("MAIL"))
    size = int(mail.split("SIZE=")[1].split()[0])
    assert mail.endswith(" BODY=7BIT") and f"BDAT {size} LAST" in sent(s)


def test_hub_logs_the_receiving_half_without_the_blob(baseline: Run):
    rows = folder_rows(baseline.out, "CMHYBD01", "Hub", "SmtpReceive")
    s = next(s for s in sessions(rows).values() if any(r[6] == "<" and r[7].startswith("XPROXYFROM") for r in s))
    received = got(s)
    assert "X-ANONYMOUSTLS" in received and "X-EXPS EXCHANGEAUTH SHA256 " in received  # trailing space, no blob
    answers = sent(s)
    assert answers.index("235 <authentication response>") > answers.index("220 2.0.0 SMTP server ready")
    ehlo = [a for a in answers if " Hello [" in a]
    assert "X-ANONYMOUSTLS" in ehlo[0] and "EXCHANGEAUTH" not in ehlo[0]
    assert "X-EXPS EXCHANGEAUTH GSSAPI NTLM X-EXCHANGEAUTH SHA256" in ehlo[1] and " XPROXYFROM" in ehlo[1]
    perms = next(r[7] for r in s if r[6] == "*" and r[8] == PERMISSIONS)
    assert "SMTPAcceptXProxyFrom" in perms.split()
    i = [r[7] for r in s].index(perms)
    assert s[i + 1][7] == "235 <authentication response>"


def test_hub_to_mailbox_delivery_authenticates_and_chunks(baseline: Run):
    for s in [s for s in sessions(folder_rows(baseline.out, "CMHYBD01", "Hub", "SmtpSend")).values()
              if s[0][5] == "192.168.1.13:475"]:
        # XSESSIONPARAMS names the database after X-EXPS (AuthSmtpCommand, docs/transport-fidelity.md §1.8)
        assert [c.split("=")[0] for c in commands(s)] == [
            "EHLO", "X-ANONYMOUSTLS", "EHLO", "X-EXPS EXCHANGEAUTH SHA256 ", "XSESSIONPARAMS MDBGUID", "MAIL FROM",
            "RCPT TO", "BDAT", "QUIT"]


def test_hub_to_edge_has_no_exchangeauth(baseline: Run):
    s = send_session(baseline, "CMHYBD01", "Hub", "Intra-Organization SMTP Send Connector", "192.168.1.25:25")
    assert commands(s) == ["EHLO", "X-ANONYMOUSTLS", "EHLO", "MAIL FROM", "RCPT TO", "BDAT", "QUIT"]
    assert "250-XRDST" not in got(s)  # the Edge is not a bridgehead


def test_edge_to_front_end_sends_internet_mail_as_anonymous(baseline: Run):
    s = send_session(baseline, "CMEDGE01", "Edge", "EdgeSync - Inbound to Default-First-Site-Name",
                     "192.168.1.13:25")
    assert commands(s) == ["EHLO", "X-ANONYMOUSTLS", "EHLO", "MAIL FROM", "RCPT TO", "BDAT", "QUIT"]
    assert next(c for c in sent(s) if c.startswith("MAIL")).endswith(" AUTH=<> BODY=7BIT")


def test_dns_routed_connectors_keep_starttls_and_chunk(baseline: Run):
    eop = send_session(baseline, "CMHYBD01", "Hub", "Outbound to Office 365", "52.101.194.15:25")
    internet = send_session(baseline, "CMEDGE01", "Edge", "EdgeSync - Default-First-Site-Name to Internet",
                            "203.0.113.25:25")
    for s in (eop, internet):
        assert commands(s) == ["EHLO", "STARTTLS", "EHLO", "MAIL FROM", "RCPT TO", "BDAT", "QUIT"]
        assert "AUTH=" not in next(c for c in sent(s) if c.startswith("MAIL"))  # neither peer offers AUTH


def test_a_plain_internet_mta_keeps_data(baseline: Run):
    rows = folder_rows(baseline.out, "CMEDGE01", "Edge", "SmtpReceive")
    s = next(s for s in sessions(rows).values() if s[0][5].startswith("203.0.113.25:"))
    received = got(s)
    assert "DATA" in received and not any(c.startswith("BDAT") for c in received)
    assert not any(c.startswith(("X-ANONYMOUSTLS", "X-EXPS")) for c in received)


def test_exchange_verbs_refuse_a_stranger_on_the_edge(write_scenario, tmp_path):
    from test_protocol_errors import lab_session, replies_of

    from labsim.rules import replies as R

    out, tr = lab_session(write_scenario, tmp_path, "FABRIKAM-MX", "27.7.57.242", 25, [
        "X-ANONYMOUSTLS", "EHLO mx.fabrikam.com", "X-ANONYMOUSTLS now", "X-EXPS EXCHANGEAUTH SHA256 c2VjcmV0",
        "X-EXPS", "XPROXYFROM SID=1 IP=192.0.2.1 PORT=25", "QUIT"])
    assert replies_of(tr)[:7] == [R.SEND_HELLO_FIRST, "250 XSHADOWREQUEST", R.INVALID_ARGS,
                                  R.UNRECOGNIZED_AUTH,  # EXCHANGEAUTH only after X-ANONYMOUSTLS
                                  R.UNRECOGNIZED_AUTH, R.UNRECOGNIZED,  # XPROXYFROM: not for an anonymous peer
                                  R.CLOSING]
    rows = folder_rows(out, "CMEDGE01", "Edge", "SmtpReceive")
    logged = [r[7] for r in rows if r[6] == "<"]
    assert "X-EXPS EXCHANGEAUTH SHA256 " in logged and not any("c2VjcmV0" in x for x in logged)
