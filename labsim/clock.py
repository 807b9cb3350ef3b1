"""Virtual time.

Every timestamp in the lab comes from a `VirtualClock`. In `run` mode it only moves when the lab
moves it (the scheduler sets it to the time of the next action; the party whose turn it is in an
SMTP exchange advances it by the modelled latency), so output depends on causality only, never on
the event loop. In `up` mode it follows the wall clock.

Only one party is ever "active" in a run: a client that has sent a command waits for the reply,
and a server only acts on what it has read. So advancing the clock from the active party is
race-free.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
_DOTNET_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_STEPS: dict[float, timedelta] = {}  # VirtualClock.advance: seconds -> timedelta(seconds=seconds)


class VirtualClock:
    """A clock that moves only when told to (or follows wall time when `live`)."""

    def __init__(self, start: datetime, *, live: bool = False) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock's start time must be timezone-aware")
        self._now = start.astimezone(UTC)
        self.live = live
        self._wall_anchor_ns = time.monotonic_ns()
        self._start = self._now

    def now(self) -> datetime:
        if self.live:
            # whole microseconds from integer nanoseconds: cheaper than a float's timedelta, many times a message
            return self._start + timedelta(0, 0, (time.monotonic_ns() - self._wall_anchor_ns) // 1000)
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by `seconds` (ignored in live mode, where real time passes by itself)."""
        if seconds < 0:
            raise ValueError("time does not run backwards")
        if self.live:
            return self.now()
        # a few modelled latencies, many times a message: each one's timedelta is built once
        step = _STEPS.get(seconds)
        if step is None:
            if len(_STEPS) >= 256:
                _STEPS.clear()
            step = _STEPS[seconds] = timedelta(seconds=seconds)
        self._now += step
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when` if it is later than now (the scheduler's move to the next action)."""
        when = when.astimezone(UTC)
        if not self.live and when > self._now:
            self._now = when

    def rewind(self, when: datetime) -> None:
        """Put the clock at a session's own cursor, even if other work has moved it further.

        Sessions that run side by side in virtual time (a queue's parallel connections, a
        connection that waited while other actions ran) each go on from their own cursor.
        """
        if not self.live:
            self._now = when.astimezone(UTC)


def iso_ms(when: datetime) -> str:
    """Exchange's log timestamp: UTC `yyyy-MM-ddTHH:mm:ss.fffZ`, always three decimals.

    Every log row, trace event and queue row prints one, and most instants are printed once or a
    few times: the text of each second (`yyyy-MM-ddTHH:mm:ss.`) is kept, found by the instant's
    whole seconds since 1970, and its milliseconds come from a table. Both are read off the
    instant's distance from 1970 (a timedelta, exact in integers: days, seconds and microseconds
    of a floor division, for any zone and any year), which is cheaper than hashing the instant or
    its float timestamp."""
    try:
        since = when - _EPOCH
    except TypeError:  # a naive datetime: read as local time by astimezone
        return _iso_ms(when)
    second = since.days * 86400 + since.seconds
    head = _ISO_HEADS.get(second)
    if head is None:
        if len(_ISO_HEADS) >= 1024:
            _ISO_HEADS.clear()
        head = _ISO_HEADS[second] = _iso_slow(when.astimezone(UTC))[:-4]  # without `fffZ`
    return head + _MS_Z[since.microseconds // 1000]


def _iso_ms(when: datetime) -> str:
    """`iso_ms` of a naive datetime (local time): the text of its second is kept (`_second`), and
    its milliseconds come from a table."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    second = _second(when)
    if second is not None:
        head = _ISO_SECONDS.get(second)
        if head is None:
            if len(_ISO_SECONDS) >= 1024:
                _ISO_SECONDS.clear()
            head = _ISO_SECONDS[second] = _iso_slow(when)[:20]
        return head + _MS_Z[when.microsecond // 1000]
    return _iso_slow(when)


def _iso_slow(when: datetime) -> str:
    if 1000 <= when.year:  # isoformat truncates to the millisecond, as // 1000 does
        return when.isoformat(timespec="milliseconds")[:23] + "Z"
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _second(when: datetime) -> float | None:
    """The whole second `when` lies in, as a number (POSIX seconds, floored), or None far from now.

    `timestamp()` divides the exact count of microseconds once, correctly rounded: below 2**33 s
    (years 1697 to 2242) the error is under half a microsecond, so an instant never rounds into
    the next second; further out the caller formats the instant itself."""
    ts = when.timestamp()
    return ts // 1 if -_FAR < ts < _FAR else None


_FAR = float(2**33)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO_HEADS: dict[int, str] = {}  # whole seconds since 1970 -> `yyyy-MM-ddTHH:mm:ss.` (iso_ms)
_ISO_SECONDS: dict[float, str] = {}  # a second's `yyyy-MM-ddTHH:mm:ss.`
_MS_Z = [f"{ms:03d}Z" for ms in range(1000)]


def dotnet_ticks(when: datetime) -> int:
    """100-ns ticks since 0001-01-01, the base of Exchange's session ids (08DC..., 08DD...)."""
    delta = when.astimezone(UTC) - _DOTNET_EPOCH
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def rfc2822_local(when: datetime, utc_offset_minutes: int) -> str:
    """The banner's date: `Wed, 11 Jan 2023 16:59:51 +0100` in the server's local time.

    The day of month is not zero-padded, as in the EOP capture `Mon, 4 Jul 2022 12:14:15 +0000`.
    """
    second = _second(when)  # the text shows whole seconds: every instant of one second shares it
    key = (when if second is None else second, utc_offset_minutes)
    text = _RFC2822_TEXTS.get(key)
    if text is None:
        if len(_RFC2822_TEXTS) >= 1024:
            _RFC2822_TEXTS.clear()
        text = _RFC2822_TEXTS[key] = _rfc2822_local(when, utc_offset_minutes)
    return text


_RFC2822_TEXTS: dict[tuple[datetime | float, int], str] = {}  # as iso_ms: the same few instants, many headers


def _rfc2822_local(when: datetime, utc_offset_minutes: int) -> str:
    tz = timezone(timedelta(minutes=utc_offset_minutes))
    local = when.astimezone(tz)
    sign = "+" if utc_offset_minutes >= 0 else "-"
    off = abs(utc_offset_minutes)
    return (
        f"{local.strftime('%a')}, {local.day} {local.strftime('%b %Y %H:%M:%S')} "
        f"{sign}{off // 60:02d}{off % 60:02d}"
    )


def us_time(t: datetime | None) -> str:
    """`3/12/2025 7:50:43 PM`: a .NET DateTime printed in the en-US culture (UTC in the lab).

    Exchange's structured statuses (`{LRT=...}`) and cmdlet output print times this way.
    """
    if t is None:
        return ""
    hour = t.hour % 12 or 12
    return f"{t.month}/{t.day}/{t.year} {hour}:{t.minute:02d}:{t.second:02d} {'AM' if t.hour < 12 else 'PM'}"
