"""The connectivity and agent logs of the on-prem servers: which log, which trace, for which decision.

The rows and their words are logs.connectivity / logs.agent_log; this module only picks the
server's log folder for a transport service and builds the trace of a queue's connection from
the queue's own data (delivery type, next hop, connector, message counts) and the targets the
server resolved. Hooks (kept to one line each where the decision is made):

- onprem.send_spec: a queue's SendSpec carries `queue_trace(...)`; smtp.client.Connection then
  writes the start, DNS result, connect / failure, failover and end rows;
- onprem.ExchangeServerRuntime.next_hop_lookup_failed (from the queue's drain): a next hop whose lookup failed gets `dns_failed(...)`;
- reputation.edge_connection_filter_reply: the Connection Filtering agent's rejection goes to the
  agent log through `agent_log(...)`;
- frontend_proxy._new_proxy: the Front End's proxy connection to Transport carries `proxy_trace(...)`
  (FrontEnd/Connectivity);
- mailbox_submission: the submission's SMTP connection carries `submission_trace(...)` and each
  submission goes through the server's `SubmissionConnections` (the store side's MapiSubmission
  rows), both in Mailbox/Connectivity/Submission;
- onprem_receive (Mailbox Transport Delivery): `mailbox_delivered(...)`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..logs import protocol_text as T
from ..logs.agent_log import AgentAction, AgentLog, agent_log_folder
from ..logs.connectivity import (
    INBOUND_PROXY_INTERNAL,
    SUBMISSION_PROXY,
    ConnectionTrace,
    ConnectivityLog,
    connectivity_log_folder,
    mapi_submission_row,
    mapi_submission_stop_description,
    proxy_start_description,
    start_description,
    store_delivery,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..net.resolver import DnsError
    from ..transport.queues import Queue

__all__ = ["connectivity_log", "agent_log", "queue_trace", "proxy_trace", "submission_trace", "dns_failed",
           "log_rejection", "mailbox_delivered", "SubmissionConnections"]



def _transport_service(server: Any) -> str:
    return "Edge" if server.model.role == "Edge" else "Hub"


def connectivity_log(server: Any, service: str) -> ConnectivityLog:
    logs: dict[str, ConnectivityLog] = server.connectivity_logs
    log = logs.get(service)
    if log is None:
        log = logs[service] = ConnectivityLog(server.lab.out, connectivity_log_folder(server.name, service))
        server.lab.register_log(log)  # flushed (and streamed) with the protocol logs
    return log


def agent_log(server: Any, service: str) -> AgentLog:
    logs: dict[str, AgentLog] = server.agent_logs
    log = logs.get(service)
    if log is None:
        log = logs[service] = AgentLog(server.lab.out, agent_log_folder(server.name, service))
        server.lab.register_log(log)
    return log


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _start(q: "Queue") -> str:
    active = sum(1 for qm in q.messages if qm.status in ("Active", "Ready"))
    retry = sum(1 for qm in q.messages if qm.status == "Retry")
    return start_description(q.delivery_type, q.next_hop_connector, len(q.messages), active, retry)


def _resolved(targets: list[Any]) -> list[tuple[str, list[str]]] | None:
    resolved: dict[str, list[str]] = {}
    for t in targets:
        if not _is_ip(t.name):  # an IP-literal smart host is not looked up
            resolved.setdefault(t.name, []).append(t.ip)
    return list(resolved.items()) or None


def proxy_trace(server: Any, inbound_session: int, targets: list[Any]) -> ConnectionTrace:
    """The Front End's proxy connection for one inbound session (InboundProxyLayer.StartConnection ->
    SmtpOutConnectionHandler.HandleProxyConnection [V-CL]): next hop `InternalProxy` (the Transport
    services of the organisation are internal destinations [INFERRED]), context "Starting outbound
    connection for inbound session {inbound session id X16}"."""
    context = f"Starting outbound connection for inbound session {inbound_session:016X}"
    return ConnectionTrace(connectivity_log(server, "FrontEnd"), server.lab.clock.now, INBOUND_PROXY_INTERNAL,
                           proxy_start_description(context), _resolved(targets))


def submission_trace(server: Any, targets: list[Any]) -> ConnectionTrace:
    """Mailbox Transport Submission's SMTP connection to Transport (SmtpMailItemSender:
    HandleProxyConnection with next hop `MailboxTransportSubmissionInternalProxy` and no context)."""
    return ConnectionTrace(connectivity_log(server, "MailboxSubmission"), server.lab.clock.now, SUBMISSION_PROXY,
                           proxy_start_description(None), _resolved(targets))


def queue_trace(server: Any, service: str, q: "Queue", targets: list[Any]) -> ConnectionTrace | None:
    """The trace of one connection of queue `q` to `targets` (smtp.client.Target, in order); None for
    a connection that is not a queue's (the lab's own connector validation, engine.validate_connectors)."""
    if not hasattr(q, "messages"):
        return None
    return ConnectionTrace(connectivity_log(server, service), server.lab.clock.now, q.next_hop_domain, _start(q),
                           _resolved(targets))


def dns_failed(party: Any, q: "Queue", exc: "DnsError") -> None:
    """The next hop's lookup of an on-prem server's queue failed: the connection's start, the DNS
    status as Exchange names it and the server that reported it, and its end."""
    service = _transport_service(party)
    # the DNS server that answered last; a cached answer asked none: the server's first DNS server [INFERRED]
    dns = list(getattr(party.model, "adapter_dns_servers", []) or [])
    reporter = exc.attempts[-1].server if exc.attempts else (dns[0] if dns else "")
    trace = ConnectionTrace(connectivity_log(party, service), party.lab.clock.now, q.next_hop_domain, _start(q))
    at = party.lab.clock.now()
    trace.resolution_failed(party.session_ids[service].next(), exc.qname, exc.code, reporter, at)


def log_rejection(server: Any, session: Any, recipient: str, local_port: int, reply: str, provider: str) -> None:
    """The Connection Filtering agent rejected RCPT TO because the client's IP is on `provider`'s
    block list (ConnectionFilteringAgent.OnRcptToHandler / BlockListDnsCallback): Event
    OnRcptCommand, Action RejectCommand, Reason BlockListProvider, ReasonData the provider's name.
    The session is external (an Edge's Internet session): EnteredOrgFromIP is the client's address.
    No message exists yet at RCPT: MessageId, P2FromAddresses and NetworkMsgID stay empty and the
    directionality is the mail item's default, Undefined [INFERRED]."""
    remote_ip, remote_port = session.context["remote"]
    action = AgentAction(
        session_id=session.session_id, local_endpoint=T.format_endpoint(server.model.ip, local_port),
        remote_endpoint=T.format_endpoint(remote_ip, remote_port), entered_org_from_ip=remote_ip,
        agent="Connection Filtering Agent", event="OnRcptCommand", action="RejectCommand", smtp_response=reply,
        reason="BlockListProvider", reason_data=provider, p1_from=session.state.mail_from or "",
        recipients=(recipient,) if recipient else ())
    agent_log(server, _transport_service(server)).add(session.now(), action)


def mailbox_delivered(server: Any, database: str, nbytes: int, recipients: int) -> None:
    """Mailbox Transport Delivery handed one mail item to a mailbox database: its MapiDelivery rows in
    `Mailbox/Connectivity/Delivery`, under a session id of the delivery service's own counter (the
    process-wide SessionId.GetNextSessionId the SMTP sessions use too)."""
    session = server.session_ids["MailboxDelivery"].next()
    store_delivery(connectivity_log(server, "MailboxDelivery"), server.lab.clock.now(), session, database,
                   server.model.fqdn, nbytes if recipients else 0, recipients)


# --- Mailbox Transport Submission's store connections (MapiSubmission rows) ------------------------
# StoreDriverSubmission's SubmissionConnection / SubmissionConnectionPool (decompiled) [V-SUB]: one
# connection per (mailbox server, database), new session id at creation; each submission renews a
# 5 s idle deadline; a connection that has started 20 submissions leaves the pool and stops when
# its last one is released (ReachedLimit True); one with a failure stops when released; an idle one
# stops (Idle True) at the service's background scan (every 5 s, SlowScanInterval) that finds its
# deadline passed.
SUBMISSION_IDLE = timedelta(seconds=5)  # SubmissionConnection.timeoutInterval
SUBMISSION_SCAN = timedelta(seconds=5)  # BackgroundProcessingThread.SlowScanInterval
MAX_SUBMISSIONS_PER_CONNECTION = 20  # SubmissionConnection.MaxSubmissionsPerConnection


@dataclass
class _StoreConnection:
    key: tuple[str, str]
    session: int
    deadline: datetime
    seq: int = 1  # the `+` row is 0
    total: int = 0
    successful: int = 0
    nbytes: int = 0
    recipients: int = 0
    failures: int = 0
    in_use: int = 0
    scan: Any = None  # the scheduled background scan that may expire it

    @property
    def reached_limit(self) -> bool:
        return self.total >= MAX_SUBMISSIONS_PER_CONNECTION


class SubmissionConnections:
    """The store submission connections of one Mailbox server's Mailbox Transport Submission service.

    `begin(mdb)` before a message is submitted, `end(conn, delivered, nbytes, recipients)` after;
    rows go to Mailbox/Connectivity/Submission. The background scan's phase is the lab's start
    (the service started with the lab) [INFERRED], on a 5 s grid (the thread's own tick, which
    makes real scans slightly later, is not known) [INFERRED].
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self._pool: dict[tuple[str, str], _StoreConnection] = {}

    def _row(self, c: _StoreConnection, direction: str, description: str, at: datetime, seq: int | None = None) -> None:
        if seq is None:
            seq, c.seq = c.seq, c.seq + 1
        mapi_submission_row(connectivity_log(self.server, "MailboxSubmission"), at, c.session, seq, c.key[1],
                            direction, description)

    def begin(self, mdb: str) -> _StoreConnection:
        """SubmissionConnectionPool.GetConnection(mailbox server FQDN, database GUID)."""
        now = self.server.lab.clock.now()
        key = (self.server.model.fqdn, mdb)
        c = self._pool.get(key)
        if c is None:
            c = _StoreConnection(key, self.server.session_ids["MailboxSubmission"].next(), now)
            self._pool[key] = c
            self._row(c, "+", key[0], now, seq=0)  # MapiSubmissionConnectionStart: description = the server
        c.total += 1
        c.in_use += 1
        c.deadline = now + SUBMISSION_IDLE
        if c.reached_limit:
            self._pool.pop(key, None)
        return c

    def end(self, c: _StoreConnection, delivered: bool, nbytes: int, recipients: int) -> None:
        """The submission's outcome. A message no Transport service took is neither a success nor a
        failure row: the lab releases the connection without a row [INFERRED: what the store driver
        does with an SMTP hand-off that did not complete is not public]."""
        if delivered:
            c.successful += 1
            c.nbytes += nbytes
            c.recipients += recipients
        c.in_use -= 1
        now = self.server.lab.clock.now()
        if c.in_use == 0 and self._can_stop(c):
            self._stop(c, now, idle=False)
        elif c.key in self._pool:
            self._schedule_scan(c)

    def _can_stop(self, c: _StoreConnection) -> bool:
        if c.reached_limit:
            return True
        if c.failures > 0 and self._pool.get(c.key) is c:
            del self._pool[c.key]
            return True
        return False

    def _stop(self, c: _StoreConnection, at: datetime, *, idle: bool) -> None:
        if c.scan is not None:
            self.server.lab.scheduler.cancel(c.scan)
            c.scan = None
        self._row(c, "-", mapi_submission_stop_description(c.successful, c.nbytes, c.recipients, c.failures,
                                                          c.reached_limit, idle), at)

    def _schedule_scan(self, c: _StoreConnection) -> None:
        """The first background scan after the deadline (TimeoutElapsed: now > deadline)."""
        lab = self.server.lab
        start: datetime = lab.model.start
        origin = start.replace(tzinfo=UTC) if start.tzinfo is None else start
        k = (c.deadline - origin) // SUBMISSION_SCAN + 1
        when = origin + k * SUBMISSION_SCAN
        if c.scan is not None:
            lab.scheduler.cancel(c.scan)

        async def scan() -> None:
            c.scan = None
            now = lab.clock.now()
            if self._pool.get(c.key) is c and c.in_use == 0 and now > c.deadline:
                del self._pool[c.key]
                self._stop(c, now, idle=True)

        c.scan = lab.scheduler.call_at(when, f"{self.server.name} submission connection scan", scan)
