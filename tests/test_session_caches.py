"""The per-session answers kept once (ses6, issue 8): each cached answer equals the plain
computation, and changes as soon as anything it reads changes (a timeline step that edits a
receive connector, a certificate swapped for another).

Caches under test: rules.receive (EHLO keywords and reply, session rights, connector selection),
rules.receive_verbs.valid_helo_domain, smtp.policy (the flattened EHLO row, connector timeouts),
pki.validate (certificate names, the self-signed check, chain building), smtp.client_session
(what an EHLO reply teaches the client and aiosmtplib).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiosmtplib
import pytest
from aiosmtplib.esmtp import parse_esmtp_extensions
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.logs.protocol_text import ehlo_reply_receive, ehlo_reply_send
from labsim.pki import validate as V
from labsim.rules import replies as R
from labsim.rules.ehlo import EhloInputs, offered
from labsim.rules.ehlo import ehlo_keywords as plain_keywords
from labsim.rules.receive import (
    GROUP_RIGHTS,
    ReceiveState,
    ehlo_keywords,
    ehlo_reply,
    ehlo_reply_lines,
    select_receive_connector,
)
from labsim.rules.receive_verbs import valid_helo_domain
from labsim.smtp import client_session as CS
from labsim.smtp.client_rules import wire_lines
from labsim.smtp.policy import (
    ExchangeReceivePolicy,
    ListenerSpec,
    _connector_timeouts,
    _ehlo_logged,
)
from labsim.topology.model import AuthMechanism, PermissionGroup, ReceiveConnector
from labsim.topology.timespec import parse_timespan

AUTHS = [m.value for m in AuthMechanism]
GROUPS = [g.value for g in PermissionGroup]
CAPS = ["AcceptCloudServicesMail", "AcceptOorgProtocol", "AcceptOorgHeader"]


def connector(**kw) -> ReceiveConnector:
    kw.setdefault("name", "RC")
    kw.setdefault("bindings", ["0.0.0.0:25"])
    kw.setdefault("remote_ip_ranges", ["0.0.0.0-255.255.255.255"])
    return ReceiveConnector(**kw)


def state(rc: ReceiveConnector, **kw) -> ReceiveState:
    kw.setdefault("fqdn", "mail.contoso.test")
    kw.setdefault("remote_ip", "192.0.2.10")
    kw.setdefault("starttls_available", True)
    return ReceiveState(connector=rc, **kw)


def plain_ehlo(st_: ReceiveState) -> list[str]:
    """rules.receive.ehlo_keywords as it was before the cache: EhloInputs built from the state."""
    rc = st_.connector
    role = st_.role or ("Edge" if st_.is_edge else "Hub" if rc.transport_role == "HubTransport" else "FrontEnd")
    return plain_keywords(EhloInputs(
        role=role, auth=frozenset(str(m) for m in rc.auth_mechanism), max_message_size=rc.max_message_size,
        certificate=st_.starttls_available, internal_certificate=st_.internal_certificate, secure=st_.tls,
        anonymous_tls=st_.anonymous_tls, capabilities=st_.capabilities))


def plain_rights(st_: ReceiveState) -> frozenset[str]:
    """ReceiveState.rights as it was before the cache."""
    groups = set(st_.connector.permission_groups)
    rights: set[str] = set()
    if "AnonymousUsers" in groups:
        rights |= GROUP_RIGHTS["AnonymousUsers"]
    if "Partners" in groups and st_.tls:
        rights |= GROUP_RIGHTS["Partners"]
    if st_.authenticated_as_server:
        for g in ("ExchangeServers", "ExchangeLegacyServers"):
            if g in groups:
                rights |= GROUP_RIGHTS[g]
    if "AcceptCloudServicesMail" in st_.capabilities or "AcceptOorgProtocol" in st_.capabilities:
        rights |= {"SMTPSubmit", "SMTPAcceptAnyRecipient", "SMTPAcceptAnySender",
                   "SMTPAcceptAuthoritativeDomainSender", "AcceptOrganizationHeaders", "BypassAntiSpam"}
    return frozenset(rights)


def valid_auth(auth: list[str]) -> list[str]:
    """What ReceiveConnector accepts: BasicAuthRequireTLS comes with BasicAuth and Tls."""
    if "BasicAuthRequireTLS" in auth:
        auth = auth + [m for m in ("BasicAuth", "Tls") if m not in auth]
    return auth


sessions = st.builds(
    lambda auth, groups, size, role, transport, edge, cert, internal, tls, anon, server, caps, ip: state(
        connector(auth_mechanism=valid_auth(auth), permission_groups=groups, max_message_size=size, transport_role=transport),
        role=role, is_edge=edge, starttls_available=cert, internal_certificate=internal, tls=tls,
        anonymous_tls=anon, authenticated_as_server=server, capabilities=frozenset(caps), remote_ip=ip),
    st.lists(st.sampled_from(AUTHS), unique=True, max_size=5),
    st.lists(st.sampled_from(GROUPS), unique=True, max_size=4),
    st.integers(65536, 200 * 1024 * 1024),
    st.sampled_from([None, "FrontEnd", "Hub", "MailboxDelivery", "Edge"]),
    st.sampled_from(["FrontendTransport", "HubTransport"]),
    st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
    st.lists(st.sampled_from(CAPS), unique=True, max_size=3),
    st.sampled_from(["192.0.2.10", "198.51.100.7", "10.1.2.3"]),
)


# --- rules.receive: EHLO, rights ---------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(sessions, sessions)
def test_ehlo_keywords_reply_and_rights_equal_the_plain_computation(a, b):
    for s in (a, b, a):  # a, then another session, then a again: a kept answer must still be a's
        assert ehlo_keywords(s) == plain_ehlo(s)
        lines = [R.HELLO.format(fqdn=s.fqdn, ip=s.remote_ip), *plain_ehlo(s)]
        assert ehlo_reply_lines(s) == [f"250-{x}" for x in lines[:-1]] + [f"250 {lines[-1]}"]
        assert _ehlo_logged(ehlo_reply(s)) == ehlo_reply_receive(ehlo_reply_lines(s))
        assert s.rights == plain_rights(s)


def test_a_connector_edited_mid_session_changes_the_next_ehlo_and_rights():
    rc = connector(auth_mechanism=[AuthMechanism.TLS, AuthMechanism.EXCHANGE_SERVER],
                   permission_groups=[PermissionGroup.ANONYMOUS_USERS, PermissionGroup.EXCHANGE_SERVERS],
                   transport_role="HubTransport")
    s = state(rc, role="Hub", authenticated_as_server=True)
    first = ehlo_keywords(s)
    assert "STARTTLS" in first and "X-ANONYMOUSTLS" in first and "SMTPAcceptAnyRecipient" in s.rights
    rc.auth_mechanism = [AuthMechanism.EXCHANGE_SERVER]  # a timeline step: Set-ReceiveConnector -AuthMechanism
    rc.max_message_size = 70000
    rc.permission_groups = [PermissionGroup.ANONYMOUS_USERS]
    second = ehlo_keywords(s)
    assert "STARTTLS" not in second and "SIZE 70000" in second and second == plain_ehlo(s)
    assert "SMTPAcceptAnyRecipient" not in s.rights and s.rights == plain_rights(s)
    s.tls, s.anonymous_tls = True, True  # the session's own state moves on too
    assert ehlo_keywords(s) == plain_ehlo(s) and "X-ANONYMOUSTLS" not in ehlo_keywords(s)


def test_the_kept_keywords_are_not_shared_with_the_caller():
    s = state(connector())
    ehlo_keywords(s).append("BOGUS")
    ehlo_reply_lines(s).append("250 BOGUS")
    assert "BOGUS" not in ehlo_keywords(s) and "250 BOGUS" not in ehlo_reply_lines(s)


# --- rules.receive: connector selection ------------------------------------------------------------

ranges = st.sampled_from(["0.0.0.0-255.255.255.255", "192.0.2.0/24", "192.0.2.10", "10.0.0.0/8",
                          "198.51.100.0-198.51.100.127"])
connector_sets = st.lists(st.builds(
    lambda i, rs, bs, on: connector(name=f"RC{i}", remote_ip_ranges=rs, bindings=bs, enabled=on),
    st.integers(0, 9), st.lists(ranges, min_size=1, max_size=3),
    st.lists(st.sampled_from(["0.0.0.0:25", "192.0.2.1:25", "192.0.2.2:25", "0.0.0.0:587"]), min_size=1, max_size=2),
    st.booleans()), max_size=5)


def plain_select(connectors, local_ip, local_port, remote_ip):
    """select_receive_connector before the cache (rules.iprange and the binding test, per connector)."""
    import ipaddress

    from labsim.rules.iprange import best_match_size

    def match(b):
        ip, port = b.rsplit(":", 1)
        if int(port) != local_port:
            return None
        ip = ip.strip("[]")
        if ip in ("0.0.0.0", "::"):
            return 0
        return 1 if ipaddress.ip_address(ip) == ipaddress.ip_address(local_ip) else None

    best, chosen = None, None
    for c in connectors:
        if not c.enabled:
            continue
        exact = max((m for b in c.bindings if (m := match(b)) is not None), default=None)
        size = None if exact is None else best_match_size(c.remote_ip_ranges, remote_ip)
        if exact is None or size is None:
            continue
        key = (-exact, size, c.name.lower())
        if best is None or key < best:
            best, chosen = key, c
    return chosen


@settings(max_examples=200, deadline=None)
@given(connector_sets, st.sampled_from(["192.0.2.1", "192.0.2.2"]), st.sampled_from([25, 587]),
       st.sampled_from(["192.0.2.10", "192.0.2.99", "10.9.9.9", "198.51.100.5", "203.0.113.1"]))
def test_connector_selection_equals_the_plain_walk(connectors, local_ip, port, remote):
    got = select_receive_connector(connectors, local_ip=local_ip, local_port=port, remote_ip=remote)
    assert got is plain_select(connectors, local_ip, port, remote)


def test_connector_selection_follows_edited_ranges_and_bindings():
    a = connector(name="A", remote_ip_ranges=["192.0.2.0/24"])
    b = connector(name="B")
    pick = lambda: select_receive_connector([a, b], local_ip="192.0.2.1", local_port=25, remote_ip="192.0.2.10")  # noqa: E731
    assert pick() is a
    a.remote_ip_ranges = ["10.0.0.0/8"]
    assert pick() is b
    a.remote_ip_ranges = ["192.0.2.10"]
    b.bindings = ["0.0.0.0:587"]
    assert pick() is a
    a.bindings = ["192.0.2.2:25"]
    assert pick() is None


@given(st.text(max_size=40))
def test_valid_helo_domain_is_a_function_of_its_text(arg):
    first, again = valid_helo_domain(arg), valid_helo_domain(arg)
    text = arg.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        inner = inner[5:] if inner[:5].upper() == "IPV6:" else inner
        plain = bool(inner) and all(c in "0123456789abcdefABCDEF:." for c in inner)
    else:
        plain = bool(text) and all(c.isalnum() or c in "-._" for c in text)
    assert first == again == plain


# --- smtp.policy: timeouts ------------------------------------------------------------------------------

class _Session:
    def __init__(self, st_: ReceiveState) -> None:
        self.state = st_


def test_policy_timeouts_follow_the_connector_texts():
    rc = connector(connection_inactivity_timeout="00:01:00", connection_timeout="00:10:00")
    policy = ExchangeReceivePolicy.__new__(ExchangeReceivePolicy)
    policy.listener = ListenerSpec("Hub", 25)
    session = _Session(state(rc))
    assert policy.timeouts(session) == (rc.inactivity_seconds, rc.connection_timeout_seconds) == (60.0, 600.0)
    rc.connection_inactivity_timeout = "00:00:05"  # Set-ReceiveConnector -ConnectionInactivityTimeout
    assert policy.timeouts(session) == (5.0, 600.0)
    rc.connection_timeout = "1.00:00:00"
    assert policy.timeouts(session) == (5.0, 86400.0)


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_connector_timeouts_equal_parse_timespan(a, b):
    ta, tb = f"{a // 86400}.{a // 3600 % 24:02d}:{a // 60 % 60:02d}:{a % 60:02d}", f"{b // 60}m"
    assert _connector_timeouts(ta, tb) == (parse_timespan(ta).total_seconds(), parse_timespan(tb).total_seconds())


# --- pki.validate ---------------------------------------------------------------------------------------

_KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_cert(cn: str, *, signer: int = 0, key: int = 0, sans: tuple[str, ...] = (), serial: int = 1) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(_KEYS[key].public_key())
         .serial_number(serial).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1)))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return b.sign(_KEYS[signer], hashes.SHA256())


def fresh(cert: x509.Certificate) -> x509.Certificate:
    """The same certificate parsed again (what a server's peer_chain gives for each session)."""
    from cryptography.hazmat.primitives.serialization import Encoding
    return x509.load_der_x509_certificate(cert.public_bytes(Encoding.DER))


def test_self_signed_check_is_per_certificate_not_per_name():
    good = make_cert("cmhybd01.contoso.test")  # signed by its own key
    forged = make_cert("cmhybd01.contoso.test", signer=1)  # same name as issuer and subject, another key
    for _ in range(2):  # cold, then kept
        assert V._is_self_signed(fresh(good)) is True
        assert V._is_self_signed(fresh(forged)) is False
        assert V._is_self_signed(fresh(good)) is True


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["a.contoso.test", "*.contoso.test", "b.fabrikam.test"]), unique=True, max_size=3),
       st.integers(1, 10**6))
def test_certificate_names_equal_the_plain_reading_and_are_the_callers_own(sans, serial):
    cert = make_cert("cn.contoso.test", sans=tuple(sans), serial=serial)
    plain = list(sans) or ["cn.contoso.test"]
    names = V.certificate_names(fresh(cert))
    assert names == plain
    names.append("mutated.example")
    assert V.certificate_names(fresh(cert)) == plain


def test_the_kept_answers_are_bounded():
    kept = V._Kept(limit=3)
    certs = [make_cert(f"h{i}.contoso.test", serial=i + 1) for i in range(5)]
    calls = []
    for c in certs:
        kept.get(c, lambda x: calls.append(x) or len(calls))
    assert len(kept._values) <= 3 and len(kept._objects) <= 3 and len(calls) == 5
    assert kept.get(certs[-1], lambda x: -1) == 5  # the latest stays


async def _no_fetch(url: str) -> bytes:  # pragma: no cover - never called: no CDP
    raise AssertionError(url)


async def test_classify_of_a_swapped_certificate_is_its_own():
    trusted, other = make_cert("edge.contoso.test", serial=7), make_cert("edge.contoso.test", key=1, signer=1, serial=7)
    kw = dict(now=NOW, known_intermediates=[], domain="edge.contoso.test", fetch_crl=_no_fetch)
    for _ in range(2):
        ok = await V.classify([fresh(trusted)], anchors=[trusted], **kw)
        assert ok.status == V.ChainStatus.ValidSelfSigned
        swapped = await V.classify([fresh(other)], anchors=[trusted], **kw)  # Import-ExchangeCertificate of a new one
        assert swapped.status == V.ChainStatus.UntrustedRoot
        late = await V.classify([fresh(trusted)], anchors=[trusted], **{**kw, "now": NOW + timedelta(days=2)})
        assert late.status == V.ChainStatus.CertificateExpired


# --- smtp.client_session: what an EHLO reply teaches --------------------------------------------------

keyword_lines = st.lists(st.sampled_from([
    "SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "X-ANONYMOUSTLS", "AUTH NTLM LOGIN",
    "AUTH=LOGIN PLAIN", "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "XRDST", "SMTPUTF8",
    "XSHADOWREQUEST", "XPROXYFROM", "  ", "x-lower-case arg"]), max_size=12)


@settings(max_examples=200, deadline=None)
@given(keyword_lines)
def test_learnt_ehlo_equals_what_aiosmtplib_and_the_rules_compute(kws):
    message = "\n".join(["mail.contoso.test Hello [192.0.2.10]", *kws])
    learnt = CS.learn_ehlo(250, message)
    assert learnt is CS.learn_ehlo(250, message)
    assert list(learnt.rows) == ehlo_reply_send(wire_lines(250, message))
    assert learnt.peer == offered(message.split("\n")[1:])
    assert (learnt.extensions, learnt.auth_methods) == parse_esmtp_extensions(message)


class _Protocol:
    def __init__(self, code: int, message: str) -> None:
        self.reply = aiosmtplib.SMTPResponse(code, message)
        self.sent: list[bytes] = []

    async def execute_command(self, *args: bytes, timeout: float | None = None) -> aiosmtplib.SMTPResponse:
        self.sent.append(b" ".join(args))
        return self.reply


class _Smtp(aiosmtplib.SMTP):
    closed = 0

    def close(self) -> None:
        self.closed += 1


async def test_ehlo_sets_aiosmtplib_state_as_its_own_ehlo_does():
    message = "mail.contoso.test Hello [192.0.2.10]\nSIZE 1000\nSTARTTLS\nAUTH NTLM LOGIN"
    ours, theirs = _Smtp(local_hostname="hub.contoso.test"), _Smtp(local_hostname="hub.contoso.test")
    ours.protocol = _Protocol(250, message)  # type: ignore[assignment]
    resp, learnt = await CS._ehlo(ours)
    theirs.last_ehlo_response = resp  # aiosmtplib's setter: the reference
    assert ours.protocol.sent == [b"EHLO hub.contoso.test"]  # type: ignore[union-attr]
    assert ours.last_ehlo_response is resp and ours.supports_esmtp and ours.supports_extension("starttls")
    assert (ours.esmtp_extensions, ours.server_auth_methods) == (theirs.esmtp_extensions, theirs.server_auth_methods)
    ours.esmtp_extensions["mutated"] = ""  # a session's copy: the next session learns the reply afresh
    ours.server_auth_methods.append("mutated")
    again, _ = await CS._ehlo(ours)
    assert "mutated" not in ours.esmtp_extensions and "mutated" not in ours.server_auth_methods
    assert ours.closed == 0


@pytest.mark.parametrize("code, closes", [(421, 1), (550, 0)])
async def test_ehlo_refused_raises_helo_error_and_closes_on_421(code, closes):
    smtp = _Smtp(local_hostname="hub.contoso.test")
    smtp.protocol = _Protocol(code, "4.3.2 Service not available")  # type: ignore[assignment]
    with pytest.raises(aiosmtplib.SMTPHeloError) as err:
        await CS._ehlo(smtp)
    assert err.value.code == code and smtp.closed == closes
    assert smtp.last_ehlo_response is None and not smtp.supports_esmtp


async def test_ehlo_without_a_connection_is_aiosmtplibs_error():
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await CS._ehlo(aiosmtplib.SMTP(local_hostname="hub.contoso.test"))


# --- X-EXPS blobs, endpoints ------------------------------------------------------------------------------

def test_exchange_auth_blobs_are_each_certificates_own():
    import base64
    import hashlib

    from labsim.smtp.policy import _server_auth_reply

    a, b = make_cert("a.contoso.test", serial=11), make_cert("b.contoso.test", serial=12)
    for cert in (a, b, fresh(a), a):
        plain = base64.b64encode(hashlib.sha256(cert.fingerprint(hashes.SHA256())).digest()).decode()
        assert CS._peer_blob(cert) == plain
        assert _server_auth_reply(plain) == "235 " + base64.b64encode(hashlib.sha256(plain.encode()).digest()).decode()
    assert CS._peer_blob(a) != CS._peer_blob(b)


@given(st.ip_addresses(), st.integers(0, 65535))
def test_endpoints_print_as_before(ip, port):
    from labsim.logs.protocol_text import format_endpoint

    text = str(ip)
    assert format_endpoint(text, port) == (f"[{text}]:{port}" if ip.version == 6 else f"{text}:{port}")


def test_kept_answers_by_object_and_by_value_agree():
    kept = V._Kept()
    a = make_cert("a.contoso.test", serial=21)
    b = make_cert("b.contoso.test", serial=22)
    assert kept.get(a, lambda c: "A") == "A"
    assert kept.get(fresh(a), lambda c: "recomputed") == "A"  # an equal certificate parsed afresh
    assert kept.get(b, lambda c: "B") == "B"
    assert kept.get(a, lambda c: "recomputed") == "A" and kept.get(b, lambda c: "recomputed") == "B"


def test_thumbprints_and_peer_certificates_are_per_certificate():
    from cryptography.hazmat.primitives.serialization import Encoding

    from labsim.pki.authority import thumbprint
    from labsim.pki.store import _certificate

    a, b = make_cert("a.contoso.test", serial=31), make_cert("b.contoso.test", serial=32)
    for cert in (a, fresh(a), b, a):
        assert thumbprint(cert) == cert.fingerprint(hashes.SHA1()).hex().upper()
    der = a.public_bytes(Encoding.DER)
    assert _certificate(der) is _certificate(bytes(der)) and _certificate(der) == a
    assert _certificate(b.public_bytes(Encoding.DER)) == b


# --- engine.sessions: a held connection found by its client ------------------------------------------------

def test_hold_open_marks_exactly_the_sessions_of_that_client():
    from labsim.engine.sessions import SessionGate

    class FakeSession:
        def __init__(self, host, sid):
            self.context = {"client_host": host, "client_session": sid} if host else {"remote": ("192.0.2.9", 1)}
            self.held = False

    gate = SessionGate.__new__(SessionGate)
    gate._init_sessions()
    a1, a2, b, stranger = FakeSession("HUB1", 7), FakeSession("HUB1", 7), FakeSession("HUB1", 8), FakeSession(None, None)
    clients = {id(s): gate._track(s) for s in (a1, a2, b, stranger)}  # type: ignore[arg-type]
    gate.hold_open(+1, ("HUB1", 7))
    assert (a1.held, a2.held, b.held, stranger.held) == (True, True, False, False) and gate._held == 1
    gate._untrack(a1, clients[id(a1)])  # type: ignore[arg-type]
    gate.hold_open(-1, ("HUB1", 7))
    assert (a1.held, a2.held) == (True, False) and gate._held == 0  # a finished session is not touched
    gate.hold_open(+1, ("HUB1", 8))
    gate.hold_open(+1, ("HUB1", 9))  # no such session (any more): only the count moves
    assert b.held and gate._held == 2
    for s in (a2, b, stranger):
        gate._untrack(s, clients[id(s)])  # type: ignore[arg-type]
    assert gate.sessions == set() and gate._by_client == {}


def test_chain_building_by_object_follows_the_time_and_the_certificates():
    trusted = make_cert("edge.contoso.test", serial=41)
    other = make_cert("edge.contoso.test", key=1, signer=1, serial=41)
    for when, want in [(NOW, True), (NOW + timedelta(days=2), False), (NOW, True), (NOW - timedelta(days=2), False)]:
        for leaf, anchors in [(trusted, [trusted]), (other, [trusted]), (other, [other])]:
            got = V._build(leaf, [], anchors, when)
            plain = V._verify(leaf, [], anchors, when)
            assert got == plain and (got is not None) == (want and anchors[0] is leaf)


def test_crl_distribution_points_are_each_certificates_own():
    def with_cdp(serial, urls):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crl.contoso.test")])
        points = [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in urls]
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(_KEYS[0].public_key())
             .serial_number(serial).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1)))
        if points:
            b = b.add_extension(x509.CRLDistributionPoints(points), critical=False)
        return b.sign(_KEYS[0], hashes.SHA256())

    a = with_cdp(51, ["http://crl.a.test/a.crl", "ldap://x/y", "HTTPS://crl.b.test/b.crl"])
    b, none = with_cdp(52, ["http://crl.c.test/c.crl"]), with_cdp(53, [])
    for cert, want in [(a, ["http://crl.a.test/a.crl", "HTTPS://crl.b.test/b.crl"]), (b, ["http://crl.c.test/c.crl"]),
                       (none, []), (fresh(a), ["http://crl.a.test/a.crl", "HTTPS://crl.b.test/b.crl"])]:
        urls = V.cdp_urls(cert)
        assert urls == want
        urls.append("mutated")
        assert V.cdp_urls(cert) == want
