"""Retry and expiry on virtual time: the pure rules, then a hop that stays broken for two days."""

from __future__ import annotations

import email
import re
from datetime import datetime, timedelta, timezone
from email.policy import compat32
from pathlib import Path

import pytest
from conftest import SCENARIOS, folder_rows
from hypothesis import given
from hypothesis import strategies as st

from labsim.engine.driver import run_scenario
from labsim.engine.queueing import policy_from_transport
from labsim.logs.queue_history import QUEUE_HISTORY_FILE, queue_history, read_lines
from labsim.rules.retry import (
    RetryPolicy,
    connection_retry_delay,
    delay_dsn_at,
    expires_at,
    retry_schedule,
)
from labsim.scenario.loader import load_scenario
from labsim.smtp.client import CONNECT_TIMEOUT_VIRTUAL
from labsim.topology.defaults import default_lab

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=timezone.utc)


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the rules -----------------------------------------------------------------------------------------
def test_ladder_follows_message_intervals_doc() -> None:
    p = RetryPolicy()  # Mailbox defaults
    delays = [connection_retry_delay(p, n) for n in range(1, 14)]
    assert delays[:4] == [timedelta(minutes=1)] * 4  # QueueGlitchRetryCount x QueueGlitchRetryInterval
    assert delays[4:10] == [timedelta(minutes=5)] * 6  # TransientFailureRetryCount x Interval
    assert set(delays[10:]) == {timedelta(minutes=10)}  # OutboundConnectionFailureRetryInterval


def test_edge_and_mailbox_defaults_come_from_the_topology() -> None:
    lab = default_lab()
    mailbox = policy_from_transport(lab.organization.server("CMHYBD01").transport)
    edge = policy_from_transport(lab.organization.server("CMEDGE01").transport)
    assert (mailbox.transient_interval, mailbox.outbound_interval) == (timedelta(minutes=5), timedelta(minutes=10))
    assert (edge.transient_interval, edge.outbound_interval) == (timedelta(minutes=10), timedelta(minutes=30))
    assert mailbox.delay_notification == timedelta(hours=4) and mailbox.expiration == timedelta(days=2)


@given(st.integers(min_value=0, max_value=15), st.integers(min_value=1, max_value=60),
       st.integers(min_value=1, max_value=120), st.integers(min_value=1, max_value=400))
def test_ladder_never_shrinks_back_to_glitch(count: int, transient: int, outbound: int, n: int) -> None:
    p = RetryPolicy(transient_count=count, transient_interval=timedelta(minutes=transient),
                    outbound_interval=timedelta(minutes=outbound))
    d = connection_retry_delay(p, n)
    if n <= p.glitch_count:
        assert d == p.glitch_interval
    elif n <= p.glitch_count + count:
        assert d == p.transient_interval
    else:
        assert d == p.outbound_interval


def test_schedule_over_two_days() -> None:
    p = RetryPolicy()
    times = retry_schedule(p, T0, T0 + p.expiration)
    assert times == sorted(times) and times[-1] <= T0 + p.expiration
    first_outbound = T0 + 4 * p.glitch_interval + 6 * p.transient_interval
    assert len(times) == 10 + int((T0 + p.expiration - first_outbound) / p.outbound_interval)


def test_delay_dsn_only_before_expiry() -> None:
    assert delay_dsn_at(RetryPolicy(), T0) == T0 + timedelta(hours=4)
    assert delay_dsn_at(RetryPolicy(delay_notification=timedelta(days=3)), T0) is None
    assert delay_dsn_at(RetryPolicy(delay_notification=None), T0) is None
    assert expires_at(RetryPolicy(), T0) == T0 + timedelta(days=2)


def test_zero_failures_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        connection_retry_delay(RetryPolicy(), 0)


# --- a hop that stays broken ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("broken") / "out"
    result = run_scenario(load_scenario(SCENARIOS / "queue-retry-until-expiry.toml"), out=out)
    print(f"\n  queue-retry-until-expiry: 2 virtual days in {result.wall_seconds:.2f} s of wall time")
    return result


def test_two_days_in_well_under_a_second(broken) -> None:
    assert broken.ok, [o for o in broken.outcomes if not o.ok]
    assert broken.wall_seconds < 1.5  # typically ~0.25 s; room for a loaded machine


def test_attempts_follow_the_ladder(broken) -> None:
    rows = folder_rows(broken.out, "CMHYBD01", "Hub", "SmtpSend")
    starts = [_iso(r[0]) for r in rows if r[8] == "attempting to connect"]
    policy = RetryPolicy()
    timeout = timedelta(seconds=CONNECT_TIMEOUT_VIRTUAL)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    expected = [connection_retry_delay(policy, n) + timeout for n in range(1, len(gaps) + 1)]
    assert gaps == expected
    summary = broken.summary
    injected = _iso(summary["messages"][0]["injected"])
    assert starts[-1] <= injected + policy.expiration < starts[-1] + policy.outbound_interval + timeout


def test_delay_dsn_then_expiry_ndr(broken) -> None:
    m = broken.summary["messages"][0]
    injected = _iso(m["injected"])
    delay, ndr = m["notifications"]
    assert delay["action"] == "delayed" and ndr["action"] == "failed"
    # The Hub received the message a few ms after submission; the clocks run from that arrival.
    assert timedelta(hours=4) <= _iso(delay["time"]) - injected < timedelta(hours=4, seconds=1)
    assert timedelta(days=2) <= _iso(ndr["time"]) - injected < timedelta(days=2, seconds=1)
    for note in (delay, ndr):
        assert note["delivered_to"] == "raghu@cloudmonkeys.xyz" and note["realm"] == "onprem"
    msg = email.message_from_bytes((broken.out / ndr["path"]).read_bytes(), policy=compat32)
    assert msg["Subject"] == f"Undeliverable: {m['subject']}"
    status = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status").get_payload()
    per_rcpt = dict(status[1].items())
    assert per_rcpt["Status"] == "4.4.7"
    assert per_rcpt["Diagnostic-Code"] == "smtp;550 4.4.7 QUEUE.Expired; message expired"
    delayed = email.message_from_bytes((broken.out / delay["path"]).read_bytes(), policy=compat32)
    assert delayed["Subject"].startswith("Delivery delayed:")
    block = dict(next(p for p in delayed.walk() if p.get_content_type() == "message/delivery-status")
                 .get_payload()[1].items())
    assert block["Action"] == "delayed" and "Will-Retry-Until" in block


def test_queue_history_shows_retry_then_empty(broken) -> None:
    lines = read_lines(broken.out / QUEUE_HISTORY_FILE)
    history = [h for h in queue_history(lines) if h["DeliveryType"] == "SmartHostConnectorDelivery"]
    assert {h["Status"] for h in history} >= {"Retry"}
    retry = [h for h in history if h["Status"] == "Retry"]
    # Get-Queue's structured LastError after a failed attempt (Exchange 2013+):
    # [{LRT=<last retry, en-US>};{LED=<error>};{FQDN=<host>};{IP=<address>}]
    pattern = re.compile(r'^\[\{LRT=\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d\d:\d\d [AP]M\};'
                         r'\{LED=451 4\.4\.0 Primary target IP address responded with: .*\};'
                         r'\{FQDN=[^}]*\};\{IP=[0-9.]+\}\]$')
    assert retry and all(pattern.match(h["LastError"]) for h in retry), retry[0]["LastError"]
    assert history[-1]["MessageCount"] == 0
    assert len(retry) == len([r for r in folder_rows(broken.out, "CMHYBD01", "Hub", "SmtpSend")
                              if r[8] == "attempting to connect"])


def test_two_runs_identical(broken, tmp_path: Path) -> None:
    again = run_scenario(load_scenario(SCENARIOS / "queue-retry-until-expiry.toml"), out=tmp_path / "again")
    a = sorted(p.relative_to(broken.out) for p in broken.out.rglob("*") if p.is_file())
    b = sorted(p.relative_to(again.out) for p in again.out.rglob("*") if p.is_file())
    assert a == b
    for rel in a:
        assert (broken.out / rel).read_bytes() == (again.out / rel).read_bytes(), rel


def test_get_message_at_a_moment(broken) -> None:
    from conftest import run_cli

    rc, out, _ = run_cli(["queue", str(broken.out), "--messages", "--at", "+04:00:00", "--csv"])
    assert rc == 0
    lines = out.strip().split("\r\n")
    assert len(lines) == 2 and '"Retry"' in lines[1] and "451 4.4.0 Primary target IP address" in lines[1]
    rc, out, _ = run_cli(["queue", str(broken.out), "--messages", "--at", "+2.01:00:00"])
    assert rc == 0 and out == "(nothing)\n"  # expired and NDR'd by then
