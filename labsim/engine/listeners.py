"""The lab's listeners: every SMTP, DNS and CRL endpoint bound on loopback, and rebinding them.

`start()` binds every party's listeners on the lab's loopback block (another block if one is
taken); `reconfigure()` makes the running lab follow a changed topology (DNS servers, the CRL
server's mode, certificates, which services listen where) after a timeline step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..pki.crl_server import CrlServer
    from ..topology.model import Lab
    from .exo import ExoRuntime
    from .internet import InternetHostRuntime
    from .onprem import ExchangeServerRuntime

import asyncio
import errno

from ..errors import LabRuntimeError
from ..net.dns_server import LabDnsServer
from ..net.proxy import bind_load_balancers
from ..net.vnet import (
    AddressBook,
    BlockClaim,
    claim_block,
    start_tcp_server,
)
from ..pki.authority import LabPki
from ..pki.store import CertStore
from ..rules.network import all_virtual_ips
from ..smtp.policy import (
    EopReceivePolicy,
    ExchangeReceivePolicy,
    MtaReceivePolicy,
    ReceivePolicy,
)
from .lab_services import CRL_PORT
from .sessions import SessionGate

# The listen backlog of every SMTP listener: a burst of connections (a load test, a hand-made
# flood) waits in the kernel queue and is then served, each with a banner or a connection-limit
# 421, instead of being dropped unanswered at asyncio's default of 100. Linux caps it at somaxconn.
SMTP_LISTEN_BACKLOG = 4096


class Listeners(SessionGate):
    """Binding, rebinding and unbinding the lab's endpoints."""

    # the lab's (engine.runtime.LabRuntime.__init__)
    model: Lab
    seed: int
    port_offset: int
    block: int
    pki: LabPki
    servers: dict[str, ExchangeServerRuntime]
    exo: ExoRuntime
    internet: dict[str, InternetHostRuntime]
    dns: dict[str, LabDnsServer]
    crl: CrlServer
    cdps: dict[str, CrlServer]
    listen_table: list[tuple[str, str, str, int, str]]  # host, vip, real ip, real port, what
    lb_proxies: dict[str, Any]  # net.proxy: the load balancers' proxies, kept across rebinds
    _views: dict[int, list[Any]]  # engine.lab_services: certificate views per store
    _listeners: list[tuple[str, str, int]]  # who listened where at the last (re)bind
    _cert_sig: str  # the certificates at the last (re)bind
    _block_claim: BlockClaim | None  # net.vnet: this lab's hold on its loopback block

    if TYPE_CHECKING:  # engine.lab_services, the runtime's other part
        def note_internal_certificates(self) -> None: ...
        def dns_silent(self, vip: str) -> bool: ...

    def _init_listeners(self) -> None:
        self._block_claim = None
        self.listen_table = []
        self.lb_proxies = {}

    async def start(self) -> None:
        last: OSError | None = None
        for attempt in range(12):
            claim = claim_block(self.block)  # another lab of this machine holds it: move on
            try:
                if claim is None:
                    raise OSError(errno.EADDRINUSE, f"loopback block {self.block} is another lab's")
                await self._bind_all()
                self._block_claim = claim
                return
            except OSError as exc:
                if claim is not None:
                    claim.release()
                if exc.errno != errno.EADDRINUSE:
                    raise
                last = exc
                await self._unbind_all()
                self.block = (self.block + 7 * (attempt + 1)) % 250 + 2
                self.book = AddressBook(all_virtual_ips(self.model), block=self.block, port_offset=self.port_offset)
                for d in self.model.dns_servers:
                    self.dns[d.name] = LabDnsServer(d, self.book, silent=self.dns_silent)
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
        for c in self.model.network.cdp_hosts:  # org: a CDP per CA
            await self.cdps[c.name].start(self.book.real_ip(c.ip), self.book.real_port(CRL_PORT))
            self.listen_table.append((c.name, c.ip, self.book.real_ip(c.ip), self.book.real_port(CRL_PORT),
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
        for cdp in self.cdps.values():
            if cdp.running:
                await cdp.stop()

    async def stop(self) -> None:
        await self._unbind_all()
        claim, self._block_claim = self._block_claim, None
        if claim is not None:
            claim.release()
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
        for c in self.model.network.cdp_hosts:
            cdp = self.cdps.get(c.name)
            if cdp is not None and cdp.running and cdp.mode != c.mode:
                await cdp.set_mode(c.mode)
        if self._cert_signature() != self._cert_sig:
            self._cert_sig = self._cert_signature()
            self.pki = LabPki(self.model, self.seed)
            self.crl.pki = self.pki
            for cdp in self.cdps.values():
                cdp.pki = self.pki
            self._views.clear()
            for rt in self.servers.values():
                rt.store.close()
                rt.store = CertStore.for_server(self.pki, rt.model)
                rt._server_ctx.clear()
            self.note_internal_certificates()
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
