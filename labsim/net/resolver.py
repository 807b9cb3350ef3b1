"""The client side of lab DNS: what a transport service uses (InternalDNSServers/ExternalDNSServers).

`LabResolver` asks the lab's DNS servers over real UDP (dnspython's `dns.asyncquery.udp`), one
nameserver after the other like the Windows DNS client: the next server on timeout, SERVFAIL,
REFUSED (or any other failure rcode); an NXDOMAIN or NOERROR answer is authoritative and stops.
Nameservers are virtual IPs mapped by the `AddressBook`; every destination and the source address
(`source_ip`, a real loopback address, so servers can tell clients apart) pass `guard_real`.
Each query uses its own *connected* UDP socket, so a stopped server (ICMP port unreachable) fails
at once instead of costing a real timeout.

Time: the lab runs on a virtual clock. The real wait per attempt is `timeout` (short); what the
lookups *would* have cost on Windows is reported as `elapsed_virtual` from `VIRTUAL_TIMEOUTS`
(on every error, and on `DnsAnswer` from `lookup`). A server that is stopped counts as a timed-out
attempt too: Exchange's DNS client does not act on ICMP, it waits for its timeout.

Errors (module-level classes, one table `EXCHANGE_DNS_ERRORS` for the Exchange side):
`DnsNameError` (NXDOMAIN), `DnsNoData`, `DnsServerFailure` (every server that answered said
SERVFAIL/REFUSED), `DnsTimeout` (no server answered at all).

Caching: with a `DnsCache` (net.dnscache; the owner - a transport service - keeps it across
lookups), `lookup` answers from it while an entry lives: answers for the smallest TTL of the
records (CNAMEs included), NXDOMAIN/NODATA for the negative TTL of RFC 2308 §5 (min of the SOA's
TTL and MINIMUM; not cached without an SOA), failures never. A cached answer costs no query and
no virtual time (`elapsed_virtual` 0, no attempts). Without a cache (`cache=None`) every lookup asks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, cast

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from ..errors import LabsimError, NetworkGuardError
from .dnscache import CacheKey, DnsCache
from .vnet import AddressBook, guard_real

__all__ = [
    "LabResolver", "DnsAnswer", "Attempt", "DnsError", "DnsNameError", "DnsNoData",
    "DnsServerFailure", "DnsTimeout", "ExchangeDnsError", "EXCHANGE_DNS_ERRORS", "VIRTUAL_TIMEOUTS",
    "normalize_name", "sort_mx", "sort_addresses",
]

VIRTUAL_TIMEOUTS: tuple[float, ...] = (1.0, 2.0, 2.0, 4.0)
"""Modelled timeout (virtual seconds) of the n-th attempt of one lookup, after the Windows DNS
client's schedule (1 s for the first server, then 2 s, 2 s, 4 s); the last value repeats."""

MAX_CNAME_HOPS = 8
MAX_CONCURRENT_QUERIES = 32  # stack-notes §6: thousands of datagrams at once overflow the server
_EDNS_PAYLOAD = 1232


def virtual_timeout(attempt_index: int) -> float:
    return VIRTUAL_TIMEOUTS[min(attempt_index, len(VIRTUAL_TIMEOUTS) - 1)]


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ExchangeDnsError:
    code: str       # short DNS status, as Exchange prints it after "DNS query failed with error"
    smtp: str       # what a queue's LastError / an NDR carries
    transient: bool  # True: retry later (4xx); False: NDR (5xx)


EXCHANGE_DNS_ERRORS: dict[str, ExchangeDnsError] = {
    # What a queue does with each is decided by rules.dnsfail (by delivery type); these are the
    # texts of an MX-routed on-prem delivery (docs/transport-fidelity.md §2.1 [V-code AckReason]).
    "DnsNameError": ExchangeDnsError(
        "NonExistentDomain", "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain", False),
    # a domain that exists but has neither MX nor A: InfoNoRecords, retried (not an NDR) [V-code]
    "DnsNoData": ExchangeDnsError(
        "NoRecords", "451 4.4.0 DNS query failed. The error was: DNS query failed with error InfoNoRecords", True),
    # seed 001 Error 7: "DNS query failed with error ErrorRetry -> DnsQueryFailed: ErrorRetry";
    # transport-behavior.md §4.2: "451 4.4.0 DNS query failed" for the queue
    "DnsServerFailure": ExchangeDnsError(
        "ErrorRetry", "451 4.4.0 DNS query failed. The error was: DNS query failed with error ErrorRetry", True),
    # seed 001 Error 7 is unreachable ISP servers in InternalDNSServers: Exchange says ErrorRetry
    "DnsTimeout": ExchangeDnsError(
        "Timeout", "451 4.4.0 DNS query failed. The error was: DNS query failed with error ErrorRetry", True),
}


class Attempt(NamedTuple):
    server: str   # virtual IP
    outcome: str  # "NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", ..., "timeout", "unreachable", "bad-response"


class DnsError(LabsimError):
    """A lookup that gave no usable answer; `code`/`smtp`/`transient` come from EXCHANGE_DNS_ERRORS."""

    code = ""
    smtp = ""
    transient = True

    def __init__(self, qname: str, qtype: str, *, elapsed_virtual: float = 0.0,
                 attempts: tuple[Attempt, ...] = ()) -> None:
        self.qname = qname
        self.qtype = qtype
        self.elapsed_virtual = elapsed_virtual
        self.attempts = attempts
        tried = ", ".join(f"{a.server}:{a.outcome}" for a in attempts) or "no servers"
        super().__init__(f"DNS {qtype} {qname}: {self.code} ({tried}; {elapsed_virtual:g}s virtual)")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        entry = EXCHANGE_DNS_ERRORS.get(cls.__name__)
        if entry is not None:
            cls.code, cls.smtp, cls.transient = entry.code, entry.smtp, entry.transient


class DnsNameError(DnsError):
    """NXDOMAIN: the name does not exist (Exchange: SMTPSEND.DNS.NonExistentDomain)."""


class DnsNoData(DnsError):
    """The name exists but has no record of the asked type."""


class DnsServerFailure(DnsError):
    """Every server that answered said SERVFAIL or REFUSED (the rest did not answer)."""


class DnsTimeout(DnsError):
    """No server answered at all (timeouts, stopped servers)."""


_NEGATIVE: dict[str, type[DnsError]] = {"DnsNameError": DnsNameError, "DnsNoData": DnsNoData}

# --------------------------------------------------------------------------- helpers


def normalize_name(name: str) -> str:
    """Lower case, no trailing dot, validated as a DNS name ("" for the root)."""
    try:
        parsed = dns.name.from_text(name.strip().rstrip(".") + ".")
    except dns.exception.DNSException as e:
        raise ValueError(f"{name!r} is not a DNS name ({e})") from None
    return "" if parsed == dns.name.root else parsed.to_text(omit_final_dot=True).lower()


def sort_mx(records: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """By preference, then host; hosts normalised; duplicates removed."""
    return sorted({(int(p), normalize_name(h)) for p, h in records})


def sort_addresses(addresses: list[str]) -> list[str]:
    return sorted({str(ipaddress.ip_address(a)) for a in addresses}, key=ipaddress.ip_address)


@dataclass(frozen=True)
class DnsAnswer:
    qname: str
    qtype: str
    records: list[Any]           # A: addresses; MX: (preference, host); TXT/CNAME/PTR: text
    server: str                   # the virtual IP that answered
    elapsed_virtual: float
    attempts: tuple[Attempt, ...]


# --------------------------------------------------------------------------- the resolver


ANSWER_TIMEOUT = 30.0
"""Real seconds a resolver waits for a nameserver the world lets answer (see `silent`): a safety
net that a healthy lab never reaches, however loaded the machine."""


class LabResolver:
    """A stub resolver over the lab's DNS servers. See the module docstring."""

    def __init__(self, nameservers: list[str], book: AddressBook, *, port: int = 53,
                 timeout: float = 0.4, attempts: int = 1, source_ip: str | None = None,
                 cache: DnsCache | None = None, route: Callable[[str], str | None] | None = None,
                 silent: Callable[[str], bool] | None = None, answer_timeout: float = ANSWER_TIMEOUT) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.nameservers = list(nameservers)
        self.book = book
        self.port = port
        self.timeout = timeout
        self.attempts = attempts
        self.source_ip = guard_real(source_ip or "127.0.0.1")
        self.cache = cache
        # The network between this client and a nameserver (rules.network): "timeout" (dropped,
        # no route) or "refused" (ICMP unreachable) means the query never gets an answer.
        self.route = route
        # Whether a nameserver is one the lab's world keeps silent (a server in drop mode): only
        # there is `timeout` the real wait; a server that will answer gets `answer_timeout`, a
        # safety net, so a loaded machine never turns a slow answer into a timeout (determinism).
        self.silent = silent
        self.answer_timeout = answer_timeout
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ public lookups

    async def resolve_mx(self, domain: str) -> list[tuple[int, str]]:
        return (await self.lookup(domain, "MX")).records

    async def resolve_a(self, name: str) -> list[str]:
        return (await self.lookup(name, "A")).records

    async def resolve_txt(self, name: str) -> list[str]:
        return (await self.lookup(name, "TXT")).records

    async def resolve_host(self, domain: str) -> list[tuple[str, list[str]]]:
        """Exchange's DNS routing: MX, then A of each exchange in preference order; no MX but an A
        record -> the implicit MX (RFC 5321 §5.1). Exchanges that do not resolve are left out; if
        none resolves, the first transient error is raised (retry beats NDR), else the first one."""
        domain = normalize_name(domain)
        try:
            mx = await self.resolve_mx(domain)
        except DnsNoData as e:
            try:
                return [(domain, await self.resolve_a(domain))]
            except DnsError as e2:
                raise type(e2)(domain, e2.qtype, elapsed_virtual=e.elapsed_virtual + e2.elapsed_virtual,
                               attempts=e.attempts + e2.attempts) from e2
        out: list[tuple[str, list[str]]] = []
        errors: list[DnsError] = []
        seen: set[str] = set()
        for _, host in mx:
            if host in seen or not host:  # duplicates; "." is a null MX (RFC 7505)
                continue
            seen.add(host)
            try:
                out.append((host, await self.resolve_a(host)))
            except DnsError as e:
                errors.append(e)
        if out:
            return out
        if not errors:
            raise DnsNoData(domain, "MX")
        raise next((e for e in errors if e.transient), errors[0])

    async def lookup(self, name: str, qtype: str) -> DnsAnswer:
        """One lookup, CNAMEs followed; the records sorted and normalised (see `DnsAnswer`)."""
        qname = normalize_name(name)
        rdtype = dns.rdatatype.from_text(qtype)
        key: CacheKey = (tuple(self.nameservers), qname, qtype.upper())
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                if hit.negative:
                    raise _NEGATIVE[hit.negative](qname, qtype)
                return DnsAnswer(qname, qtype, list(hit.records), hit.server, 0.0, ())
        target = dns.name.from_text(qname + ".")
        elapsed = 0.0
        attempts: tuple[Attempt, ...] = ()
        ttl: int | None = None
        for _ in range(MAX_CNAME_HOPS):
            response, server, spent, tried = await self._query(target, rdtype, qname, qtype)
            elapsed += spent
            attempts += tried
            for rrset in response.answer:
                ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
            if response.rcode() == dns.rcode.NXDOMAIN:
                self._remember_negative(key, DnsNameError, server, response)
                raise DnsNameError(qname, qtype, elapsed_virtual=elapsed, attempts=attempts)
            rrset, target, chased = self._chase(response, target, rdtype)
            if rrset is not None:
                records = self._records(rdtype, rrset)
                if self.cache is not None:
                    self.cache.put(key, records, server, rrset.ttl if ttl is None else ttl)
                return DnsAnswer(qname, qtype, records, server, elapsed, attempts)
            negative = any(r.rdtype == dns.rdatatype.SOA for r in response.authority)
            if not chased or negative:
                self._remember_negative(key, DnsNoData, server, response)
                raise DnsNoData(qname, qtype, elapsed_virtual=elapsed, attempts=attempts)
            # The answer ended at a CNAME whose target the server did not include: ask for it.
        raise DnsServerFailure(qname, qtype, elapsed_virtual=elapsed, attempts=attempts)  # CNAME loop

    def _remember_negative(self, key: CacheKey, cls: type[DnsError], server: str,
                           response: dns.message.Message) -> None:
        """RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM); none without an SOA."""
        if self.cache is None:
            return
        soa = next((r for r in response.authority if r.rdtype == dns.rdatatype.SOA), None)
        if soa is not None and len(soa):
            self.cache.put_negative(key, cls.__name__, server, min(soa.ttl, next(iter(soa)).minimum))

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _chase(response: dns.message.Message, name: dns.name.Name,
               rdtype: int) -> tuple[Any, dns.name.Name, bool]:
        chased = False
        for _ in range(MAX_CNAME_HOPS):
            for rrset in response.answer:
                if rrset.name == name and rrset.rdtype == rdtype:
                    return rrset, name, chased
            cname = next((r for r in response.answer
                          if r.name == name and r.rdtype == dns.rdatatype.CNAME), None)
            if cname is None or rdtype == dns.rdatatype.CNAME:
                break
            name, chased = next(iter(cname)).target, True
        return None, name, chased

    @staticmethod
    def _records(rdtype: int, rrset: Any) -> list[Any]:
        if rdtype == dns.rdatatype.A:
            return sort_addresses([r.address for r in rrset])
        if rdtype == dns.rdatatype.MX:
            return sort_mx([(r.preference, r.exchange.to_text()) for r in rrset])
        if rdtype == dns.rdatatype.TXT:
            return sorted(b"".join(r.strings).decode(errors="replace") for r in rrset)
        if rdtype in (dns.rdatatype.CNAME, dns.rdatatype.PTR, dns.rdatatype.NS):
            return sorted(normalize_name(r.target.to_text()) for r in rrset)
        return sorted(r.to_text() for r in rrset)

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:
            self._sem, self._sem_loop = asyncio.Semaphore(MAX_CONCURRENT_QUERIES), loop
        return self._sem

    async def _query(self, target: dns.name.Name, rdtype: int, qname: str,
                     qtype: str) -> tuple[dns.message.Message, str, float, tuple[Attempt, ...]]:
        """Ask the servers in order; return the first authoritative-enough answer."""
        attempts: list[Attempt] = []
        elapsed = 0.0
        for _ in range(self.attempts):
            for server in self.nameservers:
                outcome, response = await self._ask(server, target, rdtype)
                if outcome in ("timeout", "unreachable"):
                    elapsed += virtual_timeout(len(attempts))
                attempts.append(Attempt(server, outcome))
                if response is not None and response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) \
                        and not response.flags & dns.flags.TC:
                    return response, server, elapsed, tuple(attempts)
        answered = any(a.outcome not in ("timeout", "unreachable") for a in attempts)
        cls = DnsServerFailure if answered else DnsTimeout
        raise cls(qname, qtype, elapsed_virtual=elapsed, attempts=tuple(attempts))

    async def _ask(self, server: str, name: dns.name.Name,
                   rdtype: int) -> tuple[str, dns.message.Message | None]:
        if self.route is not None:
            blocked = self.route(server)
            if blocked is not None:
                return ("unreachable" if blocked == "refused" else "timeout"), None
        try:
            real = guard_real(self.book.real_ip(server))
        except NetworkGuardError:
            return "timeout", None  # a server outside the lab: nothing ever answers there
        dest = (real, self.book.real_port(self.port))
        query = dns.message.make_query(name, cast(dns.rdatatype.RdataType, rdtype), use_edns=0, payload=_EDNS_PAYLOAD)
        backend = dns.asyncbackend.get_backend("asyncio")
        async with self._semaphore():
            try:
                sock = await backend.make_socket(socket.AF_INET, socket.SOCK_DGRAM, 0,
                                                 (guard_real(self.source_ip), 0), dest)
                async with sock:
                    wait = self.timeout if self.silent is None or self.silent(server) else self.answer_timeout
                    response = await dns.asyncquery.udp(query, real, timeout=wait, port=dest[1], sock=sock)
            except dns.exception.Timeout:
                return "timeout", None
            except (OSError, EOFError):  # ConnectionRefusedError: ICMP port unreachable
                return "unreachable", None
            except dns.exception.DNSException:
                return "bad-response", None
        if response.flags & dns.flags.TC:
            return "truncated", response
        return dns.rcode.to_text(response.rcode()), response
