"""The narrow interfaces between the lab and the parties that run in it.

Theory of operation. `engine.runtime.LabRuntime` builds the lab (clock, scheduler, virtual network,
PKI, DNS, log writers, ledger) and then the parties (on-prem Exchange servers, Exchange Online,
Internet hosts). A party never imports the runtime: it receives the runtime typed as one of the
protocols below, which name exactly the services it uses, so a party imports only what lies below
it and can run against a fake. The protocols are built from small pieces:

- `Timekeeping`: the virtual clock, the scheduler of actions, and `hold_open` (a client keeps a
  connection open between two messages, engine.sessions);
- `Identity`: the seed and the seeded id sources;
- `Records`: where evidence goes (ledger, mailbox store, tracking hub, Application events, the
  protocol-log registry);
- `Wire`: what an SMTP client needs to dial over the virtual network (`smtp.client.Connection`);
- `Resolution` and `Certificates`: DNS lookups and certificate validation as a given host does them.

`QueueLab` is what every store-and-forward party needs (engine.queueing); `InternetLab`,
`ExoLab` and `OnPremLab` add what each kind of party asks for beyond that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from datetime import datetime
    from pathlib import Path

    from cryptography import x509

    from ..clock import VirtualClock
    from ..ids import IdSource
    from ..logs.protocol_log import ProtocolLog
    from ..net.vnet import AddressBook, ConnectionRegistry
    from ..pki.authority import LabPki
    from ..pki.store import CertStore, StoredCert
    from ..pki.validate import ValidationResult
    from ..rules.certselect import CertView
    from ..rules.network import HostInfo, NetView
    from ..smtp.policy import ConnectionTable
    from ..topology.model import Lab
    from ..transport.store import MailboxStore
    from .events import EventCollector
    from .ledger import Ledger
    from .scheduler import Scheduler
    from .services import ServiceState


class Timekeeping(Protocol):
    clock: VirtualClock
    scheduler: Scheduler

    def hold_open(self, delta: int, client: tuple[str, int] | None = None) -> None: ...


class Identity(Protocol):
    seed: int

    def ids_for(self, owner: str) -> IdSource: ...

    def network_message_id(self, realm: str, message_id: str, ids: IdSource, when: datetime) -> str: ...


class Records(Protocol):
    out: Path
    ledger: Ledger
    store: MailboxStore
    tracking: Any  # engine.evidence.TrackingHub: for_party(), queue_snapshot()
    events: EventCollector

    def register_log(self, log: ProtocolLog) -> None: ...


class Wire(Protocol):
    """What `smtp.client.Connection` asks of the lab to dial from a virtual host."""

    net: NetView
    book: AddressBook
    registry: ConnectionRegistry

    def source_port(self, host: str) -> int: ...

    def send_log(self, log: ProtocolLog | None, connector_id: str, sid: int, *, remote: str, clock: Any,
                 enabled: bool) -> Any: ...

    def certificate_row(self, stored: StoredCert) -> str: ...

    def certificate_row_x509(self, c: x509.Certificate) -> str: ...

    def certificate_rows(self, stored: StoredCert, host: HostInfo) -> list[tuple[str, str]]: ...

    def peer_certificate_rows(self, cert: x509.Certificate, host: HostInfo) -> list[tuple[str, str]]: ...


class Resolution(Protocol):
    async def resolve_a(self, host: HostInfo, servers: list[str], name: str, *,
                        service: str | None = None) -> list[str]: ...

    async def resolve_host(self, host: HostInfo, servers: list[str], domain: str, *,
                           service: str | None = None) -> list[tuple[str, list[str]]]: ...


class Certificates(Protocol):
    pki: LabPki

    async def validate(self, host: HostInfo, chain: list[x509.Certificate],
                       domain: str | None) -> ValidationResult: ...

    def cert_views(self, store: CertStore) -> list[CertView]: ...

    def is_exchange_server_cert(self, cert: x509.Certificate) -> bool: ...


class QueueLab(Timekeeping, Identity, Records, Wire, Protocol):
    """What a store-and-forward party (engine.queueing) needs: time, ids, evidence, the wire."""

    model: Lab


class InternetLab(QueueLab, Resolution, Certificates, Protocol):
    """An Internet mail host: also DNS (MX lookups) and its certificate store."""


class ExoLab(InternetLab, Protocol):
    """Exchange Online: the same services as an Internet host (attribution validates certificates)."""


class OnPremLab(InternetLab, Protocol):
    """An on-prem Exchange server: also the Windows services' state (engine.services) and the
    per-connector connection table its listeners count sessions in."""

    service_state: ServiceState
    connections: ConnectionTable


class TraceLab(Protocol):
    """What EXO's message trace (engine.trace) reads: the tenant and the clock."""

    model: Lab
    clock: VirtualClock
