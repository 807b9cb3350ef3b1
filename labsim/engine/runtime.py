"""The running lab: builds every party from a topology, binds them on loopback, runs actions.

`LabRuntime` is the shell around everything else: it owns the virtual clock, the address book and
connection registry of the virtual network, the PKI, DNS and CRL servers, the listeners, the
scheduler, the output tree (logs, mailboxes) and the ledger of what happened. Parties ask it for
shared services (DNS lookups from a given host, certificate validation with CRL fetches from a
given host, log writers).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..clock import VirtualClock, iso_ms
from ..net.dns_server import LabDnsServer
from ..net.vnet import (
    DEFAULT_BLOCK,
    DEFAULT_PORT_OFFSET,
    AddressBook,
    ConnectionRegistry,
)
from ..pki.authority import LabPki
from ..pki.crl_server import CrlServer
from ..rules.network import NetView, all_virtual_ips, lab_hosts
from ..topology.model import Lab
from ..transport.store import MailboxStore
from .events import EventCollector, LabEvent
from .evidence import TrackingHub
from .exo import ExoRuntime
from .internet import InternetHostRuntime
from .lab_services import LabServices
from .ledger import Ledger, MessageList, dump_summary
from .listeners import Listeners
from .onprem import ExchangeServerRuntime
from .routing_tables import RoutingTableLogs
from .scheduler import Scheduler
from .services import HeldMessage, Outbox, ServiceState
from .services import snapshot as services_snapshot

__all__ = ["LabRuntime", "LabEvent"]  # LabEvent lives in engine.events; named here as before


class LabRuntime(Listeners, LabServices):
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
        self.service_state = ServiceState(Outbox(self.scheduler, self._submit_held))  # engine.services
        self.store = MailboxStore(out)
        self.ledger = Ledger(self.clock)
        self.tracking = TrackingHub(self)  # message tracking, EXO message trace, queue history
        self.events = EventCollector(self.clock, self.tracking.event_raised)
        self._init_services()  # engine.lab_services: ids, log registry, certificate and DNS caches
        self._log_files: dict[Path, None] = {}  # every log file written, in first-written order
        model.mark_started()  # org: a running lab does not grow servers (topology.cmdlets_org)
        self.servers = {s.name: ExchangeServerRuntime(self, s) for s in model.organization.servers}
        self.exo = ExoRuntime(self)
        self.internet = {h.name: InternetHostRuntime(self, h) for h in model.internet_hosts}
        self.dns = {d.name: LabDnsServer(d, self.book, silent=self.dns_silent) for d in model.dns_servers}
        self.crl = CrlServer(self.pki, self.clock.now, mode=model.network.crl_mode)
        # org: each CA's own CDP host (Network.CdpHosts), with its own state
        self.cdps = {c.name: CrlServer(self.pki, self.clock.now, mode=c.mode, host=c.name)
                     for c in model.network.cdp_hosts}
        self.note_internal_certificates()
        self._init_sessions()  # engine.sessions: open sessions, the settle() barrier, connection counts
        self._init_listeners()  # engine.listeners: the listen table, the load balancers' proxies
        self.routing_logs = RoutingTableLogs(out, model.start)  # routing table logs (engine.routing_tables)
        self.taken_up = 0  # `up`: messages read back from the queue databases at start (engine.durable)

    async def _submit_held(self, h: HeldMessage) -> None:
        """The Outbox tries a held message again: its server's Mailbox Transport Submission."""
        await self.servers[h.server].submit_from_mailbox(h.mail_from, h.recipients, h.data)

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
        self.service_state.outbox.collect(self.ledger)  # mail still waiting in a mailbox's Outbox

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
            "services": services_snapshot(self.model.organization, self.service_state),
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
