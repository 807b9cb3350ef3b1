"""The SMTP client's decisions without I/O (smtp.client_rules): reply lines, filing of refusals, the
step after EHLO, how a failed attempt is closed, and the failover walk over targets and TLS passes."""

from __future__ import annotations

import pytest
from aiosmtplib.protocol import normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from labsim.rules import verbs as V
from labsim.rules.outbound import AttemptFailure
from labsim.smtp.client_rules import (
    Ready,
    TargetWalk,
    close_action,
    crlf_body,
    exchange_auth_next,
    ready_step,
    refuse,
    wire_lines,
)
from labsim.smtp.send_spec import ClientTls, MessageResult, Target

EXCHANGE_SERVER = V.Sender(exchange=True, exchange_server_auth=True)


def test_wire_lines_of_one_line_many_lines_and_an_empty_text() -> None:
    assert wire_lines(250, "2.1.0 Sender OK") == ["250 2.1.0 Sender OK"]
    assert wire_lines(250, "mx.example.com Hello\nSIZE 1000\nSTARTTLS") == [
        "250-mx.example.com Hello", "250-SIZE 1000", "250 STARTTLS"]
    assert wire_lines(250, "") == ["250"]
    assert wire_lines(421, "a\n") == ["421-a", "421"]


def test_refusals_file_5xx_as_rejected_and_4xx_as_deferred() -> None:
    result = MessageResult(key=1)
    refuse(result, 550, "550 5.1.1 unknown", ["a@x", "b@x"])
    refuse(result, 451, "451 4.7.0 later", ["c@x"])
    assert result.rejected == {"a@x": "550 5.1.1 unknown", "b@x": "550 5.1.1 unknown"}
    assert result.deferred == {"c@x": "451 4.7.0 later"}


@pytest.mark.parametrize("sender, peer, tls, step", [
    (EXCHANGE_SERVER, {"X-ANONYMOUSTLS": [], "STARTTLS": []}, ClientTls(), Ready.ANONYMOUS_TLS),
    (EXCHANGE_SERVER, {"X-ANONYMOUSTLS": []}, ClientTls(attempt=False), Ready.PLAIN),
    (EXCHANGE_SERVER, {"STARTTLS": []}, ClientTls(), Ready.STARTTLS),  # no X-ANONYMOUSTLS: the TLS plan
    (V.PLAIN_MTA, {"X-ANONYMOUSTLS": [], "STARTTLS": []}, ClientTls(), Ready.STARTTLS),
    (V.PLAIN_MTA, {}, ClientTls(), Ready.PLAIN),
    (V.PLAIN_MTA, {}, ClientTls(require=True), Ready.FAIL_TLS_REQUIRED),
    (V.PLAIN_MTA, {"STARTTLS": []}, ClientTls(cert_not_found=True), Ready.FAIL_CERT_NOT_FOUND),
])
def test_the_step_after_the_first_ehlo(sender: V.Sender, peer: dict[str, list[str]], tls: ClientTls,
                                       step: Ready) -> None:
    assert ready_step(sender, peer, tls) == step


def test_exchange_auth_follows_anonymous_tls_only_when_offered() -> None:
    offered = {"X-EXPS": ["EXCHANGEAUTH"]}
    assert exchange_auth_next(EXCHANGE_SERVER, offered, anonymous_tls=True)
    assert not exchange_auth_next(EXCHANGE_SERVER, offered, anonymous_tls=False)
    assert not exchange_auth_next(EXCHANGE_SERVER, {}, anonymous_tls=True)
    assert not exchange_auth_next(V.Sender(exchange_server_auth=True, bridgehead=False), offered, anonymous_tls=True)


@pytest.mark.parametrize("connected, rows, kind, action", [
    (False, 2, "connect_refused", None),  # nothing beyond the first rows: nothing to close
    (False, 5, "socket", "Remote"),  # the peer dropped the session
    (True, 9, "response", "quit"),
    (True, 9, "tls_required", "quit"),
    (True, 9, "cert_validation", "quit"),
    (True, 9, "socket", "Remote"),
    (True, 9, "tls_failed", "Local"),
    (True, 9, "tls_cert_not_found", "Local"),
])
def test_how_a_failed_attempt_is_closed(connected: bool, rows: int, kind: str, action: str | None) -> None:
    assert close_action(connected, rows, kind) == action


def _fail(kind: str) -> AttemptFailure:
    return AttemptFailure(kind=kind, target_ip="10.0.0.1", target_port=25)


def test_the_walk_tries_each_target_once_then_stops() -> None:
    targets = [Target("10.0.0.1", 25, "a"), Target("10.0.0.2", 25, "b")]
    tls = ClientTls()
    walk = TargetWalk(targets, tls)
    first = walk.next(None)
    second = walk.next(_fail("socket"))
    assert first == (0, targets[0], tls) and second == (1, targets[1], tls)
    assert walk.next(_fail("socket")) is None and walk.exhausted
    assert walk.next(None) is None


def test_after_every_handshake_failed_the_walk_retries_in_the_clear() -> None:
    targets = [Target("10.0.0.1", 25, "a"), Target("10.0.0.2", 25, "b")]
    tls = ClientTls(fallback=True)
    walk = TargetWalk(targets, tls)
    walk.next(None)
    walk.next(_fail("tls_failed"))
    again = walk.next(_fail("tls_failed"))
    assert again is not None
    i, target, plain = again
    assert (i, target) == (0, targets[0]) and walk.is_fallback(plain) and not walk.is_fallback(tls)
    assert not plain.attempt and not plain.fallback
    assert walk.next(_fail("tls_failed"))[1] == targets[1]  # type: ignore[index]
    assert walk.next(_fail("tls_failed")) is None  # one plain pass only


def test_a_required_tls_connector_never_falls_back() -> None:
    walk = TargetWalk([Target("10.0.0.1", 25, "a")], ClientTls(require=True))
    walk.next(None)
    assert walk.next(_fail("tls_failed")) is None


@given(st.binary(max_size=40) | st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n"]), max_size=30).map(b"".join))
def test_the_wire_body_is_aiosmtplibs_normalised_message(data: bytes) -> None:
    assert crlf_body(data) == normalize_message_line_endings(data)
