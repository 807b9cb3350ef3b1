"""The topology model: Exchange's configuration objects as validated plain data.

Field names are snake_case in Python; every model also accepts the Exchange property name in
PascalCase (`ProtocolLoggingLevel`, `TlsCertificateName`, `RemoteIPRanges`) so that scenario files
read like the output of Get-ReceiveConnector. Defaults follow Exchange 2019's own defaults
(shared/reference/transport-behavior.md §1-§3, §6-§7).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_pascal

from .timespec import parse_timespan
from .values import (
    INT32_MAX,
    MAX_DELAY_MS,
    ByteSize,
    Port,
    TimeReference,
    VirtualIP,
    VirtualIPs,
    smart_host,
    timespan_field,
    validity_problem,
    winhttp_proxy,
)

__all__ = [
    "LabModel", "AddressSpace", "ReceiveConnector", "SendConnector", "TransportServiceConfig",
    "StoreEntry", "CaSpec", "CertificateSpec", "ExchangeServer", "AcceptedDomain", "Mailbox",
    "RemoteMailbox", "Organization", "InboundConnector", "OutboundConnector", "ExoMailbox",
    "ExoMailUser", "ExoTenant", "DnsRecord", "DnsZone", "DnsServer", "InternetMailHost",
    "NatRule", "Network", "Lab", "Site", "ServerRole", "LoggingLevel", "TlsAuthLevel",
    "AcceptedDomainType", "PermissionGroup", "AuthMechanism",
    "LinkRule", "LoadBalancer", "IPBlockListProvider",
    "IPListEntry", "IPAllowListConfig", "HostedConnectionFilterPolicy",
    "AdSite", "DatabaseAvailabilityGroup", "CdpHost", "AdSiteLink",
]

_ALIASES = {
    # Exchange spells a few names in ways to_pascal does not produce.
    "remote_ip_ranges": "RemoteIPRanges",
    "use_mx_record": "UseMXRecord",
    "tls_sender_certificate_name": "TlsSenderCertificateName",
    "sender_ip_addresses": "SenderIPAddresses",
    "dns_routing_enabled": "DNSRoutingEnabled",
    "internal_dns_servers": "InternalDNSServers",
    "external_dns_servers": "ExternalDNSServers",
    "internal_dns_adapter_enabled": "InternalDNSAdapterEnabled",
    "external_dns_adapter_enabled": "ExternalDNSAdapterEnabled",
    "use_external_dns_servers_enabled": "UseExternalDNSServersEnabled",
    "ignore_starttls": "IgnoreSTARTTLS",
    "require_tls": "RequireTLS",
    "restrict_domains_to_ip_addresses": "RestrictDomainsToIPAddresses",
    "primary_smtp_address": "PrimarySmtpAddress",
    "ip_addresses_match": "IPAddressesMatch",
    "ip_block_list_providers": "IPBlockListProviders",
    "winhttp_proxy": "WinHttpProxy",
    "ip_range": "IPRange",
    "ip_allow_list_entries": "IPAllowListEntries",
    "ip_allow_list_config": "IPAllowListConfig",
    "ip_allow_list": "IPAllowList",
    "ip_block_list": "IPBlockList",
    "connection_filter_policy": "HostedConnectionFilterPolicy",
}


def _alias(name: str) -> str:
    return _ALIASES.get(name) or to_pascal(name)


class LabModel(BaseModel):
    """Base of every topology object: strict (unknown keys are errors), Exchange-named aliases."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=_alias,
        populate_by_name=True,
        validate_assignment=True,
        use_enum_values=True,
        allow_inf_nan=False,  # no NaN or infinity in any number of the world
    )


class Site(StrEnum):
    ONPREM = "onprem"
    EXO = "exo"
    INTERNET = "internet"


class ServerRole(StrEnum):
    MAILBOX = "Mailbox"
    EDGE = "Edge"


class LoggingLevel(StrEnum):
    NONE = "None"
    VERBOSE = "Verbose"


class TlsAuthLevel(StrEnum):
    ENCRYPTION_ONLY = "EncryptionOnly"
    CERTIFICATE_VALIDATION = "CertificateValidation"
    DOMAIN_VALIDATION = "DomainValidation"


class AcceptedDomainType(StrEnum):
    AUTHORITATIVE = "Authoritative"
    INTERNAL_RELAY = "InternalRelay"
    EXTERNAL_RELAY = "ExternalRelay"


class PermissionGroup(StrEnum):
    ANONYMOUS_USERS = "AnonymousUsers"
    EXCHANGE_USERS = "ExchangeUsers"
    EXCHANGE_SERVERS = "ExchangeServers"
    EXCHANGE_LEGACY_SERVERS = "ExchangeLegacyServers"
    PARTNERS = "Partners"
    CUSTOM = "Custom"


class AuthMechanism(StrEnum):
    NONE = "None"
    TLS = "Tls"
    INTEGRATED = "Integrated"
    BASIC_AUTH = "BasicAuth"
    BASIC_AUTH_REQUIRE_TLS = "BasicAuthRequireTLS"
    EXCHANGE_SERVER = "ExchangeServer"
    EXTERNAL_AUTHORITATIVE = "ExternalAuthoritative"


def _ip_range_ok(text: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an IP address, range (a-b) or CIDR block")
    text = text.strip()
    try:
        if "-" in text:
            lo, hi = (ipaddress.ip_address(p.strip()) for p in text.split("-", 1))
            if lo.version != hi.version or int(lo) > int(hi):
                raise ValueError
        elif "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address, range (a-b) or CIDR block") from None
    return text


def _ipv4(text: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not an IPv4 address")
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address") from None


class AddressSpace(LabModel):
    """A send connector address space: `SMTP:contoso.com;1`, `*`, `*.contoso.com`, `--`."""

    type: str = "SMTP"
    domain: str
    cost: int = Field(1, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            typ = "SMTP"
            if ":" in text:
                typ, text = text.split(":", 1)
            cost = 1
            if ";" in text:
                text, c = text.rsplit(";", 1)
                try:
                    cost = int(c)
                except ValueError:
                    raise ValueError(f"cost {c!r} in address space {value!r} is not a number") from None
            return {"type": typ.upper(), "domain": text.strip().lower(), "cost": cost}
        return value

    def __str__(self) -> str:
        return f"{self.type}:{self.domain};{self.cost}"


class ReceiveConnector(LabModel):
    """Get-ReceiveConnector, the properties transport decisions use."""

    name: str
    transport_role: Literal["FrontendTransport", "HubTransport"] = "FrontendTransport"
    bindings: list[str] = Field(default_factory=lambda: ["0.0.0.0:25"])
    remote_ip_ranges: list[str] = Field(default_factory=lambda: ["0.0.0.0-255.255.255.255"])
    fqdn: str | None = None
    auth_mechanism: list[AuthMechanism] = Field(default_factory=lambda: [AuthMechanism.TLS])
    permission_groups: list[PermissionGroup] = Field(default_factory=lambda: [PermissionGroup.ANONYMOUS_USERS])
    require_tls: bool = False
    tls_certificate_name: str | None = None
    tls_domain_capabilities: list[str] = Field(default_factory=list)
    protocol_logging_level: LoggingLevel = LoggingLevel.NONE
    # Set-ReceiveConnector's valid input ranges (docs/scenarios.md, "Ranges").
    max_message_size: ByteSize = Field(37748736, ge=65536, le=INT32_MAX)
    max_hop_count: int = Field(30, ge=1, le=500)
    max_protocol_errors: int = Field(5, ge=0, le=INT32_MAX)
    banner: str | None = None
    enabled: bool = True
    # Session limits (PS-ref New-ReceiveConnector; docs/smtp-limits.md). Defaults are the Mailbox
    # server's; an Edge's connectors take EDGE_RECEIVE_DEFAULTS. None = unlimited.
    connection_timeout: str = "00:10:00"
    connection_inactivity_timeout: str = "00:05:00"
    max_recipients_per_message: int = Field(200, ge=1, le=512000)
    max_header_size: int = Field(262144, ge=1, le=2147483647)
    max_inbound_connection: int | None = Field(5000, ge=1, le=2147483647)
    max_inbound_connection_per_source: int | None = Field(20, ge=1, le=10000)
    max_inbound_connection_percentage_per_source: int = Field(2, ge=1, le=100)

    @field_validator("connection_timeout", "connection_inactivity_timeout")
    @classmethod
    def _timeouts(cls, v: str) -> str:
        seconds = parse_timespan(v).total_seconds()
        if not 1 <= seconds <= 86400 or seconds != int(seconds):
            raise ValueError(f"{v!r} is not a whole number of seconds from 00:00:01 to 1.00:00:00")
        return v

    @field_validator("max_inbound_connection", "max_inbound_connection_per_source", mode="before")
    @classmethod
    def _unlimited(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() == "unlimited" else v

    @field_validator("remote_ip_ranges")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        return [_ip_range_ok(r) for r in v]

    @field_validator("bindings")
    @classmethod
    def _bindings(cls, v: list[str]) -> list[str]:
        out = []
        for b in v:
            m = re.match(r"^(?P<ip>\[?[0-9a-fA-F:.]+\]?):(?P<port>\d{1,5})$", b.strip())
            if not m or not 0 < int(m["port"]) < 65536:
                raise ValueError(f"binding {b!r} is not IP:port (for example 0.0.0.0:25)")
            out.append(b.strip())
        return out

    @field_validator("tls_certificate_name")
    @classmethod
    def _tcn(cls, v: str | None) -> str | None:
        if v and not re.match(r"^<I>.+<S>.+$", v):
            raise ValueError(f"TlsCertificateName {v!r} is not of the form <I>issuer<S>subject")
        return v or None

    @field_validator("banner")
    @classmethod
    def _banner(cls, v: str | None) -> str | None:
        if v and not v.startswith("220"):
            raise ValueError("a custom Banner must start with 220")
        return v

    @model_validator(mode="after")
    def _auth_rules(self) -> "ReceiveConnector":
        mechs = set(self.auth_mechanism)
        if AuthMechanism.BASIC_AUTH_REQUIRE_TLS in mechs and not {AuthMechanism.BASIC_AUTH, AuthMechanism.TLS} <= mechs:
            raise ValueError("AuthMechanism BasicAuthRequireTLS needs BasicAuth and Tls")
        if self.require_tls and AuthMechanism.TLS not in mechs:
            raise ValueError("RequireTLS needs Tls in AuthMechanism")
        if self.inactivity_seconds >= self.connection_timeout_seconds:
            raise ValueError("ConnectionInactivityTimeout must be less than ConnectionTimeout")
        return self

    @property
    def connection_timeout_seconds(self) -> float:
        return parse_timespan(self.connection_timeout).total_seconds()

    @property
    def inactivity_seconds(self) -> float:
        return parse_timespan(self.connection_inactivity_timeout).total_seconds()

    @property
    def ports(self) -> list[int]:
        return sorted({int(b.rsplit(":", 1)[1]) for b in self.bindings})


# What an Edge Transport server's receive connectors default to where it differs from a Mailbox
# server's (PS-ref New-ReceiveConnector: ConnectionTimeout, ConnectionInactivityTimeout).
EDGE_RECEIVE_DEFAULTS: dict[str, Any] = {"ConnectionTimeout": "00:05:00", "ConnectionInactivityTimeout": "00:01:00"}


class SendConnector(LabModel):
    """Get-SendConnector, plus the implicit EdgeSync connectors on an Edge."""

    name: str
    address_spaces: list[AddressSpace] = Field(default_factory=list)
    smart_hosts: list[str] = Field(default_factory=list)
    dns_routing_enabled: bool = True
    port: Port = 25
    fqdn: str | None = None
    require_tls: bool = False
    tls_auth_level: TlsAuthLevel | None = None
    tls_domain: str | None = None
    tls_certificate_name: str | None = None
    ignore_starttls: bool = False
    source_transport_servers: list[str] = Field(default_factory=list)
    cloud_services_mail_enabled: bool = False
    protocol_logging_level: LoggingLevel = LoggingLevel.NONE
    max_message_size: ByteSize = Field(36700160, ge=0, le=INT32_MAX)  # Set-SendConnector: 0..2147483647
    use_external_dns_servers_enabled: bool = False
    # Set-SendConnector: messages per connection, default 20, 1..2147483647 (docs/queues-tracking-ndr.md)
    smtp_max_messages_per_connection: int = Field(20, ge=1, le=INT32_MAX)
    enabled: bool = True
    # Set-SendConnector -ErrorPolicies (docs/transport-fidelity.md §2.1): DowngradeDnsFailures
    # retries a nonexistent domain instead of failing it
    error_policies: Literal["Default", "DowngradeDnsFailures", "DowngradeCustomFailures",
                            "UpgradeCustomFailures"] = "Default"

    @field_validator("tls_certificate_name")
    @classmethod
    def _tcn(cls, v: str | None) -> str | None:
        if v and not re.match(r"^<I>.+<S>.+$", v):
            raise ValueError(f"TlsCertificateName {v!r} is not of the form <I>issuer<S>subject")
        return v or None

    @field_validator("smart_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        return [smart_host(h) for h in v]

    @model_validator(mode="after")
    def _rules(self) -> "SendConnector":
        if self.smart_hosts and self.dns_routing_enabled:
            # Set-SendConnector turns DNS routing off when smart hosts are given; mirror it.
            object.__setattr__(self, "dns_routing_enabled", False)
        if not self.smart_hosts and not self.dns_routing_enabled:
            raise ValueError("a send connector without DNS routing needs SmartHosts")
        if self.tls_auth_level and not self.require_tls:
            raise ValueError("TlsAuthLevel can only be set when RequireTLS is $true")
        if self.require_tls and self.ignore_starttls:
            raise ValueError("IgnoreSTARTTLS must be $false when RequireTLS is $true")
        if (self.tls_auth_level == TlsAuthLevel.DOMAIN_VALIDATION and self.smart_hosts
                and not self.tls_domain):
            raise ValueError("TlsDomain is required with DomainValidation over smart hosts")
        return self


class TransportServiceConfig(LabModel):
    """Set-TransportService / Set-FrontendTransportService: DNS, logging and retry settings."""

    internal_dns_servers: VirtualIPs = Field(default_factory=list)
    internal_dns_adapter_enabled: bool = True
    external_dns_servers: VirtualIPs = Field(default_factory=list)
    external_dns_adapter_enabled: bool = True
    intra_org_connector_protocol_logging_level: LoggingLevel = LoggingLevel.NONE
    # Set-TransportService's valid input ranges (docs/scenarios.md, "Ranges").
    transient_failure_retry_count: int = Field(6, ge=0, le=15)
    transient_failure_retry_interval: Annotated[str, timespan_field("00:00:01", "12:00:00")] = "00:05:00"
    outbound_connection_failure_retry_interval: Annotated[
        str, timespan_field("00:00:01", "20.00:00:00")] = "00:10:00"
    message_retry_interval: Annotated[str, timespan_field("00:00:01", "1.00:00:00")] = "00:15:00"
    delay_notification_timeout: Annotated[str, timespan_field("00:00:01", "30.00:00:00")] = "04:00:00"
    message_expiration_timeout: Annotated[str, timespan_field("00:00:05", "90.00:00:00")] = "2.00:00:00"
    # Outbound connections (Set-TransportService; docs/queues-tracking-ndr.md §2.1): per next-hop
    # queue and for the whole service (None = unlimited), messages per intra-organization connection.
    max_per_domain_outbound_connections: int | None = Field(20, ge=1, le=INT32_MAX)
    max_outbound_connections: int | None = Field(1000, ge=1, le=INT32_MAX)
    intra_org_connector_smtp_max_messages_per_connection: int = Field(20, ge=1, le=INT32_MAX)
    running: bool = True

    @field_validator("max_per_domain_outbound_connections", "max_outbound_connections", mode="before")
    @classmethod
    def _unlimited(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() == "unlimited" else v

    @model_validator(mode="after")
    def _connection_limits(self) -> "TransportServiceConfig":
        per_domain, total = self.max_per_domain_outbound_connections, self.max_outbound_connections
        if total is not None and (per_domain is None or per_domain > total):
            raise ValueError("MaxOutboundConnections must be greater than or equal to MaxPerDomainOutboundConnections")
        return self


class StoreEntry(LabModel):
    """One certificate in a server's LocalMachine\\My store, in store order."""

    certificate: str
    has_private_key: bool = True
    services: list[str] = Field(default_factory=lambda: ["SMTP"])


class CaSpec(LabModel):
    """A certificate authority of the lab (a public one, or an organisation's own)."""

    name: str
    subject: str
    parent: str | None = None  # None: a self-signed root
    trusted_by: list[Site] = Field(default_factory=lambda: [Site.ONPREM, Site.EXO, Site.INTERNET])
    not_before: TimeReference = "-3650d"
    not_after: TimeReference = "+3650d"
    # org: the host name of this CA's CRL distribution point (a Network.CdpHosts entry); None = the
    # lab's shared CDP (Network.CrlHostName).
    cdp: str | None = None
    key_algorithm: Literal["RSA", "ECDSA"] = "RSA"  # RSA 2048 as real CAs; ECDSA P-256 on request


class CertificateSpec(LabModel):
    """A leaf certificate (or a self-signed one when issuer is `self`)."""

    name: str
    subject: str
    sans: list[str] = Field(default_factory=list)
    issuer: str = "self"
    not_before: TimeReference = "-30d"
    not_after: TimeReference = "+365d"
    revoked: bool = False
    server_auth: bool = True
    client_auth: bool = True
    # New-ExchangeCertificate: RSA, 2048 bits by default (docs/tls-and-certificates.md); ECDSA P-256 on request
    key_algorithm: Literal["RSA", "ECDSA"] = "RSA"


class IPBlockListProvider(LabModel):
    """Add-IPBlockListProvider: a DNS block list the Edge's Connection Filtering agent asks at RCPT TO.

    `RejectionResponse` is a .NET format string ({0} = client IP, {1} = provider name,
    {2} = lookup domain); empty means Exchange's default text. Without AnyMatch, BitmaskMatch or
    IPAddressesMatch no answer counts as a listing (ConnectionFilteringAgent.MatchResult).
    """

    name: str
    lookup_domain: str
    any_match: bool = False
    bitmask_match: str | None = None
    ip_addresses_match: list[str] = Field(default_factory=list)
    rejection_response: str = ""
    priority: int = Field(1, ge=1, le=INT32_MAX)
    enabled: bool = True

    @field_validator("ip_addresses_match")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        return [_ipv4(x) for x in v]

    @field_validator("bitmask_match")
    @classmethod
    def _mask(cls, v: str | None) -> str | None:
        return _ipv4(v) if v else None


# --- IP Allow List (exercises, issue 13): the Edge's own list and EOP's connection filter policy ------
class IPListEntry(LabModel):
    """Add-IPAllowListEntry: one address, range or CIDR block; Identity is assigned on add (1, 2, ...)."""

    identity: int = Field(1, ge=1, le=INT32_MAX)
    ip_range: str
    expiration_time: datetime | None = None  # UTC; None = never expires
    comment: str = ""

    @field_validator("ip_range")
    @classmethod
    def _range(cls, v: str) -> str:
        return _ip_range_ok(v)


class IPAllowListConfig(LabModel):
    """Set-IPAllowListConfig: is the IP Allow list used, for external and internal connections."""

    enabled: bool = True
    external_mail_enabled: bool = True
    internal_mail_enabled: bool = False


class HostedConnectionFilterPolicy(LabModel):
    """EOP's default connection filter policy (Set-HostedConnectionFilterPolicy Default)."""

    name: str = "Default"
    ip_allow_list: list[str] = Field(default_factory=list)
    ip_block_list: list[str] = Field(default_factory=list)
    enable_safe_list: bool = False

    @field_validator("ip_allow_list", "ip_block_list")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        return [_ip_range_ok(x) for x in v]
# Exchange builds a server can run (Set-LabServerBuild; docs/transport-fidelity.md §6): the
# product line and the version its logs and Received headers carry. "2016-early" is a 2016 CU from
# before the single-row certificate format (seed 004's 2017 server; which CU switched is unknown),
# "2016" is CU22 (the QAZ sample, 15.01.2375); "2019" is CU14, the lab's default so far.
EXCHANGE_BUILD_VERSIONS: dict[str, str] = {
    "2013": "15.00.1497.010",        # 2013 CU23 + Dec 2020 SU [V-code AssemblyFileVersion]
    "2016-early": "15.01.1034.026",  # 2016 CU6 (2017) [INFERRED: seed 004 names no build]
    "2016": "15.01.2375.007",        # 2016 CU22 [V-obs QAZ 15.01.2375]
    "2019": "15.02.1544.004",        # 2019 CU14 [V-obs 15.2.1544.4 Received header]
}
ExchangeBuild = Literal["2013", "2016-early", "2016", "2019"]


class ExchangeServer(LabModel):
    """An on-premises Exchange server (Mailbox or Edge), 2019 unless `build` says otherwise."""

    name: str
    fqdn: str
    role: ServerRole = ServerRole.MAILBOX
    ip: VirtualIP
    adapter_dns_servers: VirtualIPs = Field(default_factory=list)
    utc_offset_minutes: int = Field(0, ge=-720, le=840)  # UTC-12:00 .. UTC+14:00
    version: str = "15.02.1544.004"
    frontend: TransportServiceConfig | None = None
    transport: TransportServiceConfig = Field(default_factory=TransportServiceConfig)
    receive_connectors: list[ReceiveConnector] = Field(default_factory=list)
    certificates: list[StoreEntry] = Field(default_factory=list)
    internal_transport_certificate: str | None = None
    intermediate_store: list[str] | None = None  # CA names installed; None = every lab intermediate
    winhttp_proxy: str | None = None  # `netsh winhttp set proxy` IP:port; CRL fetches go through it
    databases: list[str] = Field(default_factory=list)
    ip_block_list_providers: list[IPBlockListProvider] = Field(default_factory=list)  # Edge only
    ip_allow_list_entries: list[IPListEntry] = Field(default_factory=list)  # Edge only
    ip_allow_list_config: IPAllowListConfig = Field(default_factory=IPAllowListConfig)  # Edge only
    stopped_services: list[str] = Field(default_factory=list)  # Windows services not running (service_ops)
    # evidence2: the Edge's AD LDS instance database (TransportRoles\data\Adam\adamntds.dit) was deleted;
    # ADAM_MSExchange cannot start (rules.services; seed 001 error 3)
    adam_database_missing: bool = False
    # org: the Active Directory site the server is in (None = the organisation's AdSite).
    site: str | None = None
    build: ExchangeBuild = "2019"  # the product line whose formats and texts the server writes

    @field_validator("winhttp_proxy")
    @classmethod
    def _proxy(cls, v: str | None) -> str | None:
        return winhttp_proxy(v)

    @model_validator(mode="after")
    def _build_version(self) -> "ExchangeServer":
        # a build without an explicit version gets that build's version (Received ids, log headers)
        if self.build != "2019" and self.version == EXCHANGE_BUILD_VERSIONS["2019"]:
            object.__setattr__(self, "version", EXCHANGE_BUILD_VERSIONS[self.build])
        return self


class AcceptedDomain(LabModel):
    name: str
    domain_name: str
    domain_type: AcceptedDomainType = AcceptedDomainType.AUTHORITATIVE
    default: bool = False


class Mailbox(LabModel):
    alias: str
    primary_smtp_address: str
    email_addresses: list[str] = Field(default_factory=list)
    database: str = "DB01"
    display_name: str = ""


class RemoteMailbox(LabModel):
    """An on-prem mail user whose mailbox lives in Exchange Online (routing via targetAddress)."""

    alias: str
    primary_smtp_address: str
    remote_routing_address: str
    display_name: str = ""


class AdSite(LabModel):
    """An Active Directory site (New-ADReplicationSite): the unit Exchange routes between."""

    name: str = Field(min_length=1, max_length=63)
    subnets: list[str] = Field(default_factory=list)

    @field_validator("subnets")
    @classmethod
    def _subnets(cls, v: list[str]) -> list[str]:
        return [_ip_range_ok(r) for r in v]


class AdSiteLink(LabModel):
    """An Active Directory IP site link (New-ADReplicationSiteLink) with Exchange's own cost
    (Set-AdSiteLink -ExchangeCost): Exchange routes between AD sites along the least-cost path of
    these links, using ExchangeCost instead of the AD cost when it is set (rules.routing_sites)."""

    name: str = Field(min_length=1, max_length=63)
    sites: list[str] = Field(min_length=2)
    cost: int = Field(100, ge=1, le=99999)  # AD: 1..99999, default 100 (DEFAULTIPSITELINK)
    exchange_cost: int | None = Field(None, ge=1, le=INT32_MAX)  # Set-AdSiteLink -ExchangeCost <Int32>


class DatabaseAvailabilityGroup(LabModel):
    """New-DatabaseAvailabilityGroup + Add-DatabaseAvailabilityGroupServer: Mailbox servers whose
    databases are copies of each other; Exchange routes to the DAG as one delivery group."""

    name: str = Field(min_length=1, max_length=15)  # a NetBIOS name, as Exchange requires
    members: list[str] = Field(default_factory=list)
    witness_server: str | None = None


class Organization(LabModel):
    """The on-premises Exchange organisation."""

    name: str
    ad_site: str = "Default-First-Site-Name"
    servers: list[ExchangeServer]
    accepted_domains: list[AcceptedDomain]
    send_connectors: list[SendConnector] = Field(default_factory=list)
    mailboxes: list[Mailbox] = Field(default_factory=list)
    remote_mailboxes: list[RemoteMailbox] = Field(default_factory=list)
    public_ip: VirtualIP  # the SNAT address of the on-prem network towards the Internet
    # org: further AD sites (AdSite is always one) and database availability groups.
    sites: list[AdSite] = Field(default_factory=list)
    dags: list[DatabaseAvailabilityGroup] = Field(default_factory=list)
    # org3: AD IP site links; none declared = every site in one link of cost 100 (DEFAULTIPSITELINK)
    site_links: list[AdSiteLink] = Field(default_factory=list)

    def server(self, name: str) -> ExchangeServer:
        for s in self.servers:
            if s.name.lower() == name.lower():
                return s
        raise KeyError(name)


class InboundConnector(LabModel):
    """EXO New-InboundConnector."""

    name: str
    connector_type: Literal["OnPremises", "Partner"] = "OnPremises"
    sender_ip_addresses: list[str] = Field(default_factory=list)
    sender_domains: list[str] = Field(default_factory=lambda: ["smtp:*;1"])
    tls_sender_certificate_name: str | None = None
    require_tls: bool = True
    restrict_domains_to_certificate: bool = False
    restrict_domains_to_ip_addresses: bool = False
    cloud_services_mail_enabled: bool = True
    connector_source: Literal["Default", "HybridWizard", "Migrated"] = "HybridWizard"
    enabled: bool = True


class OutboundConnector(LabModel):
    """EXO New-OutboundConnector."""

    name: str
    connector_type: Literal["OnPremises", "Partner"] = "OnPremises"
    smart_hosts: list[str] = Field(default_factory=list)
    use_mx_record: bool = False
    tls_settings: TlsAuthLevel | None = TlsAuthLevel.DOMAIN_VALIDATION
    tls_domain: str | None = None
    recipient_domains: list[str] = Field(default_factory=list)
    route_all_messages_via_on_premises: bool = False
    cloud_services_mail_enabled: bool = True
    connector_source: Literal["Default", "HybridWizard", "Migrated"] = "HybridWizard"
    enabled: bool = True

    @field_validator("smart_hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        return [smart_host(h) for h in v]

    @model_validator(mode="after")
    def _rules(self) -> "OutboundConnector":
        if not self.use_mx_record and not self.smart_hosts:
            raise ValueError("UseMXRecord $false requires SmartHosts")
        return self


class ExoMailbox(LabModel):
    alias: str
    primary_smtp_address: str
    email_addresses: list[str] = Field(default_factory=list)


class ExoMailUser(LabModel):
    """A synced on-prem mailbox, seen in EXO as a mail user with an external address."""

    alias: str
    primary_smtp_address: str
    external_email_address: str


class ExoTenant(LabModel):
    """The Exchange Online tenant and the EOP front end it is reached through."""

    name: str
    initial_domain: str
    accepted_domains: list[AcceptedDomain]
    mailboxes: list[ExoMailbox] = Field(default_factory=list)
    mail_users: list[ExoMailUser] = Field(default_factory=list)
    inbound_connectors: list[InboundConnector] = Field(default_factory=list)
    outbound_connectors: list[OutboundConnector] = Field(default_factory=list)
    inbound_ip: VirtualIP = "52.101.194.15"
    outbound_ip: VirtualIP = "40.93.131.26"
    frontend_host: str = "BL02EPF0001A0FB.namprd03.prod.outlook.com"
    outbound_helo: str = "PNYPR01CU001.outbound.protection.outlook.com"
    certificate: str = "eop"
    dns_servers: VirtualIPs = Field(default_factory=lambda: ["8.8.8.8"])
    # The client-submission front end (smtp.office365.com); EOP's DNS block lists do not apply there.
    submission_ip: VirtualIP = "52.98.152.178"
    submission_host: str = "PN3PR01CA0012.outlook.office365.com"
    ip_block_lists: dict[str, str] = Field(default_factory=lambda: {"zen.spamhaus.org": "Spamhaus"})
    connection_filter_policy: HostedConnectionFilterPolicy = Field(default_factory=HostedConnectionFilterPolicy)
    max_hop_count: int = Field(30, ge=1, le=500)
    # ExchangeOnline words connector-delivery failures as mail flow intelligence (4.4.31x/4.7.320);
    # FOPE (the 2010-era service, seed 003) as Exchange 2010 transport did (451 4.4.0 ... failover).
    platform: Literal["ExchangeOnline", "FOPE"] = "ExchangeOnline"

    @property
    def routing_domain(self) -> str:
        return self.initial_domain.replace(".onmicrosoft.com", ".mail.onmicrosoft.com")


class DnsRecord(LabModel):
    name: str
    type: Literal["A", "MX", "CNAME", "TXT", "PTR"]
    value: str
    preference: int = Field(10, ge=0, le=65535)  # RFC 1035: a 16-bit integer
    ttl: int = Field(3600, ge=0, le=INT32_MAX)  # RFC 2181 §8


class DnsZone(LabModel):
    name: str
    records: list[DnsRecord] = Field(default_factory=list)


class DnsServer(LabModel):
    """A DNS server host: authoritative for its zones, forwarding the rest (or answering NXDOMAIN)."""

    name: str
    ip: VirtualIP
    site: Site
    zones: list[DnsZone] = Field(default_factory=list)
    forwarders: VirtualIPs = Field(default_factory=list)
    running: bool = True
    mode: Literal["running", "servfail", "drop"] = "running"  # how a running server answers


class InternetMailHost(LabModel):
    """A mail host on the Internet (a non-Exchange MTA) with its own mailboxes."""

    name: str
    fqdn: str
    ip: VirtualIP
    domains: list[str]
    mailboxes: list[str] = Field(default_factory=list)
    certificate: str | None = None
    dns_servers: VirtualIPs = Field(default_factory=lambda: ["8.8.8.8"])


class LinkRule(LabModel):
    """A fault on the path between virtual hosts: a firewall rule or a link toxic (toxiproxy's set).

    `Source`/`Destination`: `*`, a lab host name, an IP, a CIDR block or an `a-b` range; the
    source matches the client's own or its NATed address, the destination the address dialled or
    the host behind it. `Refuse` answers the SYN with RST, `Drop` never answers (the client waits
    for its connect timeout), `Reset` lets `ResetAfterBytes` client bytes through and then resets
    both sides, `Latency` adds one-way delay, `Bandwidth` caps throughput, `SlowClose` delays the
    close by `SlowCloseMs`. Rules apply in order; the first Refuse/Drop ends the walk.
    """

    name: str
    source: str = "*"
    destination: str = "*"
    ports: list[Port] = Field(default_factory=list)  # destination ports; empty = every port
    protocol: Literal["TCP", "UDP", "Any"] = "TCP"
    action: Literal["Refuse", "Drop", "Reset", "Latency", "Bandwidth", "SlowClose"]
    # Bounds keep virtual time sane: an hour of delay, 1 kbit/s (150 MB in two weeks) .. 10 Gbit/s.
    latency_ms: float = Field(0.0, ge=0, le=MAX_DELAY_MS)
    bandwidth_kbps: float = Field(0.0, ge=0, le=10_000_000)
    reset_after_bytes: int = Field(0, ge=0, le=INT32_MAX)
    slow_close_ms: float = Field(0.0, ge=0, le=MAX_DELAY_MS)
    enabled: bool = True

    @model_validator(mode="after")
    def _params(self) -> "LinkRule":
        need = {"Latency": ("latency_ms", "LatencyMs"), "Bandwidth": ("bandwidth_kbps", "BandwidthKbps"),
                "SlowClose": ("slow_close_ms", "SlowCloseMs")}.get(self.action)
        if need and not getattr(self, need[0]):
            raise ValueError(f"action {self.action} needs -{need[1]} greater than 0")
        if self.action == "Bandwidth" and self.bandwidth_kbps < 1:
            raise ValueError("action Bandwidth needs -BandwidthKbps of at least 1")
        return self


class LoadBalancer(LabModel):
    """A TCP load balancer in front of on-prem servers (seed 003): clients connect to the VIP, the
    balancer connects to a backend from its own address (SnatIp, default the VIP) unless
    PreserveClientIp is set."""

    name: str
    vip: VirtualIP
    snat_ip: VirtualIP | None = None
    backends: list[str]
    ports: list[Port] = Field(default_factory=lambda: [25])
    preserve_client_ip: bool = False

    @field_validator("snat_ip", mode="before")
    @classmethod
    def _no_empty(cls, v: Any) -> Any:
        return v or None


class NatRule(LabModel):
    """Port forwarding at the on-prem edge router: public_ip:port -> server."""

    public_ip: VirtualIP
    server: str
    ports: list[Port] = Field(default_factory=lambda: [25])


class CdpHost(LabModel):
    """A CRL distribution point of its own (a CA's `CDP`): an HTTP host with its own address and
    state - `up`, `down` (refused), `hang` (accepts, never answers), `stale` (serves a CRL whose
    NextUpdate has passed)."""

    name: str  # the host name in the CDP URL (http://<name>/<ca>.crl)
    ip: VirtualIP
    mode: Literal["up", "down", "hang", "stale"] = "up"


class Network(LabModel):
    """Links between sites: one-way latency in milliseconds per site pair."""

    latency_ms: dict[str, Annotated[float, Field(ge=0, le=MAX_DELAY_MS)]] = Field(default_factory=lambda: {
        "onprem-onprem": 0.4, "exo-exo": 0.6, "internet-internet": 5.0,
        "onprem-exo": 11.0, "onprem-internet": 18.0, "exo-internet": 9.0,
    })
    nat: list[NatRule] = Field(default_factory=list)
    rules: list[LinkRule] = Field(default_factory=list)
    load_balancers: list[LoadBalancer] = Field(default_factory=list)
    crl_host_ip: VirtualIP = "192.0.2.80"
    crl_host_name: str = "crl.labsim-pki.net"
    crl_mode: Literal["up", "down", "hang", "stale"] = "up"  # the CRL distribution point (Set-LabCrlServer)
    cdp_hosts: list[CdpHost] = Field(default_factory=list)  # org: further CDPs, one virtual host each

    def latency(self, a: Site | str, b: Site | str) -> float:
        key = "-".join(sorted([str(a), str(b)], key=["onprem", "exo", "internet"].index))
        return self.latency_ms.get(key, 1.0) / 1000.0


class Lab(LabModel):
    """Everything the lab runs: the world a scenario describes."""

    start: datetime
    organization: Organization
    tenant: ExoTenant
    internet_hosts: list[InternetMailHost] = Field(default_factory=list)
    dns_servers: list[DnsServer] = Field(default_factory=list)
    certificate_authorities: list[CaSpec] = Field(default_factory=list)
    certificates: list[CertificateSpec] = Field(default_factory=list)
    network: Network = Field(default_factory=Network)
    _started: bool = PrivateAttr(default=False)  # org: set by the running lab (engine.runtime)

    @property
    def started(self) -> bool:
        """True once a lab runs this world: it no longer grows servers, sites or DAGs (cmdlets_org)."""
        return self._started

    def mark_started(self) -> None:
        self._started = True

    def certificate(self, name: str) -> CertificateSpec:
        for c in self.certificates:
            if c.name == name:
                return c
        raise KeyError(name)

    def ca(self, name: str) -> CaSpec:
        for c in self.certificate_authorities:
            if c.name == name:
                return c
        raise KeyError(name)

    @model_validator(mode="after")
    def _references(self) -> "Lab":
        """Cross-object checks, so a typo in a scenario fails on load, not mid-run."""
        certs = {c.name for c in self.certificates}
        cas = {c.name for c in self.certificate_authorities}
        for c in self.certificates:
            if c.issuer != "self" and c.issuer not in cas:
                raise ValueError(f"certificate {c.name!r}: issuer {c.issuer!r} is not a lab CA")
        for ca in self.certificate_authorities:
            if ca.parent and ca.parent not in cas:
                raise ValueError(f"CA {ca.name!r}: parent {ca.parent!r} is not a lab CA")
        for what, specs in (("CA", self.certificate_authorities), ("certificate", self.certificates)):
            for spec in specs:
                problem = validity_problem(spec.not_before, spec.not_after, self.start)
                if problem:
                    raise ValueError(f"{what} {spec.name!r}: {problem}")
        names = set()
        for s in self.organization.servers:
            if s.name.lower() in names:
                raise ValueError(f"server name {s.name!r} is used twice")
            names.add(s.name.lower())
            for e in s.certificates:
                if e.certificate not in certs:
                    raise ValueError(f"server {s.name}: certificate {e.certificate!r} is not defined")
            if s.internal_transport_certificate and s.internal_transport_certificate not in certs:
                raise ValueError(f"server {s.name}: internal transport certificate "
                                 f"{s.internal_transport_certificate!r} is not defined")
            seen = set()
            for rc in s.receive_connectors:
                if rc.name.lower() in seen:
                    raise ValueError(f"server {s.name}: receive connector {rc.name!r} is defined twice")
                seen.add(rc.name.lower())
        for sc in self.organization.send_connectors:
            for src in sc.source_transport_servers:
                if src.lower() not in names:
                    raise ValueError(f"send connector {sc.name!r}: source server {src!r} does not exist")
        if self.tenant.certificate not in certs:
            raise ValueError(f"tenant certificate {self.tenant.certificate!r} is not defined")
        for h in self.internet_hosts:
            if h.certificate and h.certificate not in certs:
                raise ValueError(f"internet host {h.name}: certificate {h.certificate!r} is not defined")
        lbs = {lb.name.lower() for lb in self.network.load_balancers}
        for lb in self.network.load_balancers:
            if lb.name.lower() in names:
                raise ValueError(f"load balancer {lb.name!r} has the name of a server")
            for b in lb.backends:
                if b.lower() not in names:
                    raise ValueError(f"load balancer {lb.name}: backend {b!r} is not an Exchange server")
        hosts = {s.ip: s.name for s in self.organization.servers}
        hosts |= {d.ip: d.name for d in self.dns_servers} | {h.ip: h.name for h in self.internet_hosts}
        hosts |= {lb.vip: lb.name for lb in self.network.load_balancers}
        hosts |= {self.tenant.inbound_ip: "EXO", self.tenant.outbound_ip: "EXO-OUT",
                  self.tenant.submission_ip: "EXO-SUBMISSION", self.network.crl_host_ip: "CRL"}
        for rule in self.network.nat:
            if rule.server.lower() not in names and rule.server.lower() not in lbs:
                raise ValueError(f"NAT rule for {rule.public_ip}: server {rule.server!r} does not exist")
            if rule.public_ip in hosts:
                raise ValueError(f"NAT rule for {rule.public_ip}: that is the address of {hosts[rule.public_ip]}, "
                                 "not a public address of the on-premises router")
        return self

    # -- org (issue 12): the checks a declared organisation needs; the default lab passes them --------
    @model_validator(mode="after")
    def _org_references(self) -> "Lab":
        """An impossible world fails on load with one error naming the object: duplicate host
        names or addresses, a connector bound to an address its server does not have, a server
        in an undeclared site, a DAG member that is no Mailbox server or sits outside any site, a
        CA whose CDP is no lab host."""
        org = self.organization
        owners: dict[str, str] = {}
        named: dict[str, str] = {}

        def host(name: str, ip: str, what: str) -> None:
            if name.lower() in named:
                raise ValueError(f"{what} {name!r}: the name is already used by {named[name.lower()]}")
            named[name.lower()] = f"{what} {name!r}"
            if ip in owners:
                raise ValueError(f"{what} {name!r}: address {ip} is already used by {owners[ip]}")
            owners[ip] = f"{what} {name!r}"

        for s in org.servers:
            host(s.name, s.ip, "server")
        for d in self.dns_servers:
            host(d.name, d.ip, "DNS server")
        for h in self.internet_hosts:
            host(h.name, h.ip, "Internet host")
        for lb in self.network.load_balancers:
            host(lb.name, lb.vip, "load balancer")
        for c in self.network.cdp_hosts:
            host(c.name, c.ip, "CDP host")
        if self.network.cdp_hosts and self.network.crl_host_name.lower() in named:
            raise ValueError(f"CDP host {self.network.crl_host_name!r} is declared twice")
        sites = {org.ad_site.lower()} | {s.name.lower() for s in org.sites}
        if len(org.sites) != len({s.name.lower() for s in org.sites}):
            raise ValueError("organization.sites: a site name is used twice")
        for s in org.servers:
            if s.site is not None and s.site.lower() not in sites:
                raise ValueError(f"server {s.name}: site {s.site!r} is not a site of the organisation "
                                 f"(sites: {', '.join(sorted(sites))})")
            for rc in s.receive_connectors:
                for b in rc.bindings:
                    ip = b.rsplit(":", 1)[0].strip("[]")
                    if ip not in ("0.0.0.0", "::", s.ip):
                        raise ValueError(f"server {s.name}: receive connector {rc.name!r} is bound to {ip}, "
                                         f"an address {s.name} does not have (its address: {s.ip})")
        in_dag: dict[str, str] = {}
        for dag in org.dags:
            if dag.name.lower() in named:
                raise ValueError(f"DAG {dag.name!r}: the name is already used by {named[dag.name.lower()]}")
            named[dag.name.lower()] = f"DAG {dag.name!r}"
            for m in dag.members:
                try:
                    srv = org.server(m)
                except KeyError:
                    raise ValueError(f"DAG {dag.name}: member {m!r} is not an Exchange server") from None
                if srv.role != ServerRole.MAILBOX:
                    raise ValueError(f"DAG {dag.name}: member {srv.name} is an Edge server (only Mailbox servers)")
                if srv.name.lower() in in_dag:
                    raise ValueError(f"DAG {dag.name}: member {srv.name} is already in DAG {in_dag[srv.name.lower()]}")
                in_dag[srv.name.lower()] = dag.name
                if (srv.site or org.ad_site).lower() not in sites:
                    raise ValueError(f"DAG {dag.name}: member {srv.name} is outside any site of the organisation")
        links: set[str] = set()
        for link in org.site_links:
            if link.name.lower() in links:
                raise ValueError(f"site link {link.name!r} is declared twice")
            links.add(link.name.lower())
            for site in link.sites:
                if site.lower() not in sites:
                    raise ValueError(f"site link {link.name}: site {site!r} is not a site of the organisation "
                                     f"(sites: {', '.join(sorted(sites))})")
        cdps = {self.network.crl_host_name.lower()} | {c.name.lower() for c in self.network.cdp_hosts}
        for ca in self.certificate_authorities:
            if ca.cdp is not None and ca.cdp.lower() not in cdps:
                raise ValueError(f"CA {ca.name!r}: CDP {ca.cdp!r} is not a CDP host of the lab "
                                 f"(network.CdpHosts: {', '.join(sorted(cdps))})")
        return self

    def server_site(self, server: ExchangeServer) -> str:
        """The AD site a server is in (its own, else the organisation's)."""
        return server.site or self.organization.ad_site
