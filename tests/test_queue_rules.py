"""engine.queue_rules: the queue's pure decisions, without a lab (decide here, act in engine.queue_drain)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from labsim.engine.queue_rules import (
    DEFERRED,
    DONE,
    UNCONNECTED,
    message_outcome,
    next_drain_at,
)
from labsim.rules.outbound import AttemptFailure
from labsim.smtp.client import MessageResult

NOW = datetime(2026, 5, 1, 6, 0, tzinfo=timezone.utc)
RCPTS = ["a@contoso.com", "b@contoso.com", "c@contoso.com"]


def test_a_message_whose_recipients_were_all_delivered_or_rejected_leaves_the_queue() -> None:
    res = MessageResult(key=None, delivered=["a@contoso.com", "c@contoso.com"],
                        rejected={"b@contoso.com": "550 5.1.1 User unknown"})
    assert message_outcome(RCPTS, res) == ([], DONE)


def test_recipients_deferred_by_a_server_wait_on_their_own() -> None:
    res = MessageResult(key=None, delivered=["a@contoso.com"],
                        deferred={"b@contoso.com": "451 4.7.1 Try later", "c@contoso.com": "451 4.7.1 Try later"})
    assert message_outcome(RCPTS, res) == (["b@contoso.com", "c@contoso.com"], DEFERRED)


def test_no_server_reached_means_the_queue_retries_the_connection() -> None:
    res = MessageResult(key=None, failure=AttemptFailure(kind="connect_timeout", target_ip="192.0.2.1", target_port=25))
    assert message_outcome(RCPTS, res) == (RCPTS, UNCONNECTED)


def test_a_4xx_reply_after_a_failed_attempt_is_still_a_deferral() -> None:
    failure = AttemptFailure(kind="response", target_ip="192.0.2.1", target_port=25, response="451 4.4.0 busy")
    res = MessageResult(key=None, failure=failure, deferred={r: "451 4.4.0 busy" for r in RCPTS})
    assert message_outcome(RCPTS, res) == (RCPTS, DEFERRED)


def test_a_backlog_the_open_connections_cannot_carry_drains_now() -> None:
    assert next_drain_at(eligible=5, spare=4, retry_times=[], now=NOW) == NOW


def test_a_backlog_the_open_connections_can_carry_needs_no_drain() -> None:
    assert next_drain_at(eligible=4, spare=4, retry_times=[NOW + timedelta(minutes=1)], now=NOW) is None


def test_with_nothing_eligible_the_queue_wakes_at_the_earliest_message_retry() -> None:
    later = [NOW + timedelta(minutes=15), NOW + timedelta(minutes=1)]
    assert next_drain_at(eligible=0, spare=0, retry_times=later, now=NOW) == NOW + timedelta(minutes=1)
    assert next_drain_at(eligible=0, spare=0, retry_times=[], now=NOW) is None
