"""When a queue or a message is tried again, and when it is given up: Exchange's retry rules.

Source: Microsoft Learn "Message retry, resubmit, and expiration intervals" (ExchangeServer
mail-flow/queues/message-intervals.md, mirrored in x13-me/OfficeDocs-Exchange) and
transport-behavior.md §6.3:

- after a failed connection to the next hop the queue goes to Retry and is tried again
  QueueGlitchRetryCount (4) times QueueGlitchRetryInterval (1 min) apart, then
  TransientFailureRetryCount (6) times TransientFailureRetryInterval apart (5 min Mailbox, 10 min
  Edge), then every OutboundConnectionFailureRetryInterval (10 min Mailbox, 30 min Edge) until
  the messages expire;
- a message that failed on its own while the connection worked (a 4xx to RCPT or DATA) waits
  MessageRetryInterval (15 min);
- a delay DSN goes to the sender once the message has waited DelayNotificationTimeout (4 h);
- the message expires after MessageExpirationTimeout (2 days) -> NDR `550 4.4.7`.

Plain functions over plain data: the engine asks, these answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

GLITCH_RETRY_COUNT = 4  # EdgeTransport.exe.config QueueGlitchRetryCount
GLITCH_RETRY_INTERVAL = timedelta(minutes=1)  # QueueGlitchRetryInterval


@dataclass(frozen=True)
class RetryPolicy:
    """The retry and expiry settings of one transport service (Set-TransportService)."""

    transient_count: int = 6
    transient_interval: timedelta = timedelta(minutes=5)
    outbound_interval: timedelta = timedelta(minutes=10)
    message_retry_interval: timedelta = timedelta(minutes=15)
    delay_notification: timedelta | None = timedelta(hours=4)  # None: no delay DSN
    expiration: timedelta = timedelta(days=2)
    glitch_count: int = GLITCH_RETRY_COUNT
    glitch_interval: timedelta = GLITCH_RETRY_INTERVAL


def connection_retry_delay(policy: RetryPolicy, failures: int) -> timedelta:
    """How long after the `failures`-th consecutive failed connection the queue is tried again."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    if failures <= policy.glitch_count:
        return policy.glitch_interval
    if failures <= policy.glitch_count + policy.transient_count:
        return policy.transient_interval
    return policy.outbound_interval


def expires_at(policy: RetryPolicy, received: datetime) -> datetime:
    return received + policy.expiration


def delay_dsn_at(policy: RetryPolicy, received: datetime) -> datetime | None:
    """When a still-undelivered message earns its sender a delay DSN (None: never)."""
    if policy.delay_notification is None or policy.delay_notification >= policy.expiration:
        return None
    return received + policy.delay_notification


def retry_schedule(policy: RetryPolicy, first_failure: datetime, until: datetime) -> list[datetime]:
    """Every connection attempt after a first failure at `first_failure`, up to `until`.

    What an admin should see in the Send protocol log of a hop that stays down (used by tests and
    documentation; the engine applies `connection_retry_delay` one step at a time).
    """
    times: list[datetime] = []
    t, n = first_failure, 1
    while True:
        t = t + connection_retry_delay(policy, n)
        if t > until:
            return times
        times.append(t)
        n += 1
