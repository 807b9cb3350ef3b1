"""A DNS client's cache on the lab's clock: what a transport service remembers between lookups.

Exchange's transport asks DNS through a client that remembers answers for their TTL, and
remembers "no such name" / "no such record" for the negative TTL of RFC 2308 (the SOA's MINIMUM,
bounded by the SOA record's own TTL); both are bounded like the Windows DNS client's cache
(`MaxCacheTtl` 86400 s, `MaxNegativeCacheTtl` 900 s). The cache belongs to the process: it is
empty when the service starts, so a restart of the service forgets everything
(docs/network-dns-routing.md §5). Failures (SERVFAIL, timeouts) are not cached: the next lookup
asks again.

Why not dnspython's `dns.resolver.Cache` / `LRUCache`: they stamp and expire entries with
`time.time()` (`Answer.expiration`, `Cache.get`), the wall clock. The lab runs on a virtual clock
(`labsim.clock.VirtualClock`: a scenario's hour passes in a second), so a record with a one-hour
TTL would stay cached for an hour of *real* time and expiry would depend on how fast the machine
is - output would no longer be deterministic. This cache takes a `now()` callable instead and
stores plain records (what the lab's resolver returns), not dnspython `Answer` objects.

Entries are keyed by (nameservers, name, type): a service that is told to use other DNS servers
(Set-TransportService -InternalDNSServers) does not reuse what the old servers said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

__all__ = ["DnsCache", "CacheEntry", "CacheKey", "MAX_CACHE_TTL", "MAX_NEGATIVE_CACHE_TTL"]

MAX_CACHE_TTL = 86400
"""Upper bound (s) of a positive answer's lifetime: Windows DNS client `MaxCacheTtl` default."""

MAX_NEGATIVE_CACHE_TTL = 900
"""Upper bound (s) of a negative answer's lifetime: Windows DNS client `MaxNegativeCacheTtl` default."""

CacheKey = tuple[tuple[str, ...], str, str]  # (nameservers in order, qname, qtype)


@dataclass(frozen=True)
class CacheEntry:
    records: tuple[Any, ...]   # positive: the records as the resolver returns them; negative: ()
    server: str                # the nameserver that gave the answer
    expires: datetime          # on the lab clock
    negative: str = ""         # "" for an answer, else the error class name: DnsNameError / DnsNoData


class DnsCache:
    """Answers and negative answers until their TTL runs out on `now()`; see the module docstring."""

    def __init__(self, now: Callable[[], datetime], *, max_ttl: int = MAX_CACHE_TTL,
                 max_negative_ttl: int = MAX_NEGATIVE_CACHE_TTL) -> None:
        self._now = now
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self._entries: dict[CacheKey, CacheEntry] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CacheEntry | None:
        """The live entry for `key`; an expired one is dropped (a TTL of n s lives n s, not n + 1)."""
        entry = self._entries.get(key)
        if entry is not None and self._now() >= entry.expires:
            del self._entries[key]
            entry = None
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: CacheKey, records: list[Any], server: str, ttl: int) -> None:
        """Remember an answer for min(ttl, max_ttl) seconds; a TTL of 0 is not cached (RFC 1035 §3.2.1)."""
        self._store(key, CacheEntry(tuple(records), server, self._expiry(min(ttl, self.max_ttl))))

    def put_negative(self, key: CacheKey, kind: str, server: str, ttl: int) -> None:
        """Remember NXDOMAIN / NODATA (`kind`: the error class name) for min(ttl, max_negative_ttl) s."""
        self._store(key, CacheEntry((), server, self._expiry(min(ttl, self.max_negative_ttl)), kind))

    def flush(self) -> None:
        """Forget everything (the owning service stopped; a new process starts empty)."""
        self._entries.clear()

    def _expiry(self, ttl: int) -> datetime:
        return self._now() + timedelta(seconds=max(0, ttl))

    def _store(self, key: CacheKey, entry: CacheEntry) -> None:
        if entry.expires > self._now():
            self._entries[key] = entry
