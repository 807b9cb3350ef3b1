"""How a connection between two virtual hosts goes: routing, NAT and what each side sees.

The on-prem network is private (192.168.x): reachable from on-prem hosts only. From outside, it is
reached through the router's port forwarding (DNAT) of public addresses, and on-prem hosts reach
the outside from the organisation's public address (SNAT). Exchange's logs then show exactly what
real servers show: the server's own private address as local endpoint and the peer's public
address as remote endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..topology.model import Lab, Site


@dataclass(frozen=True)
class HostInfo:
    name: str
    site: Site
    ip: str  # the host's own (interface) address


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


class NetView:
    """An index of the lab's hosts and NAT rules, built once per topology."""

    def __init__(self, lab: Lab, hosts: list[HostInfo]) -> None:
        self.lab = lab
        self.by_ip = {h.ip: h for h in hosts}
        self.by_name = {h.name.lower(): h for h in hosts}
        self.nat = {r.public_ip: r for r in lab.network.nat}

    def host(self, name: str) -> HostInfo:
        return self.by_name[name.lower()]

    def plan(self, src: HostInfo, dst_ip: str, port: int) -> ConnectionPlan:
        net = self.lab.network
        org_public = self.lab.organization.public_ip
        rule = self.nat.get(dst_ip)
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
        outside = src.site == Site.ONPREM and dst.site != Site.ONPREM
        return ConnectionPlan(
            failure=None, dst_host=dst.name, dial_ip=dst_ip, port=port,
            seen_src_ip=org_public if outside else src.ip, client_local_ip=src.ip,
            server_local_ip=dst.ip, latency=net.latency(src.site, dst.site),
        )

    def _fail(self, src: HostInfo, dst_ip: str, port: int, how: str) -> ConnectionPlan:
        site = Site.INTERNET if src.site == Site.ONPREM else src.site
        return ConnectionPlan(failure=how, dst_host=None, dial_ip=dst_ip, port=port, seen_src_ip=src.ip,
                              client_local_ip=src.ip, server_local_ip=None,
                              latency=self.lab.network.latency(src.site, site))


def lab_hosts(lab: Lab) -> list[HostInfo]:
    """Every virtual host of a topology, in a fixed order."""
    hosts = [HostInfo(s.name, Site.ONPREM, s.ip) for s in lab.organization.servers]
    hosts += [HostInfo(d.name, Site(d.site), d.ip) for d in lab.dns_servers]
    hosts.append(HostInfo("EXO", Site.EXO, lab.tenant.inbound_ip))
    hosts.append(HostInfo("EXO-OUT", Site.EXO, lab.tenant.outbound_ip))
    hosts += [HostInfo(h.name, Site.INTERNET, h.ip) for h in lab.internet_hosts]
    hosts.append(HostInfo("CRL", Site.INTERNET, lab.network.crl_host_ip))
    return hosts


def all_virtual_ips(lab: Lab) -> list[str]:
    ips = {h.ip for h in lab_hosts(lab)} | {r.public_ip for r in lab.network.nat} | {lab.organization.public_ip}
    return sorted(ips)
