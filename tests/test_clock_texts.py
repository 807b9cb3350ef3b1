"""Log timestamps and banner dates keep their text whatever the clock's shortcuts (`up` mode makes
every instant new, so `iso_ms` and `rfc2822_local` share the text of a whole second)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.clock import _rfc2822_local, iso_ms, rfc2822_local

_INSTANTS = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
                         timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                    timezone(timedelta(hours=-8))]))


def _plain_iso(when: datetime) -> str:
    u = when.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond // 1000:03d}Z"


@settings(max_examples=1000, deadline=None)
@given(_INSTANTS)
def test_iso_ms_prints_the_instant_truncated_to_the_millisecond(when: datetime) -> None:
    assert iso_ms(when) == _plain_iso(when)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**6), st.integers(-10**6, 10**6))
def test_instants_near_a_second_boundary_keep_their_second(second: int, us: int) -> None:
    # the boundary itself, the microsecond before and after it: never printed as the next second
    base = datetime(2026, 5, 1, tzinfo=UTC) + timedelta(seconds=second)
    for when in (base - timedelta(microseconds=1), base, base + timedelta(microseconds=us)):
        assert iso_ms(when) == _plain_iso(when)
        assert rfc2822_local(when, 60) == _rfc2822_local(when, 60)


@settings(max_examples=500, deadline=None)
@given(_INSTANTS, st.integers(-14 * 60, 14 * 60))
def test_rfc2822_local_as_computed_for_the_instant(when: datetime, offset: int) -> None:
    assert rfc2822_local(when, offset) == _rfc2822_local(when, offset)
    assert rfc2822_local(when, offset) == _rfc2822_local(when, offset)  # from the kept text
