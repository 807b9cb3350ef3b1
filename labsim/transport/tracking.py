"""Message tracking on the on-prem servers: MSGTRK (Transport/Edge), MSGTRKMS (Mailbox Transport
Submission), MSGTRKMD (Mailbox Transport Delivery), written as each party acts.

The parties call one tracker per server with what just happened (`received`, `categorized`,
`send`, `deliver`, `defer`, `fail`, `dsn`, `resubmit`, `mailbox_submission`, `submitted`); the
tracker turns that into rows with the 30 fields of log-formats.md §4 through
`logs.message_tracking.MessageTrackingLog`. Nothing here decides anything about mail flow: the
rows are evidence, written from the same objects the decision used, so they cannot disagree with
the protocol logs (the RECEIVE row's source-context is the protocol log's `receiving message`
triple with the message counter before this message; the SEND row's source-context *is* the next hop's 250 reply; internal-message-id is the
InternalId of the 250 2.6.0 reply).

Field contents follow the real rows quoted in log-formats.md §4.3 (QAZ MSGTRKMS NOTIFYMAPI and
RECEIVE; ELA RECEIVE SMTP, HAREDIRECTFAIL, SEND, SENDEXTERNAL; KIN AGENTINFO). Where no real row
was found (SUBMIT, DELIVER, DEFER, FAIL, DSN, RESUBMIT) the layout is [INFERRED] from the
documented field meanings (DOC-MT) and marked so in docs/queues-tracking-ndr.md.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..clock import iso_ms, us_time
from ..ids import Counter
from ..logs import protocol_text as T
from ..logs.message_tracking import MessageTrackingLog
from ..rules.shadow_redundancy import shadow_candidates

if TYPE_CHECKING:  # pragma: no cover
    from .message import MailItem
    from .queues import Queue

SHADOW_FAIL = "No suitable shadow servers"
SUBMISSION_ASSISTANT = "MailboxTransportSubmissionEmailAssistant"
EXTERNAL_DELIVERY = ("DnsConnectorDelivery", "SmartHostConnectorDelivery")


@lru_cache(maxsize=4096)  # a pure function of a few lab objects, asked once per delivered recipient
def stable_guid(*parts: str) -> str:
    """A GUID for a lab object (a mailbox, a database) that Exchange would read from AD."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "labsim:" + ":".join(p.lower() for p in parts)))


def is_external_send(q: "Queue") -> bool:
    """SENDEXTERNAL for a hop out of the organisation through a send connector, SEND otherwise."""
    route = q.route
    return q.delivery_type in EXTERNAL_DELIVERY and bool(getattr(route, "external", True))


def led_status(led: str, *, msg: str = "", fqdn: str = "", ip: str = "", lrt: datetime | None = None) -> str:
    """Exchange's structured recipient status, `[{LED=...};{MSG=...};{FQDN=...};{IP=...};{LRT=...}]`.

    Seen on real on-prem FAIL rows (Get-MessageTrackingLog RecipientStatus, Exchange 2019 CU15) and
    in EXO message trace details; LRT is the last retry time, printed as an en-US date here.
    """
    return f"[{{LED={led}}};{{MSG={msg}}};{{FQDN={fqdn}}};{{IP={ip}}};{{LRT={us_time(lrt)}}}]"


def _secs(a: datetime, b: datetime) -> str:
    return f"{max(0.0, (b - a).total_seconds()):.3f}"


# The latency breakdown of a SEND row's message-info (Exchange's LatencyFormatter) [V-code
# Microsoft.Exchange.Transport/Exchange/Transport/LatencyFormatter.cs, LatencyTracker.cs; REAL ELA]:
# `<org arrival>;SRV=<fqdn>:TOTAL-<process>=<s>|<component>=<s>...` - `SRV` when the row reports end
# to end (a message leaving the organisation), `LSRV` otherwise; the process is HUB / EDGE / FE;
# components in the order they completed, each only above ComponentThresholdInterval (1 ms).
PROCESS_SHORT_NAME = {"Mailbox": "HUB", "Edge": "EDGE"}
COMPONENT_THRESHOLD = 0.001
# the delivery-queue component: QDM (a mailbox delivery queue), QDE (a hop out of the organisation),
# QDI (any other hop) - LatencyComponent.DeliveryQueueMailbox/External/Internal [mapping INFERRED from
# the names; REAL ELA: QDM on a Hub -> Mailbox SEND, QDE on SENDEXTERNAL to EOP]


def latency_info(org_arrival: datetime, fqdn: str, process: str, total: float,
                 components: list[tuple[str, float]], *, end_to_end: bool) -> str:
    """One hop's latency string, as LatencyFormatter.FormatAndUpdatePerfCounters writes it."""
    parts = [f"TOTAL-{process}={max(0.0, total):.3f}"]
    parts += [f"{name}={secs:.3f}" for name, secs in components if secs > COMPONENT_THRESHOLD]
    return f"{iso_ms(org_arrival)};{'SRV' if end_to_end else 'LSRV'}={fqdn}:" + "|".join(parts)


class OnPremTracker:
    """The message tracking rows of one on-prem server (Mailbox or Edge)."""

    def __init__(self, hub: Any, party: Any) -> None:
        self.hub = hub
        self.party = party
        self.lab = party.lab
        self.server = party.name
        self.model = party.model
        self.ids = self.lab.ids_for(f"{self.server}/msgtrk")
        self.mts_ids = Counter(self.lab.seed, f"{self.server}/mts", 100, 99999)
        self.mapi_events = Counter(self.lab.seed, f"{self.server}/mapi-event", 10**7, 10**8)
        self.edge = self.model.role == "Edge"
        self.forest = "" if self.edge else self.lab.model.organization.name

    # --- plumbing -------------------------------------------------------------------------------
    def _log(self, prefix: str) -> MessageTrackingLog:
        return self.hub.log(self.server, prefix, self.model.version)

    def _row(self, prefix: str, **fields: Any) -> None:
        when = fields.pop("when", None) or self.lab.clock.now()
        fields["log_id"] = self.ids.guid()
        self._log(prefix).add_fields(when, fields)

    def _custom(self, *pairs: str) -> str:
        items = [p for p in pairs if p] + ["S:DeliveryPriority=Normal"]
        if self.forest:
            items.append(f"S:AccountForest={self.forest}")
        return ";".join(items)

    def _message(self, item: "MailItem", recipients: list[str] | None = None) -> dict[str, Any]:
        rcpts = item.recipients if recipients is None else recipients
        return dict(internal_message_id=item.internal_id, message_id=item.message_id,
                    network_message_id=item.network_message_id, recipient_address=";".join(rcpts),
                    total_bytes=item.size, recipient_count=len(rcpts), message_subject=item.subject,
                    sender_address=item.mail_from, return_path=item.mail_from or "<>",
                    directionality=item.directionality, transport_traffic_type="Email")

    def _latency(self, item: "MailItem", total_key: str) -> str:
        now = self.lab.clock.now()
        return f"{iso_ms(item.arrived)};SRV={self.model.fqdn}:{total_key}={_secs(item.arrived, now)}"

    # --- Mailbox Transport Submission (MSGTRKMS) ---------------------------------------------------
    def mailbox_submission(self, mail_from: str, recipients: list[str], data: bytes, message_id: str,
                           subject: str) -> dict[str, Any]:
        """NOTIFYMAPI and RECEIVE (STOREDRIVER): the submission assistant picks the item up."""
        now = self.lab.clock.now()
        db = self._database_of(mail_from)
        event = self.mapi_events.next()
        mdb, mbx = stable_guid("mdb", db), stable_guid("mailbox", mail_from)
        ctx = (f"MDB:{mdb}, Mailbox:{mbx}, Event:{event}, MessageClass:IPM.Note, CreationTime:{iso_ms(now)}, "
               f"ClientType:MOMT, SubmissionAssistant:{SUBMISSION_ASSISTANT}")
        entry = "S:ItemEntryId=" + "-".join(self.ids.hex_bytes(24))
        self._row("MSGTRKMS", client_ip=self.model.ip, client_hostname=self.server, source_context=ctx,
                  source="STOREDRIVER", event_id="NOTIFYMAPI", sender_address=mail_from,
                  message_info=f"{iso_ms(now)};LSRV={self.model.fqdn}:TOTAL-SUB=0.002|SA=0.002|MTSS-PEN=0.000",
                  custom_data=entry)
        internal = self.mts_ids.next()
        conn = f"{self.ids.randint(0, 2**64 - 1):016X}"
        net_id = self.lab.network_message_id("onprem", message_id, self.party.ids, now)
        self._row("MSGTRKMS", client_ip=self.model.ip, client_hostname=self.model.fqdn, server_ip=self.model.ip,
                  server_hostname=self.server, source_context=ctx + f", ServerMdbConnectionId:{conn}",
                  source="STOREDRIVER", event_id="RECEIVE", internal_message_id=internal, message_id=message_id,
                  network_message_id=net_id, recipient_address=";".join(recipients),
                  recipient_status=";".join("To" for _ in recipients), total_bytes=len(data),
                  recipient_count=len(recipients), message_subject=subject, sender_address=mail_from,
                  return_path=mail_from, message_info="04I: ", directionality="Originating",
                  original_client_ip=self.model.ip, original_server_ip=self.model.ip,
                  custom_data=self._custom(f"S:MailboxDatabaseGuid={mdb}", entry), transport_traffic_type="Email")
        return {"ctx": ctx, "internal": internal, "net_id": net_id, "message_id": message_id, "subject": subject,
                "from": mail_from, "rcpts": list(recipients), "size": len(data), "created": now, "mdb": mdb}

    def submitted(self, sub: dict[str, Any], hub_fqdn: str, hub_ip: str) -> None:
        """SUBMIT (STOREDRIVER): handed to a Transport service [INFERRED field layout]."""
        now = self.lab.clock.now()
        self._row("MSGTRKMS", client_ip=self.model.ip, client_hostname=self.model.fqdn, server_ip=hub_ip,
                  server_hostname=hub_fqdn, source_context=sub["ctx"], source="STOREDRIVER", event_id="SUBMIT",
                  internal_message_id=sub["internal"], message_id=sub["message_id"],
                  network_message_id=sub["net_id"], recipient_address=";".join(sub["rcpts"]),
                  total_bytes=sub["size"], recipient_count=len(sub["rcpts"]), message_subject=sub["subject"],
                  sender_address=sub["from"], return_path=sub["from"],
                  message_info=f"{iso_ms(sub['created'])};LSRV={self.model.fqdn}:TOTAL-SUB={_secs(sub['created'], now)}"
                               f"|SA=0.002|MTSS=0.001",
                  directionality="Originating", custom_data=self._custom(f"S:MailboxDatabaseGuid={sub['mdb']}"),
                  transport_traffic_type="Email")

    def submit_failed(self, sub: dict[str, Any], reason: str) -> None:
        """SUBMITFAIL (STOREDRIVER): no Transport service took the message [INFERRED field layout]."""
        self._row("MSGTRKMS", client_ip=self.model.ip, client_hostname=self.model.fqdn,
                  source_context=sub["ctx"], source="STOREDRIVER", event_id="SUBMITFAIL",
                  internal_message_id=sub["internal"], message_id=sub["message_id"],
                  network_message_id=sub["net_id"], recipient_address=";".join(sub["rcpts"]),
                  recipient_status=reason, total_bytes=sub["size"], recipient_count=len(sub["rcpts"]),
                  message_subject=sub["subject"], sender_address=sub["from"], return_path=sub["from"],
                  directionality="Originating", custom_data=self._custom(), transport_traffic_type="Email")

    def _database_of(self, address: str) -> str:
        for mb in self.lab.model.organization.mailboxes:
            if mb.primary_smtp_address.lower() == address.lower():
                return mb.database
        return "DB"

    # --- Transport (MSGTRK) ------------------------------------------------------------------------
    def received(self, item: "MailItem", session: Any, service: str, shadowed: bool | None = None) -> None:
        """HAREDIRECTFAIL (no shadow copy: no peer in the boundary, or none took it) and RECEIVE (SMTP).
        `shadowed`: None when no copy was tried (the boundary decides), else whether a peer took it."""
        if service == "MailboxDelivery":
            return
        state = session.state
        # MsgTrackReceiveInfo takes the session's message counter at MAIL FROM *before* it counts this
        # message; the protocol log's `receiving message` row is written after, so it says one more
        # [V-code SmtpInSessionState.CreateTransportMailItem, MailSmtpInCommand.ProcessAsync; REAL: ELA
        # RECEIVE rows `…;0` for a session's first message, TST's `receiving message` row `…;1`]
        item.session_context = T.receiving_message_data(session.session_id, session.started, max(0, session.messages - 1))
        item.received_tls = getattr(session.extra, "tls", None)
        shadow = self._shadow_fails() if shadowed is None else not shadowed
        if shadow:
            self._row("MSGTRK", server_hostname=self.server, source_context=SHADOW_FAIL, source="SMTP",
                      event_id="HAREDIRECTFAIL", custom_data=self._custom(), **self._message(item))
        proxied = session.context.get("proxied") or {}
        custom = []
        if proxied:
            fe = self.lab.net.host(str(session.context.get("client_host", self.server)))
            fe_fqdn = self.model.fqdn if fe.name == self.server else fe.name
            custom += [f"S:ProxyHop1={fe_fqdn}({state.remote_ip})"]
        if shadow:
            custom.append("S:Replication=Failed")
        if proxied:
            custom += [f"S:FirstForestHop={self.model.fqdn}"]
        if item.directionality == "Incoming":
            custom.append("S:FromEntity=Internet")
        if proxied:
            custom += [f"S:ProxiedClientIPAddress={proxied.get('ip', '')}",
                       f"S:ProxiedClientHostname={proxied.get('helo', '')}"]
        self._row("MSGTRK", client_ip=state.remote_ip, client_hostname=state.helo or state.remote_ip,
                  server_ip=self.model.ip, server_hostname=self.server, source_context=item.session_context,
                  connector_id=item.receive_connector, source="SMTP", event_id="RECEIVE",
                  message_info="04I: " if item.directionality == "Originating" else "0cA: ",
                  original_client_ip=item.client_ip, original_server_ip=self.model.ip,
                  custom_data=self._custom(*custom), **self._message(item))

    def _shadow_fails(self) -> bool:
        """No Mailbox server of this server's transport high availability boundary (its DAG, else its
        AD site) can hold a shadow copy (rules.shadow_redundancy; Learn "Shadow redundancy")."""
        if self.edge:
            return False
        org = self.lab.model.organization
        return not shadow_candidates(org, org.server(self.server))

    # --- shadow redundancy (engine.shadow) ---------------------------------------------------------
    def ha_redirect(self, item: "MailItem", answer: str) -> None:
        """HAREDIRECT (SMTP) on the primary: the shadow server's FQDN and its `250 2.6.0 ... Queued mail
        for redundancy` as source-context [V-obs: a 2017 Exchange 2013 row]."""
        self._row("MSGTRK", server_hostname=self.server, source_context=answer, source="SMTP",
                  event_id="HAREDIRECT", custom_data=self._custom(), **self._message(item))

    def ha_receive(self, item: "MailItem", session: Any, primary: str) -> None:
        """HARECEIVE (SMTP) on the shadow server [DOC-MT event; fields INFERRED as RECEIVE's]."""
        state = session.state
        self._row("MSGTRK", client_ip=state.remote_ip, client_hostname=primary, server_ip=self.model.ip,
                  server_hostname=self.server, source_context=primary, source="SMTP", event_id="HARECEIVE",
                  custom_data=self._custom(), **self._message(item))

    def ha_discard(self, item: "MailItem", primary: str) -> None:
        """HADISCARD (SMTP) on the shadow server: the primary reported the message done [DOC-MT event]."""
        self._row("MSGTRK", server_hostname=self.server, source_context=primary, source="SMTP",
                  event_id="HADISCARD", custom_data=self._custom(), **self._message(item))

    def categorized(self, item: "MailItem") -> None:
        """AGENTINFO (AGENT): the agents' summary after categorisation [REAL KIN layout]."""
        self._row("MSGTRK", client_hostname=self.server, source="AGENT", event_id="AGENTINFO",
                  original_client_ip=item.client_ip, original_server_ip=self.model.ip,
                  custom_data=self._custom("S:AMA=SUM|action=p|error=|atch=0" if not self.edge else "",
                                           "S:CompCost=|ETR=0"), **self._message(item))

    def send(self, item: "MailItem", recipients: list[str], q: "Queue", res: Any, spec: Any, qm: Any = None) -> None:
        """SEND or SENDEXTERNAL (SMTP) after the next hop accepted the message."""
        external = is_external_send(q)
        now = self.lab.clock.now()
        queued = getattr(qm, "queued_at", None) or item.arrived
        started = getattr(qm, "send_started", None) or now
        info = latency_info(item.arrived, self.model.fqdn, PROCESS_SHORT_NAME.get(self.model.role, "HUB"),
                            (now - item.arrived).total_seconds(),
                            [("CAT", (queued - item.arrived).total_seconds()),
                             ("QDM" if q.delivery_type == "SmtpDeliveryToMailbox" else "QDE" if external else "QDI",
                              (started - queued).total_seconds()),
                             ("SMS", (now - started).total_seconds())], end_to_end=external)
        required = getattr(spec.tls, "auth_level", None) or "Opportunistic"
        custom = [f"S:E2ELatency={_secs(item.arrived, self.lab.clock.now())}"]
        if external:
            custom += ["S:ExternalSendLatency=0.050", "S:ToEntity=Internet"]
        custom += [f"S:MsgRecipCount={len(recipients)}", "S:IncludeInSla=True",
                   f"S:Microsoft.Exchange.Transport.MailRecipient.RequiredTlsAuthLevel={required}"]
        if required != "Opportunistic":
            custom.append(f"S:Microsoft.Exchange.Transport.MailRecipient.EffectiveTlsAuthLevel={required}")
        custom.append(f"S:IsSmtpResponseFromExternalServer={'True' if external else 'False'}")
        self._row("MSGTRK", client_ip=self.model.ip, client_hostname=self.server, server_ip=res.remote_ip,
                  server_hostname=res.remote_host, source_context=f";{res.reply};ClientSubmitTime:",
                  connector_id=spec.connector_id, source="SMTP", event_id="SENDEXTERNAL" if external else "SEND",
                  message_info=info, custom_data=self._custom(*custom),
                  **{**self._message(item, recipients),
                     # each recipient's status is the next hop's reply to its RCPT TO [REAL ELA SEND rows]
                     "recipient_status": ";".join(res.rcpt_replies.get(r, "") for r in recipients)})

    def deliver(self, item: "MailItem", recipient: str, path: str, session: Any = None) -> None:
        """DELIVER (STOREDRIVER) in MSGTRKMD: stored in the mailbox [INFERRED field layout]."""
        state = getattr(session, "state", None)
        db = self._database_of(recipient)
        self._row("MSGTRKMD", client_ip=getattr(state, "remote_ip", ""), client_hostname=getattr(state, "helo", "") or "",
                  server_ip=self.model.ip, server_hostname=self.server, source="STOREDRIVER", event_id="DELIVER",
                  message_info=self._latency(item, "TOTAL-DEL"), original_client_ip=item.client_ip,
                  original_server_ip=self.model.ip,
                  custom_data=self._custom(f"S:Mailboxes={stable_guid('mailbox', recipient)}",
                                           f"S:MailboxDatabaseName={db}", "S:DatabaseHealth=-1"),
                  **self._message(item, [recipient]))

    def defer(self, item: "MailItem", recipients: list[str], error: str, q: "Queue") -> None:
        """DEFER (SMTP): delivery delayed; recipient-status carries the LastError [INFERRED layout]."""
        connector = getattr(getattr(q.route, "connector", None), "name", "") or ""
        self._row("MSGTRK", client_ip=self.model.ip, client_hostname=self.server,
                  server_ip=q.last_target_ip, server_hostname=q.last_target_host or q.next_hop_domain,
                  connector_id=connector, source="SMTP", event_id="DEFER",
                  custom_data=self._custom(f"S:NextHopDomain={q.next_hop_domain}"),
                  **{**self._message(item, recipients),
                     "recipient_status": ";".join(led_status(error, fqdn=q.last_target_host, ip=q.last_target_ip,
                                                             lrt=q.last_retry_time) for _ in recipients)})

    def fail(self, item: "MailItem", recipients: list[str], failure: Any, dsn_message_id: str = "") -> None:
        """FAIL: the recipients will not be delivered; `reference` is the NDR's Message-ID (DOC-MT)."""
        self._row("MSGTRK", client_ip=self.model.ip, client_hostname=self.server,
                  server_ip=failure.remote_ip, server_hostname=failure.remote_host or self.server,
                  source=failure.source, event_id="FAIL", reference=dsn_message_id, custom_data=self._custom(),
                  **{**self._message(item, recipients),
                     "recipient_status": ";".join(led_status(failure.status, msg=failure.last_error,
                                                             fqdn=failure.remote_host, ip=failure.remote_ip,
                                                             lrt=failure.last_attempt) for _ in recipients)})

    def dsn(self, dsn: "MailItem", original: "MailItem", about: list[str], action: str) -> None:
        """DSN (DSN): the NDR or delay notice generated; `reference` is the original's Message-ID."""
        self._row("MSGTRK", client_hostname=self.server, server_hostname=self.server, source="DSN", event_id="DSN",
                  related_recipient_address=";".join(about), reference=original.message_id,
                  custom_data=self._custom(f"S:DsnType={'Delay' if action == 'delayed' else 'Failure'}"),
                  **self._message(dsn))

    def resubmit(self, item: "MailItem", recipients: list[str], q: "Queue", reason: str) -> None:
        """RESUBMIT: back to the categorizer from a queue [INFERRED source/layout]."""
        self._row("MSGTRK", client_hostname=self.server, server_hostname=self.server,
                  source="ADMIN" if reason == "admin" else "ROUTING", event_id="RESUBMIT",
                  custom_data=self._custom(f"S:ResubmittedFrom={q.identity}"), **self._message(item, recipients))
