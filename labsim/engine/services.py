"""Windows services and the Edge subscription: the state the lab keeps about them, and what it means.

Seed 001 errors 1-3 are about services, not configuration: mail that never leaves the mailbox
(MSExchangeSubmission stopped: the message waits in the mailbox's Outbox), and an Edge whose AD LDS
copy of the organisation is stale or empty because EdgeSync cannot reach it or the subscription is
gone. Whether a service runs lives in the topology (`transport.running`, `frontend.running`,
`stopped_services`); what the topology cannot hold lives here, in one `ServiceState` the runtime
owns: the Outbox of Mailbox Transport Submission, each Edge's copy of the organisation, the
Test-EdgeSynchronization results and the hand-typed SMTP sessions (engine.raw_session).

The operations that change this state (Stop-Service, New-EdgeSubscription, ...) are
engine.service_ops; the on-prem party reads it here (`edge_view`, `submission_available`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import iso_ms
from ..topology.model import ExchangeServer, Organization
from .ledger import Ledger
from .scheduler import Scheduler

# Windows service names of an Exchange 2019 server (Get-Service MSExchange*).
MAILBOX_SERVICES = ("MSExchangeTransport", "MSExchangeFrontEndTransport", "MSExchangeSubmission",
                    "MSExchangeDelivery", "MSExchangeEdgeSync")
EDGE_SERVICES = ("MSExchangeTransport", "ADAM_MSExchange")
EDGESYNC_LDAP_UNAVAILABLE = "The LDAP server is unavailable."  # seed 001 error 2
OUTBOX_RETRY = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1))
OUTBOX = "Outbox"


@dataclass
class HeldMessage:
    """A message waiting in a mailbox's Outbox for Mailbox Transport Submission."""

    server: str
    mail_from: str
    recipients: list[str]
    data: bytes
    message_id: str
    reason: str
    attempts: int = 0


@dataclass
class EdgeState:
    """What an Edge knows of the organisation: live (None snapshot) or frozen at its last sync."""

    subscribed: bool = True
    snapshot: Organization | None = None  # None: in sync with Active Directory
    last_sync: datetime | None = None
    failure: str = ""


Submit = Callable[[HeldMessage], Awaitable[None]]


class Outbox:
    """Messages Mailbox Transport Submission could not hand to a Transport service yet; they are
    tried again on a ladder of delays (and at once when a service starts, engine.service_ops)."""

    def __init__(self, scheduler: Scheduler, submit: Submit) -> None:
        self.scheduler = scheduler
        self.submit = submit  # hands a held message to its server's submission again
        self.held: list[HeldMessage] = []
        self.retry_scheduled = False

    def hold(self, server: str, mail_from: str, recipients: list[str], data: bytes, message_id: str,
             reason: str) -> None:
        """The message stays in the sender's Outbox; Submission tries again later (and at service start)."""
        self.held.append(HeldMessage(server, mail_from, list(recipients), data, message_id, reason))
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self.retry_scheduled or not self.held:
            return
        attempts = min(h.attempts for h in self.held)
        delay = OUTBOX_RETRY[min(attempts, len(OUTBOX_RETRY) - 1)]
        self.retry_scheduled = True

        async def retry() -> None:
            self.retry_scheduled = False
            await self.flush()

        self.scheduler.call_at(self.scheduler.clock.now() + delay, "mailbox submission retry", retry)

    async def flush(self) -> None:
        """Hand every held message to its server's submission again (each may be held again)."""
        held, self.held = self.held, []
        for h in held:
            before = len(self.held)
            await self.submit(h)
            for again in self.held[before:]:
                again.attempts = h.attempts + 1
        self._schedule_retry()

    def collect(self, ledger: Ledger) -> None:
        """End of run: messages still in an Outbox are pending (ground truth for summary.json)."""
        for h in self.held:
            ledger.pending(_Held(h.message_id), h.recipients, h.server, OUTBOX, h.reason)


@dataclass
class _Held:
    message_id: str
    lab_key: str = ""


@dataclass
class ServiceState:
    outbox: Outbox
    edges: dict[str, EdgeState] = field(default_factory=dict)
    tests: list[dict[str, Any]] = field(default_factory=list)  # Test-EdgeSynchronization results
    raw_sessions: list[dict[str, Any]] = field(default_factory=list)  # Send-LabSmtpCommands transcripts

    def edge(self, name: str) -> EdgeState:
        return self.edges.setdefault(name.lower(), EdgeState())


def is_running(server: ExchangeServer, service: str) -> bool:
    if service == "MSExchangeTransport":
        return server.transport.running
    if service == "MSExchangeFrontEndTransport":
        return server.frontend is not None and server.frontend.running
    return service not in server.stopped_services


def submission_available(server: ExchangeServer) -> bool:
    return is_running(server, "MSExchangeSubmission")


def edge_view(org: Organization, server: ExchangeServer, state: ServiceState) -> Organization:
    """The organisation as `server` knows it. A Mailbox server reads AD; an Edge reads its AD LDS
    copy: live while EdgeSync works, frozen when it broke, empty without a subscription."""
    if server.role != "Edge":
        return org
    es = state.edges.get(server.name.lower())
    if es is None or (es.subscribed and es.snapshot is None):
        return org
    if es.snapshot is not None:
        return es.snapshot
    return org.model_copy(update={"accepted_domains": [], "send_connectors": [], "mailboxes": [],
                                  "remote_mailboxes": []})


def edges_of(org: Organization) -> list[ExchangeServer]:
    return [s for s in org.servers if s.role == "Edge"]


def snapshot(org: Organization, state: ServiceState) -> dict[str, Any]:
    """`services` of summary.json: what Get-Service and Test-EdgeSynchronization would show."""
    out: dict[str, Any] = {}
    for s in org.servers:
        names = MAILBOX_SERVICES if s.role == "Mailbox" else EDGE_SERVICES
        out[s.name] = {n: ("Running" if is_running(s, n) else "Stopped") for n in names}
    edges = {}
    for e in edges_of(org):
        es = state.edge(e.name)
        edges[e.name] = {"Subscribed": es.subscribed,
                         "Configuration": "Current" if es.subscribed and es.snapshot is None else
                         ("Stale" if es.snapshot is not None else "None"),
                         "LastSync": iso_ms(es.last_sync) if es.last_sync else ""}
    return {"servers": out, "edge_subscriptions": edges, "edge_sync_tests": state.tests,
            "outbox": [{"server": h.server, "message_id": h.message_id, "reason": h.reason} for h in state.outbox.held],
            "smtp_sessions": list(state.raw_sessions)}
