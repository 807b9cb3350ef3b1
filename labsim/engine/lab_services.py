"""What the lab does for its parties (engine.ports): seeded ids, log writers, certificate rows and
views, DNS lookups and certificate validation as a given host would do them.

DNS: each (owner, service) has its own cache on virtual time (`dns_owner`); lookups follow the
host's route and link rules on UDP 53. Validation: the chain a peer sent, classified at the lab's
virtual time with CRL fetches made as the validating host would (its DNS, its route, its WinHTTP
proxy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..clock import VirtualClock
    from ..net.vnet import AddressBook
    from ..pki.authority import LabPki
    from ..rules.network import NetView
    from ..topology.model import Lab

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from ..ids import IdSource
from ..logs import protocol_text as T
from ..logs.certificate_rows import received_certificate_rows, sending_certificate_rows
from ..logs.protocol_log import ProtocolLog, SessionWriter
from ..net.dns_server import DnsMode, LabDnsServer
from ..net.dnscache import DnsCache
from ..net.resolver import LabResolver
from ..pki.authority import serial_hex, thumbprint
from ..pki.crl_server import CrlServer, http_get
from ..pki.errors import CrlUnavailable
from ..pki.names import dotnet_dn
from ..pki.store import CertStore, StoredCert
from ..pki.validate import CrlCache, ValidationResult, certificate_names, classify
from ..rules.builds import traits as build_traits
from ..rules.certselect import CertView
from ..rules.network import HostInfo
from ..topology.model import Site

DNS_REAL_TIMEOUT = 0.3
CRL_REAL_TIMEOUT = 0.5  # the real wait for a CDP that hangs (the world says it never answers)
CRL_ANSWER_TIMEOUT = 30.0  # a safety net for one that answers: load never decides an outcome
CRL_VIRTUAL_TIMEOUT = 15.0  # CryptoAPI's default URL retrieval timeout
CRL_PORT = 80


class _NullWriter:
    """A session writer for parties that keep no Exchange logs (EXO, Internet hosts)."""

    enabled = False
    next_sequence = 0

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class LabServices:
    """Shared services the runtime offers every party."""

    # the lab's (engine.runtime.LabRuntime.__init__)
    model: Lab
    seed: int
    clock: VirtualClock
    net: NetView
    book: AddressBook
    pki: LabPki
    servers: dict[str, Any]  # engine.onprem.ExchangeServerRuntime by name
    dns: dict[str, LabDnsServer]  # engine.listeners: the lab's DNS servers and CDPs
    crl: CrlServer
    cdps: dict[str, CrlServer]
    # this part's own state, set up by the runtime
    _ids: dict[str, IdSource]
    _logs: list[ProtocolLog]
    _views: dict[int, list[CertView]]
    _crl_caches: dict[str, CrlCache]
    _dns_caches: dict[tuple[str, str], DnsCache]  # (owner, service) -> its DNS client cache
    _cert_rows: dict[x509.Certificate, str]  # certificate -> its protocol-log row text
    _network_ids: dict[tuple[str, str], str]
    _server_thumbs: set[str]

    def _init_services(self) -> None:
        self._ids = {}
        self._logs = []
        self._views = {}
        self._crl_caches = {}
        self._dns_caches = {}
        self._cert_rows = {}
        self._network_ids = {}

    def note_internal_certificates(self) -> None:
        """Remember the servers' internal transport certificates (at start and after a change)."""
        self._server_thumbs = {thumbprint(c.cert) for c in (rt.internal_cert() for rt in self.servers.values())
                               if c is not None}

    def ids_for(self, owner: str) -> IdSource:
        src = self._ids.get(owner)
        if src is None:
            src = self._ids[owner] = IdSource(self.seed, owner)
        return src

    def source_port(self, host: str) -> int:
        site = self.net.host(host).site
        lo = 1024 if site == Site.EXO else 49152
        return self.ids_for(host + "/ports").randint(lo, 65535)

    def register_log(self, log: ProtocolLog) -> None:
        self._logs.append(log)

    def registered_logs(self) -> list[ProtocolLog]:
        return list(self._logs)

    def send_log(self, log: ProtocolLog | None, connector_id: str, sid: int, *, remote: str, clock: Any,
                 enabled: bool) -> Any:
        if log is None:
            return _NullWriter()
        return SessionWriter(log, connector_id, sid, None, remote, clock, enabled)

    def cert_views(self, store: CertStore) -> list[CertView]:
        key = id(store)
        views = self._views.get(key)
        if views is None:
            views = []
            for e in store.entries:
                c = e.cert
                views.append(CertView(
                    key=e, index=e.index, subject=dotnet_dn(c.subject), issuer=dotnet_dn(c.issuer),
                    names=tuple(certificate_names(c)), not_before=c.not_valid_before_utc,
                    not_after=c.not_valid_after_utc, has_private_key=e.has_private_key,
                    self_signed=e.issued.self_signed, server_auth=e.issued.spec.server_auth,
                    services=tuple(e.services), chain_trusted=self._root_trusted(e.issued.spec.issuer),
                    thumbprint=e.thumbprint))
            self._views[key] = views
        return views

    def _root_trusted(self, issuer: str, site: Site = Site.ONPREM) -> bool:
        """Does the CA chain above a certificate end in a root the site trusts (self-signed: yes)?"""
        seen: set[str] = set()
        while issuer != "self" and issuer not in seen:
            seen.add(issuer)
            ca = self.model.ca(issuer)
            if ca.parent is None:
                return str(site) in {str(t) for t in ca.trusted_by}
            issuer = ca.parent
        return True

    def certificate_row_x509(self, c: x509.Certificate) -> str:
        """The protocol log's certificate row; a function of the certificate alone, so computed once
        per certificate (x509.Certificate hashes and compares by its DER encoding)."""
        row = self._cert_rows.get(c)
        if row is None:
            row = self._cert_rows[c] = T.certificate_row_data(
                dotnet_dn(c.subject), dotnet_dn(c.issuer), serial_hex(c), thumbprint(c),
                c.not_valid_before_utc, c.not_valid_after_utc, self._sans(c))
        return row

    @staticmethod
    def _sans(c: x509.Certificate) -> list[str]:
        try:
            ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return [str(v) for v in ext.get_values_for_type(x509.DNSName)]

    @staticmethod
    def certificate_subject(c: x509.Certificate) -> str:
        return dotnet_dn(c.subject)

    @staticmethod
    def certificate_thumbprint(c: x509.Certificate) -> str:
        return thumbprint(c)

    def certificate_row(self, stored: StoredCert) -> str:
        return self.certificate_row_x509(stored.cert)

    def _build_of(self, host: HostInfo) -> str:
        """The Exchange build of the server on `host` (EXO and Internet hosts: 2019's formats)."""
        own = self.servers.get(host.name)
        return own.model.build if own is not None else "2019"

    def certificate_rows(self, stored: StoredCert, host: HostInfo) -> list[tuple[str, str]]:
        """The `(data, context)` rows `host` writes when it presents `stored` (one row from 2016
        CU22 on; 2013 and early 2016 write one row per property: logs.certificate_rows)."""
        build = self._build_of(host)
        if not build_traits(build).multi_row_certificates:
            return [(self.certificate_row_x509(stored.cert), T.SENDING_CERTIFICATE)]
        c = stored.cert
        return sending_certificate_rows(build, dotnet_dn(c.subject), dotnet_dn(c.issuer), serial_hex(c),
                                        thumbprint(c), c.not_valid_before_utc, c.not_valid_after_utc, self._sans(c))

    def peer_certificate_rows(self, cert: x509.Certificate, host: HostInfo) -> list[tuple[str, str]]:
        """The rows `host` writes about the certificate its peer presented: `Received certificate`
        and `Certificate thumbprint` on a multi-row build (seeds 002/004, the CN sample)."""
        if build_traits(self._build_of(host)).multi_row_certificates:
            return received_certificate_rows(thumbprint(cert))
        return [(self.certificate_row_x509(cert), T.REMOTE_CERTIFICATE)]

    def is_exchange_server_cert(self, cert: x509.Certificate) -> bool:
        return thumbprint(cert) in self._server_thumbs

    def network_message_id(self, realm: str, message_id: str, ids: IdSource, when: datetime) -> str:
        key = (realm, message_id)
        nid = self._network_ids.get(key)
        if nid is None:
            nid = self._network_ids[key] = ids.network_message_id(when)
        return nid

    def host_dns(self, host: HostInfo) -> list[str]:
        if host.name in self.servers:
            return self.servers[host.name].model.adapter_dns_servers
        if host.site == Site.EXO:
            return self.model.tenant.dns_servers
        for h in self.model.internet_hosts:
            if h.name == host.name:
                return h.dns_servers
        return ["8.8.8.8"]

    def dns_owner(self, host: HostInfo, service: str | None) -> tuple[str, str]:
        """Whose DNS cache a lookup uses: (owner, service). On an Exchange server each service is
        its own process with its own cache (default MSExchangeTransport; the Front End, Mailbox
        Transport Submission and the OS's DNS Client service `Dnscache` are others); EXO is one
        service for all its hosts; an Internet host has one cache."""
        if host.name in self.servers:
            return host.name, service or "MSExchangeTransport"
        if host.site == Site.EXO:
            return "EXO", service or ""
        return host.name, service or ""

    def dns_cache(self, owner: str, service: str) -> DnsCache:
        cache = self._dns_caches.get((owner, service))
        if cache is None:
            cache = self._dns_caches[(owner, service)] = DnsCache(self.clock.now)
        return cache

    def flush_dns_cache(self, owner: str, service: str) -> None:
        """The service stopped: its process, and the DNS answers it remembered, are gone."""
        cache = self._dns_caches.get((owner, service))
        if cache is not None:
            cache.flush()

    def dns_silent(self, vip: str) -> bool:
        """Does the world keep the lab DNS server at `vip` silent (drop mode)? Only for such a
        server is a short real wait the answer; any other is waited for (net.resolver)."""
        return any(d.model.ip == vip and d.mode is DnsMode.DROP for d in self.dns.values())

    def crl_hangs(self, vip: str) -> bool:
        """Is the CRL distribution point at `vip` one that accepts and never answers ("hang")?"""
        if vip == self.model.network.crl_host_ip and self.crl.mode == "hang":
            return True
        return any(c.ip == vip and self.cdps[c.name].mode == "hang" for c in self.model.network.cdp_hosts)

    def resolver(self, host: HostInfo, servers: list[str], service: str | None = None) -> LabResolver:
        src = self.book.real_ip(host.ip) if self.book.knows(host.ip) else None
        # Every configured server is asked, in order: one outside the lab never answers (it costs
        # its timeout, as an unreachable server does), and link rules on UDP 53 apply (rules.network).
        return LabResolver(list(servers), self.book, timeout=DNS_REAL_TIMEOUT, source_ip=src, silent=self.dns_silent,
                           cache=self.dns_cache(*self.dns_owner(host, service)),
                           route=lambda ip: self.net.plan(host, ip, 53, protocol="UDP").failure)

    async def resolve_a(self, host: HostInfo, servers: list[str], name: str, *,
                        service: str | None = None) -> list[str]:
        self.clock.advance(0.001)
        return await self.resolver(host, servers, service).resolve_a(name)

    async def resolve_host(self, host: HostInfo, servers: list[str], domain: str, *,
                           service: str | None = None) -> list[tuple[str, list[str]]]:
        self.clock.advance(0.002)
        return await self.resolver(host, servers, service).resolve_host(domain)

    async def validate(self, host: HostInfo, chain: list[x509.Certificate], domain: str | None) -> ValidationResult:
        site = host.site
        cache = self._crl_caches.setdefault(host.name, CrlCache())
        anchors = list(self.pki.trust_anchors(site))
        if site == Site.ONPREM:
            # Direct trust: Exchange servers of the organisation know each other's (self-signed)
            # transport certificates from Active Directory / the Edge subscription.
            anchors += [c.cert for c in (rt.internal_cert() for rt in self.servers.values()) if c is not None]
        # Windows completes a chain from the machine's own Intermediate store; EXO does not (seed 004).
        own = self.servers.get(host.name)
        local = own.store.intermediates if own is not None else []
        return await classify(chain, now=self.clock.now(), anchors=anchors,
                              known_intermediates=self.pki.intermediates(), domain=domain,
                              fetch_crl=lambda url: self.fetch_crl(host, url), crl_cache=cache,
                              local_intermediates=local)

    async def fetch_crl(self, host: HostInfo, url: str) -> bytes:
        """GET a CRL distribution point as `host` would: its DNS, its route, real HTTP.

        A server with a WinHTTP proxy (`netsh winhttp set proxy`, Set-LabWinHttpProxy) sends
        CryptoAPI's request to the proxy instead; the lab runs no proxy service, so a configured
        proxy is one that does not answer - a classic cause of RevocationOffline (seed 000).
        """
        parts = urlsplit(url)
        name, port = parts.hostname or "", parts.port or CRL_PORT
        own = self.servers.get(host.name)
        proxy = own.model.winhttp_proxy if own is not None else None
        if proxy:
            proxy_ip, _, proxy_port = proxy.rpartition(":")
            plan = self.net.plan(host, proxy_ip, int(proxy_port))
            if plan.failure is not None:
                self.clock.advance(CRL_VIRTUAL_TIMEOUT if plan.failure == "timeout" else 2 * plan.latency)
                raise CrlUnavailable(url, f"proxy {proxy} unreachable ({plan.failure})")
            self.clock.advance(2 * plan.latency)
            try:
                return await http_get(self.book.real_ip(plan.dial_ip), self.book.real_port(int(proxy_port)),
                                      name, parts.path or "/", CRL_REAL_TIMEOUT)
            except CrlUnavailable as exc:
                raise CrlUnavailable(url, f"proxy {proxy}: {exc.reason}") from None
        try:
            # CryptoAPI resolves through the Windows DNS Client service: the OS's cache, not transport's
            ips = await self.resolve_a(host, self.host_dns(host), name, service="Dnscache")
        except Exception as exc:  # noqa: BLE001 - any lookup failure is an unreachable CDP
            raise CrlUnavailable(url, f"DNS: {exc}") from exc
        plan = self.net.plan(host, ips[0], port)
        if plan.failure is not None:
            self.clock.advance(CRL_VIRTUAL_TIMEOUT)
            raise CrlUnavailable(url, f"no route ({plan.failure})")
        self.clock.advance(2 * plan.latency)
        try:
            wait = CRL_REAL_TIMEOUT if self.crl_hangs(plan.dial_ip) else CRL_ANSWER_TIMEOUT
            return await http_get(self.book.real_ip(plan.dial_ip), self.book.real_port(port), name,
                                  parts.path or "/", wait)
        except CrlUnavailable:
            self.clock.advance(CRL_VIRTUAL_TIMEOUT)
            raise
