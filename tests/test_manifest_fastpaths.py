"""The manifest's indexer reads every log line back; its shortcuts give what the plain forms give
(csv module, the status regex, parsed times), so manifest.json's bytes do not depend on them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.clock import _iso_ms
from labsim.manifest import _STATUS, _csv, _gap, _iso, _status

_LINE = st.text(alphabet=st.sampled_from(list('ab,;" \r\t\x00x45.-0\u2028\x85\x1c')), max_size=30)


@settings(max_examples=500, deadline=None)
@given(_LINE)
def test_csv_as_the_csv_module_reads_a_line(line: str) -> None:
    try:
        want: object = next(csv.reader(io.StringIO(line)), [])
    except csv.Error as exc:
        want = repr(exc)
    try:
        got: object = _csv(line)
    except csv.Error as exc:
        got = repr(exc)
    assert got == want


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("45 -.0123x")), max_size=24))
def test_status_as_the_regex_finds_it(text: str) -> None:
    want, got = _STATUS.search(text), _status(text)
    assert (got and got.group(0)) == (want and want.group(0))


_T0 = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 3 * 10**6))
def test_gap_as_the_parsed_times_give_it(a_us: int, step_us: int) -> None:
    a = _T0 + timedelta(microseconds=a_us)
    b = a + timedelta(microseconds=step_us)
    before, after = _iso_ms(a), _iso_ms(b)
    want = (_iso(after) - _iso(before)).total_seconds()
    assert (_gap(before, after) >= 0.5) == (want >= 0.5)
    assert _gap("2026-05-01T06:00:00.0+05:00", "2026-05-01T06:00:00.0Z") == 18000.0  # not the shortcut
