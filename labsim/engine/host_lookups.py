"""DNS lookups and certificate validation as a given host of the lab does them.

DNS: each (owner, service) has its own cache on virtual time (`dns_owner`); lookups follow the
host's route and link rules on UDP 53. Validation: the chain a peer sent, classified at the lab's
virtual time with CRL fetches made as the validating host would (its DNS, its route, its WinHTTP
proxy).

`HostLookups` keeps the DNS client caches and CRL caches; it knows the lab by `LookupLab`, the
few things it reads (the runtime passes itself: its PKI, servers and CDPs can be rebuilt by a
reconfiguration, so they are read at each lookup, never copied). The runtime offers its methods
to the parties (engine.lab_services, engine.ports.Resolution / Certificates).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from cryptography import x509

from ..net.dns_server import DnsMode
from ..net.dnscache import DnsCache
from ..net.resolver import LabResolver
from ..pki.crl_server import http_get
from ..pki.errors import CrlUnavailable
from ..pki.validate import CrlCache, ValidationResult, classify
from ..rules.network import HostInfo
from ..topology.model import Site

if TYPE_CHECKING:  # pragma: no cover
    from ..clock import VirtualClock
    from ..net.dns_server import LabDnsServer
    from ..net.vnet import AddressBook
    from ..pki.authority import LabPki
    from ..pki.crl_server import CrlServer
    from ..rules.network import NetView
    from ..topology.model import Lab

DNS_REAL_TIMEOUT = 0.3
CRL_REAL_TIMEOUT = 0.5  # the real wait for a CDP that hangs (the world says it never answers)
CRL_ANSWER_TIMEOUT = 30.0  # a safety net for one that answers: load never decides an outcome
CRL_VIRTUAL_TIMEOUT = 15.0  # CryptoAPI's default URL retrieval timeout
CRL_PORT = 80


class LookupLab(Protocol):
    """What lookups read of the lab (engine.runtime.LabRuntime)."""

    model: Lab
    clock: VirtualClock
    net: NetView
    book: AddressBook
    pki: LabPki
    servers: dict[str, Any]  # engine.onprem.ExchangeServerRuntime by name
    dns: dict[str, LabDnsServer]
    crl: CrlServer
    cdps: dict[str, CrlServer]


def dns_owner(host: HostInfo, service: str | None, *, exchange_server: bool) -> tuple[str, str]:
    """Whose DNS cache a lookup uses: (owner, service). On an Exchange server each service is
    its own process with its own cache (default MSExchangeTransport; the Front End, Mailbox
    Transport Submission and the OS's DNS Client service `Dnscache` are others); EXO is one
    service for all its hosts; an Internet host has one cache."""
    if exchange_server:
        return host.name, service or "MSExchangeTransport"
    if host.site == Site.EXO:
        return "EXO", service or ""
    return host.name, service or ""


class HostLookups:
    """DNS and validation from a given host: its DNS servers and caches, its route, its proxy."""

    def __init__(self, lab: LookupLab) -> None:
        self.lab = lab
        self._dns_caches: dict[tuple[str, str], DnsCache] = {}  # (owner, service) -> its DNS client cache
        self._crl_caches: dict[str, CrlCache] = {}  # host -> the CRLs it fetched

    # --- DNS ------------------------------------------------------------------------------------
    def host_dns(self, host: HostInfo) -> list[str]:
        lab = self.lab
        if host.name in lab.servers:
            return lab.servers[host.name].model.adapter_dns_servers
        if host.site == Site.EXO:
            return lab.model.tenant.dns_servers
        for h in lab.model.internet_hosts:
            if h.name == host.name:
                return h.dns_servers
        return ["8.8.8.8"]

    def dns_cache(self, owner: str, service: str) -> DnsCache:
        cache = self._dns_caches.get((owner, service))
        if cache is None:
            cache = self._dns_caches[(owner, service)] = DnsCache(self.lab.clock.now)
        return cache

    def flush_dns_cache(self, owner: str, service: str) -> None:
        """The service stopped: its process, and the DNS answers it remembered, are gone."""
        cache = self._dns_caches.get((owner, service))
        if cache is not None:
            cache.flush()

    def dns_silent(self, vip: str) -> bool:
        """Does the world keep the lab DNS server at `vip` silent (drop mode)? Only for such a
        server is a short real wait the answer; any other is waited for (net.resolver)."""
        return any(d.model.ip == vip and d.mode is DnsMode.DROP for d in self.lab.dns.values())

    def resolver(self, host: HostInfo, servers: list[str], service: str | None = None) -> LabResolver:
        lab = self.lab
        src = lab.book.real_ip(host.ip) if lab.book.knows(host.ip) else None
        owner = dns_owner(host, service, exchange_server=host.name in lab.servers)
        # Every configured server is asked, in order: one outside the lab never answers (it costs
        # its timeout, as an unreachable server does), and link rules on UDP 53 apply (rules.network).
        return LabResolver(list(servers), lab.book, timeout=DNS_REAL_TIMEOUT, source_ip=src, silent=self.dns_silent,
                           cache=self.dns_cache(*owner),
                           route=lambda ip: lab.net.plan(host, ip, 53, protocol="UDP").failure)

    async def resolve_a(self, host: HostInfo, servers: list[str], name: str, *,
                        service: str | None = None) -> list[str]:
        self.lab.clock.advance(0.001)
        return await self.resolver(host, servers, service).resolve_a(name)

    async def resolve_host(self, host: HostInfo, servers: list[str], domain: str, *,
                           service: str | None = None) -> list[tuple[str, list[str]]]:
        self.lab.clock.advance(0.002)
        return await self.resolver(host, servers, service).resolve_host(domain)

    # --- validation -----------------------------------------------------------------------------
    async def validate(self, host: HostInfo, chain: list[x509.Certificate], domain: str | None) -> ValidationResult:
        lab = self.lab
        site = host.site
        cache = self._crl_caches.setdefault(host.name, CrlCache())
        anchors = list(lab.pki.trust_anchors(site))
        if site == Site.ONPREM:
            # Direct trust: Exchange servers of the organisation know each other's (self-signed)
            # transport certificates from Active Directory / the Edge subscription.
            anchors += [c.cert for c in (rt.internal_cert() for rt in lab.servers.values()) if c is not None]
        # Windows completes a chain from the machine's own Intermediate store; EXO does not (seed 004).
        own = lab.servers.get(host.name)
        local = own.store.intermediates if own is not None else []
        return await classify(chain, now=lab.clock.now(), anchors=anchors,
                              known_intermediates=lab.pki.intermediates(), domain=domain,
                              fetch_crl=lambda url: self.fetch_crl(host, url), crl_cache=cache,
                              local_intermediates=local)

    def crl_hangs(self, vip: str) -> bool:
        """Is the CRL distribution point at `vip` one that accepts and never answers ("hang")?"""
        lab = self.lab
        if vip == lab.model.network.crl_host_ip and lab.crl.mode == "hang":
            return True
        return any(c.ip == vip and lab.cdps[c.name].mode == "hang" for c in lab.model.network.cdp_hosts)

    async def fetch_crl(self, host: HostInfo, url: str) -> bytes:
        """GET a CRL distribution point as `host` would: its DNS, its route, real HTTP.

        A server with a WinHTTP proxy (`netsh winhttp set proxy`, Set-LabWinHttpProxy) sends
        CryptoAPI's request to the proxy instead; the lab runs no proxy service, so a configured
        proxy is one that does not answer - a classic cause of RevocationOffline (seed 000).
        """
        lab = self.lab
        parts = urlsplit(url)
        name, port = parts.hostname or "", parts.port or CRL_PORT
        own = lab.servers.get(host.name)
        proxy = own.model.winhttp_proxy if own is not None else None
        if proxy:
            proxy_ip, _, proxy_port = proxy.rpartition(":")
            plan = lab.net.plan(host, proxy_ip, int(proxy_port))
            if plan.failure is not None:
                lab.clock.advance(CRL_VIRTUAL_TIMEOUT if plan.failure == "timeout" else 2 * plan.latency)
                raise CrlUnavailable(url, f"proxy {proxy} unreachable ({plan.failure})")
            lab.clock.advance(2 * plan.latency)
            try:
                return await http_get(lab.book.real_ip(plan.dial_ip), lab.book.real_port(int(proxy_port)),
                                      name, parts.path or "/", CRL_REAL_TIMEOUT)
            except CrlUnavailable as exc:
                raise CrlUnavailable(url, f"proxy {proxy}: {exc.reason}") from None
        try:
            # CryptoAPI resolves through the Windows DNS Client service: the OS's cache, not transport's
            ips = await self.resolve_a(host, self.host_dns(host), name, service="Dnscache")
        except Exception as exc:  # noqa: BLE001 - any lookup failure is an unreachable CDP
            raise CrlUnavailable(url, f"DNS: {exc}") from exc
        plan = lab.net.plan(host, ips[0], port)
        if plan.failure is not None:
            lab.clock.advance(CRL_VIRTUAL_TIMEOUT)
            raise CrlUnavailable(url, f"no route ({plan.failure})")
        lab.clock.advance(2 * plan.latency)
        try:
            wait = CRL_REAL_TIMEOUT if self.crl_hangs(plan.dial_ip) else CRL_ANSWER_TIMEOUT
            return await http_get(lab.book.real_ip(plan.dial_ip), lab.book.real_port(port), name,
                                  parts.path or "/", wait)
        except CrlUnavailable:
            lab.clock.advance(CRL_VIRTUAL_TIMEOUT)
            raise
