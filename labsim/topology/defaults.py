"""The default organisation: seed 001's hybrid lab, healthy.

Names and addresses follow seed 001 where it gives them (CMHYBD01 at 192.168.1.13, CMEDGE01 at
192.168.1.25, the DC/DNS at 192.168.1.11, the public address 27.7.57.241, the domain
cloudmonkeys.xyz, the tenant cloudfield.onmicrosoft.com, EXO's sending address 40.93.131.26 and the
`Outbound to Office 365` connector). Where the seed is silent, the connectors are the ones the
Hybrid Configuration Wizard and Exchange 2019 setup create (transport-behavior.md §1.2-§2.4, §7.1).

Mail flows the four ways of seed 001 §1:
- EXO -> on-prem: EXO's outbound connector smart-hosts to mail.cloudmonkeys.xyz, which the
  router forwards to CMHYBD01's Default Frontend connector; FE proxies to the Hub on 2525.
- on-prem -> EXO: the Hub's `Outbound to Office 365` connector resolves the MX of
  cloudfield.mail.onmicrosoft.com (EOP) and delivers with DomainValidation TLS.
- on-prem -> Internet: the Hub relays to the Edge, whose EdgeSync connector uses DNS (MX).
- Internet -> on-prem: the MX of cloudmonkeys.xyz (smtp.cloudmonkeys.xyz) is forwarded to the
  Edge, which sends on to the Mailbox server through `EdgeSync - Inbound to <site>`.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .model import (
    AcceptedDomain,
    CaSpec,
    CertificateSpec,
    DnsRecord,
    DnsServer,
    DnsZone,
    ExchangeServer,
    ExoMailbox,
    ExoMailUser,
    ExoTenant,
    InboundConnector,
    InternetMailHost,
    Lab,
    Mailbox,
    NatRule,
    Network,
    Organization,
    OutboundConnector,
    ReceiveConnector,
    RemoteMailbox,
    SendConnector,
    Site,
    StoreEntry,
    TransportServiceConfig,
)

PUBLIC_ROOT = "CN=labsim Public Root CA, O=labsim Public Trust, C=US"
PUBLIC_ISSUING = "CN=labsim Public Issuing CA 1, O=labsim Public Trust, C=US"
ORG_ROOT = "CN=cloudmonkeys-DC01-CA, DC=cloudmonkeys, DC=xyz"
HYBRID_CERT_NAME = f"<I>{PUBLIC_ISSUING}<S>CN=mail.cloudmonkeys.xyz"
SERVER_AUTH_FULL = ["Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer"]
DEFAULT_START = datetime(2026, 5, 1, 6, 0, 0, tzinfo=timezone.utc)
TENANT_GUID = "8f2c6a9e-0d1b-4c55-9a57-3b1e2a7c4d10"


def _mailbox_server_connectors(name: str, hybrid: bool = True) -> list[ReceiveConnector]:
    """Exchange 2019 setup's five receive connectors of a Mailbox server; with `hybrid`, the
    Default Frontend connector as the HCW leaves it (seed 001's certificate, AcceptCloudServicesMail)."""
    return [
        ReceiveConnector(
            name=f"Default Frontend {name}", transport_role="FrontendTransport",
            bindings=["0.0.0.0:25"], auth_mechanism=SERVER_AUTH_FULL,
            permission_groups=["AnonymousUsers", "ExchangeServers", "ExchangeLegacyServers"],
            tls_certificate_name=HYBRID_CERT_NAME if hybrid else None,
            tls_domain_capabilities=["mail.protection.outlook.com:AcceptCloudServicesMail"] if hybrid else [],
            protocol_logging_level="Verbose",
        ),
        ReceiveConnector(
            name=f"Outbound Proxy Frontend {name}", transport_role="FrontendTransport",
            bindings=["0.0.0.0:717"], auth_mechanism=SERVER_AUTH_FULL,
            permission_groups=["ExchangeServers"],
        ),
        ReceiveConnector(
            name=f"Client Frontend {name}", transport_role="FrontendTransport",
            bindings=["0.0.0.0:587"], auth_mechanism=["Tls", "BasicAuth", "BasicAuthRequireTLS", "Integrated"],
            permission_groups=["ExchangeUsers"],
        ),
        ReceiveConnector(
            name=f"Default {name}", transport_role="HubTransport",
            bindings=["0.0.0.0:2525"], auth_mechanism=["Tls", "BasicAuth", "ExchangeServer", "Integrated"],
            permission_groups=["ExchangeLegacyServers", "ExchangeServers", "ExchangeUsers"],
            # ExDocs message-rate-limits.md: unlimited per source, 100 percent, on this one connector
            max_inbound_connection_per_source=None, max_inbound_connection_percentage_per_source=100,
        ),
        ReceiveConnector(
            name=f"Client Proxy {name}", transport_role="HubTransport",
            bindings=["0.0.0.0:465"], auth_mechanism=SERVER_AUTH_FULL,
            permission_groups=["ExchangeServers", "ExchangeUsers"],
        ),
    ]


def setup_receive_connectors(name: str, role: str) -> list[ReceiveConnector]:
    """The receive connectors Exchange 2019 setup creates on a new server (org files: a server
    that declares none gets these)."""
    if role == "Edge":
        return [ReceiveConnector(
            name=f"Default internal receive connector {name}", transport_role="FrontendTransport",
            bindings=["0.0.0.0:25"], auth_mechanism=["Tls", "ExchangeServer"],
            permission_groups=["AnonymousUsers", "ExchangeServers", "Partners"],
            protocol_logging_level="Verbose",
            connection_timeout="00:05:00", connection_inactivity_timeout="00:01:00",  # Edge defaults
        )]
    return _mailbox_server_connectors(name, hybrid=False)


def edgesync_send_connectors(site: str, edge: str) -> list[SendConnector]:
    """The two send connectors an Edge subscription to `site` creates (New-EdgeSubscription)."""
    return [
        SendConnector(name=f"EdgeSync - {site} to Internet", address_spaces=["smtp:*;100"],
                      dns_routing_enabled=True, source_transport_servers=[edge], protocol_logging_level="Verbose"),
        SendConnector(name=f"EdgeSync - Inbound to {site}", address_spaces=["smtp:--;100"],
                      smart_hosts=["--"], source_transport_servers=[edge], protocol_logging_level="Verbose"),
    ]


def default_lab(start: datetime = DEFAULT_START) -> Lab:
    """A fresh copy of the healthy default organisation."""
    tenant = "cloudfield"
    routing_domain = f"{tenant}.mail.onmicrosoft.com"
    eop_host = f"{tenant}-mail-onmicrosoft-com.mail.protection.outlook.com"
    hyb = ExchangeServer(
        name="CMHYBD01", fqdn="cmhybd01.cloudmonkeys.xyz", role="Mailbox", ip="192.168.1.13",
        adapter_dns_servers=["192.168.1.11"], utc_offset_minutes=330,
        frontend=TransportServiceConfig(intra_org_connector_protocol_logging_level="Verbose"),
        transport=TransportServiceConfig(),
        receive_connectors=_mailbox_server_connectors("CMHYBD01"),
        certificates=[
            StoreEntry(certificate="mail-cloudmonkeys", services=["SMTP", "IIS"]),
            StoreEntry(certificate="cmhybd01-selfsigned", services=["SMTP"]),
        ],
        internal_transport_certificate="cmhybd01-selfsigned",
        databases=["DB01"],
    )
    edge = ExchangeServer(
        name="CMEDGE01", fqdn="cmedge01.cloudmonkeys.xyz", role="Edge", ip="192.168.1.25",
        adapter_dns_servers=["192.168.1.11"], utc_offset_minutes=330,
        frontend=None,
        transport=TransportServiceConfig(transient_failure_retry_interval="00:10:00",
                                         outbound_connection_failure_retry_interval="00:30:00"),
        receive_connectors=[
            ReceiveConnector(
                name="Default internal receive connector CMEDGE01", transport_role="FrontendTransport",
                bindings=["0.0.0.0:25"], auth_mechanism=["Tls", "ExchangeServer"],
                permission_groups=["AnonymousUsers", "ExchangeServers", "Partners"],
                protocol_logging_level="Verbose",
                connection_timeout="00:05:00", connection_inactivity_timeout="00:01:00",  # Edge defaults
            ),
        ],
        certificates=[
            StoreEntry(certificate="mail-cloudmonkeys", services=["SMTP"]),
            StoreEntry(certificate="cmedge01-selfsigned", services=["SMTP"]),
        ],
        internal_transport_certificate="cmedge01-selfsigned",
    )
    org = Organization(
        name="CloudMonkeys",
        servers=[hyb, edge],
        public_ip="27.7.57.241",
        accepted_domains=[AcceptedDomain(name="cloudmonkeys.xyz", domain_name="cloudmonkeys.xyz", default=True)],
        send_connectors=[
            SendConnector(
                name="Outbound to Office 365", address_spaces=[f"smtp:{routing_domain};1"],
                dns_routing_enabled=True, require_tls=True, tls_auth_level="DomainValidation",
                tls_domain="mail.protection.outlook.com", tls_certificate_name=HYBRID_CERT_NAME,
                fqdn="mail.cloudmonkeys.xyz", source_transport_servers=["CMHYBD01"],
                cloud_services_mail_enabled=True, protocol_logging_level="Verbose",
            ),
            SendConnector(
                name="EdgeSync - Default-First-Site-Name to Internet", address_spaces=["smtp:*;100"],
                dns_routing_enabled=True, source_transport_servers=["CMEDGE01"],
                protocol_logging_level="Verbose",
            ),
            SendConnector(
                name="EdgeSync - Inbound to Default-First-Site-Name", address_spaces=["smtp:--;100"],
                smart_hosts=["--"], source_transport_servers=["CMEDGE01"],
                protocol_logging_level="Verbose",
            ),
        ],
        mailboxes=[
            Mailbox(alias="raghu", primary_smtp_address="raghu@cloudmonkeys.xyz", display_name="Raghu"),
            Mailbox(alias="priya", primary_smtp_address="priya@cloudmonkeys.xyz", display_name="Priya"),
        ],
        remote_mailboxes=[
            RemoteMailbox(alias="ramki", primary_smtp_address="ramki@cloudmonkeys.xyz",
                          remote_routing_address=f"ramki@{routing_domain}", display_name="Ramki"),
        ],
    )
    exo = ExoTenant(
        name=tenant, initial_domain=f"{tenant}.onmicrosoft.com",
        accepted_domains=[
            AcceptedDomain(name="cloudmonkeys.xyz", domain_name="cloudmonkeys.xyz", default=True),
            AcceptedDomain(name=f"{tenant}.onmicrosoft.com", domain_name=f"{tenant}.onmicrosoft.com"),
            AcceptedDomain(name=routing_domain, domain_name=routing_domain),
        ],
        mailboxes=[ExoMailbox(alias="ramki", primary_smtp_address="ramki@cloudmonkeys.xyz",
                              email_addresses=[f"ramki@{tenant}.onmicrosoft.com", f"ramki@{routing_domain}"])],
        mail_users=[
            ExoMailUser(alias="raghu", primary_smtp_address="raghu@cloudmonkeys.xyz",
                        external_email_address="raghu@cloudmonkeys.xyz"),
            ExoMailUser(alias="priya", primary_smtp_address="priya@cloudmonkeys.xyz",
                        external_email_address="priya@cloudmonkeys.xyz"),
        ],
        inbound_connectors=[InboundConnector(
            name=f"Inbound from {TENANT_GUID}", connector_type="OnPremises",
            tls_sender_certificate_name="mail.cloudmonkeys.xyz")],
        outbound_connectors=[OutboundConnector(
            name=f"Outbound to {TENANT_GUID}", connector_type="OnPremises",
            smart_hosts=["mail.cloudmonkeys.xyz"], use_mx_record=False, tls_settings="DomainValidation",
            tls_domain="mail.cloudmonkeys.xyz", recipient_domains=["cloudmonkeys.xyz"])],
    )
    internet = [InternetMailHost(name="FABRIKAM-MX", fqdn="mx.fabrikam.com", ip="203.0.113.25",
                                 domains=["fabrikam.com"], mailboxes=["alex@fabrikam.com"],
                                 certificate="fabrikam-mx")]
    dns = [
        DnsServer(name="DC01", ip="192.168.1.11", site=Site.ONPREM, forwarders=["8.8.8.8"], zones=[
            DnsZone(name="cloudmonkeys.xyz", records=[
                DnsRecord(name="dc01.cloudmonkeys.xyz", type="A", value="192.168.1.11"),
                DnsRecord(name="cmhybd01.cloudmonkeys.xyz", type="A", value="192.168.1.13"),
                DnsRecord(name="cmedge01.cloudmonkeys.xyz", type="A", value="192.168.1.25"),
                DnsRecord(name="mail.cloudmonkeys.xyz", type="A", value="192.168.1.13"),
                DnsRecord(name="autodiscover.cloudmonkeys.xyz", type="A", value="192.168.1.13"),
                DnsRecord(name="cloudmonkeys.xyz", type="MX", value="mail.cloudmonkeys.xyz", preference=10),
            ]),
        ]),
        DnsServer(name="PUBLIC-DNS", ip="8.8.8.8", site=Site.INTERNET, zones=[
            DnsZone(name="cloudmonkeys.xyz", records=[
                DnsRecord(name="cloudmonkeys.xyz", type="MX", value="smtp.cloudmonkeys.xyz", preference=10),
                DnsRecord(name="mail.cloudmonkeys.xyz", type="A", value="27.7.57.241"),
                DnsRecord(name="autodiscover.cloudmonkeys.xyz", type="A", value="27.7.57.241"),
                DnsRecord(name="smtp.cloudmonkeys.xyz", type="A", value="27.7.57.242"),
                DnsRecord(name="cloudmonkeys.xyz", type="TXT",
                          value="v=spf1 ip4:27.7.57.241 include:spf.protection.outlook.com -all"),
            ]),
            DnsZone(name="fabrikam.com", records=[
                DnsRecord(name="fabrikam.com", type="MX", value="mx.fabrikam.com", preference=10),
                DnsRecord(name="mx.fabrikam.com", type="A", value="203.0.113.25"),
            ]),
            DnsZone(name="onmicrosoft.com", records=[
                DnsRecord(name=routing_domain, type="MX", value=eop_host, preference=0),
                DnsRecord(name=f"{tenant}.onmicrosoft.com", type="MX",
                          value=f"{tenant}.mail.protection.outlook.com", preference=0),
            ]),
            DnsZone(name="mail.protection.outlook.com", records=[
                DnsRecord(name=eop_host, type="A", value="52.101.194.15"),
                DnsRecord(name=f"{tenant}.mail.protection.outlook.com", type="A", value="52.101.194.15"),
                DnsRecord(name="cloudmonkeys-xyz.mail.protection.outlook.com", type="A", value="52.101.194.15"),
            ]),
            DnsZone(name="labsim-pki.net", records=[
                DnsRecord(name="crl.labsim-pki.net", type="A", value="192.0.2.80"),
            ]),
        ]),
    ]
    cas = [
        CaSpec(name="public-root", subject=PUBLIC_ROOT),
        CaSpec(name="public-issuing", subject=PUBLIC_ISSUING, parent="public-root", not_before="-1825d"),
        CaSpec(name="org-root", subject=ORG_ROOT, trusted_by=[Site.ONPREM]),
    ]
    certs = [
        CertificateSpec(name="mail-cloudmonkeys", subject="CN=mail.cloudmonkeys.xyz",
                        sans=["mail.cloudmonkeys.xyz", "autodiscover.cloudmonkeys.xyz", "smtp.cloudmonkeys.xyz"],
                        issuer="public-issuing", not_before="-60d", not_after="+305d"),
        CertificateSpec(name="cmhybd01-selfsigned", subject="CN=CMHYBD01",
                        sans=["CMHYBD01", "cmhybd01.cloudmonkeys.xyz"], issuer="self",
                        not_before="-400d", not_after="+1425d"),
        CertificateSpec(name="cmedge01-selfsigned", subject="CN=CMEDGE01",
                        sans=["CMEDGE01", "cmedge01.cloudmonkeys.xyz"], issuer="self",
                        not_before="-400d", not_after="+1425d"),
        CertificateSpec(name="eop",
                        subject="CN=mail.protection.outlook.com, O=Microsoft Corporation, L=Redmond, S=Washington, C=US",
                        sans=["mail.protection.outlook.com", "*.mail.protection.outlook.com",
                              "*.outbound.protection.outlook.com", "*.mail.eo.outlook.com"],
                        issuer="public-issuing", not_before="-90d", not_after="+275d"),
        CertificateSpec(name="fabrikam-mx", subject="CN=mx.fabrikam.com", sans=["mx.fabrikam.com"],
                        issuer="public-issuing", not_before="-20d", not_after="+70d"),
    ]
    return Lab(
        start=start, organization=org, tenant=exo, internet_hosts=internet, dns_servers=dns,
        certificate_authorities=cas, certificates=certs,
        network=Network(nat=[NatRule(public_ip="27.7.57.241", server="CMHYBD01", ports=[25]),
                             NatRule(public_ip="27.7.57.242", server="CMEDGE01", ports=[25])]),
    )
