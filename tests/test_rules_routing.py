"""On-prem routing, no sockets: send connector selection and where each recipient goes.

Selection rules: transport-behavior.md §2.1 (most specific address space, then cost, then the local
source server, then the lowest name; `--` only on an Edge; no match -> Unreachable); queue names and
next hops: §6.1; the default lab's routes: seed 001 §1.
"""

from __future__ import annotations

import re

import pytest
from conftest import SEEDS

from labsim.rules import replies as R
from labsim.rules.routing import (
    address_space_match,
    route_recipient,
    select_send_connector,
)
from labsim.topology.changes import apply_change
from labsim.topology.model import ExchangeServer, SendConnector

ACCEPTED = {"cloudmonkeys.xyz"}


def sc(name: str, *spaces: str, **kw) -> SendConnector:
    kw.setdefault("source_transport_servers", ["CMHYBD01"])
    return SendConnector(name=name, address_spaces=list(spaces), **kw)


def choose(connectors, domain: str, *, local: str = "CMHYBD01", size: int = 1000, edge: bool = False):
    chosen = select_send_connector(connectors, domain, local_server=local, message_size=size,
                                   accepted=ACCEPTED, edge=edge)
    return chosen.name if chosen else None


# --- send connector selection -----------------------------------------------------------------------

SPECIFICITY = [sc("Any", "smtp:*;1"), sc("Contoso", "smtp:*.contoso.com;5"),
               sc("Marketing", "smtp:marketing.contoso.com;10")]


@pytest.mark.parametrize("domain, expected", [
    ("marketing.contoso.com", "Marketing"),   # exact beats wildcard even at a higher cost
    ("sales.contoso.com", "Contoso"),
    ("contoso.com", "Contoso"),               # *.contoso.com covers the domain itself
    ("a.b.contoso.com", "Contoso"),
    ("fabrikam.com", "Any"),
    ("notcontoso.com", "Any"),                # no suffix match without the dot
])
def test_most_specific_address_space_wins(domain, expected):
    assert choose(SPECIFICITY, domain) == expected
    assert choose(list(reversed(SPECIFICITY)), domain) == expected


def test_deeper_wildcard_is_more_specific():
    connectors = [sc("Shallow", "smtp:*.contoso.com;1"), sc("Deep", "smtp:*.eu.contoso.com;50")]
    assert choose(connectors, "mail.eu.contoso.com") == "Deep"
    assert choose(connectors, "mail.us.contoso.com") == "Shallow"


def test_lower_cost_wins_between_equally_specific_spaces():
    connectors = [sc("A expensive", "smtp:*;10"), sc("Z cheap", "smtp:*;2")]
    assert choose(connectors, "fabrikam.com") == "Z cheap"


def test_local_source_server_wins_at_equal_cost():
    connectors = [sc("A remote", "smtp:*;5", source_transport_servers=["CMHYBD02"]),
                  sc("B local", "smtp:*;5", source_transport_servers=["CMHYBD01"])]
    assert choose(connectors, "fabrikam.com", local="CMHYBD01") == "B local"
    assert choose(connectors, "fabrikam.com", local="cmhybd02") == "A remote"  # server names are case-insensitive


def test_lowest_name_breaks_the_last_tie_case_insensitively():
    connectors = [sc("beta", "smtp:*;5"), sc("Alpha", "smtp:*;5"), sc("gamma", "smtp:*;5")]
    assert choose(connectors, "fabrikam.com") == "Alpha"


def test_disabled_and_too_small_connectors_are_skipped():
    connectors = [sc("Disabled", "smtp:fabrikam.com;1", enabled=False),
                  sc("Small", "smtp:fabrikam.com;1", max_message_size=1000),
                  sc("Fallback", "smtp:*;100")]
    assert choose(connectors, "fabrikam.com", size=500) == "Small"
    assert choose(connectors, "fabrikam.com", size=5000) == "Fallback"


def test_non_smtp_address_spaces_never_route_smtp_mail():
    assert choose([sc("X400", "X400:c=US;a= ;p=Contoso;1")], "contoso.com") is None


def test_double_dash_is_only_for_the_edge():
    connectors = [sc("Inbound", "smtp:--;100", smart_hosts=["--"])]
    assert choose(connectors, "cloudmonkeys.xyz") is None
    assert choose(connectors, "cloudmonkeys.xyz", edge=True) == "Inbound"
    assert choose(connectors, "fabrikam.com", edge=True) is None  # -- covers accepted domains only


def test_no_matching_connector():
    assert choose([sc("Only contoso", "smtp:contoso.com;1")], "fabrikam.com") is None
    assert choose([], "fabrikam.com") is None


@pytest.mark.parametrize("space, domain, matches", [
    ("*", "anything.example", True),
    ("contoso.com", "contoso.com", True),
    ("contoso.com", "mail.contoso.com", False),
    ("*.contoso.com", "mail.contoso.com", True),
    ("--", "cloudmonkeys.xyz", True),
    ("--", "fabrikam.com", False),
])
def test_address_space_match(space, domain, matches):
    assert (address_space_match(space, domain, ACCEPTED) is not None) is matches


# --- routes of the default lab -----------------------------------------------------------------------

def route(lab, server: str, rcpt: str):
    org = lab.organization
    return route_recipient(org, org.server(server), rcpt, size=2000)


def test_local_mailbox_is_delivered_to_its_database(lab):
    r = route(lab, "CMHYBD01", "Raghu@CloudMonkeys.xyz")
    assert (r.delivery_type, r.next_hop_domain, r.target_servers) == ("SmtpDeliveryToMailbox", "db01", ("CMHYBD01",))
    assert r.recipient == "raghu@cloudmonkeys.xyz" and r.error is None


def test_remote_mailbox_goes_to_office_365_at_its_target_address(lab):
    r = route(lab, "CMHYBD01", "ramki@cloudmonkeys.xyz")
    assert r.recipient == "ramki@cloudfield.mail.onmicrosoft.com"  # targetAddress rewrite
    assert r.connector.name == "Outbound to Office 365"
    assert (r.delivery_type, r.next_hop_domain) == ("DnsConnectorDelivery", "cloudfield.mail.onmicrosoft.com")
    assert r.dns_domain == "cloudfield.mail.onmicrosoft.com"


def test_internet_recipient_is_relayed_to_the_edge(lab):
    r = route(lab, "CMHYBD01", "alex@fabrikam.com")
    assert r.delivery_type == "SmtpRelayWithinAdSiteToEdge"
    assert r.next_hop_domain == "EdgeSync - Default-First-Site-Name to Internet"
    assert r.target_servers == ("CMEDGE01",)


def test_unknown_recipient_in_an_authoritative_domain_is_not_found(lab):
    r = route(lab, "CMHYBD01", "nobody@cloudmonkeys.xyz")
    assert r.error == "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"


def test_edge_sends_accepted_domains_inbound_to_the_site(lab):
    r = route(lab, "CMEDGE01", "raghu@cloudmonkeys.xyz")
    assert r.connector.name == "EdgeSync - Inbound to Default-First-Site-Name"
    assert r.delivery_type == "SmartHostConnectorDelivery" and r.target_servers == ("CMHYBD01",)


def test_edge_sends_internet_mail_by_mx(lab):
    r = route(lab, "CMEDGE01", "alex@fabrikam.com")
    assert r.connector.name == "EdgeSync - Default-First-Site-Name to Internet"
    assert (r.delivery_type, r.next_hop_domain, r.dns_domain) == ("DnsConnectorDelivery", "fabrikam.com", "fabrikam.com")


def test_no_connector_means_unreachable_with_exchanges_text(lab):
    apply_change(lab, "Remove-SendConnector", {"Identity": "EdgeSync - Default-First-Site-Name to Internet"})
    r = route(lab, "CMHYBD01", "alex@fabrikam.com")
    assert (r.delivery_type, r.next_hop_domain) == ("Unreachable", "Unreachable Domain")
    assert r.error == "A matching connector cannot be found to route the external recipient"


def test_seed_001_error_8_unreachable_then_fixed_by_an_address_space(lab):
    """Seed 001 error 8: mail to cloudfield.onmicrosoft.com lands in Unreachable; the fix adds the space."""
    seed = " ".join((SEEDS / "001_f7d6d886c5fd2d17.txt").read_text(encoding="utf-8").split())
    assert R.NO_MATCHING_CONNECTOR in seed
    apply_change(lab, "Remove-SendConnector", {"Identity": "EdgeSync - Default-First-Site-Name to Internet"})
    assert route(lab, "CMHYBD01", "ramki@cloudfield.onmicrosoft.com").delivery_type == "Unreachable"
    fix = re.search(r"-AddressSpaces '([^']+)','([^']+)'", seed)
    apply_change(lab, "Set-SendConnector", {"Identity": "Outbound to Office 365",
                                            "AddressSpaces": [fix.group(1), fix.group(2), "smtp:cloudfield.mail.onmicrosoft.com;1"]})
    r = route(lab, "CMHYBD01", "ramki@cloudfield.onmicrosoft.com")
    assert (r.delivery_type, r.connector.name, r.next_hop_domain) == \
        ("DnsConnectorDelivery", "Outbound to Office 365", "cloudfield.onmicrosoft.com")


def test_smart_host_connector_queues_by_its_smart_hosts(lab):
    apply_change(lab, "Set-SendConnector", {"Identity": "Outbound to Office 365",
                                            "SmartHosts": ["cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com",
                                                           "[52.101.194.15]"]})
    r = route(lab, "CMHYBD01", "ramki@cloudmonkeys.xyz")
    assert r.delivery_type == "SmartHostConnectorDelivery"
    assert r.next_hop_domain == "cloudfield-mail-onmicrosoft-com.mail.protection.outlook.com,[52.101.194.15]"


def test_connector_hosted_on_another_mailbox_server_is_relayed_to_its_source(lab):
    lab.organization.servers.append(ExchangeServer(name="CMHYBD02", fqdn="cmhybd02.cloudmonkeys.xyz",
                                                   ip="192.168.1.14", databases=["DB02"]))
    apply_change(lab, "Set-SendConnector", {"Identity": "Outbound to Office 365",
                                            "SourceTransportServers": ["CMHYBD02"]})
    r = route(lab, "CMHYBD01", "ramki@cloudmonkeys.xyz")
    assert (r.delivery_type, r.next_hop_domain, r.target_servers) == \
        ("SmtpRelayToConnectorSourceServers", "Outbound to Office 365", ("CMHYBD02",))
    assert route(lab, "CMHYBD02", "ramki@cloudmonkeys.xyz").delivery_type == "DnsConnectorDelivery"
