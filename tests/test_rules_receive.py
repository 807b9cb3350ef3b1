"""Receive-side rules, no sockets: connector selection, EHLO keywords, MAIL/RCPT replies.

The EHLO expectations are the keyword lists of real Exchange protocol-log rows in
tests/golden/logs (verbatim copies of shared/reference/samples; QAZ: an Exchange 2016 Default Frontend, before and after STARTTLS;
JPB: an Exchange 2019 Default Frontend answering EXO without a usable certificate).
"""

from __future__ import annotations

import csv
import ipaddress
import re

import pytest
from conftest import SAMPLES
from hypothesis import given
from hypothesis import strategies as st

from labsim.logs.protocol_text import ehlo_reply_receive
from labsim.rules import replies as R
from labsim.rules.iprange import best_match_size, parse_range
from labsim.rules.receive import (
    ReceiveState,
    check_data,
    check_mail,
    check_rcpt,
    ehlo_keywords,
    ehlo_reply_lines,
    select_receive_connector,
)
from labsim.topology.model import ReceiveConnector

QAZ = SAMPLES / "qazeer-smtp-receive-RECV2023011116-1.log"
JPB = SAMPLES / "jpmessaging-hybrid-frontend-ehlo-from-exo.log"


def rc(name: str, ranges: list[str] | None = None, bindings: list[str] | None = None, **kw) -> ReceiveConnector:
    return ReceiveConnector(name=name, remote_ip_ranges=ranges or ["0.0.0.0-255.255.255.255"],
                            bindings=bindings or ["0.0.0.0:25"], **kw)


def pick(connectors, remote: str, *, local_ip: str = "192.168.1.13", port: int = 25):
    chosen = select_receive_connector(connectors, local_ip=local_ip, local_port=port, remote_ip=remote)
    return chosen.name if chosen else None


# --- connector selection --------------------------------------------------------------------------

DOC_EXAMPLE = [  # receive-connectors.md, "Receive connector remote addresses"
    rc("All", ["0.0.0.0-255.255.255.255"]),
    rc("Subnet", ["192.168.1.0/24"]),
    rc("Host", ["192.168.1.75"]),
]


@pytest.mark.parametrize("remote, expected", [
    ("192.168.1.75", "Host"),
    ("192.168.1.100", "Subnet"),
    ("192.168.1.0", "Subnet"),
    ("192.168.2.75", "All"),
    ("40.93.131.26", "All"),
])
def test_documented_example_most_specific_remote_range_wins(remote, expected):
    assert pick(DOC_EXAMPLE, remote) == expected
    assert pick(list(reversed(DOC_EXAMPLE)), remote) == expected  # order of definition is irrelevant


def test_range_written_as_a_to_b_is_as_specific_as_the_equivalent_cidr():
    connectors = [rc("All"), rc("Range", ["192.168.1.0-192.168.1.255"]), rc("Host", ["192.168.1.75"])]
    assert pick(connectors, "192.168.1.100") == "Range"
    assert pick(connectors, "192.168.1.75") == "Host"


def test_binding_port_must_match_the_listener():
    connectors = [rc("Port25"), rc("Port587", bindings=["0.0.0.0:587"])]
    assert pick(connectors, "10.0.0.1", port=25) == "Port25"
    assert pick(connectors, "10.0.0.1", port=587) == "Port587"
    assert pick(connectors, "10.0.0.1", port=2525) is None


def test_binding_to_another_local_address_does_not_match():
    connectors = [rc("Other", bindings=["192.168.1.99:25"])]
    assert pick(connectors, "10.0.0.1", local_ip="192.168.1.13") is None
    assert pick(connectors, "10.0.0.1", local_ip="192.168.1.99") == "Other"


def test_ip_specific_binding_beats_the_wildcard_binding():
    connectors = [rc("Wildcard", bindings=["0.0.0.0:25"]), rc("Specific", bindings=["192.168.1.13:25"])]
    assert pick(connectors, "10.0.0.1") == "Specific"


def test_disabled_connector_is_skipped_and_the_next_most_specific_takes_the_session():
    connectors = [rc("All"), rc("Host", ["192.168.1.75"], enabled=False)]
    assert pick(connectors, "192.168.1.75") == "All"


def test_no_connector_covers_the_remote_address():
    connectors = [rc("Subnet", ["192.168.1.0/24"]), rc("Host", ["10.1.1.1"])]
    assert pick(connectors, "203.0.113.25") is None
    assert pick([], "203.0.113.25") is None


def test_ipv6_ranges_never_match_an_ipv4_peer():
    assert pick([rc("V6", ["::/0"])], "192.168.1.75") is None


def test_default_edge_and_frontend_connectors_take_the_hybrid_peers(lab):
    hyb, edge = lab.organization.server("CMHYBD01"), lab.organization.server("CMEDGE01")
    fe = [c for c in hyb.receive_connectors if c.transport_role == "FrontendTransport"]
    hub = [c for c in hyb.receive_connectors if c.transport_role == "HubTransport"]
    assert pick(fe, "40.93.131.26", port=25) == "Default Frontend CMHYBD01"  # EXO via the NAT
    assert pick(fe, "192.168.1.25", port=25) == "Default Frontend CMHYBD01"  # the Edge
    assert pick(fe, "192.168.1.13", port=717) == "Outbound Proxy Frontend CMHYBD01"
    assert pick(fe, "192.168.1.50", port=587) == "Client Frontend CMHYBD01"
    assert pick(hub, "192.168.1.13", port=2525) == "Default CMHYBD01"
    assert pick(hub, "192.168.1.13", port=465) == "Client Proxy CMHYBD01"
    assert pick(edge.receive_connectors, "203.0.113.25", local_ip="192.168.1.25") == \
        "Default internal receive connector CMEDGE01"


# --- RemoteIPRanges parsing (property based) ------------------------------------------------------

ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))


@given(ipv4, st.integers(0, 32), ipv4)
def test_cidr_membership_matches_ipaddress(net_ip, prefix, probe):
    net = ipaddress.ip_network(f"{net_ip}/{prefix}", strict=False)
    r = parse_range(f"{net_ip}/{prefix}")
    assert (probe in r) == (ipaddress.ip_address(probe) in net)
    assert r.size == net.num_addresses


@given(ipv4, ipv4, ipv4)
def test_dash_range_membership_and_size(a, b, probe):
    lo, hi = sorted([a, b], key=lambda s: int(ipaddress.IPv4Address(s)))
    r = parse_range(f"{lo} - {hi}")
    assert (probe in r) == (int(ipaddress.IPv4Address(lo)) <= int(ipaddress.IPv4Address(probe))
                            <= int(ipaddress.IPv4Address(hi)))
    assert r.size == int(ipaddress.IPv4Address(hi)) - int(ipaddress.IPv4Address(lo)) + 1


@given(ipv4, st.integers(0, 32))
def test_best_match_is_the_smallest_containing_range(ip, prefix):
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    ranges = ["0.0.0.0-255.255.255.255", str(net), ip]
    assert best_match_size(ranges, ip) == 1
    assert best_match_size(ranges[:2], ip) == net.num_addresses
    assert best_match_size(["::/0"], ip) is None


# --- EHLO keywords versus real samples ------------------------------------------------------------

def sample_ehlo_rows(path) -> list[str]:
    """The `data` of every flattened EHLO reply row (`250  host Hello [ip] ...`) of a sample log."""
    rows = [next(csv.reader([ln])) for ln in path.read_text(encoding="utf-8").splitlines()
            if ln and not ln.startswith("#")]
    return [r[7] for r in rows if len(r) == 9 and r[6] == ">" and re.match(r"^250 {1,2}\S+ Hello \[", r[7])]


def keywords_of(data: str) -> str:
    return data.split("] ", 1)[1]


def default_frontend(lab) -> ReceiveConnector:
    return next(c for c in lab.organization.server("CMHYBD01").receive_connectors
                if c.name == "Default Frontend CMHYBD01")


def state_for(connector: ReceiveConnector, *, tls=False, starttls=True, **kw) -> ReceiveState:
    return ReceiveState(connector=connector, fqdn="SERVER-HOSTNAME.DOMAIN.TEST", remote_ip="95.10.20.33",
                        starttls_available=starttls, tls=tls, **kw)


def without_smtputf8(keywords: list[str]) -> str:
    # The QAZ server is Exchange 2016 (15.01), which did not offer SMTPUTF8; 2019 does (JPB).
    return " ".join(k for k in keywords if k != "SMTPUTF8")


def test_samples_hold_the_lists_these_tests_compare_against():
    assert len(sample_ehlo_rows(QAZ)) == 2 and len(sample_ehlo_rows(JPB)) == 1


def test_default_frontend_ehlo_before_starttls_matches_the_real_sample(lab):
    before, _ = sample_ehlo_rows(QAZ)
    assert without_smtputf8(ehlo_keywords(state_for(default_frontend(lab)))) == keywords_of(before)


def test_default_frontend_ehlo_after_starttls_matches_the_real_sample(lab):
    _, after = sample_ehlo_rows(QAZ)
    kw = ehlo_keywords(state_for(default_frontend(lab), tls=True))
    assert without_smtputf8(kw) == keywords_of(after)
    assert "STARTTLS" not in kw and "X-ANONYMOUSTLS" not in kw


def test_default_frontend_ehlo_without_certificate_matches_the_2019_sample_exactly(lab):
    (row,) = sample_ehlo_rows(JPB)
    assert " ".join(ehlo_keywords(state_for(default_frontend(lab), starttls=False))) == keywords_of(row)


def test_flattened_ehlo_row_rebuilds_the_real_receive_log_row(lab):
    before, after = sample_ehlo_rows(QAZ)
    for data, tls in ((before, False), (after, True)):
        row = ehlo_reply_receive(ehlo_reply_lines(state_for(default_frontend(lab), tls=tls)))
        assert row.replace(" SMTPUTF8", "") == data


def test_ehlo_wire_reply_is_multiline_with_hello_first(lab):
    lines = ehlo_reply_lines(state_for(default_frontend(lab)))
    assert lines[0] == "250-SERVER-HOSTNAME.DOMAIN.TEST Hello [95.10.20.33]"
    assert all(ln.startswith("250-") for ln in lines[:-1]) and lines[-1] == "250 XRDST"


def test_hub_offers_exchange_auth_only_after_anonymous_tls_and_the_edge_never(lab):
    # docs/transport-fidelity.md §1.1 [V-code]: X-EXPS EXCHANGEAUTH after X-ANONYMOUSTLS only, and only
    # on a bridgehead (a Mailbox server's transport services), never on the Edge.
    hub = next(c for c in lab.organization.server("CMHYBD01").receive_connectors if c.name == "Default CMHYBD01")
    plain = ehlo_keywords(state_for(hub))
    assert "X-EXPS GSSAPI NTLM" in plain and "X-EXCHANGEAUTH SHA256" not in plain
    assert "X-EXPS GSSAPI NTLM" in ehlo_keywords(state_for(hub, tls=True))  # after STARTTLS
    secured = ehlo_keywords(state_for(hub, tls=True, anonymous_tls=True))
    assert "X-EXPS EXCHANGEAUTH GSSAPI NTLM" in secured and "X-EXCHANGEAUTH SHA256" in secured
    edge = lab.organization.server("CMEDGE01").receive_connectors[0]
    edge_kw = ehlo_keywords(state_for(edge, tls=True, anonymous_tls=True, is_edge=True))
    assert "X-EXPS NTLM" in edge_kw and "X-EXCHANGEAUTH SHA256" not in edge_kw and "XRDST" not in edge_kw


def test_basic_auth_login_is_offered_only_after_tls_with_basic_auth_require_tls(lab):
    assert "AUTH NTLM" in ehlo_keywords(state_for(default_frontend(lab)))
    assert "AUTH NTLM LOGIN" in ehlo_keywords(state_for(default_frontend(lab), tls=True))
    open_basic = rc("Basic", auth_mechanism=["Tls", "BasicAuth"])
    assert "AUTH LOGIN" in ehlo_keywords(state_for(open_basic))


def test_size_keyword_follows_max_message_size():
    assert ehlo_keywords(state_for(rc("Small", max_message_size=10485760)))[0] == "SIZE 10485760"


# --- MAIL FROM / RCPT TO ------------------------------------------------------------------------

def anon_state(connector: ReceiveConnector | None = None, **kw) -> ReceiveState:
    connector = connector or rc("Anon", permission_groups=["AnonymousUsers"])
    st_ = ReceiveState(connector=connector, fqdn="cmhybd01.cloudmonkeys.xyz", remote_ip="203.0.113.25",
                       starttls_available=True, **kw)
    return st_


def test_mail_before_ehlo_is_send_hello_first():
    assert check_mail(anon_state(), None) == R.SEND_HELLO_FIRST == "503 5.5.2 Send hello first"


def test_anonymous_sender_is_accepted_after_ehlo():
    assert check_mail(anon_state(helo="mx.fabrikam.com"), 1000) == "250 2.1.0 Sender OK"


def test_require_tls_refuses_mail_before_starttls_and_accepts_after():
    c = rc("TLS only", auth_mechanism=["Tls"], require_tls=True)
    assert check_mail(anon_state(c, helo="x"), None) == "451 5.7.3 STARTTLS is required to send mail"
    assert check_mail(anon_state(c, helo="x", tls=True), None) == R.SENDER_OK


def test_second_mail_from_in_one_transaction():
    assert check_mail(anon_state(helo="x", mail_from="a@b.example"), None) == "503 5.5.2 Sender already specified"


def test_servers_only_connector_refuses_an_unauthenticated_client():
    c = rc("Servers", auth_mechanism=["Tls", "ExchangeServer"], permission_groups=["ExchangeServers"])
    assert check_mail(anon_state(c, helo="x", tls=True), None) == "530 5.7.1 Client was not authenticated"
    assert check_mail(anon_state(c, helo="x", tls=True, authenticated_as_server=True), None) == R.SENDER_OK


def test_partners_may_submit_only_over_tls():
    c = rc("Partners", permission_groups=["Partners"])
    assert check_mail(anon_state(c, helo="x"), None) == R.NOT_AUTHENTICATED
    assert check_mail(anon_state(c, helo="x", tls=True), None) == R.SENDER_OK


def test_declared_size_over_the_limit_is_refused_unless_the_client_may_bypass_it():
    c = rc("Small", permission_groups=["AnonymousUsers", "ExchangeServers"], max_message_size=65536)
    assert check_mail(anon_state(c, helo="x"), 65537) == "552 5.3.4 Message size exceeds fixed maximum message size"
    assert check_mail(anon_state(c, helo="x", authenticated_as_server=True), 65537) == R.SENDER_OK


def test_failed_tls_domain_capability_refuses_the_submission():
    state = anon_state(helo="x", tls=True, capability_failure="UntrustedRoot")
    assert check_mail(state, None) == "454 4.7.5 Certificate validation failure"


def test_rcpt_before_mail():
    assert check_rcpt(anon_state(helo="x"), "raghu@cloudmonkeys.xyz", accepted=True) == "503 5.5.2 Need mail command"


def test_anonymous_relay_is_denied_but_accepted_domains_are_taken():
    state = anon_state(helo="x", mail_from="alex@fabrikam.com")
    assert check_rcpt(state, "someone@contoso.com", accepted=False) == \
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"
    assert check_rcpt(state, "raghu@cloudmonkeys.xyz", accepted=True) == "250 2.1.5 Recipient OK"


def test_exchange_servers_and_cloud_mail_may_relay():
    servers = rc("Servers", permission_groups=["AnonymousUsers", "ExchangeServers"])
    state = anon_state(servers, helo="x", tls=True, mail_from="a@b.example", authenticated_as_server=True)
    assert check_rcpt(state, "alex@fabrikam.com", accepted=False) == R.RECIPIENT_OK
    cloud = anon_state(helo="x", tls=True, mail_from="ramki@cloudmonkeys.xyz",
                       capabilities=frozenset({"AcceptCloudServicesMail"}))
    assert check_rcpt(cloud, "alex@fabrikam.com", accepted=False) == R.RECIPIENT_OK


def test_data_needs_mail_and_a_recipient():
    assert check_data(anon_state(helo="x")) == "503 5.5.2 Need mail command"
    assert check_data(anon_state(helo="x", mail_from="a@b.example")) == "503 5.5.2 Need rcpt command"
    assert check_data(anon_state(helo="x", mail_from="a@b.example", recipients=["c@d.example"])) == \
        "354 Start mail input; end with <CRLF>.<CRLF>"
