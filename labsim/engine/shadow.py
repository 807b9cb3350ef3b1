"""Shadow redundancy between Mailbox servers: the primary's shadow copy, the shadow server's
copies, and the heartbeat that discards them (docs/network-dns-routing.md §6.3).

Theory of operation. When the Transport service of a Mailbox server receives a message from outside
its transport high availability boundary (rules.shadow_redundancy: its DAG, else its AD site), it
opens - while the sender waits for its reply - an SMTP session to the Transport service (2525) of a
boundary peer: the usual intra-organisation security (X-ANONYMOUSTLS, X-EXPS), `RSET`,
`XSHADOWREQUEST <fqdn> <database id>`, and the message, answered `250 2.6.0 ... Queued mail for
redundancy`. The tracking log says HAREDIRECT (or HAREDIRECTFAIL when no peer took it). The peer
keeps the copy (tracking HARECEIVE) and, every ShadowHeartbeatFrequency (2 minutes) while it holds
copies for that primary, asks the primary: `XSHADOW <its context>`, `XQDISCARD 50`. The primary
answers with the ids of the shadowed messages that have left its queues (delivered, sent on or
failed); the shadow server discards them (HADISCARD). [INFERRED]: the shadow message id travels out
of band (the wire carrier is not public); a peer that refuses or is down is skipped for the next
candidate, and with none left the message is accepted without a copy (RejectMessageOnShadowFailure
$false, the default); mail from Mailbox Transport Submission or from a boundary peer is not shadowed
again; promotion after ShadowResubmitTimeSpan (3 hours) is not modelled.

Nothing here happens in an organisation without a boundary peer (the default lab): it stays
byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..ids import IdSource
from ..pki.store import CertStore, StoredCert
from ..rules import shadow_redundancy as S
from ..rules.dnschoice import transport_dns_servers
from ..rules.verbs import Sender
from ..smtp.client import ClientTls, Connection, OutboundMessage, SendSpec, Target
from ..topology.model import ExchangeServer
from ..transport.message import MailItem, header_value
from ..transport.queues import Queue, QueuedMessage
from .queue_rules import INTRA_ORG

if TYPE_CHECKING:  # pragma: no cover
    from ..logs.protocol_log import ProtocolLog
    from ..net.resolver import DnsError  # noqa: F401
    from ..rules.network import HostInfo
    from ..smtp.session_api import Envelope, ReceivingSession
    from .ports import OnPremLab

__all__ = ["ShadowCopy", "ShadowRedundancy"]


@dataclass
class ShadowCopy:
    """A message this server holds for a primary server."""

    discard_id: str
    primary: str  # the primary server's FQDN
    item: MailItem


@dataclass
class _Shadowed:
    """A primary message and where its shadow copy is."""

    discard_id: str
    item: MailItem


@dataclass
class ShadowState:
    database_id: str
    primaries: dict[str, list[_Shadowed]] = field(default_factory=dict)  # shadow server name -> its copies
    copies: dict[str, list[ShadowCopy]] = field(default_factory=dict)  # primary FQDN -> copies held here
    heartbeat_at: dict[str, datetime] = field(default_factory=dict)  # primary FQDN -> next heartbeat
    queue_numbers: dict[str, int] = field(default_factory=dict)  # primary FQDN -> n of <SERVER>\Shadow\<n>


class ShadowRedundancy:
    """The shadow redundancy part of an on-prem Exchange server (mixed into ExchangeServerRuntime)."""

    lab: OnPremLab
    name: str
    model: ExchangeServer
    host: HostInfo
    store: CertStore
    ids: IdSource

    if TYPE_CHECKING:  # provided by the other parts of ExchangeServerRuntime (engine.onprem)
        session_ids: dict[str, Any]
        tracker: Any

        def protocol_log(self, service: str, kind: str) -> ProtocolLog: ...

        def internal_cert(self) -> StoredCert | None: ...

        def queued_copies(self, item: MailItem) -> list: ...

        def service_running(self, service: str) -> bool: ...

    @property
    def shadow(self) -> ShadowState:
        state = getattr(self, "_shadow_state", None)
        if state is None:
            state = ShadowState(database_id=self.lab.ids_for(f"{self.name}/queue-database").guid())
            self._shadow_state = state
        return state

    # --- the primary ------------------------------------------------------------------------------
    def should_shadow(self, session: ReceivingSession) -> bool:
        """A message from outside the boundary: not a shadow copy, not from a boundary peer's or this
        server's Transport service (Mailbox Transport Submission, a relay inside the DAG/site)."""
        org = self.lab.model.organization
        if self.model.role != "Mailbox" or not S.shadow_candidates(org, self.model):
            return False
        if "proxied" in session.context:  # the Front End's client: outside the organisation
            return True
        client = str(session.context.get("client_host", ""))
        inside = {s.name.lower() for s in S.boundary_peers(org, self.model)} | {self.name.lower()}
        return client.lower() not in inside

    async def make_shadow(self, session: ReceivingSession, item: MailItem) -> bool:
        """Copy the message to a boundary peer before the sender's reply; True when a peer took it."""
        org = self.lab.model.organization
        cfg = self.model.transport
        servers = transport_dns_servers(cfg, self.model.adapter_dns_servers)
        for name in S.shadow_candidates(org, self.model):
            peer = org.server(name)
            try:
                ips = await self.lab.resolve_a(self.host, servers, peer.fqdn)
            except Exception:  # noqa: BLE001 - a peer whose name does not resolve is skipped [INFERRED]
                session.touch()
                continue
            discard_id = self.lab.ids_for(f"{self.name}/shadow").guid()
            spec = self._spec([Target(ip, 2525, peer.fqdn) for ip in ips], "shadowredundancy",
                              context={"shadow_discard_id": discard_id})
            conn = Connection(self.lab, spec)
            msg = OutboundMessage(key=None, mail_from=item.mail_from, recipients=list(item.recipients),
                                  data=item.data, shadow_request=f"{self.model.fqdn} {self.shadow.database_id}")
            res = await conn.send(msg)
            await conn.close()
            session.touch()
            if res.delivered:
                self.shadow.primaries.setdefault(peer.name, []).append(_Shadowed(discard_id, item))
                self.tracker.ha_redirect(item, f"{peer.fqdn}={res.reply}")
                return True
        return False

    def _spec(self, targets: list[Target], domain: str, context: dict[str, Any] | None = None) -> SendSpec:
        cfg = self.model.transport
        return SendSpec(
            src=self.host, connector_id=INTRA_ORG, log=self.protocol_log("Hub", "send"),
            log_enabled=cfg.intra_org_connector_protocol_logging_level == "Verbose",
            session_ids=self.session_ids["Hub"], ehlo_name=self.model.fqdn, destination_domain=domain,
            targets=targets, tls=ClientTls(attempt=True, store=self.store, client_cert=self.internal_cert()),
            context=context or {}, sender=Sender(exchange_server_auth=True),
        )

    def discard_ids(self, context: str, limit: int) -> list[str]:
        """XQDISCARD on the primary: the copies of the querying shadow server whose primary message
        has left this server's queues."""
        name = S.decode_context(context) or ""
        held = self.shadow.primaries.get(name, [])
        done = [s for s in held if not self.queued_copies(s.item)][:limit]
        self.shadow.primaries[name] = [s for s in held if s not in done]
        return [s.discard_id for s in done]

    # --- the shadow server -----------------------------------------------------------------------
    def accept_shadow(self, session: ReceivingSession, envelope: Envelope, primary: str) -> str:
        """Keep a shadow copy for `primary`; the reply is Queued mail for redundancy."""
        message_id = header_value(envelope.data, "Message-ID") or f"<{self.lab.ids_for(f'{self.name}/shadow').guid()}@{primary}>"
        internal_id = self.internal_ids.next()  # type: ignore[attr-defined]
        item = MailItem(server=self.name, internal_id=internal_id, mail_from=envelope.mail_from,
                        recipients=list(envelope.recipients), data=envelope.data, message_id=message_id,
                        network_message_id="", subject=header_value(envelope.data, "Subject") or "",
                        arrived=session.now())
        discard_id = str(session.context.get("shadow_discard_id") or self.lab.ids_for(f"{self.name}/shadow").guid())
        self.shadow.copies.setdefault(primary.lower(), []).append(ShadowCopy(discard_id, primary, item))
        self.shadow.queue_numbers.setdefault(primary.lower(), len(self.shadow.queue_numbers) + 1)
        self.tracker.ha_receive(item, session, primary)
        self._shadow_queue_changed(primary.lower())
        self._arm_heartbeat(primary.lower(), session.now())
        return S.queued_for_redundancy(message_id, internal_id, self.model.fqdn)

    def shadow_queues(self) -> list[Queue]:
        """Get-Queue's shadow queues: one per primary server, `<SERVER>\\Shadow\\<n>`, DeliveryType
        ShadowRedundancy, NextHopDomain the primary (transport-behavior.md §6) [INFERRED: n counts the
        shadow queues in creation order; an emptied queue stays listed with MessageCount 0]."""
        out = []
        for primary, n in self.shadow.queue_numbers.items():
            q = Queue(identity=f"{self.name}\\Shadow\\{n}", delivery_type="ShadowRedundancy", next_hop_domain=primary)
            q.messages = [QueuedMessage(c.item, list(c.item.recipients), source="SMTP:Default " + self.name)
                          for c in self.shadow.copies.get(primary, [])]
            out.append(q)
        return out

    def _shadow_queue_changed(self, primary: str) -> None:
        """The shadow queue of `primary` changed: its Get-Queue and Get-Message rows go to the queue
        history (queue-history.jsonl, `labsim queue --at`) like any queue's (engine.evidence)."""
        hub = getattr(self.lab, "tracking", None)
        if hub is None:
            return
        n = self.shadow.queue_numbers.get(primary)
        identity = f"{self.name}\\Shadow\\{n}"
        for q in self.shadow_queues():
            if q.identity == identity:
                hub.queue_snapshot(self, q)

    def _arm_heartbeat(self, primary: str, now: datetime) -> None:
        if primary in self.shadow.heartbeat_at:
            return
        when = now + timedelta(seconds=S.HEARTBEAT_FREQUENCY_SECONDS)
        self.shadow.heartbeat_at[primary] = when

        async def beat() -> None:
            self.shadow.heartbeat_at.pop(primary, None)
            await self.heartbeat(primary)

        self.lab.scheduler.call_at(when, f"{self.name} shadow heartbeat to {primary}", beat)

    async def heartbeat(self, primary: str) -> None:
        """XSHADOW + XQDISCARD to the primary; discard what it names; again in 2 minutes if copies remain."""
        copies = self.shadow.copies.get(primary, [])
        if not copies or not self.service_running("Hub"):
            return
        org = self.lab.model.organization
        target = next((s for s in org.servers if s.fqdn.lower() == primary), None)
        if target is None:
            return
        servers = transport_dns_servers(self.model.transport, self.model.adapter_dns_servers)
        try:
            ips = await self.lab.resolve_a(self.host, servers, target.fqdn)
        except Exception:  # noqa: BLE001 - the heartbeat fails like an unreachable primary [INFERRED]
            ips = []
        if ips:
            conn = Connection(self.lab, self._spec([Target(ip, 2525, target.fqdn) for ip in ips], "shadowredundancy"))
            res = await conn.send(OutboundMessage(key=None, mail_from="", recipients=[], data=b"",
                                                  heartbeat=S.encode_context(self.name)))
            await conn.close()
            ids = [line[4:] for line in res.reply.split("\r\n") if line[:3] == "250" and len(line) > 4]
            keep = []
            for c in copies:
                if c.discard_id in ids:
                    self.tracker.ha_discard(c.item, primary)
                else:
                    keep.append(c)
            if len(keep) != len(copies):
                self.shadow.copies[primary] = keep
                self._shadow_queue_changed(primary)
        if self.shadow.copies.get(primary):
            self._arm_heartbeat(primary, self.lab.clock.now())
