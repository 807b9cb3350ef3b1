"""Cmdlets for the lab's network, DNS and reputation: the world a DNS/routing/network fault lives in.

Real Exchange/Windows cmdlets where they exist (`Add-IPBlockListProvider`, `Set-DnsClientServerAddress`),
lab verbs for what only a lab has (link rules, load balancers, extra DNS servers and zones, the
tenant's service platform). Each one validates with the model's rules and raises
`TopologyError(where, problem)` naming the cmdlet, the identity and the parameter.

Hosts (DNS servers, load balancers) get their real loopback addresses when the lab starts, so
create them before the timeline (changes without `at`); rules, zones, records, modes and NAT
targets may change at any time.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import TopologyError
from ..rules.network import lab_hosts, validate_host_spec
from ..rules.reputation import query_name
from .cmdlet_kit import (
    _by_name,
    _find_in,
    _pop_identity,
    _refuse_duplicate,
    _remove_in,
    _server,
    _set_in,
    _validate,
    cmdlet,
    set_fields,
)
from .model import (
    AcceptedDomainType,
    DnsServer,
    DnsZone,
    IPBlockListProvider,
    IPListEntry,
    Lab,
    LinkRule,
    LoadBalancer,
    NatRule,
)
from .values import MAX_DELAY_MS

__all__: list[str] = []


def _pop(params: dict[str, Any], *names: str) -> Any:
    for k in list(params):
        if k.lower() in {n.lower() for n in names}:
            return params.pop(k)
    return None


def _check_specs(lab: Lab, rule: LinkRule, where: str) -> None:
    hosts = lab_hosts(lab)
    for label, spec in (("Source", rule.source), ("Destination", rule.destination)):
        problem = validate_host_spec(spec, hosts)
        if problem:
            raise TopologyError(where, f"-{label}: {problem}")


# --- link rules (firewall and toxics) ---------------------------------------------------------------
@cmdlet("New-LabNetworkRule")
def new_network_rule(lab: Lab, params: dict[str, Any]) -> str:
    """A firewall rule or link toxic between hosts: -Action Refuse|Drop|Reset|Latency|Bandwidth|SlowClose."""
    where = "New-LabNetworkRule"
    rule = _validate(LinkRule, params, where)
    _refuse_duplicate(lab.network.rules, rule.name, where, "network rule")
    _check_specs(lab, rule, f"{where} {rule.name}")
    lab.network.rules.append(rule)
    return rule.name


@cmdlet("Set-LabNetworkRule")
def set_network_rule(lab: Lab, params: dict[str, Any]) -> str:
    """Change a link rule (-Identity): action, source, destination, port, amounts."""
    rule, at = _find_in(lab.network.rules, params, "Set-LabNetworkRule", "network rule")
    set_fields(rule, params, at)
    _check_specs(lab, rule, at)
    return rule.name


@cmdlet("Remove-LabNetworkRule")
def remove_network_rule(lab: Lab, params: dict[str, Any]) -> str:
    """Remove a link rule by name (-Identity)."""
    return _remove_in(lab.network.rules, params, "Remove-LabNetworkRule", "network rule")


@cmdlet("Set-LabSiteLatency")
def set_site_latency(lab: Lab, params: dict[str, Any]) -> str:
    """-Sites onprem-exo -LatencyMs 80: the one-way latency between two sites."""
    where = "Set-LabSiteLatency"
    sites = _pop(params, "Sites")
    ms = _pop(params, "LatencyMs")
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: Sites, LatencyMs)")
    order = ["onprem", "exo", "internet"]
    parts = str(sites or "").lower().split("-")
    if len(parts) != 2 or any(p not in order for p in parts):
        raise TopologyError(where, f"-Sites {sites!r} is not two of onprem, exo, internet joined by '-'")
    try:
        value = float(ms) if not isinstance(ms, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value):
        raise TopologyError(where, f"-LatencyMs {ms!r} is not a number")
    if not 0 <= value <= MAX_DELAY_MS:
        raise TopologyError(where, f"-LatencyMs {ms!r} is outside 0..{MAX_DELAY_MS:.0f} (milliseconds, one way)")
    key = "-".join(sorted(parts, key=order.index))
    lab.network.latency_ms = {**lab.network.latency_ms, key: value}
    return key


# --- load balancers and port forwarding --------------------------------------------------------------
@cmdlet("New-LabLoadBalancer")
def new_load_balancer(lab: Lab, params: dict[str, Any]) -> str:
    """A TCP load balancer VIP in front of Exchange servers (seed 003)."""
    where = "New-LabLoadBalancer"
    lb = _validate(LoadBalancer, params, where)
    taken = {h.ip for h in lab_hosts(lab)} | {r.public_ip for r in lab.network.nat}
    if lb.vip in taken:
        raise TopologyError(f"{where} {lb.name}", f"-Vip {lb.vip} is already used by another lab host")
    if any(h.name.lower() == lb.name.lower() for h in lab_hosts(lab)):
        raise TopologyError(f"{where} {lb.name}", "a lab host with this name exists")
    lab.network.load_balancers.append(lb)
    return lb.name


@cmdlet("Set-LabLoadBalancer")
def set_load_balancer(lab: Lab, params: dict[str, Any]) -> str:
    """Change a load balancer (-Identity): its backends and mode; the VIP cannot change."""
    lb, at = _find_in(lab.network.load_balancers, params, "Set-LabLoadBalancer", "load balancer")
    if any(k.lower() == "vip" for k in params):
        raise TopologyError(at, "-Vip cannot change while the lab exists; create a new balancer")
    set_fields(lb, params, at)
    return lb.name


@cmdlet("Set-LabNatRule")
def set_nat_rule(lab: Lab, params: dict[str, Any]) -> str:
    """-PublicIp 27.7.57.241 -Server CMHYBD01|LB01 [-Ports 25]: where the router forwards a public address."""
    where = "Set-LabNatRule"
    public = _pop(params, "PublicIp", "Identity")
    if public is None:
        raise TopologyError(where, "-PublicIp is required")
    rule = next((r for r in lab.network.nat if r.public_ip == str(public)), None)
    if rule is None:
        rule = _validate(NatRule, {"PublicIp": str(public), **params}, f"{where} {public}")
        lab.network.nat.append(rule)
    else:
        set_fields(rule, params, f"{where} {public}")
    return rule.public_ip


@cmdlet("Remove-LabNatRule")
def remove_nat_rule(lab: Lab, params: dict[str, Any]) -> str:
    """Remove the router's port forwarding for a public address (-PublicIp)."""
    where = "Remove-LabNatRule"
    public = _pop(params, "PublicIp", "Identity")
    rule = next((r for r in lab.network.nat if r.public_ip == str(public)), None)
    if rule is None:
        raise TopologyError(where, f"no port forwarding for {public!r}")
    lab.network.nat.remove(rule)
    return rule.public_ip


# --- DNS servers, zones, clients ---------------------------------------------------------------------
@cmdlet("New-LabDnsServer")
def new_dns_server(lab: Lab, params: dict[str, Any]) -> str:
    """A DNS server host (an ISP's resolver: -Site internet -Forwarders 8.8.8.8, no zones of its own)."""
    where = "New-LabDnsServer"
    server = _validate(DnsServer, params, where)
    if any(h.name.lower() == server.name.lower() for h in lab_hosts(lab)):
        raise TopologyError(f"{where} {server.name}", "a lab host with this name exists")
    if any(h.ip == server.ip for h in lab_hosts(lab)):
        raise TopologyError(f"{where} {server.name}", f"-Ip {server.ip} is already used by another lab host")
    lab.dns_servers.append(server)
    return server.name


@cmdlet("Set-LabDnsServer")
def set_dns_server(lab: Lab, params: dict[str, Any]) -> str:
    """-Mode running|servfail|drop, -Running $false (stopped: ICMP port unreachable), -Forwarders."""
    server, at = _find_in(lab.dns_servers, params, "Set-LabDnsServer", "DNS server")
    if any(k.lower() in ("ip", "site") for k in params):
        raise TopologyError(at, "-Ip and -Site cannot change while the lab exists")
    set_fields(server, params, at)
    return server.name


@cmdlet("New-LabDnsZone")
def new_dns_zone(lab: Lab, params: dict[str, Any]) -> str:
    """-Server PUBLIC-DNS -Name zen.spamhaus.org: make a server authoritative for a zone."""
    where = "New-LabDnsZone"
    server_name = _pop(params, "Server")
    if server_name is None:
        raise TopologyError(where, "-Server is required (a DNS server, e.g. DC01 or PUBLIC-DNS)")
    server = _by_name(lab.dns_servers, str(server_name), "name", "DNS server", where)
    zone = _validate(DnsZone, params, where)
    if any(z.name.lower().rstrip(".") == zone.name.lower().rstrip(".") for z in server.zones):
        raise TopologyError(where, f"{server.name} already has a zone {zone.name}")
    server.zones.append(zone)
    return f"{server.name}:{zone.name}"


@cmdlet("Remove-LabDnsZone")
def remove_dns_zone(lab: Lab, params: dict[str, Any]) -> str:
    """Stop a lab DNS server being authoritative for a zone (-Server, -Name)."""
    where = "Remove-LabDnsZone"
    server_name = _pop(params, "Server")
    name = _pop(params, "Name", "ZoneName", "Identity")
    if server_name is None or name is None:
        raise TopologyError(where, "-Server and -Name are required")
    server = _by_name(lab.dns_servers, str(server_name), "name", "DNS server", where)
    zone = _by_name(server.zones, str(name), "name", f"zone on {server.name}", where)
    server.zones.remove(zone)
    return f"{server.name}:{zone.name}"


@cmdlet("Set-DnsClientServerAddress")
def set_dns_client_server_address(lab: Lab, params: dict[str, Any]) -> str:
    """Windows' cmdlet with the lab's -Server: the DNS servers of a server's network adapter, i.e.
    what transport uses while InternalDNSAdapterEnabled/ExternalDNSAdapterEnabled are $true."""
    where = "Set-DnsClientServerAddress"
    server_name = _pop(params, "Server", "CimSession", "ComputerName")
    if server_name is None:
        raise TopologyError(where, "-Server is required (the Exchange server whose adapter to set)")
    server = _server(lab, str(server_name), where)
    _pop(params, "InterfaceAlias", "InterfaceIndex")  # one adapter per lab server
    addresses = _pop(params, "ServerAddresses")
    reset = _pop(params, "ResetServerAddresses")
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: Server, ServerAddresses, "
                                   "ResetServerAddresses, InterfaceAlias)")
    if reset:
        addresses = []
    if addresses is None:
        raise TopologyError(where, "-ServerAddresses (or -ResetServerAddresses) is required")
    values = [addresses] if isinstance(addresses, str) else list(addresses)
    set_fields(server, {"AdapterDnsServers": values}, f"{where} {server.name}")
    return server.name


# --- reputation ---------------------------------------------------------------------------------------
@cmdlet("Add-IPBlockListProvider")
def add_ip_block_list_provider(lab: Lab, params: dict[str, Any]) -> str:
    """Connection filtering on an Edge: -Server CMEDGE01 -Name Spamhaus -LookupDomain zen.spamhaus.org."""
    where = "Add-IPBlockListProvider"
    server_name = _pop(params, "Server")
    if server_name is None:
        edges = [s for s in lab.organization.servers if s.role == "Edge"]
        if len(edges) != 1:
            raise TopologyError(where, "-Server is required (the Edge Transport server)")
        server = edges[0]
    else:
        server = _server(lab, str(server_name), where)
    if server.role != "Edge":
        raise TopologyError(where, f"{server.name} is not an Edge Transport server; IP Block List providers "
                                   "are used by the Connection Filtering agent on Edge servers")
    provider = _validate(IPBlockListProvider, params, where)
    if any(p.name.lower() == provider.name.lower() for p in server.ip_block_list_providers):
        raise TopologyError(where, f"{server.name} already has a provider named {provider.name!r}")
    if "priority" not in {k.lower() for k in params}:
        provider.priority = len(server.ip_block_list_providers) + 1
    server.ip_block_list_providers.append(provider)
    return f"{server.name}\\{provider.name}"


def _provider(lab: Lab, params: dict[str, Any], where: str) -> tuple[Any, IPBlockListProvider]:
    identity = _pop_identity(params, where)
    server_name, sep, name = identity.partition("\\")
    for s in lab.organization.servers:
        if sep and s.name.lower() != server_name.lower():
            continue
        for p in s.ip_block_list_providers:
            if p.name.lower() == (name if sep else identity).lower():
                return s, p
    raise TopologyError(where, f"no IP Block List provider {identity!r}")


@cmdlet("Set-IPBlockListProvider")
def set_ip_block_list_provider(lab: Lab, params: dict[str, Any]) -> str:
    """Set-IPBlockListProvider on an Edge (-Server, -Identity, -Enabled, -RejectionResponse, ...)."""
    where = "Set-IPBlockListProvider"
    server, provider = _provider(lab, params, where)
    set_fields(provider, params, f"{where} {provider.name}")
    return f"{server.name}\\{provider.name}"


@cmdlet("Remove-IPBlockListProvider")
def remove_ip_block_list_provider(lab: Lab, params: dict[str, Any]) -> str:
    """Remove an Edge's IP Block List provider (-Server, -Identity)."""
    where = "Remove-IPBlockListProvider"
    server, provider = _provider(lab, params, where)
    server.ip_block_list_providers.remove(provider)
    return f"{server.name}\\{provider.name}"


# --- IP Allow List (Edge) -----------------------------------------------------------------------------
# Add-/Remove-IPAllowListEntry and Set-IPAllowListConfig as Exchange has them (Edge Transport only):
# an entry is one -IPAddress or one -IPRange (address, a-b range or CIDR), with an optional
# -ExpirationTime and -Comment; Identity is an integer assigned on add. The Connection Filtering
# agent checks the list when a session connects; an address on it skips the block list providers
# (rules.reputation.on_ip_allow_list).
def _edge(lab: Lab, params: dict[str, Any], where: str) -> Any:
    server_name = _pop(params, "Server")
    if server_name is None:
        edges = [s for s in lab.organization.servers if s.role == "Edge"]
        if len(edges) != 1:
            raise TopologyError(where, "-Server is required (the Edge Transport server)")
        return edges[0]
    server = _server(lab, str(server_name), where)
    if server.role != "Edge":
        raise TopologyError(where, f"{server.name} is not an Edge Transport server; the IP Allow list is used by "
                                   "the Connection Filtering agent on Edge servers")
    return server


@cmdlet("Add-IPAllowListEntry")
def add_ip_allow_list_entry(lab: Lab, params: dict[str, Any]) -> str:
    """-IPAddress 203.0.113.25 | -IPRange 203.0.113.0/24 [-ExpirationTime] [-Comment] [-Server CMEDGE01]."""
    where = "Add-IPAllowListEntry"
    server = _edge(lab, params, where)
    address, ip_range = _pop(params, "IPAddress"), _pop(params, "IPRange")
    if (address is None) == (ip_range is None):
        raise TopologyError(where, "give one of -IPAddress or -IPRange")
    if address is not None and any(c in str(address) for c in "-/"):
        raise TopologyError(where, f"-IPAddress {address!r} is not one IP address (use -IPRange for a range)")
    entries = server.ip_allow_list_entries
    identity = max((e.identity for e in entries), default=0) + 1
    entry = _validate(IPListEntry, {**params, "Identity": identity, "IPRange": str(address or ip_range)}, where)
    if any(e.ip_range == entry.ip_range for e in entries):
        raise TopologyError(where, f"{entry.ip_range} is already on the IP Allow list of {server.name}")
    entries.append(entry)
    return f"{server.name}\\{entry.identity}"


@cmdlet("Remove-IPAllowListEntry")
def remove_ip_allow_list_entry(lab: Lab, params: dict[str, Any]) -> str:
    """-Identity <integer> (as Get-IPAllowListEntry shows it) [-Server CMEDGE01]."""
    where = "Remove-IPAllowListEntry"
    server = _edge(lab, params, where)
    identity = _pop_identity(params, where)
    for e in server.ip_allow_list_entries:
        if str(e.identity) == identity.strip():
            server.ip_allow_list_entries.remove(e)
            return f"{server.name}\\{e.identity}"
    raise TopologyError(f"{where} {identity}", f"no IP Allow list entry with Identity {identity} on {server.name}")


@cmdlet("Set-IPAllowListConfig")
def set_ip_allow_list_config(lab: Lab, params: dict[str, Any]) -> str:
    """-Enabled, -ExternalMailEnabled, -InternalMailEnabled [-Server CMEDGE01]."""
    where = "Set-IPAllowListConfig"
    server = _edge(lab, params, where)
    set_fields(server.ip_allow_list_config, params, f"{where} {server.name}")
    return server.name


# --- EOP's connection filter policy, and a block list's own removal --------------------------------------
@cmdlet("Set-HostedConnectionFilterPolicy")
def set_hosted_connection_filter_policy(lab: Lab, params: dict[str, Any]) -> str:
    """-Identity Default -IPAllowList a,b | @{Add=...;Remove=...} -IPBlockList ... -EnableSafeList."""
    where = "Set-HostedConnectionFilterPolicy"
    policy = lab.tenant.connection_filter_policy
    identity = next((str(params.pop(k)) for k in list(params) if k.lower() == "identity"), policy.name)
    if identity.lower() != policy.name.lower():
        raise TopologyError(where, f"no connection filter policy {identity!r} (the tenant has {policy.name!r})")
    for key in list(params):
        if key.lower() in ("ipallowlist", "ipblocklist") and isinstance(params[key], dict):
            current = policy.ip_allow_list if key.lower() == "ipallowlist" else policy.ip_block_list
            change = {k.lower(): v for k, v in params[key].items()}
            add = _as_list(change.get("add"))
            remove = {x.lower() for x in _as_list(change.get("remove"))}
            params[key] = [x for x in current if x.lower() not in remove] + [x for x in add if x not in current]
        elif key.lower() in ("ipallowlist", "ipblocklist") and params[key] is None:
            params[key] = []
    set_fields(policy, params, f"{where} {policy.name}")
    for fname in ("ip_allow_list", "ip_block_list"):
        for value in getattr(policy, fname):
            if "/" in value and not 24 <= int(value.rsplit("/", 1)[1]) <= 32:
                # "Valid network mask values are /24 through /32" (Configure connection filtering, Learn)
                raise TopologyError(f"{where} {policy.name}", f"{value}: a CIDR IP needs a network mask from /24 to /32")
    return policy.name


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


@cmdlet("Remove-LabBlockListEntry")
def remove_lab_block_list_entry(lab: Lab, params: dict[str, Any]) -> str:
    """The list's own delisting (a removal request granted): -LookupDomain zen.spamhaus.org -IPAddress a.b.c.d.

    No Exchange admin can take an address off Spamhaus; the list's operator does (the PBL removal form
    at spamhaus.org). The lab removes the listing records `<reversed IP>.<zone>` from every lab DNS
    server that hosts the zone; resolvers that cached the listing keep it until its TTL runs out.
    """
    where = "Remove-LabBlockListEntry"
    zone_name, address = _pop(params, "LookupDomain"), _pop(params, "IPAddress")
    if params:
        raise TopologyError(where, f"unknown parameter -{next(iter(params))} (known: LookupDomain, IPAddress)")
    if not zone_name or not address:
        raise TopologyError(where, "-LookupDomain and -IPAddress are required")
    try:
        name = query_name(str(address), str(zone_name))
    except ValueError:
        raise TopologyError(where, f"-IPAddress {address!r} is not an IPv4 address") from None
    removed = 0
    for server in lab.dns_servers:
        for zone in server.zones:
            if zone.name.lower().strip(".") != str(zone_name).lower().strip("."):
                continue
            before = len(zone.records)
            zone.records[:] = [r for r in zone.records if r.name.lower().strip(".") != name]
            removed += before - len(zone.records)
    if not removed:
        raise TopologyError(where, f"{address} is not listed on {zone_name} (no record {name} in the lab)")
    return name


# --- the tenant ------------------------------------------------------------------------------------
_TENANT_PARAMS = {"platform", "maxhopcount", "ipblocklists", "dnsservers"}


@cmdlet("Set-LabTenant")
def set_lab_tenant(lab: Lab, params: dict[str, Any]) -> str:
    """The service side of the tenant: -Platform ExchangeOnline|FOPE, -MaxHopCount, -IpBlockLists, -DnsServers."""
    where = "Set-LabTenant"
    for k in params:
        if k.lower() not in _TENANT_PARAMS:
            raise TopologyError(where, f"unknown parameter -{k} (known: Platform, MaxHopCount, IpBlockLists, "
                                       "DnsServers)")
    set_fields(lab.tenant, params, where)
    return lab.tenant.name


@cmdlet("Set-LabTenantAcceptedDomain")
def set_tenant_accepted_domain(lab: Lab, params: dict[str, Any]) -> str:
    """EXO's Set-AcceptedDomain (-DomainType Authoritative|InternalRelay), named apart from on-prem's."""
    domain = _set_in(lab.tenant.accepted_domains, params, "Set-LabTenantAcceptedDomain", "tenant accepted domain")
    if domain.domain_type == AcceptedDomainType.EXTERNAL_RELAY:
        domain.domain_type = AcceptedDomainType.INTERNAL_RELAY  # EXO has no ExternalRelay [INFERRED]
    return domain.name


@cmdlet("Remove-LabTenantMailUser")
def remove_tenant_mail_user(lab: Lab, params: dict[str, Any]) -> str:
    """A synced mail user missing in EXO (directory sync did not bring it over)."""
    where = "Remove-LabTenantMailUser"
    identity = _pop_identity(params, where)
    for mu in lab.tenant.mail_users:
        if identity.lower() in (mu.alias.lower(), mu.primary_smtp_address.lower()):
            lab.tenant.mail_users.remove(mu)
            return mu.primary_smtp_address
    raise TopologyError(f"{where} {identity}", "no such mail user in the tenant")


# --- recipients (addresses decide routing) -------------------------------------------------------------
@cmdlet("Set-Mailbox")
def set_mailbox(lab: Lab, params: dict[str, Any]) -> str:
    """-Identity priya -EmailAddresses a@x,b@y (replaces the proxy addresses) or -PrimarySmtpAddress."""
    where = "Set-Mailbox"
    identity = _pop_identity(params, where)
    for mb in lab.organization.mailboxes:
        if identity.lower() in (mb.alias.lower(), mb.primary_smtp_address.lower()):
            addresses = _pop(params, "EmailAddresses")
            if addresses is not None:
                values = [addresses] if isinstance(addresses, str) else list(addresses)
                values = [v.split(":", 1)[1] if v.lower().startswith("smtp:") else v for v in values]
                bad = [v for v in values if "@" not in v]
                if bad:
                    raise TopologyError(f"{where} {identity}", f"-EmailAddresses: {bad[0]!r} is not an address")
                params["EmailAddresses"] = values
            set_fields(mb, params, f"{where} {identity}")
            return mb.primary_smtp_address
    raise TopologyError(f"{where} {identity}", "no such mailbox")
