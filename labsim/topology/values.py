"""Values of the world as Exchange takes them: ranges, sizes, TimeSpans and usable addresses.

The topology model (`model.py`) declares its fields with these types and validators, so every
number a scenario can set has Exchange's documented valid input range (docs/scenarios.md,
"Ranges") and every virtual address is one a lab host can have.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from .timespec import parse_timespan, resolve_time

INT32_MAX = 2147483647


def _ipv4(text: str) -> str:
    if not isinstance(text, str):  # org files: any TOML value may stand here
        raise ValueError(f"{text!r} is not an IPv4 address")
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address") from None


_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def virtual_ipv4(text: str) -> str:
    """A virtual address of the lab (a host, a VIP, a NAT address, a DNS server a host dials).

    Virtual addresses are mapped onto real ones in 127.0.0.0/8 when the lab starts, so one inside
    that block would collide with labsim's own; 0.0.0.0, multicast and the reserved 240.0.0.0/4
    (with the broadcast address) cannot be a host.
    """
    ip = ipaddress.IPv4Address(_ipv4(text))
    if ip in _LOOPBACK:
        raise ValueError(f"{ip} lies in 127.0.0.0/8, the block labsim's real sockets use; "
                         "give the host a non-loopback address (for example 192.0.2.10)")
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        raise ValueError(f"{ip} cannot be a host's address (unspecified, multicast or reserved)")
    return str(ip)


def _virtual_list(v: list[str]) -> list[str]:
    return [virtual_ipv4(x) for x in v]


VirtualIP = Annotated[str, BeforeValidator(lambda v: virtual_ipv4(v) if isinstance(v, str) else v)]
VirtualIPs = Annotated[list[str], BeforeValidator(lambda v: _virtual_list(v) if isinstance(v, list) else v)]
Port = Annotated[int, Field(ge=1, le=65535)]

_SIZE = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>B|KB|MB|GB|TB)?\s*(?:\([\d,]+ bytes\))?\s*$", re.I)
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def byte_size(value: Any) -> Any:
    """Exchange's ByteQuantifiedSize: 37748736, "36MB", "35 MB (36,700,160 bytes)" -> bytes."""
    if isinstance(value, bool) or not isinstance(value, str):
        return value  # ints (and wrong types) are left to the int field's own check
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size (bytes, or a number with B, KB, MB, GB or TB, e.g. 36MB)")
    size = float(m["n"]) * _SIZE_UNITS[(m["unit"] or "b").lower()]
    if size > 2**63:
        raise ValueError(f"{value!r} is far beyond any size Exchange accepts")
    return int(size)


ByteSize = Annotated[int, BeforeValidator(byte_size)]


def timespan_within(text: str, low: str, high: str) -> str:
    """An Exchange TimeSpan parameter inside its documented valid input range (kept as written)."""
    value = parse_timespan(text)  # a ValueError saying what is wrong with it
    if not parse_timespan(low) <= value <= parse_timespan(high):
        raise ValueError(f"{text!r} is outside the valid input range {low} through {high}")
    return text


def timespan_field(low: str, high: str) -> Any:
    return BeforeValidator(lambda v: timespan_within(v, low, high) if isinstance(v, str) else v)


# Scenario times (certificate validity) relative to the start, or absolute: within a century.
_TIME_LIMIT = timedelta(days=36525)


def time_reference(text: str) -> str:
    """`-30d`, `+365d`, `+00:10:00` from the start, or an ISO-8601 time between 1950 and 2999."""
    try:
        offset = parse_timespan(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a time: {text!r} (use -30d / +365d from the start, or an ISO-8601 time)") from None
        if not 1950 <= when.year <= 2999:
            raise ValueError(f"{text!r}: the year must be between 1950 and 2999 (X.509 validity)")
        return text
    if abs(offset) > _TIME_LIMIT:
        raise ValueError(f"{text!r} is more than 100 years from the start")
    return text


TimeReference = Annotated[str, BeforeValidator(lambda v: time_reference(v) if isinstance(v, str) else v)]


def validity_problem(not_before: str, not_after: str, start: datetime) -> str | None:
    """Why a certificate's validity cannot be issued at this start (None if it can): X.509 times
    from 1950 on (what cryptography's builder accepts), NotAfter after NotBefore."""
    try:
        nb = resolve_time(not_before, start).replace(microsecond=0)
        na = resolve_time(not_after, start).replace(microsecond=0)
    except ValueError as exc:
        return str(exc)
    for key, when in (("NotBefore", nb), ("NotAfter", na)):
        if when.year < 1950:
            return f"{key} falls on {when:%Y-%m-%d}, before 1950 (the earliest X.509 time a lab CA issues)"
    if na <= nb:
        return f"NotAfter {na:%Y-%m-%d %H:%M:%S} is not after NotBefore {nb:%Y-%m-%d %H:%M:%S}"
    return None


MAX_DELAY_MS = 3_600_000.0  # one hour: the longest link delay or slow close a scenario may ask for


def winhttp_proxy(v: str | None) -> str | None:
    """`netsh winhttp set proxy` IP:port, the IP a usable virtual address; empty means direct access."""
    if not v:
        return None
    ip, sep, port = v.strip().rpartition(":")
    if not sep or not port.isdigit() or len(port) > 5 or not 0 < int(port) < 65536:
        raise ValueError(f"proxy {v!r} is not IP:port (for example 192.168.1.50:8080)")
    return f"{virtual_ipv4(ip)}:{int(port)}"


def smart_host_ip(text: str) -> str | None:
    """The address of an IP smart host (`[192.0.2.1]` or bare `192.0.2.1`), used as is without DNS;
    None for an FQDN (Exchange and EXO both take an IP address as a smart host)."""
    host = text.strip()
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(literal))
    except ValueError:
        return None


def smart_host(text: str) -> str:
    """A smart host: an FQDN, or an IP address (`[192.0.2.1]` or bare) that must be a usable virtual one."""
    host = text.strip()
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        if not host:
            raise ValueError("a smart host cannot be empty") from None
        return text
    virtual_ipv4(literal)
    return text
