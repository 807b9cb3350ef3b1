"""How a connection between two virtual hosts goes: routing, NAT, firewall/link rules, load balancers.

The on-prem network is private (192.168.x): reachable from on-prem hosts only. From outside, it is
reached through the router's port forwarding (DNAT) of public addresses, and on-prem hosts reach
the outside from the organisation's public address (SNAT). Exchange's logs then show exactly what
real servers show: the server's own private address as local endpoint and the peer's public
address as remote endpoint.

On top of routing, a scenario can put `LinkRule`s on any path (the toxiproxy set: refuse, drop,
reset mid-session, latency, bandwidth cap, slow close) and `LoadBalancer`s in front of servers.
Everything here is a pure decision over the topology: `NetView.plan` says what happens to one
connection attempt; the shells (smtp.client, net.proxy, net.resolver) carry it out. Refuse and
drop stay decisions (no packet is ever sent), so "no answer until the connect timeout" costs
virtual seconds only; a reset needs real bytes to flow first and is done by `net.proxy`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from ..topology.model import Lab, LinkRule, LoadBalancer, Site
from .iprange import parse_range

__all__ = ["HostInfo", "ConnectionPlan", "LinkEffect", "NetView", "lab_hosts", "all_virtual_ips",
           "spec_matches", "link_effect", "backend_order", "validate_host_spec"]


@dataclass(frozen=True)
class HostInfo:
    name: str
    site: Site
    ip: str  # the host's own (interface) address


@dataclass(frozen=True)
class LinkEffect:
    """What the link rules do to one connection (the sum of every matching rule)."""

    failure: str | None = None  # "refused" (RST) | "timeout" (dropped)
    rule: str | None = None  # the rule that refused or dropped it
    extra_latency: float = 0.0  # seconds, one way
    bandwidth: float | None = None  # bytes per second (the narrowest cap)
    reset_after: int | None = None  # client->server bytes let through before a reset
    slow_close: float = 0.0  # seconds the close of the connection is held back
    rules: tuple[str, ...] = ()  # every rule that matched, in order


@dataclass(frozen=True)
class ConnectionPlan:
    failure: str | None  # None, "refused" (RST) or "timeout" (dropped / no route)
    dst_host: str | None
    dial_ip: str  # the virtual address dialled (a host address or a NAT public address)
    port: int
    seen_src_ip: str  # the source address the server sees (after SNAT)
    client_local_ip: str  # what the client logs as its local address
    server_local_ip: str | None  # what the server logs as its local address
    latency: float  # one-way, seconds
    rule: str | None = None  # the link rule that refused/dropped the connection
    bandwidth: float | None = None  # bytes per second cap from a link rule (None: the site default)
    reset_after: int | None = None
    slow_close: float = 0.0
    load_balancer: str | None = None  # the connection lands on this load balancer's VIP

    @property
    def needs_proxy(self) -> bool:
        """A real proxy must carry the bytes (only a mid-session reset needs real sockets)."""
        return self.reset_after is not None


def _in_spec(ip: str, spec: str) -> bool:
    try:
        return ip in parse_range(spec)
    except ValueError:
        return False


def spec_matches(spec: str, names: Iterable[str], ips: Iterable[str]) -> bool:
    """`*`, a host name (case-insensitive), an IP, CIDR block or `a-b` range."""
    spec = spec.strip()
    if spec == "*":
        return True
    if any(spec.lower() == n.lower() for n in names):
        return True
    return any(_in_spec(ip, spec) for ip in ips)


def validate_host_spec(spec: str, hosts: Iterable[HostInfo]) -> str | None:
    """None if `spec` names something real, else the problem (for cmdlet errors)."""
    s = spec.strip()
    if s == "*" or any(s.lower() == h.name.lower() for h in hosts):
        return None
    try:
        if "-" in s:
            lo, hi = (ipaddress.ip_address(p.strip()) for p in s.split("-", 1))
            if lo.version != hi.version:
                return f"range {s!r} mixes IPv4 and IPv6"
            return None if int(lo) <= int(hi) else f"range {s!r} runs backwards"
        if "/" in s:
            ipaddress.ip_network(s, strict=False)
        else:
            ipaddress.ip_address(s)
        return None
    except ValueError:
        names = ", ".join(h.name for h in hosts)
        return f"{s!r} is neither '*', a lab host ({names}) nor an IP, CIDR block or a-b range"


def link_effect(rules: Iterable[LinkRule], *, src_names: Iterable[str], src_ips: Iterable[str],
                dst_names: Iterable[str], dst_ips: Iterable[str], port: int, protocol: str) -> LinkEffect:
    """Walk the rules in order: refuse/drop end the walk, shaping toxics add up."""
    src_names, src_ips = list(src_names), list(src_ips)
    dst_names, dst_ips = list(dst_names), list(dst_ips)
    latency, bandwidth, reset, slow, hits = 0.0, None, None, 0.0, []
    for r in rules:
        if not r.enabled or (r.protocol != "Any" and r.protocol != protocol):
            continue
        if r.ports and port not in r.ports:
            continue
        if not spec_matches(r.source, src_names, src_ips) or not spec_matches(r.destination, dst_names, dst_ips):
            continue
        hits.append(r.name)
        if r.action in ("Refuse", "Drop"):
            return LinkEffect(failure="refused" if r.action == "Refuse" else "timeout", rule=r.name,
                              extra_latency=latency, rules=tuple(hits))
        if r.action == "Latency":
            latency += r.latency_ms / 1000.0
        elif r.action == "Bandwidth":
            bps = r.bandwidth_kbps * 1000.0 / 8.0
            bandwidth = bps if bandwidth is None else min(bandwidth, bps)
        elif r.action == "Reset":
            reset = r.reset_after_bytes if reset is None else min(reset, r.reset_after_bytes)
        elif r.action == "SlowClose":
            slow = max(slow, r.slow_close_ms / 1000.0)
    return LinkEffect(extra_latency=latency, bandwidth=bandwidth, reset_after=reset, slow_close=slow,
                      rules=tuple(hits))


def backend_order(lb: LoadBalancer, counter: int) -> list[str]:
    """Round robin: the n-th session starts at backend n, then fails over along the list."""
    if not lb.backends:
        return []
    k = counter % len(lb.backends)
    return list(lb.backends[k:]) + list(lb.backends[:k])


class NetView:
    """An index of the lab's hosts; NAT, rules and load balancers are read live from the topology
    (timeline changes to them take effect at the next connection)."""

    def __init__(self, lab: Lab, hosts: list[HostInfo]) -> None:
        self.lab = lab
        self.by_ip = {h.ip: h for h in hosts}
        self.by_name = {h.name.lower(): h for h in hosts}

    def host(self, name: str) -> HostInfo:
        return self.by_name[name.lower()]

    def load_balancer(self, name: str) -> LoadBalancer | None:
        return next((lb for lb in self.lab.network.load_balancers if lb.name.lower() == name.lower()), None)

    def plan(self, src: HostInfo, dst_ip: str, port: int, *, protocol: str = "TCP") -> ConnectionPlan:
        net = self.lab.network
        org_public = self.lab.organization.public_ip
        rule = next((r for r in net.nat if r.public_ip == dst_ip), None)
        if rule is not None:
            dst = self.by_name.get(rule.server.lower())
            if dst is None or port not in rule.ports:
                return self._fail(src, dst_ip, port, "timeout")
        else:
            dst = self.by_ip.get(dst_ip)
            if dst is None:
                return self._fail(src, dst_ip, port, "timeout")
            if dst.site == Site.ONPREM and src.site != Site.ONPREM:
                return self._fail(src, dst_ip, port, "timeout")  # a private address: no route
        lb = self.load_balancer(dst.name)
        if lb is not None and port not in lb.ports:
            return self._fail(src, dst_ip, port, "refused")  # the VIP has no listener on that port
        outside = src.site == Site.ONPREM and dst.site != Site.ONPREM
        seen = org_public if outside else src.ip
        effect = link_effect(net.rules, src_names=[src.name], src_ips=[src.ip, seen],
                             dst_names=[dst.name], dst_ips=[dst_ip, dst.ip], port=port, protocol=protocol)
        base = net.latency(src.site, dst.site)
        if effect.failure is not None:
            return self._fail(src, dst_ip, port, effect.failure, rule=effect.rule,
                              latency=base + effect.extra_latency)
        return ConnectionPlan(
            failure=None, dst_host=dst.name, dial_ip=dst_ip, port=port, seen_src_ip=seen,
            client_local_ip=src.ip, server_local_ip=dst.ip, latency=base + effect.extra_latency,
            bandwidth=effect.bandwidth, reset_after=effect.reset_after, slow_close=effect.slow_close,
            load_balancer=lb.name if lb is not None else None,
        )

    def _fail(self, src: HostInfo, dst_ip: str, port: int, how: str, *, rule: str | None = None,
              latency: float | None = None) -> ConnectionPlan:
        site = Site.INTERNET if src.site == Site.ONPREM else src.site
        return ConnectionPlan(failure=how, dst_host=None, dial_ip=dst_ip, port=port, seen_src_ip=src.ip,
                              client_local_ip=src.ip, server_local_ip=None,
                              latency=self.lab.network.latency(src.site, site) if latency is None else latency,
                              rule=rule)


def lab_hosts(lab: Lab) -> list[HostInfo]:
    """Every virtual host of a topology, in a fixed order."""
    hosts = [HostInfo(s.name, Site.ONPREM, s.ip) for s in lab.organization.servers]
    hosts += [HostInfo(d.name, Site(d.site), d.ip) for d in lab.dns_servers]
    hosts.append(HostInfo("EXO", Site.EXO, lab.tenant.inbound_ip))
    hosts.append(HostInfo("EXO-OUT", Site.EXO, lab.tenant.outbound_ip))
    hosts.append(HostInfo("EXO-SUBMISSION", Site.EXO, lab.tenant.submission_ip))
    hosts += [HostInfo(h.name, Site.INTERNET, h.ip) for h in lab.internet_hosts]
    hosts.append(HostInfo("CRL", Site.INTERNET, lab.network.crl_host_ip))
    hosts += [HostInfo(c.name, Site.INTERNET, c.ip) for c in lab.network.cdp_hosts]  # org: a CDP per CA
    hosts += [HostInfo(lb.name, Site.ONPREM, lb.vip) for lb in lab.network.load_balancers]
    return hosts


def all_virtual_ips(lab: Lab) -> list[str]:
    ips = {h.ip for h in lab_hosts(lab)} | {r.public_ip for r in lab.network.nat} | {lab.organization.public_ip}
    ips |= {lb.snat_ip for lb in lab.network.load_balancers if lb.snat_ip}
    return sorted(ips)
