"""The receive side of an on-prem Exchange server: certificates, STARTTLS, the client certificate
check (TlsDomainCapabilities), the Connection Filtering agent, and accepting a message.

`smtp.policy.ExchangeReceivePolicy` asks the rules for each SMTP decision and calls back here for
what needs the server: its certificate store, its events, its queues.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from ..ids import Counter, IdSource, SessionIds
from ..logs import protocol_text as T
from ..net.streams import start_tls
from ..pki.errors import NoCredentialsError
from ..pki.store import CertStore, StoredCert, peer_chain
from ..pki.validate import certificate_names
from ..rules import replies as R
from ..rules.certselect import expired_candidates, expiring_soon, select_certificate
from ..rules.receive import ReceiveState
from ..rules.tls_policy import (
    capability_outcome,
    event_source,
    receive_certificate_events,
)
from ..topology.model import (
    ExchangeServer,
    ReceiveConnector,
    TransportServiceConfig,
)
from ..transport import headers as H
from ..transport.message import MailItem, count_received, header_value, received_header
from .connectivity import mailbox_delivered
from .queueing import (
    queued_reply,
)
from .reputation import edge_connection_filter_reply

if TYPE_CHECKING:  # pragma: no cover
    from ..rules.network import HostInfo
    from ..smtp.session_api import Envelope, ReceivingSession
    from .ports import OnPremLab


class ReceiveSide:
    """What an on-prem server does with an inbound session and the messages it accepts."""

    # the server's (engine.onprem.ExchangeServerRuntime.__init__)
    lab: OnPremLab
    name: str
    model: ExchangeServer
    host: HostInfo
    store: CertStore
    session_ids: dict[str, SessionIds]
    ids: IdSource
    internal_ids: Counter
    _server_ctx: dict[tuple[int, ...], ssl.SSLContext]
    _reported_12014: set[tuple[int, tuple[str, ...]]]  # events raised `once` while their condition holds

    if TYPE_CHECKING:  # provided by the other parts of ExchangeServerRuntime (engine.onprem)
        @property
        def tracker(self) -> Any: ...

        @property
        def transport_cfg(self) -> TransportServiceConfig: ...

        def cert_views(self) -> list[Any]: ...

        async def frontend_proxy(self, session: ReceivingSession, envelope: Envelope) -> str: ...

        def should_shadow(self, session: ReceivingSession) -> bool: ...

        async def make_shadow(self, session: ReceivingSession, item: MailItem) -> bool: ...

        def accept_shadow(self, session: ReceivingSession, envelope: Envelope, primary: str) -> str: ...

        def submit(self, item: MailItem, recipients: list[str] | None = None) -> None: ...

        def internal_cert(self) -> StoredCert | None: ...

    def select_receive_certificate(self, connector: ReceiveConnector, fqdn: str) -> StoredCert | None:
        """The STARTTLS certificate of a receive connector (rules.certselect), with the events
        Exchange raises about it (12014 none, 12016 expired, 12018 expires soon), once each."""
        views, now = self.cert_views(), self.lab.clock.now()
        view = select_certificate(views, tls_certificate_name=connector.tls_certificate_name, fqdn=fqdn, now=now)
        if "Tls" in connector.auth_mechanism:
            expired = [] if view is not None else expired_candidates(
                views, tls_certificate_name=connector.tls_certificate_name, fqdn=fqdn, now=now)
            service = "FrontEnd" if connector.transport_role == "FrontendTransport" else "Hub"
            for ev in receive_certificate_events(
                    connector=connector.name, tls_certificate_name=connector.tls_certificate_name, fqdn=fqdn,
                    selected=view, expired=expired, hours_left=expiring_soon(view, now) if view else None):
                self.raise_event(service, ev.event_id, list(ev.strings), once=True)
        return view.key if view is not None else None  # type: ignore[return-value]

    def raise_event(self, service: str, event_id: int, strings: list[str], *, once: bool = False) -> None:
        """Write an Application event as this server's transport service (`once`: not again while
        the same condition holds with the same strings)."""
        key = (event_id, tuple(strings))
        if once:
            if key in self._reported_12014:
                return
            self._reported_12014.add(key)
        self.lab.events.add(self.name, event_source(self.model.role, service), event_id, strings)

    def server_context(self, stored: StoredCert) -> ssl.SSLContext:
        leaves = self.lab.pki.all_leaf_certs()  # a certificate added at run time needs a new context
        key = (stored.index, *(c.serial_number for c in leaves))
        ctx = self._server_ctx.get(key)
        if ctx is None:
            ctx = self.store.server_context(stored, leaves)
            self._server_ctx[key] = ctx
        return ctx

    async def start_server_tls(self, session: "ReceivingSession") -> None:
        state: ReceiveState = session.state
        stored = session.extra.cert
        try:
            ctx = self.server_context(stored)
        except NoCredentialsError as exc:  # the key is missing, or the transport may not read it
            session.log.info("", T.tls_negotiation_failed(exc.status))
            await session.reply(R.TLS_INIT_FAILURE)
            return
        await session.reply(R.STARTTLS_GO)
        try:
            await start_tls(session.writer, ctx)
        except (ssl.SSLError, ConnectionError, OSError):
            session.log.info("", T.tls_negotiation_failed("IllegalMessage"))
            session.closed = True
            return
        # The TLS rows are stamped from the session's own cursor (its STARTTLS read), not the
        # shared clock: resumed or full, the handshake's rows do not depend on when another
        # session moved the clock (docs/performance.md, "TLS session resumption").
        sslobj = session.writer.get_extra_info("ssl_object")
        state.tls = True
        state.helo = None
        state.reset_transaction()
        for data, context in self.lab.certificate_rows(stored, self.host):
            session.log.info(data, context)
        version, (cipher, _, bits) = sslobj.version(), sslobj.cipher()
        session.log.info("", T.tls_success_context("server", version, cipher, bits, 256))
        chain = peer_chain(sslobj)
        session.extra.peer_chain = chain
        session.extra.tls = {"version": version, "cipher": cipher}
        if chain:
            for data, context in self.lab.peer_certificate_rows(chain[0], self.host):
                session.log.info(data, context)
            state.authenticated_as_server = self.lab.is_exchange_server_cert(chain[0])

    async def start_anonymous_tls(self, session: "ReceivingSession") -> None:
        """X-ANONYMOUSTLS: the same handshake as STARTTLS, with the internal transport certificate."""
        internal = self.internal_cert()
        if internal is not None:
            session.extra.cert = internal
        await self.start_server_tls(session)
        state: ReceiveState = session.state
        state.anonymous_tls = state.tls

    async def connection_filter_reply(self, session: "ReceivingSession", recipient: str,
                                      local_port: int) -> str | None:
        """The Connection Filtering agent's verdict at RCPT (an Edge with IP Block List providers);
        each rejection is also a row of the agent log."""
        return await edge_connection_filter_reply(self, session, recipient, local_port)

    async def check_client_certificate(self, session: "ReceivingSession") -> None:
        """TlsDomainCapabilities: validate the client certificate at the first EHLO after TLS."""
        state: ReceiveState = session.state
        caps = state.connector.tls_domain_capabilities
        if not caps:
            return
        chain = session.extra.peer_chain or []
        if not chain:
            session.log.info("", T.client_certificate_chain_status("EmptyCertificate"))
            session.log.info("", T.tls_domain_capabilities("None", "NoRemoteCertificate"))
            return
        result = await self.lab.validate(self.host, chain, None)
        session.touch()
        session.log.info("", T.client_certificate_chain_status(str(result.status)))
        outcome = capability_outcome(list(caps), certificate_names(chain[0]), str(result.status))
        state.capabilities = outcome.granted
        if outcome.failed_spec is not None:
            # The capability could not be confirmed: event 11022, and the submission is refused
            # at MAIL FROM with 454 4.7.5 (rules.receive.check_mail).
            state.capability_failure = outcome.failure_status
            service = "FrontEnd" if state.connector.transport_role == "FrontendTransport" else "Hub"
            self.raise_event(service, 11022, [outcome.failed_spec, state.connector.name,
                                              str(outcome.failure_status), str(outcome.log_domain)])
        session.log.info("", T.tls_domain_capabilities(outcome.log_capabilities, outcome.log_status,
                                                       outcome.log_domain))

    async def receive_message(self, session: "ReceivingSession", service: str, envelope: "Envelope") -> str:
        state: ReceiveState = session.state
        if count_received(envelope.data) >= state.connector.max_hop_count:
            return R.HOP_COUNT
        if service == "FrontEnd":
            return await self.frontend_proxy(session, envelope)
        shadow = getattr(session.extra, "shadow", None)
        if service == "Hub" and shadow is not None and shadow.primary is not None:
            return self.accept_shadow(session, envelope, shadow.primary)  # a shadow copy (engine.shadow)
        item = self._accept_item(session, envelope, via_frontend="proxied" in session.context)
        # shadow redundancy: the copy on a boundary peer before the sender's reply (engine.shadow)
        shadowed = await self.make_shadow(session, item) if service == "Hub" and self.should_shadow(session) else None
        self.tracker.received(item, session, service, shadowed=shadowed)
        secs = (session.now() - (session.data_started or session.now())).total_seconds()
        reply = queued_reply(item.message_id, item.internal_id, self.model.fqdn, len(envelope.data), secs)
        if service == "MailboxDelivery":
            by_db: dict[str, int] = {}
            for rcpt in envelope.recipients:
                db = self._database_of(rcpt)
                by_db[db] = by_db.get(db, 0) + 1
                path = self.lab.store.deliver(f"onprem-{db}", rcpt, item.data)
                self.lab.ledger.delivered(item, rcpt, "onprem", path, self.name)
                self.tracker.deliver(item, rcpt, path, session)
            for db, n in by_db.items():  # the store driver's connectivity rows (engine.connectivity)
                mailbox_delivered(self, db, len(item.data), n)
            return reply
        self.submit(item)
        return reply

    def _database_of(self, address: str) -> str:
        for mb in self.lab.model.organization.mailboxes:
            if mb.primary_smtp_address.lower() == address.lower():
                return mb.database
        return "DB"

    def _accept_item(self, session: "ReceivingSession", envelope: "Envelope", *, via_frontend: bool) -> MailItem:
        state: ReceiveState = session.state
        now = session.now()
        proxied = session.context.get("proxied") or {}
        xproxy = state.proxy_from or {}  # XPROXYFROM: the Front End's client, said on the wire
        client_ip = xproxy.get("IP") or proxied.get("ip", state.remote_ip)
        helo = xproxy.get("DOMAIN") or proxied.get("helo", state.helo or state.remote_ip)
        header = received_header(helo=helo, client_ip=client_ip, by_fqdn=self.model.fqdn, by_ip=self.model.ip,
                                 tls=proxied.get("tls") or session.extra.tls, version=self.model.version,
                                 when=now, utc_offset_minutes=self.model.utc_offset_minutes,
                                 via_frontend=via_frontend)
        data = envelope.data
        message_id = header_value(data, "Message-ID")
        if not message_id:
            message_id = f"<{self.ids.guid()}@{self.model.fqdn}>"
            data = f"Message-ID: {message_id}\r\n".encode() + data
        trust = H.trust_of(proxied.get("auth") or {"exchange_server": state.authenticated_as_server,
                                                     "capabilities": state.capabilities})
        data, stamp = H.on_receive(data, trust, auth_source=self.model.fqdn,
                                   default_directionality="Originating" if trust.exchange_server or
                                   trust.cross_premises else "Incoming")
        item = MailItem(
            server=self.name, internal_id=self.internal_ids.next(), mail_from=envelope.mail_from,
            recipients=list(envelope.recipients), data=header + data, message_id=message_id,
            network_message_id=self.lab.network_message_id("onprem", message_id, self.ids, now),
            subject=header_value(data, "Subject"), arrived=now,
            directionality=stamp.directionality,
            client_ip=client_ip, client_hostname=helo, receive_connector=f"{self.name}\\{state.connector.name}",
        )
        item.lab_key = self.lab.ledger.key_for(message_id)
        self.lab.ledger.received(item, self.name)
        return item
