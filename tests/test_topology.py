"""The topology model, its defaults and the cmdlets that change it (as a scenario's `[[change]]` does)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from labsim.errors import TopologyError
from labsim.topology.changes import apply_change, known_cmdlets
from labsim.topology.defaults import HYBRID_CERT_NAME, default_lab
from labsim.topology.model import AddressSpace, Lab
from labsim.topology.timespec import format_timespan, parse_timespan, resolve_time

DF = "Default Frontend CMHYBD01"
O365 = "Outbound to Office 365"


def rc_of(lab, server: str, name: str):
    return next(c for c in lab.organization.server(server).receive_connectors if c.name == name)


def sc_of(lab, name: str):
    return next(c for c in lab.organization.send_connectors if c.name == name)


def rejected(lab, cmdlet: str, params: dict) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        apply_change(lab, cmdlet, params)
    return info.value


# --- the default organisation --------------------------------------------------------------------------

def test_default_lab_validates_and_round_trips(lab):
    again = Lab.model_validate(lab.model_dump())
    assert again == lab
    assert Lab.model_validate(lab.model_dump(by_alias=True)) == lab  # Exchange property names work too


def test_default_lab_is_seed_001s_organisation(lab):
    org = lab.organization
    assert [(s.name, s.role, s.ip) for s in org.servers] == [("CMHYBD01", "Mailbox", "192.168.1.13"),
                                                            ("CMEDGE01", "Edge", "192.168.1.25")]
    assert org.public_ip == "27.7.57.241"
    assert [d.domain_name for d in org.accepted_domains] == ["cloudmonkeys.xyz"]
    assert lab.tenant.routing_domain == "cloudfield.mail.onmicrosoft.com"
    assert lab.tenant.outbound_ip == "40.93.131.26"


def test_default_receive_connectors_follow_exchange_2019_setup(lab):
    ports = {c.name: (c.transport_role, c.ports) for c in lab.organization.server("CMHYBD01").receive_connectors}
    assert ports == {
        "Default Frontend CMHYBD01": ("FrontendTransport", [25]),
        "Outbound Proxy Frontend CMHYBD01": ("FrontendTransport", [717]),
        "Client Frontend CMHYBD01": ("FrontendTransport", [587]),
        "Default CMHYBD01": ("HubTransport", [2525]),
        "Client Proxy CMHYBD01": ("HubTransport", [465]),
    }
    edge = lab.organization.server("CMEDGE01").receive_connectors
    assert [(c.name, c.ports, c.auth_mechanism, c.permission_groups) for c in edge] == [
        ("Default internal receive connector CMEDGE01", [25], ["Tls", "ExchangeServer"],
         ["AnonymousUsers", "ExchangeServers", "Partners"])]


def test_default_frontend_is_what_the_hybrid_wizard_leaves(lab):
    df = rc_of(lab, "CMHYBD01", DF)
    assert set(df.auth_mechanism) == {"Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer"}
    assert set(df.permission_groups) == {"AnonymousUsers", "ExchangeServers", "ExchangeLegacyServers"}
    assert df.tls_certificate_name == HYBRID_CERT_NAME
    assert df.tls_domain_capabilities == ["mail.protection.outlook.com:AcceptCloudServicesMail"]
    assert df.protocol_logging_level == "Verbose"
    o365 = sc_of(lab, O365)
    assert [str(a) for a in o365.address_spaces] == ["SMTP:cloudfield.mail.onmicrosoft.com;1"]
    assert (o365.require_tls, o365.tls_auth_level, o365.tls_domain) == (True, "DomainValidation",
                                                                         "mail.protection.outlook.com")
    assert o365.dns_routing_enabled and not o365.smart_hosts and o365.cloud_services_mail_enabled


def test_each_default_lab_is_an_independent_copy():
    a, b = default_lab(), default_lab()
    apply_change(a, "Set-ReceiveConnector", {"Identity": DF, "ProtocolLoggingLevel": "None"})
    assert rc_of(b, "CMHYBD01", DF).protocol_logging_level == "Verbose"


def test_lab_rejects_dangling_references(lab):
    data = lab.model_dump()
    data["organization"]["send_connectors"][0]["source_transport_servers"] = ["CMHYBD09"]
    with pytest.raises(ValidationError, match="CMHYBD09"):
        Lab.model_validate(data)


# --- Set-ReceiveConnector --------------------------------------------------------------------------------

@pytest.mark.parametrize("identity", [r"CMHYBD01\Default Frontend CMHYBD01", "Default Frontend CMHYBD01",
                                      r"cmhybd01\default frontend cmhybd01"])
@pytest.mark.parametrize("param", ["ProtocolLoggingLevel", "protocol_logging_level", "protocollogginglevel"])
def test_set_receive_connector_by_identity_and_parameter_spelling(lab, identity, param):
    touched = apply_change(lab, "Set-ReceiveConnector", {"Identity": identity, param: "None"})
    assert touched == r"CMHYBD01\Default Frontend CMHYBD01"
    assert rc_of(lab, "CMHYBD01", DF).protocol_logging_level == "None"


def test_set_receive_connector_several_parameters(lab):
    apply_change(lab, "Set-ReceiveConnector", {"Identity": DF, "Fqdn": "mail.cloudmonkeys.xyz",
                                               "RemoteIPRanges": ["40.92.0.0/15", "52.100.0.0/14"],
                                               "TlsDomainCapabilities": []})
    df = rc_of(lab, "CMHYBD01", DF)
    assert (df.fqdn, df.remote_ip_ranges, df.tls_domain_capabilities) == \
        ("mail.cloudmonkeys.xyz", ["40.92.0.0/15", "52.100.0.0/14"], [])


def test_unknown_parameter_is_named(lab):
    err = rejected(lab, "Set-ReceiveConnector", {"Identity": DF, "TlsCertName": "x"})
    assert err.where == "Set-ReceiveConnector Default Frontend CMHYBD01"
    assert "unknown parameter -TlsCertName" in err.problem and "TlsCertificateName" in err.problem


def test_unknown_receive_connector_and_ambiguous_plain_name(lab):
    assert "no receive connector 'Nope'" in rejected(lab, "Set-ReceiveConnector", {"Identity": "Nope"}).problem
    assert "-Identity is required" in rejected(lab, "Set-ReceiveConnector", {"Fqdn": "x"}).problem
    apply_change(lab, "New-ReceiveConnector", {"Server": "CMEDGE01", "Name": DF, "Bindings": ["0.0.0.0:2526"]})
    assert "ambiguous" in rejected(lab, "Set-ReceiveConnector", {"Identity": DF, "Fqdn": "x"}).problem
    apply_change(lab, "Set-ReceiveConnector", {"Identity": rf"CMEDGE01\{DF}", "Fqdn": "edge.example"})
    assert rc_of(lab, "CMEDGE01", DF).fqdn == "edge.example" and rc_of(lab, "CMHYBD01", DF).fqdn is None


@pytest.mark.parametrize("params, problem", [
    ({"AuthMechanism": ["Tls", "BasicAuthRequireTLS"]}, "BasicAuthRequireTLS needs BasicAuth and Tls"),
    ({"AuthMechanism": ["Integrated"], "RequireTLS": True}, "RequireTLS needs Tls"),
    ({"Banner": "Hello"}, "must start with 220"),
    ({"TlsCertificateName": "CN=mail.cloudmonkeys.xyz"}, "<I>issuer<S>subject"),
    ({"RemoteIPRanges": ["10.0.0.9-10.0.0.1"]}, "RemoteIPRanges"),
    ({"Bindings": ["0.0.0.0"]}, "Bindings"),
    ({"ProtocolLoggingLevel": "Loud"}, "ProtocolLoggingLevel"),
])
def test_exchange_validation_rejects_the_change_and_keeps_the_connector(lab, params, problem):
    before = rc_of(lab, "CMHYBD01", DF).model_copy(deep=True)
    err = rejected(lab, "Set-ReceiveConnector", {"Identity": DF, **params})
    assert problem in err.problem
    assert rc_of(lab, "CMHYBD01", DF) == before  # all or nothing


# --- send connectors ---------------------------------------------------------------------------------------

def test_smart_hosts_turn_dns_routing_off(lab):
    apply_change(lab, "Set-SendConnector", {"Identity": O365,
                                            "SmartHosts": ["cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com"]})
    o365 = sc_of(lab, O365)
    assert o365.dns_routing_enabled is False and o365.smart_hosts


def test_domain_validation_over_smart_hosts_needs_tls_domain(lab):
    err = rejected(lab, "Set-SendConnector", {"Identity": O365, "SmartHosts": ["eop.example"], "TlsDomain": None})
    assert err.problem == "TlsDomain is required with DomainValidation over smart hosts"
    assert sc_of(lab, O365).smart_hosts == [] and sc_of(lab, O365).dns_routing_enabled


@pytest.mark.parametrize("params, problem", [
    ({"RequireTLS": False}, "TlsAuthLevel can only be set when RequireTLS is $true"),
    ({"IgnoreSTARTTLS": True}, "IgnoreSTARTTLS must be $false when RequireTLS is $true"),
    ({"DNSRoutingEnabled": False}, "needs SmartHosts"),
    ({"AddressSpaces": ["smtp:contoso.com;abc"]}, "cost 'abc'"),
    ({"SourceTransportServers": ["CMHYBD09"]}, "CMHYBD09"),
])
def test_send_connector_validation(lab, params, problem):
    before = sc_of(lab, O365).model_copy(deep=True)
    assert problem in rejected(lab, "Set-SendConnector", {"Identity": O365, **params}).problem
    assert sc_of(lab, O365) == before


def test_new_and_remove_send_connector(lab):
    apply_change(lab, "New-SendConnector", {"Name": "To Contoso", "AddressSpaces": ["smtp:contoso.com;5"],
                                            "SmartHosts": ["[10.10.10.100]"], "SourceTransportServers": ["CMHYBD01"]})
    assert [str(a) for a in sc_of(lab, "To Contoso").address_spaces] == ["SMTP:contoso.com;5"]
    assert "exists" in rejected(lab, "New-SendConnector", {"Name": "to contoso", "AddressSpaces": ["*"]}).problem
    apply_change(lab, "Remove-SendConnector", {"Identity": "To Contoso"})
    assert "no send connector" in rejected(lab, "Remove-SendConnector", {"Identity": "To Contoso"}).problem


# --- lab DNS and certificates --------------------------------------------------------------------------------

def public_zone(lab, zone: str):
    dns = next(d for d in lab.dns_servers if d.name == "PUBLIC-DNS")
    return next(z for z in dns.zones if z.name == zone)


def test_set_lab_dns_record_replaces_the_name_and_type(lab):
    apply_change(lab, "Set-LabDnsRecord", {"Server": "PUBLIC-DNS", "ZoneName": "cloudmonkeys.xyz",
                                           "Name": "mail.cloudmonkeys.xyz", "Type": "A", "Value": "198.51.100.7"})
    records = [(r.type, r.value) for r in public_zone(lab, "cloudmonkeys.xyz").records
               if r.name == "mail.cloudmonkeys.xyz"]
    assert records == [("A", "198.51.100.7")]


def test_remove_lab_dns_record(lab):
    apply_change(lab, "Remove-LabDnsRecord", {"Server": "PUBLIC-DNS", "ZoneName": "cloudmonkeys.xyz",
                                              "Name": "cloudmonkeys.xyz", "Type": "MX"})
    zone = public_zone(lab, "cloudmonkeys.xyz")
    assert not [r for r in zone.records if r.type == "MX"]
    assert [r for r in zone.records if r.type == "TXT"]  # only that type went
    err = rejected(lab, "Remove-LabDnsRecord", {"Server": "PUBLIC-DNS", "ZoneName": "cloudmonkeys.xyz",
                                                "Name": "cloudmonkeys.xyz", "Type": "MX"})
    assert "no record cloudmonkeys.xyz MX" in err.problem


@pytest.mark.parametrize("params, problem", [
    ({"ZoneName": "cloudmonkeys.xyz", "Name": "x", "Type": "A", "Value": "1.2.3.4"}, "-Server is required"),
    ({"Server": "NS9", "ZoneName": "cloudmonkeys.xyz", "Name": "x", "Type": "A", "Value": "1.2.3.4"}, "no DNS server"),
    ({"Server": "DC01", "ZoneName": "fabrikam.com", "Name": "x", "Type": "A", "Value": "1.2.3.4"}, "no zone"),
    ({"Server": "DC01", "ZoneName": "cloudmonkeys.xyz", "Name": "x", "Type": "AAAA", "Value": "::1"}, "Type"),
])
def test_set_lab_dns_record_errors(lab, params, problem):
    assert problem in rejected(lab, "Set-LabDnsRecord", params).problem


def test_certificate_cmdlets(lab):
    apply_change(lab, "New-LabCertificate", {"Name": "mail-renewed", "Subject": "CN=mail.cloudmonkeys.xyz",
                                             "Sans": ["mail.cloudmonkeys.xyz"], "Issuer": "public-issuing",
                                             "NotBefore": "-1d", "NotAfter": "+400d"})
    apply_change(lab, "Import-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-renewed",
                                                     "HasPrivateKey": False})
    store = lab.organization.server("CMHYBD01").certificates
    assert (store[-1].certificate, store[-1].has_private_key) == ("mail-renewed", False)  # appended, as Windows does
    apply_change(lab, "Remove-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "mail-renewed"})
    assert "mail-renewed" not in [e.certificate for e in lab.organization.server("CMHYBD01").certificates]
    apply_change(lab, "Set-LabCertificate", {"Identity": "mail-cloudmonkeys", "Revoked": True})
    assert lab.certificate("mail-cloudmonkeys").revoked


@pytest.mark.parametrize("cmdlet, params, problem", [
    ("Import-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "nope"}, "not defined"),
    ("Import-ExchangeCertificate", {"Certificate": "eop"}, "-Server is required"),
    ("Remove-ExchangeCertificate", {"Server": "CMHYBD01", "Certificate": "eop"}, "has no certificate 'eop'"),
    ("New-LabCertificate", {"Name": "eop", "Subject": "CN=x"}, "exists"),
    ("New-LabCertificate", {"Name": "x", "Subject": "CN=x", "Issuer": "nope"}, "issuer 'nope' is not a lab CA"),
])
def test_certificate_cmdlet_errors(lab, cmdlet, params, problem):
    assert problem in rejected(lab, cmdlet, params).problem


def test_a_rejected_change_leaves_the_lab_usable(lab):
    """A change that fails the lab's cross checks is not half applied (the next change still works)."""
    before = lab.model_dump()
    rejected(lab, "New-LabCertificate", {"Name": "x", "Subject": "CN=x", "Issuer": "nope"})
    assert lab.model_dump() == before
    apply_change(lab, "Set-ReceiveConnector", {"Identity": DF, "Fqdn": "mail.cloudmonkeys.xyz"})


def test_unknown_cmdlet_lists_the_known_ones(lab):
    err = rejected(lab, "Set-ReceiveConector", {"Identity": DF})
    assert err.where == "Set-ReceiveConector"
    for name in ("Set-ReceiveConnector", "Set-SendConnector", "Set-LabDnsRecord", "Import-ExchangeCertificate"):
        assert name in err.problem and name in known_cmdlets()


def test_cmdlet_names_are_case_insensitive(lab):
    apply_change(lab, "set-receiveconnector", {"identity": DF, "fqdn": "x.example"})
    assert rc_of(lab, "CMHYBD01", DF).fqdn == "x.example"


def test_service_settings(lab):
    apply_change(lab, "Set-TransportService", {"Identity": "CMHYBD01", "InternalDNSServers": ["192.168.1.11"],
                                               "InternalDNSAdapterEnabled": False})
    cfg = lab.organization.server("CMHYBD01").transport
    assert (cfg.internal_dns_servers, cfg.internal_dns_adapter_enabled) == (["192.168.1.11"], False)
    assert "no Front End Transport" in rejected(lab, "Set-FrontendTransportService",
                                                {"Identity": "CMEDGE01", "InternalDNSServers": ["1.1.1.1"]}).problem
    assert "InternalDNSServers" in rejected(lab, "Set-TransportService",
                                            {"Identity": "CMHYBD01", "InternalDNSServers": ["dc01"]}).problem


# --- AddressSpace parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("smtp:contoso.com;5", ("SMTP", "contoso.com", 5)),
    ("SMTP:Contoso.COM", ("SMTP", "contoso.com", 1)),
    ("*", ("SMTP", "*", 1)),
    ("*.contoso.com;100", ("SMTP", "*.contoso.com", 100)),
    ("smtp:--;100", ("SMTP", "--", 100)),
])
def test_address_space_parsing(text, expected):
    a = AddressSpace.model_validate(text)
    assert (a.type, a.domain, a.cost) == expected


@pytest.mark.parametrize("text, problem", [
    ("smtp:contoso.com;abc", "cost 'abc' in address space 'smtp:contoso.com;abc' is not a number"),
    ("smtp:contoso.com;0", "greater than or equal to 1"),
    ("smtp:contoso.com;101", "less than or equal to 100"),
])
def test_bad_address_space_cost(text, problem):
    with pytest.raises(ValidationError, match=problem):
        AddressSpace.model_validate(text)


domains = st.from_regex(r"\A(\*|\*\.[a-z0-9-]{1,10}(\.[a-z]{2,5}){1,2}|[a-z0-9-]{1,10}(\.[a-z]{2,5}){1,2}|--)\Z")


@given(domains, st.integers(1, 100))
def test_address_space_text_round_trip(domain, cost):
    a = AddressSpace.model_validate(f"smtp:{domain};{cost}")
    assert (a.domain, a.cost) == (domain, cost)
    assert AddressSpace.model_validate(str(a)) == a


# --- TimeSpan -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("00:10:00", timedelta(minutes=10)),
    ("2.00:00:00", timedelta(days=2)),
    ("-30.00:00:00", -timedelta(days=30)),
    ("+00:00:05", timedelta(seconds=5)),
    ("00:00:01.5", timedelta(seconds=1.5)),
    ("10m", timedelta(minutes=10)),
    ("4h", timedelta(hours=4)),
    ("2d", timedelta(days=2)),
    ("-30d", -timedelta(days=30)),
    ("250ms", timedelta(milliseconds=250)),
])
def test_parse_timespan(text, expected):
    assert parse_timespan(text) == expected


@pytest.mark.parametrize("text", ["soon", "", "10", "1:2:3", "00:60", "2 days", "1w"])
def test_bad_timespan_names_the_text_and_the_forms(text):
    with pytest.raises(ValueError, match="not a TimeSpan") as info:
        parse_timespan(text)
    assert repr(text) in str(info.value) and "2.00:00:00" in str(info.value)


def test_format_timespan_is_exchanges_format():
    assert format_timespan(timedelta(minutes=10)) == "00:10:00"
    assert format_timespan(timedelta(days=2)) == "2.00:00:00"
    assert format_timespan(-timedelta(days=30, hours=1)) == "-30.01:00:00"


@given(st.integers(-10**8, 10**8))
def test_timespan_round_trip(seconds):
    td = timedelta(seconds=seconds)
    assert parse_timespan(format_timespan(td)) == td


def test_resolve_time(lab):
    assert resolve_time("+00:01:00", lab.start) == lab.start + timedelta(minutes=1)
    assert resolve_time("2026-05-02T00:00:00Z", lab.start).isoformat() == "2026-05-02T00:00:00+00:00"
    assert resolve_time("2026-05-02T00:00:00", lab.start).utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="not a time"):
        resolve_time("tomorrow", lab.start)
