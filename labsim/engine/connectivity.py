"""The connectivity and agent logs of the on-prem servers: which log, which trace, for which decision.

The rows and their words are logs.connectivity / logs.agent_log; this module only picks the
server's log folder for a transport service and builds the trace of a queue's connection from
the queue's own data (delivery type, next hop, connector, message counts) and the targets the
server resolved. Hooks (kept to one line each where the decision is made):

- onprem.send_spec: a queue's SendSpec carries `queue_trace(...)`; smtp.client.Connection then
  writes the start, DNS result, connect / failure, failover and end rows;
- onprem.ExchangeServerRuntime.next_hop_lookup_failed (from the queue's drain): a next hop whose lookup failed gets `dns_failed(...)`;
- reputation.edge_connection_filter_reply: the Connection Filtering agent's rejection goes to the
  agent log through `agent_log(...)`.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from ..logs import protocol_text as T
from ..logs.agent_log import AgentAction, AgentLog, agent_log_folder
from ..logs.connectivity import (
    ConnectionTrace,
    ConnectivityLog,
    connectivity_log_folder,
    start_description,
    store_delivery,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..net.resolver import DnsError
    from ..transport.queues import Queue

__all__ = ["connectivity_log", "agent_log", "queue_trace", "dns_failed", "log_rejection", "mailbox_delivered"]



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


def queue_trace(server: Any, service: str, q: "Queue", targets: list[Any]) -> ConnectionTrace | None:
    """The trace of one connection of queue `q` to `targets` (smtp.client.Target, in order); None for
    a connection that is not a queue's (the lab's own connector validation, engine.validate_connectors)."""
    if not hasattr(q, "messages"):
        return None
    resolved: dict[str, list[str]] = {}
    for t in targets:
        if not _is_ip(t.name):  # an IP-literal smart host is not looked up
            resolved.setdefault(t.name, []).append(t.ip)
    return ConnectionTrace(connectivity_log(server, service), server.lab.clock.now, q.next_hop_domain, _start(q),
                           list(resolved.items()) or None)


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
