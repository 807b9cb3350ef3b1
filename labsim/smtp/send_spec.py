"""What a transport service hands the SMTP client shell: targets, the TLS carrier, the messages,
and what comes back (one `MessageResult` per message). Plain data; `smtp.client` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..rules import verbs as V
from ..rules.outbound import AttemptFailure
from ..rules.tls_policy import TlsPlan

CONNECT_TIMEOUT_VIRTUAL = 21.0  # Windows: SYN retransmissions give up after ~21 s (WSAETIMEDOUT)
REAL_TIMEOUT = 10.0  # a real-time safety net on loopback; never reached in a healthy lab
BANDWIDTH = {"lan": 100e6 / 8, "wan": 50e6 / 8}  # bytes per second, for DATA transfer time


@dataclass
class Target:
    ip: str  # virtual address to dial
    port: int
    name: str  # the host name it came from (smart host, MX), for logs and errors


@dataclass
class ClientTls:
    attempt: bool = True  # send STARTTLS when offered
    require: bool = False
    auth_level: str | None = None  # None/EncryptionOnly: no checks; CertificateValidation; DomainValidation
    domain: str | None = None  # for DomainValidation
    store: Any = None  # the sending machine's pki CertStore (builds the TLS context)
    client_cert: Any = None  # a pki StoredCert of that store to present, or None
    cert_not_found: bool = False  # TlsCertificateName names a certificate that is not in the store
    sni: str | None = None
    fallback: bool = True  # opportunistic TLS: after a failed handshake, retry without STARTTLS

    @classmethod
    def from_plan(cls, plan: TlsPlan, store: Any) -> "ClientTls":
        """The session's carrier of a rules.tls_policy plan (the plan decides, this shell acts)."""
        return cls(attempt=plan.attempt, require=plan.require, auth_level=plan.auth_level, domain=plan.domain,
                   store=store, client_cert=plan.client_cert, cert_not_found=plan.cert_not_found, sni=plan.sni,
                   fallback=plan.fallback)

    def plan(self) -> TlsPlan:
        return TlsPlan(attempt=self.attempt, require=self.require, auth_level=self.auth_level, domain=self.domain,
                       client_cert=self.client_cert, cert_not_found=self.cert_not_found, fallback=self.fallback,
                       sni=self.sni)


@dataclass
class OutboundMessage:
    key: Any  # the caller's handle
    mail_from: str
    recipients: list[str]
    data: bytes
    body: str | None = None  # BODY= the client declared (the Front End passes it on); None: from the bytes
    auth_as: str | None = None  # the item's AuthAs (Anonymous -> AUTH=<>); None: the message's own AuthAs header
    proxy_from: V.ProxyFrom | None = None  # the Front End's client, said with XPROXYFROM before MAIL
    # org3 (shadow redundancy, engine.shadow): `XSHADOWREQUEST <args>` after RSET before MAIL (a shadow
    # copy), or a heartbeat (`XSHADOW <context>` + `XQDISCARD 50`, no message) when `heartbeat` is set
    shadow_request: str | None = None
    heartbeat: str | None = None
    # the content's verb when the sender passes on its inbound client's (the Front End proxy:
    # RcptInboundProxySmtpCommand, BDAT only if the inbound was BDAT); None: BDAT whenever offered
    chunked: bool | None = None


@dataclass
class MessageResult:
    key: Any
    delivered: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # permanent, per recipient
    deferred: dict[str, str] = field(default_factory=dict)  # transient, per recipient
    reply: str = ""  # the final 250 (or the failure reply)
    failure: AttemptFailure | None = None
    remote_ip: str = ""
    remote_host: str = ""
    session_id: int = 0
    tls: dict[str, Any] = field(default_factory=dict)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # the peer's reply to each accepted RCPT


@dataclass
class SendSpec:
    src: Any  # rules.network.HostInfo
    connector_id: str
    log: Any  # logs.ProtocolLog or None
    log_enabled: bool
    session_ids: Any  # ids.SessionIds
    ehlo_name: str
    destination_domain: str
    targets: list[Target]
    tls: ClientTls
    validate: Callable[[list, str | None], Awaitable[Any]] | None = None  # chain, domain -> ValidationResult
    sender: V.Sender = V.PLAIN_MTA  # what kind of client speaks (rules.verbs): Exchange's verbs or a plain MTA's
    on_tls_failure_event: Callable[[AttemptFailure], None] | None = None
    context: dict[str, Any] = field(default_factory=dict)  # told to the server out of band (vnet)
    connectivity: Any = None  # logs.connectivity.ConnectionTrace: the connectivity log of this connection
    proxying: int | None = None  # a Front End proxy connection: the id of the inbound session it carries
