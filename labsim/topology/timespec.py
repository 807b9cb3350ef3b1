"""Exchange TimeSpan strings (`00:10:00`, `2.00:00:00`, `-30.00:00:00`) and lab time references.

Scenario times are written the way an Exchange admin reads them: a TimeSpan relative to the
scenario start (`+00:00:05`, `-365.00:00:00`) or an absolute ISO-8601 UTC time.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache

_TIMESPAN = re.compile(r"^(?P<sign>[+-])?(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)$")
_SHORT = re.compile(r"^(?P<sign>[+-])?(?P<n>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


@lru_cache(maxsize=4096)
def parse_timespan(text: str) -> timedelta:
    """Parse `[-][d.]hh:mm:ss[.fff]` or a short form like `10m`, `4h`, `2d`, `-30d`.

    Values beyond Python's timedelta (about 2.7 million years) are a ValueError, like any other
    bad TimeSpan.

    Memoised: model settings (ConnectionTimeout, retry intervals, ...) are read per session and
    per queue row, and a topology holds only a few distinct TimeSpan strings. The function is pure
    and `timedelta` is immutable, so a cached value can be shared; errors are not cached."""
    if len(text) > 64:
        raise ValueError(f"not a TimeSpan: {text[:64]!r}... (too long)")
    try:
        m = _TIMESPAN.match(text.strip())
        if m:
            td = timedelta(days=int(m["days"] or 0), hours=int(m["h"]), minutes=int(m["m"]), seconds=float(m["s"]))
            return -td if m["sign"] == "-" else td
        m = _SHORT.match(text.strip())
        if m:
            td = timedelta(seconds=float(m["n"]) * _UNITS[m["unit"]])
            return -td if m["sign"] == "-" else td
    except OverflowError:
        raise ValueError(f"TimeSpan {text!r} is out of range") from None
    raise ValueError(f"not a TimeSpan: {text!r} (use d.hh:mm:ss such as 2.00:00:00, or 10m / 4h / 2d)")


def format_timespan(td: timedelta) -> str:
    total = int(td.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{days}.{h:02d}:{m:02d}:{s:02d}" if days else f"{sign}{h:02d}:{m:02d}:{s:02d}"


def resolve_time(text: str, start: datetime) -> datetime:
    """A scenario time: relative TimeSpan from `start`, or an absolute ISO time (UTC if no zone)."""
    text = text.strip()
    try:
        offset = parse_timespan(text)
    except ValueError:
        pass
    else:
        try:
            return start + offset
        except OverflowError:
            raise ValueError(f"{text!r} from {start:%Y-%m-%d} is beyond the calendar") from None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a time: {text!r} (use +hh:mm:ss relative to the start, or an ISO-8601 time)") from exc
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
