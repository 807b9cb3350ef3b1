"""Mailbox Transport Submission: mail from a mailbox on this server handed to a Transport service.

Submission speaks SMTP to port 2525 of the Mailbox servers that rules.routing_submission names:
the closest delivery group of the recipients' mailboxes, then its own delivery group (Learn "Mail
routing"). A connection that is still open takes the next message bound for the same servers, up
to the intra-organization SmtpMaxMessagesPerConnection; mail that no Transport service takes waits
in the mailbox's Outbox (engine.services.Outbox).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..ids import SessionIds
from ..logs.protocol_log import ProtocolLog
from ..net.resolver import DnsError
from ..pki.store import CertStore, StoredCert
from ..rules.dnschoice import transport_dns_servers
from ..rules.outbound import AttemptFailure
from ..rules.routing_sites import site_costs
from ..rules.routing_submission import submission_hubs
from ..rules.verbs import Sender
from ..smtp.client import ClientTls, Connection, OutboundMessage, SendSpec, Target
from ..topology.model import (
    ExchangeServer,
    TransportServiceConfig,
)
from ..transport.message import header_value
from .connectivity import SubmissionConnections, submission_trace
from .services import submission_available

if TYPE_CHECKING:  # pragma: no cover
    from ..rules.network import HostInfo
    from .ports import OnPremLab


class MailboxSubmission:
    """Handing mailbox mail to Transport over SMTP, with the connection kept between messages."""

    # the server's (engine.onprem.ExchangeServerRuntime.__init__)
    lab: OnPremLab
    name: str
    model: ExchangeServer
    host: HostInfo
    store: CertStore
    session_ids: dict[str, SessionIds]
    # an open submission connection, its cursor, its QUIT, the servers it was opened for
    _submission: tuple[Connection, datetime, Any, tuple[str, ...]] | None
    submission_connections: SubmissionConnections

    if TYPE_CHECKING:  # provided by the other parts of ExchangeServerRuntime (engine.onprem)
        @property
        def tracker(self) -> Any: ...

        @property
        def transport_cfg(self) -> TransportServiceConfig: ...

        def protocol_log(self, service: str, kind: str) -> ProtocolLog: ...

        def internal_cert(self) -> StoredCert | None: ...

        def last_error_text(self, failure: AttemptFailure) -> str: ...

    async def submit_from_mailbox(self, mail_from: str, recipients: list[str], data: bytes) -> None:
        """Mailbox Transport Submission hands the message to a Transport service over SMTP (2525).

        A submission connection that is still open (it has just carried the previous message and
        its QUIT is not due yet) takes the next message, up to the intra-organization
        SmtpMaxMessagesPerConnection [INFERRED: the same limit as the intra-organization connector],
        when the message is bound for the same servers (rules.routing_submission) [INFERRED: a
        message for another delivery group gets its own connection; the open one QUITs].
        """
        if not submission_available(self.model):  # MSExchangeSubmission stopped: stays in the Outbox
            self.lab.service_state.outbox.hold(self.name, mail_from, recipients, data,
                                               header_value(data, "Message-ID"), "MSExchangeSubmission is not running")
            return
        org = self.lab.model.organization
        hubs = tuple(submission_hubs(org, self.model, recipients, distance=site_costs(org)))
        conn = await self._take_submission(hubs)
        if conn is None:
            conn = Connection(self.lab, await self._submission_spec(hubs))
        sub = self.tracker.mailbox_submission(mail_from, recipients, data, header_value(data, "Message-ID"),
                                              header_value(data, "Subject"))
        store = self.submission_connections.begin(sub["mdb"])  # the store side's connection (engine.connectivity)
        delivered: list[str] = []
        try:
            res = await conn.send(OutboundMessage(None, mail_from, recipients, data))
            delivered = list(res.delivered or ())
        finally:
            self.submission_connections.end(store, bool(delivered), len(data), len(delivered))
        if conn.is_open:
            self._park_submission(conn, hubs)
        if res.delivered:
            self.tracker.submitted(sub, res.remote_host, res.remote_ip)
        elif not res.rejected:
            # no Transport service took it (stopped, unreachable, not resolvable, 4xx): it waits in
            # the Outbox for the next submission attempt (engine.service_ops)
            self.lab.service_state.outbox.hold(
                self.name, mail_from, recipients, data, header_value(data, "Message-ID"),
                self.last_error_text(res.failure) if res.failure else
                next(iter(res.deferred.values()), "no Transport service could be reached"))
        else:
            reason = (self.last_error_text(res.failure) if res.failure else
                      next(iter({**res.rejected, **res.deferred}.values()), "not submitted"))
            self.tracker.submit_failed(sub, reason)
            self.lab.ledger.submit_failed(data, recipients, reason, self.name)

    async def _submission_spec(self, names: tuple[str, ...]) -> SendSpec:
        org = self.lab.model.organization
        hubs = [org.server(n) for n in names]
        targets = []
        # MSExchangeSubmission resolves through the Server object's settings, the ones
        # Set-TransportService writes (docs/transport-fidelity.md §4 [V-code EnhancedDns])
        servers = transport_dns_servers(self.transport_cfg, self.model.adapter_dns_servers)
        for hub in hubs:
            try:
                for ip in await self.lab.resolve_a(self.host, servers, hub.fqdn, service="MSExchangeSubmission"):
                    targets.append(Target(ip, 2525, hub.fqdn))
            except DnsError as exc:
                self.lab.clock.advance(exc.elapsed_virtual)
        return SendSpec(src=self.host, connector_id="Mailbox Transport Submission",
                        log=self.protocol_log("MailboxSubmission", "send"), log_enabled=False,
                        session_ids=self.session_ids["MailboxSubmission"], ehlo_name=self.model.fqdn,
                        destination_domain="mailboxtransportsubmissioninternalproxy", targets=targets,
                        tls=ClientTls(attempt=True, store=self.store, client_cert=self.internal_cert()),
                        connectivity=submission_trace(self, targets),  # Mailbox/Connectivity/Submission
                        sender=Sender(exchange_server_auth=True))  # MailboxProxySendConnector: ExchangeServer

    def _park_submission(self, conn: Connection, hubs: tuple[str, ...]) -> None:
        """The submission connection waits for the next message; it QUITs at its cursor if none came."""
        cursor = self.lab.clock.now()
        self.lab.hold_open(1, conn.client)
        entry = self.lab.scheduler.call_at(cursor, f"{self.name} submission connection", self._end_submission)
        self._submission = (conn, cursor, entry, hubs)

    def _unpark(self) -> Connection | None:
        parked, self._submission = self._submission, None
        if parked is None:
            return None
        conn, _, entry, _ = parked
        self.lab.scheduler.cancel(entry)
        self.lab.hold_open(-1, conn.client)
        return conn

    async def _take_submission(self, hubs: tuple[str, ...]) -> Connection | None:
        """The open submission connection if it may carry a message bound for `hubs`; else it QUITs."""
        parked = self._submission
        conn = self._unpark()
        if conn is None or parked is None:
            return None
        if (parked[3] != hubs
                or conn.carried >= self.transport_cfg.intra_org_connector_smtp_max_messages_per_connection):
            await conn.close()
            return None
        return conn

    async def _end_submission(self) -> None:
        parked = self._submission
        if parked is None:
            return
        cursor = parked[1]
        conn = self._unpark()
        assert conn is not None
        before = self.lab.clock.now()
        self.lab.clock.rewind(cursor)
        try:
            await conn.close()
        finally:
            self.lab.clock.set(before)
