"""RemoteIPRanges: single addresses, `a-b` ranges and CIDR blocks, and how specific each is."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class IpRange:
    lo: int
    hi: int
    version: int

    @property
    def size(self) -> int:
        return self.hi - self.lo + 1

    def __contains__(self, ip: str) -> bool:
        a = ipaddress.ip_address(ip)
        return a.version == self.version and self.lo <= int(a) <= self.hi


@lru_cache(maxsize=4096)
def parse_range(text: str) -> IpRange:
    text = text.strip()
    if "-" in text:
        a, b = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
        return IpRange(int(a), int(b), a.version)
    if "/" in text:
        net = ipaddress.ip_network(text, strict=False)
        return IpRange(int(net.network_address), int(net.broadcast_address), net.version)
    a = ipaddress.ip_address(text)
    return IpRange(int(a), int(a), a.version)


def best_match_size(ranges: list[str], ip: str) -> int | None:
    """Size of the smallest range containing `ip` (smaller = more specific), or None."""
    sizes = [r.size for r in map(parse_range, ranges) if ip in r]
    return min(sizes) if sizes else None
