"""The running lab: builds every party from a topology, binds them on loopback, runs actions.

`LabRuntime` is the shell around everything else: it owns the virtual clock, the address book and
connection registry of the virtual network, the PKI, DNS and CRL servers, the listeners, the
scheduler, the output tree (logs, mailboxes) and the ledger of what happened. Parties ask it for
shared services (DNS lookups from a given host, certificate validation with CRL fetches from a
given host, log writers).
"""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from ..clock import VirtualClock, iso_ms
from ..errors import LabRuntimeError
from ..ids import IdSource
from ..logs import protocol_text as T
from ..logs.protocol_log import ProtocolLog, SessionWriter
from ..net.dns_server import LabDnsServer
from ..net.dnscache import DnsCache
from ..net.proxy import bind_load_balancers
from ..net.resolver import LabResolver
from ..net.vnet import (
    DEFAULT_BLOCK,
    DEFAULT_PORT_OFFSET,
    AddressBook,
    ConnectionRegistry,
    start_tcp_server,
)
from ..pki.authority import LabPki, serial_hex, thumbprint
from ..pki.crl_server import CrlServer, http_get
from ..pki.errors import CrlUnavailable
from ..pki.names import dotnet_dn
from ..pki.store import CertStore, StoredCert
from ..pki.validate import CrlCache, ValidationResult, certificate_names, classify
from ..rules import replies as R
from ..rules.certselect import CertView
from ..rules.network import HostInfo, NetView, all_virtual_ips, lab_hosts
from ..smtp.policy import (
    ConnectionTable,
    EopReceivePolicy,
    ExchangeReceivePolicy,
    MtaReceivePolicy,
    ReceivePolicy,
)
from ..smtp.server import ServerSession
from ..topology.model import Lab, Site
from ..transport.store import MailboxStore
from . import service_ops
from .evidence import TrackingHub
from .exo import ExoRuntime
from .internet import InternetHostRuntime
from .ledger import Ledger, MessageList, dump_summary
from .onprem import ExchangeServerRuntime
from .scheduler import Scheduler

# The listen backlog of every SMTP listener: a burst of connections (a load test, a hand-made
# flood) waits in the kernel queue and is then served, each with a banner or a connection-limit
# 421, instead of being dropped unanswered at asyncio's default of 100. Linux caps it at somaxconn.
SMTP_LISTEN_BACKLOG = 4096
CLAIM_TIMEOUT_RUN = 5.0
SETTLE_TIMEOUT = 15.0
CLAIM_TIMEOUT_LIVE = 0.2
DNS_REAL_TIMEOUT = 0.3
CRL_REAL_TIMEOUT = 0.5
CRL_VIRTUAL_TIMEOUT = 15.0  # CryptoAPI's default URL retrieval timeout
CRL_PORT = 80


@dataclass
class LabEvent:
    """A Windows Application event a server raised (rendered by the event-log writer)."""

    time: datetime
    server: str
    source: str
    event_id: int
    insertion_strings: list[str]


class EventCollector:
    def __init__(self, clock: VirtualClock, sink: Any = None) -> None:
        self.clock = clock
        self.events: list[LabEvent] = []
        self.sink = sink  # called with each event as it is raised (the event-log writer)

    def add(self, server: str, source: str, event_id: int, strings: list[str]) -> None:
        ev = LabEvent(self.clock.now(), server, source, event_id, list(strings))
        self.events.append(ev)
        if self.sink is not None:
            self.sink(ev)


class _NullWriter:
    """A session writer for parties that keep no Exchange logs (EXO, Internet hosts)."""

    enabled = False
    next_sequence = 0

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class LabRuntime:
    def __init__(self, model: Lab, *, seed: int, out: Path, live: bool = False, block: int | None = None,
                 port_offset: int = DEFAULT_PORT_OFFSET) -> None:
        self.model = model
        self.seed = seed
        self.out = out
        self.live = live
        self.port_offset = port_offset
        self.clock = VirtualClock(model.start, live=live)
        self.hosts = lab_hosts(model)
        self.net = NetView(model, self.hosts)
        self.block = block or DEFAULT_BLOCK
        self.book = AddressBook(all_virtual_ips(model), block=self.block, port_offset=port_offset)
        self.registry = ConnectionRegistry()
        self.pki = LabPki(model, seed)
        self.scheduler = Scheduler(self.clock)
        self.store = MailboxStore(out)
        self.ledger = Ledger(self.clock)
        self.tracking = TrackingHub(self)  # message tracking, EXO message trace, queue history
        self.events = EventCollector(self.clock, self.tracking.event_raised)
        self._ids: dict[str, IdSource] = {}
        self._logs: list[ProtocolLog] = []
        self._log_files: dict[Path, None] = {}  # every log file written, in first-written order
        self._views: dict[int, list[CertView]] = {}
        self._crl_caches: dict[str, CrlCache] = {}
        self._dns_caches: dict[tuple[str, str], DnsCache] = {}
        self._cert_rows: dict[x509.Certificate, str] = {}  # certificate -> its protocol-log row text  # (owner, service) -> its DNS client cache
        self._network_ids: dict[tuple[str, str], str] = {}
        self.servers = {s.name: ExchangeServerRuntime(self, s) for s in model.organization.servers}
        self.exo = ExoRuntime(self)
        self.internet = {h.name: InternetHostRuntime(self, h) for h in model.internet_hosts}
        self.dns = {d.name: LabDnsServer(d, self.book) for d in model.dns_servers}
        self.crl = CrlServer(self.pki, self.clock.now, mode=model.network.crl_mode)
        self._server_thumbs = {thumbprint(c.cert) for c in (rt.internal_cert() for rt in self.servers.values())
                               if c is not None}
        self._tcp: list[asyncio.AbstractServer] = []
        self._open = 0  # in-lab server sessions still open (what settle() waits for)
        self._held = 0  # of those, sessions whose client holds the connection open for its next message
        self._idle = asyncio.Event()
        self._idle.set()
        self.connections = ConnectionTable()  # open sessions per receive connector (connection limits)
        self.sessions: set[ServerSession] = set()  # every open server session (a clean shutdown answers each)
        self._closing = False
        self._session_tasks: set[asyncio.Task[Any]] = set()
        self.taken_up = 0  # `up`: messages read back from the queue databases at start (engine.durable)
        self.listen_table: list[tuple[str, str, str, int, str]] = []  # host, vip, real ip, real port, what

    # --- start / stop -------------------------------------------------------------------------
    async def start(self) -> None:
        last: OSError | None = None
        for attempt in range(12):
            try:
                await self._bind_all()
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                last = exc
                await self._unbind_all()
                self.block = (self.block + 7 * (attempt + 1)) % 250 + 2
                self.book = AddressBook(all_virtual_ips(self.model), block=self.block, port_offset=self.port_offset)
                for d in self.model.dns_servers:
                    self.dns[d.name] = LabDnsServer(d, self.book)
        raise LabRuntimeError(f"no free loopback block for the lab's listeners ({last})")

    async def _bind_all(self) -> None:
        self.listen_table = []
        await self._bind_smtp()
        for name, d in self.dns.items():
            if d.model.running:
                await d.start()
            self.listen_table.append((name, d.model.ip, self.book.real_ip(d.model.ip),
                                      self.book.real_port(53), "DNS (UDP)"))
        crl_ip = self.model.network.crl_host_ip
        await self.crl.start(self.book.real_ip(crl_ip), self.book.real_port(CRL_PORT))
        self.listen_table.append(("CRL", crl_ip, self.book.real_ip(crl_ip), self.book.real_port(CRL_PORT),
                                  "CRL distribution point (HTTP)"))
        self._listeners = self._listener_signature()
        self._cert_sig = self._cert_signature()

    async def _bind_smtp(self) -> None:
        for rt in self.servers.values():
            for spec in rt.listener_specs():
                policy = ExchangeReceivePolicy(rt, spec)
                vips = [rt.model.ip] + [r.public_ip for r in self.model.network.nat
                                        if r.server.lower() == rt.name.lower() and spec.port in r.ports]
                for vip in vips:
                    await self._listen(rt.name, vip, spec.port, policy, f"SMTP {spec.service}")
        await self._listen("EXO", self.model.tenant.inbound_ip, 25, EopReceivePolicy(self.exo), "SMTP EOP front end")
        await self._listen("EXO-SUBMISSION", self.model.tenant.submission_ip, 25,
                           EopReceivePolicy(self.exo, front="submission"), "SMTP EXO client submission front end")
        for h in self.internet.values():
            await self._listen(h.name, h.model.ip, 25, MtaReceivePolicy(h), "SMTP Internet MTA")
        for srv, row in await bind_load_balancers(self):  # net.proxy: VIPs in front of servers
            self._tcp.append(srv)
            self.listen_table.append(row)

    async def _listen(self, host: str, vip: str, vport: int, policy: ReceivePolicy, what: str) -> None:
        real_ip, real_port = self.book.real_ip(vip), self.book.real_port(vport)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._session_tasks.add(task)
            try:
                await self._serve(policy, reader, writer)
            except asyncio.CancelledError:
                writer.transport.abort()  # the lab stopped while this session still waited on a peer
            finally:
                if task is not None:
                    self._session_tasks.discard(task)

        self._tcp.append(await start_tcp_server(handle, real_ip, real_port, backlog=SMTP_LISTEN_BACKLOG))
        self.listen_table.append((host, f"{vip}:{vport}", real_ip, real_port, what))

    async def _unbind_all(self) -> None:
        for srv in self._tcp:
            srv.close()
        for srv in self._tcp:
            try:
                await asyncio.wait_for(srv.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
        self._tcp = []
        for d in self.dns.values():
            await d.stop()
        if self.crl.running:
            await self.crl.stop()

    async def stop(self) -> None:
        await self._unbind_all()
        for session in list(self.sessions):  # open sessions get 421 4.3.2 and are closed
            await session.shutdown()
        leftover = [t for t in self._session_tasks if not t.done()]
        for task in leftover:  # sessions that outlived their 421 (a proxy still waiting on its peer)
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        for rt in self.servers.values():
            rt.store.close()
        self.exo.store.close()
        for h in self.internet.values():
            h.store.close()

    def _listener_signature(self) -> list[tuple[str, str, int]]:
        sig = [(rt.name, spec.service, spec.port) for rt in self.servers.values() for spec in rt.listener_specs()]
        # port forwarding and load balancers decide who listens on which address, too
        sig += [(r.public_ip, r.server.lower(), p) for r in self.model.network.nat for p in r.ports]
        sig += [(lb.name, lb.vip, p) for lb in self.model.network.load_balancers for p in lb.ports]
        return sig

    def _cert_signature(self) -> str:
        parts = [c.model_dump_json() for c in self.model.certificates]
        parts += [c.model_dump_json() for c in self.model.certificate_authorities]
        parts += [f"{s.name}:{[e.model_dump_json() for e in s.certificates]}:{s.intermediate_store}:"
                  f"{s.internal_transport_certificate}" for s in self.model.organization.servers]
        return "|".join(parts)

    async def reconfigure(self) -> None:
        """Make the running lab follow a changed topology (a scenario timeline step)."""
        for d in self.model.dns_servers:
            server = self.dns.get(d.name)
            if server is not None:
                server.update(d)
                opening = server.set_mode(d.mode if d.running else "stopped")
                if opening is not None:
                    await opening
        if self.crl.running and self.crl.mode != self.model.network.crl_mode:
            await self.crl.set_mode(self.model.network.crl_mode)
        if self._cert_signature() != self._cert_sig:
            self._cert_sig = self._cert_signature()
            self.pki = LabPki(self.model, self.seed)
            self.crl.pki = self.pki
            self._views.clear()
            for rt in self.servers.values():
                rt.store.close()
                rt.store = CertStore.for_server(self.pki, rt.model)
                rt._server_ctx.clear()
            self._server_thumbs = {thumbprint(c.cert) for c in (rt.internal_cert() for rt in self.servers.values())
                                   if c is not None}
        if self._listener_signature() != self._listeners:
            for srv in self._tcp:
                srv.close()
            self._tcp = []
            self.listen_table = [row for row in self.listen_table if "SMTP" not in row[4]]
            await self._bind_smtp()
            self._listeners = self._listener_signature()
            await self._end_sessions_of_stopped_services()
        for party in [*self.servers.values(), self.exo]:
            party.config_changed()  # routing-table update: Unreachable resubmits; restarted queues drain

    # --- sessions -----------------------------------------------------------------------------
    async def _serve(self, policy: ReceivePolicy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One inbound connection. Only sessions a lab party announced count for settle(): a
        stranger (swaks, a test, an idle telnet in `up`) never holds back the lab's actions."""
        # run: a lab client's session counts from accept, until the claim says otherwise. live: from
        # its claim, so strangers arriving all the time (a fuzzer) never hold settle() in their claim wait.
        in_lab = not self.live
        if in_lab:
            self._hold()
        session: ServerSession | None = None
        try:
            peer = writer.get_extra_info("peername")[:2]
            info = await self.registry.claim(peer, CLAIM_TIMEOUT_LIVE if self.live else CLAIM_TIMEOUT_RUN)
            if info is not None:
                if not in_lab:
                    in_lab = True
                    self._hold()
                context = dict(info.context)
                context["remote"] = info.src_virtual
            else:
                if in_lab:
                    in_lab = False
                    self._release()
                context = {"remote": (self.book.virtual_ip(peer[0]) or peer[0], peer[1])}
            session = ServerSession(policy, reader, writer, now=self.clock.now(), context=context)
            if self._closing:  # accepted just as the service stopped
                await session.shutdown(R.SERVICE_SHUTTING_DOWN)
                return
            self.sessions.add(session)
            await session.run()
        except Exception:  # noqa: BLE001 - one broken session must never take the lab down
            import logging
            logging.getLogger("labsim").exception("server session failed")
            writer.close()
        finally:
            if session is not None:
                self.sessions.discard(session)
            if in_lab:
                self._release()

    def _hold(self) -> None:
        self._open += 1
        self._check_idle()

    def _release(self) -> None:
        self._open -= 1
        self._check_idle()

    async def _end_sessions_of_stopped_services(self) -> None:
        """A stopped transport service ends its open sessions (`421 4.3.2`), also those a client
        holds open between two messages."""
        for session in sorted(self.sessions, key=lambda s: (str(s.context.get("client_host")),
                                                            int(s.context.get("client_session") or 0))):
            owner, listener = getattr(session.policy, "server", None), getattr(session.policy, "listener", None)
            if owner is not None and listener is not None and not owner.service_running(listener.service):
                await session.shutdown()

    def hold_open(self, delta: int, client: tuple[str, int] | None = None) -> None:
        """A lab client keeps (+1) or takes up again (-1) a connection between two messages: the
        server session waiting for its next command does not hold back settle(), and its silence
        meanwhile is no inactivity timeout. `client`: the (host, session id) the client announced."""
        self._held += delta
        if client is not None:
            for session in self.sessions:
                if (session.context.get("client_host"), session.context.get("client_session")) == client:
                    session.held = delta > 0
        self._check_idle()

    def _check_idle(self) -> None:
        if self._open <= self._held:
            self._idle.set()
        else:
            self._idle.clear()

    async def close_sessions(self) -> None:
        """Stop accepting and answer every open server session `421 4.3.2` (the service stops)."""
        self._closing = True
        for srv in self._tcp:
            srv.close()
        for session in self.sessions:
            session.stopping = True  # at once, for all: nothing is committed from now on
        await asyncio.gather(*(s.shutdown(R.SERVICE_SHUTTING_DOWN) for s in list(self.sessions)),
                             return_exceptions=True)

    async def settle(self) -> None:
        """Wait until every server session caused by the last action has finished."""
        for _ in range(3):
            await asyncio.sleep(0)
        if self.live:
            # Wall-clock time: order is not reproducible anyway, and sessions of outside clients
            # (which no action caused) may stay open for as long as they like.
            return
        try:
            await asyncio.wait_for(self._idle.wait(), SETTLE_TIMEOUT)
            for _ in range(1000):  # a server session whose client holds it open finishes its reply
                if not any(getattr(s, "_counting", False) for s in self.sessions):
                    break
                await asyncio.sleep(0)
        except asyncio.TimeoutError:
            # A peer that never finishes its session must not stall the run; its rows keep the
            # virtual times they were written with.
            self.scheduler.errors.append(f"settle: {self._open} session(s) still open after {SETTLE_TIMEOUT} s")
        self.tracking.settled()  # write the evidence no later action can precede (engine.evidence)

    # --- shared services for the parties ------------------------------------------------------------
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

    def _resolver(self, host: HostInfo, servers: list[str], service: str | None = None) -> LabResolver:
        src = self.book.real_ip(host.ip) if self.book.knows(host.ip) else None
        # Every configured server is asked, in order: one outside the lab never answers (it costs
        # its timeout, as an unreachable server does), and link rules on UDP 53 apply (rules.network).
        return LabResolver(list(servers), self.book, timeout=DNS_REAL_TIMEOUT, source_ip=src,
                           cache=self.dns_cache(*self.dns_owner(host, service)),
                           route=lambda ip: self.net.plan(host, ip, 53, protocol="UDP").failure)

    async def resolve_a(self, host: HostInfo, servers: list[str], name: str, *,
                        service: str | None = None) -> list[str]:
        self.clock.advance(0.001)
        return await self._resolver(host, servers, service).resolve_a(name)

    async def resolve_host(self, host: HostInfo, servers: list[str], domain: str, *,
                           service: str | None = None) -> list[tuple[str, list[str]]]:
        self.clock.advance(0.002)
        return await self._resolver(host, servers, service).resolve_host(domain)

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
            return await http_get(self.book.real_ip(plan.dial_ip), self.book.real_port(port), name,
                                  parts.path or "/", CRL_REAL_TIMEOUT)
        except CrlUnavailable:
            self.clock.advance(CRL_VIRTUAL_TIMEOUT)
            raise

    # --- output ---------------------------------------------------------------------------------
    def flush_logs(self, before: datetime | None = None) -> list[Path]:
        """Write the buffered log rows (with `before`: only those printed earlier, see engine.evidence).

        Returns every log file written so far: a run streams its logs, so the final flush is not
        the only one."""
        mark = None if before is None else iso_ms(before)
        for log in self._logs:
            for path in log.flush(mark):
                self._log_files.setdefault(path)
        return list(self._log_files)

    def collect_pending(self) -> None:
        parties = list(self.servers.values()) + [self.exo] + list(self.internet.values())
        for party in parties:
            for q in party.queues.all():
                for qm in q.messages:
                    self.ledger.pending(qm.item, qm.recipients, party.name, q.identity,
                                        qm.last_error or q.last_error)
        service_ops.collect_outbox(self)  # mail still waiting in a mailbox's Outbox

    def queue_snapshot(self) -> list[dict[str, Any]]:
        rows = []
        parties = list(self.servers.values()) + [self.exo]
        for party in parties:
            for q in party.queues.all():
                if not q.messages and q.delivery_type in ("Undefined",):
                    continue
                rows.append({
                    "Identity": q.identity, "DeliveryType": q.delivery_type, "Status": q.shown_status,
                    "MessageCount": q.message_count, "NextHopDomain": q.next_hop_domain, "LastError": q.shown_last_error,
                    "LastRetryTime": iso_ms(q.last_retry_time) if q.last_retry_time else "",
                    "NextRetryTime": iso_ms(q.next_retry_time) if q.next_retry_time else "",
                })
        return rows

    def summary(self) -> dict[str, Any]:
        return {
            "start": iso_ms(self.model.start),
            "end": iso_ms(self.clock.now()),
            "seed": self.seed,
            "messages": MessageList(self.ledger),  # read back from the ledger's spool when read
            "queues": self.queue_snapshot(),
            "internal_errors": list(self.scheduler.errors),
            "services": service_ops.snapshot(self),
            "events": [{"time": iso_ms(e.time), "server": e.server, "source": e.source, "id": e.event_id,
                        "strings": e.insertion_strings} for e in self.events.events],
        }

    def write_event_logs(self) -> list[Path]:
        """Each on-prem server's Application log, as wevtutil prints it (engine.eventlog): written
        as the events are raised, completed here."""
        return self.tracking.event_logs.close()

    def write_summary(self) -> Path:
        path = self.out / "summary.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:  # json.dump writes as it encodes: no whole-file string
            dump_summary(self.summary(), fh)  # json.dump's bytes, one message at a time
            fh.write("\n")
        self.tracking.write_outputs()
        return path

    # --- driving --------------------------------------------------------------------------------
    def horizon(self, last_traffic: datetime) -> datetime:
        return last_traffic + timedelta(days=3)
