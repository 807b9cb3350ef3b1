"""What the lab does for its parties (engine.ports): seeded ids, log writers, certificate rows and
views; and, through its `HostLookups` (engine.host_lookups), DNS lookups and certificate
validation as a given host would do them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..clock import VirtualClock
    from ..net.vnet import AddressBook
    from ..pki.authority import LabPki
    from ..rules.network import NetView
    from ..topology.model import Lab

from datetime import datetime
from typing import Any

from cryptography import x509

from ..ids import IdSource
from ..logs import protocol_text as T
from ..logs.certificate_rows import received_certificate_rows, sending_certificate_rows
from ..logs.protocol_log import ProtocolLog, SessionWriter
from ..net.dns_server import LabDnsServer
from ..net.resolver import LabResolver
from ..pki.authority import serial_hex, thumbprint
from ..pki.crl_server import CrlServer
from ..pki.names import dotnet_dn
from ..pki.store import CertStore, StoredCert
from ..pki.validate import ValidationResult, certificate_names
from ..rules.builds import traits as build_traits
from ..rules.certselect import CertView
from ..rules.network import HostInfo
from ..topology.model import Site
from .host_lookups import CRL_PORT, HostLookups
from .spill import SpilledMap

__all__ = ["CRL_PORT", "LabServices"]  # CRL_PORT lives in engine.host_lookups; named here as before


class _NullWriter:
    """A session writer for parties that keep no Exchange logs (EXO, Internet hosts)."""

    enabled = False
    next_sequence = 0

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class LabServices:
    """Shared services the runtime offers every party."""

    # the lab's (engine.runtime.LabRuntime.__init__)
    model: Lab
    seed: int
    clock: VirtualClock
    net: NetView
    book: AddressBook
    pki: LabPki
    servers: dict[str, Any]  # engine.onprem.ExchangeServerRuntime by name
    dns: dict[str, LabDnsServer]  # engine.listeners: the lab's DNS servers and CDPs
    crl: CrlServer
    cdps: dict[str, CrlServer]
    # this part's own state, set up by the runtime
    lookups: HostLookups  # DNS and validation as a given host does them
    _ids: dict[str, IdSource]
    _logs: list[ProtocolLog]
    _views: dict[int, list[CertView]]
    _cert_rows: dict[x509.Certificate, str]  # certificate -> its protocol-log row text
    _network_ids: SpilledMap[str]  # realm NUL Message-ID -> network message id
    _server_thumbs: set[str]

    def _init_services(self) -> None:
        self._ids = {}
        self._logs = []
        self._views = {}
        self.lookups = HostLookups(self)
        self._cert_rows = {}
        self._network_ids = SpilledMap()

    def note_internal_certificates(self) -> None:
        """Remember the servers' internal transport certificates (at start and after a change)."""
        self._server_thumbs = {thumbprint(c.cert) for c in (rt.internal_cert() for rt in self.servers.values())
                               if c is not None}

    def ids_for(self, owner: str) -> IdSource:
        src = self._ids.get(owner)
        if src is None:
            src = self._ids[owner] = IdSource(self.seed, owner)
        return src

    def source_port(self, host: str) -> int:
        site = self.net.host(host).site
        lo = 1024 if site == Site.EXO else 49152
        return self.ids_for(host + "/ports").randint(lo, 65535)

    def register_log(self, log: ProtocolLog) -> None:
        self._logs.append(log)

    def registered_logs(self) -> list[ProtocolLog]:
        return list(self._logs)

    def send_log(self, log: ProtocolLog | None, connector_id: str, sid: int, *, remote: str, clock: Any,
                 enabled: bool) -> Any:
        if log is None:
            return _NullWriter()
        return SessionWriter(log, connector_id, sid, None, remote, clock, enabled)

    def cert_views(self, store: CertStore) -> list[CertView]:
        key = id(store)
        views = self._views.get(key)
        if views is None:
            views = []
            for e in store.entries:
                c = e.cert
                views.append(CertView(
                    key=e, index=e.index, subject=dotnet_dn(c.subject), issuer=dotnet_dn(c.issuer),
                    names=tuple(certificate_names(c)), not_before=c.not_valid_before_utc,
                    not_after=c.not_valid_after_utc, has_private_key=e.has_private_key,
                    self_signed=e.issued.self_signed, server_auth=e.issued.spec.server_auth,
                    services=tuple(e.services), chain_trusted=self._root_trusted(e.issued.spec.issuer),
                    thumbprint=e.thumbprint))
            self._views[key] = views
        return views

    def _root_trusted(self, issuer: str, site: Site = Site.ONPREM) -> bool:
        """Does the CA chain above a certificate end in a root the site trusts (self-signed: yes)?"""
        seen: set[str] = set()
        while issuer != "self" and issuer not in seen:
            seen.add(issuer)
            ca = self.model.ca(issuer)
            if ca.parent is None:
                return str(site) in {str(t) for t in ca.trusted_by}
            issuer = ca.parent
        return True

    def certificate_row_x509(self, c: x509.Certificate) -> str:
        """The protocol log's certificate row; a function of the certificate alone, so computed once
        per certificate (x509.Certificate hashes and compares by its DER encoding)."""
        row = self._cert_rows.get(c)
        if row is None:
            row = self._cert_rows[c] = T.certificate_row_data(
                dotnet_dn(c.subject), dotnet_dn(c.issuer), serial_hex(c), thumbprint(c),
                c.not_valid_before_utc, c.not_valid_after_utc, self._sans(c))
        return row

    @staticmethod
    def _sans(c: x509.Certificate) -> list[str]:
        try:
            ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return [str(v) for v in ext.get_values_for_type(x509.DNSName)]

    @staticmethod
    def certificate_subject(c: x509.Certificate) -> str:
        return dotnet_dn(c.subject)

    @staticmethod
    def certificate_thumbprint(c: x509.Certificate) -> str:
        return thumbprint(c)

    def certificate_row(self, stored: StoredCert) -> str:
        return self.certificate_row_x509(stored.cert)

    def _build_of(self, host: HostInfo) -> str:
        """The Exchange build of the server on `host` (EXO and Internet hosts: 2019's formats)."""
        own = self.servers.get(host.name)
        return own.model.build if own is not None else "2019"

    def certificate_rows(self, stored: StoredCert, host: HostInfo) -> list[tuple[str, str]]:
        """The `(data, context)` rows `host` writes when it presents `stored` (one row from 2016
        CU22 on; 2013 and early 2016 write one row per property: logs.certificate_rows)."""
        build = self._build_of(host)
        if not build_traits(build).multi_row_certificates:
            return [(self.certificate_row_x509(stored.cert), T.SENDING_CERTIFICATE)]
        c = stored.cert
        return sending_certificate_rows(build, dotnet_dn(c.subject), dotnet_dn(c.issuer), serial_hex(c),
                                        thumbprint(c), c.not_valid_before_utc, c.not_valid_after_utc, self._sans(c))

    def peer_certificate_rows(self, cert: x509.Certificate, host: HostInfo) -> list[tuple[str, str]]:
        """The rows `host` writes about the certificate its peer presented: `Received certificate`
        and `Certificate thumbprint` on a multi-row build (seeds 002/004, the CN sample)."""
        if build_traits(self._build_of(host)).multi_row_certificates:
            return received_certificate_rows(thumbprint(cert))
        return [(self.certificate_row_x509(cert), T.REMOTE_CERTIFICATE)]

    def is_exchange_server_cert(self, cert: x509.Certificate) -> bool:
        return thumbprint(cert) in self._server_thumbs

    def network_message_id(self, realm: str, message_id: str, ids: IdSource, when: datetime) -> str:
        """One id per realm and Message-ID, drawn when the realm first sees the message: a retry, a
        copy or the message back again later gets the same one. The ids of messages seen long ago
        wait on disk (engine.spill), so memory follows the mail in flight."""
        key = realm + "\0" + message_id  # a realm has no NUL: one key per (realm, Message-ID)
        nid = self._network_ids.get(key)
        if nid is None:
            nid = ids.network_message_id(when)
            self._network_ids[key] = nid
        return nid

    # --- DNS and validation from a host (engine.host_lookups) -------------------------------------
    def host_dns(self, host: HostInfo) -> list[str]:
        return self.lookups.host_dns(host)

    def flush_dns_cache(self, owner: str, service: str) -> None:
        self.lookups.flush_dns_cache(owner, service)

    def dns_silent(self, vip: str) -> bool:
        return self.lookups.dns_silent(vip)

    def resolver(self, host: HostInfo, servers: list[str], service: str | None = None) -> LabResolver:
        return self.lookups.resolver(host, servers, service)

    async def resolve_a(self, host: HostInfo, servers: list[str], name: str, *,
                        service: str | None = None) -> list[str]:
        return await self.lookups.resolve_a(host, servers, name, service=service)

    async def resolve_host(self, host: HostInfo, servers: list[str], domain: str, *,
                           service: str | None = None) -> list[tuple[str, list[str]]]:
        return await self.lookups.resolve_host(host, servers, domain, service=service)

    async def validate(self, host: HostInfo, chain: list[x509.Certificate], domain: str | None) -> ValidationResult:
        return await self.lookups.validate(host, chain, domain)
