"""Mailbox Transport Submission: mail from a mailbox on this server handed to a Transport service.

Submission speaks SMTP to port 2525 of the site's Mailbox servers (this one first). A connection
that is still open takes the next message, up to the intra-organization
SmtpMaxMessagesPerConnection; mail that no Transport service takes waits in the mailbox's Outbox
(engine.services.Outbox).
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
    _submission: tuple[Connection, datetime, Any] | None  # an open submission connection, its cursor, its QUIT
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
        SmtpMaxMessagesPerConnection [INFERRED: the same limit as the intra-organization connector].
        """
        if not submission_available(self.model):  # MSExchangeSubmission stopped: stays in the Outbox
            self.lab.service_state.outbox.hold(self.name, mail_from, recipients, data,
                                               header_value(data, "Message-ID"), "MSExchangeSubmission is not running")
            return
        conn = self._take_submission()
        if conn is not None and conn.carried >= self.transport_cfg.intra_org_connector_smtp_max_messages_per_connection:
            await conn.close()
            conn = None
        if conn is None:
            conn = Connection(self.lab, await self._submission_spec())
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
            self._park_submission(conn)
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

    async def _submission_spec(self) -> SendSpec:
        org = self.lab.model.organization
        hubs = sorted((s for s in org.servers if s.role == "Mailbox"), key=lambda s: (s.name != self.name, s.name))
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

    def _park_submission(self, conn: Connection) -> None:
        """The submission connection waits for the next message; it QUITs at its cursor if none came."""
        cursor = self.lab.clock.now()
        self.lab.hold_open(1, conn.client)
        entry = self.lab.scheduler.call_at(cursor, f"{self.name} submission connection", self._end_submission)
        self._submission = (conn, cursor, entry)

    def _take_submission(self) -> Connection | None:
        parked, self._submission = self._submission, None
        if parked is None:
            return None
        conn, _, entry = parked
        self.lab.scheduler.cancel(entry)
        self.lab.hold_open(-1, conn.client)
        return conn

    async def _end_submission(self) -> None:
        parked = self._submission
        if parked is None:
            return
        cursor = parked[1]
        conn = self._take_submission()
        assert conn is not None
        before = self.lab.clock.now()
        self.lab.clock.rewind(cursor)
        try:
            await conn.close()
        finally:
            self.lab.clock.set(before)
