"""The lab's world as a picture (server-side SVG) with the places a scenario touches marked.

Nodes come from the topology model (topology/model.py: servers by role, EXO, Internet hosts, DNS
servers, the router's NAT rules and firewall rules, load balancers, the CRL host); the lines are
the mail paths Exchange hybrid has between those roles. Two kinds of marks, both from data:

- *changed*: the scenario's `[[change]]`s (cmdlet and parameters) name the node: a `-Server`,
  an `-Identity` of `SERVER\\Connector`, a connector of the tenant, a DNS server, the CRL host, a
  network rule. This is where the scenario put its fault (and its set-up);
- *failing*: the run's evidence names the node: an event in its Application log, a session it
  refused or that was refused to it (4xx/5xx), a message still queued or failed there.

Nothing here looks at a scenario's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from ..topology.model import Lab

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 210, 78, 60, 26, 20


@dataclass
class Node:
    id: str
    title: str
    role: str
    address: str
    column: int
    changed: list[str] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)
    x: int = 0
    y: int = 0


@dataclass
class Picture:
    nodes: dict[str, Node]
    lines: list[tuple[str, str, str]]  # from, to, label


def build(lab: Lab) -> Picture:
    nodes: dict[str, Node] = {}

    def add(n: Node) -> None:
        nodes[n.id] = n

    for d in lab.dns_servers:
        if str(d.site) == "internet":
            add(Node(d.name, d.name, f"DNS ({d.site})", d.ip, 0))
    for h in lab.internet_hosts:
        add(Node(h.name, h.name, f"Internet MTA {h.fqdn}", h.ip, 0))
    add(Node("CRL", "CRL", f"CRL distribution point {lab.network.crl_host_name}", lab.network.crl_host_ip, 0))
    for c in lab.network.cdp_hosts:  # org: a CA's own CDP
        add(Node(c.name, c.name, f"CRL distribution point ({c.mode})", c.ip, 0))
    t = lab.tenant
    add(Node("EXO", "EXO / EOP", f"tenant {t.initial_domain}", f"in {t.inbound_ip}, out {t.outbound_ip}", 1))
    nat = ", ".join(f"{r.public_ip}->{r.server}" for r in lab.network.nat) or "no NAT"
    add(Node("ROUTER", "Router / firewall", f"{len(lab.network.rules)} rule(s)", nat, 2))
    for lb in lab.network.load_balancers:
        add(Node(lb.name, lb.name, "load balancer", lb.vip, 2))
    for s in lab.organization.servers:
        add(Node(s.name, s.name, f"{s.role} {s.version}", s.ip, 3 if str(s.role) == "Edge" else 4))
    for d in lab.dns_servers:
        if str(d.site) != "internet":
            add(Node(d.name, d.name, f"DNS ({d.site})", d.ip, 4))
    lines: list[tuple[str, str, str]] = []
    edges = [s.name for s in lab.organization.servers if str(s.role) == "Edge"]
    mailbox = [s.name for s in lab.organization.servers if str(s.role) != "Edge"]
    for h in lab.internet_hosts:
        lines.append((h.name, "ROUTER", "SMTP 25"))
    lines.append(("EXO", "ROUTER", "hybrid connectors"))
    for r in lab.network.nat:
        if r.server in nodes:
            lines.append(("ROUTER", r.server, f"NAT {r.public_ip}"))
    for lb in lab.network.load_balancers:
        lines.append(("ROUTER", lb.name, f"VIP {lb.vip}"))
        lines.extend((lb.name, b, "") for b in lb.backends if b in nodes)
    site = {s.name: (s.site or lab.organization.ad_site).lower() for s in lab.organization.servers}
    for e in edges:  # an Edge serves the Mailbox servers of the site it is subscribed to
        lines.extend((e, m, "EdgeSync / 25") for m in mailbox if site[m] == site[e])
    return Picture(nodes, _dedupe(lines, nodes))


def _dedupe(lines: list[tuple[str, str, str]], nodes: dict[str, Node]) -> list[tuple[str, str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for a, b, label in lines:
        if a in nodes and b in nodes and (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b, label))
    return out


# --- marks ----------------------------------------------------------------------------------------
def _values(params: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for v in params.values():
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(x for x in v if isinstance(x, str))
    return out


def change_text(cmdlet: str, params: dict[str, Any], at: str | None) -> str:
    args = " ".join(f"-{k} {_show(v)}" for k, v in params.items())
    return (f"at {at}: " if at else "") + f"{cmdlet} {args}".strip()


def _show(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(_show(x) for x in v)
    if isinstance(v, bool):
        return "$true" if v else "$false"
    text = str(v)
    return f"'{text}'" if " " in text or not text else text


def mark_changes(pic: Picture, lab: Lab, changes: list[Any]) -> None:
    """Mark every node a change names (see the module docstring)."""
    tenant_connectors = {c.name.lower() for c in lab.tenant.inbound_connectors} | \
        {c.name.lower() for c in lab.tenant.outbound_connectors}
    lb_names = {lb.name.lower(): lb.name for lb in lab.network.load_balancers}
    for ch in changes:
        params = ch.params
        text = change_text(ch.cmdlet, params, ch.at)
        values = _values(params)
        hit: set[str] = set()
        for v in values:
            head = v.split("\\", 1)[0]
            for nid in pic.nodes:
                if nid.lower() in (v.lower(), head.lower()):
                    hit.add(nid)
            if v.lower() in tenant_connectors:
                hit.add("EXO")
            if v.lower() in lb_names:
                hit.add(lb_names[v.lower()])
        low = ch.cmdlet.lower()
        if "crl" in low:
            hit.add("CRL")
        if "networkrule" in low or "natrule" in low or "loadbalancer" in low:
            hit.add("ROUTER")
        if any(w in low for w in ("inboundconnector", "outboundconnector", "tenant", "exo")):
            hit.add("EXO")
        if "dns" in low and not hit & {d.name for d in lab.dns_servers}:
            hit.update(d.name for d in lab.dns_servers if d.name in values)
        for nid in hit:
            if nid in pic.nodes:
                pic.nodes[nid].changed.append(text)


def mark_evidence(pic: Picture, summary: dict[str, Any], sessions: list[Any]) -> None:
    """Mark the nodes the run's evidence names: events, refused sessions, stuck messages."""
    counts: dict[tuple[str, str], int] = {}
    for e in summary.get("events", []) or []:
        if isinstance(e, dict) and e.get("server") in pic.nodes:
            key = (str(e["server"]), f"event {e.get('id')} ({e.get('source', '')})")
            counts[key] = counts.get(key, 0) + 1
    for s in sessions:
        outcome = s.outcome()
        if outcome[:1] in ("4", "5") and s.first.server in pic.nodes:
            key = (s.first.server, f"{outcome[:60]} on {s.first.connector}")
            counts[key] = counts.get(key, 0) + 1
    for m in summary.get("messages", []) or []:
        if not isinstance(m, dict):
            continue
        for p in m.get("pending", []) or []:
            if isinstance(p, dict) and p.get("server") in pic.nodes:
                key = (str(p["server"]), f"message {m.get('id')} queued in {p.get('queue')}")
                counts[key] = counts.get(key, 0) + 1
        for f in m.get("failed", []) or []:
            if isinstance(f, dict) and f.get("server") in pic.nodes:
                key = (str(f["server"]), f"message {m.get('id')} failed")
                counts[key] = counts.get(key, 0) + 1
    for (nid, text), n in counts.items():
        pic.nodes[nid].failing.append(text + (f" ×{n}" if n > 1 else ""))


# --- the picture ------------------------------------------------------------------------------------
# The first row of each column: the router and the Mailbox servers one row down, so the lines
# Internet -> router and router -> Mailbox (NAT) run straight through the empty slots of the EXO and
# Edge columns instead of across their boxes.
FIRST_ROW = {0: 0, 1: 0, 2: 1, 3: 0, 4: 1}


def layout(pic: Picture) -> tuple[int, int]:
    columns: dict[int, list[Node]] = {}
    for n in pic.nodes.values():
        columns.setdefault(n.column, []).append(n)
    height = 0
    for col, nodes in sorted(columns.items()):
        for i, n in enumerate(nodes):
            n.x = PAD + col * (NODE_W + GAP_X)
            n.y = PAD + (FIRST_ROW.get(col, 0) + i) * (NODE_H + GAP_Y)
            height = max(height, n.y + NODE_H + PAD)
    width = PAD + (max(columns) + 1) * (NODE_W + GAP_X) - GAP_X + PAD if columns else 2 * PAD
    return width, height


def svg(pic: Picture) -> str:
    """The picture as SVG markup (every text escaped); nodes link to their detail on the page."""
    width, height = layout(pic)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="lab topology">']
    labels: list[str] = []
    for a, b, label in pic.lines:
        na, nb = pic.nodes[a], pic.nodes[b]
        x1, y1 = na.x + NODE_W, na.y + NODE_H // 2
        x2, y2 = nb.x, nb.y + NODE_H // 2
        if na.column > nb.column:
            x1, x2 = na.x, nb.x + NODE_W
        elif na.column == nb.column:
            x1, y1, x2, y2 = na.x + NODE_W // 2, na.y + NODE_H, nb.x + NODE_W // 2, nb.y
        out.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="link"/>')
        if label:  # drawn after the boxes, so no box hides it
            labels.append(f'<text x="{(x1 + x2) // 2}" y="{(y1 + y2) // 2 - 4}" class="linklabel">{escape(label)}</text>')
    for n in pic.nodes.values():
        cls = "node failing" if n.failing else "node changed" if n.changed else "node"
        tip = "\n".join([*(f"changed: {c}" for c in n.changed), *(f"evidence: {f}" for f in n.failing)])
        out.append(f'<a href="#node-{escape(n.id)}"><g class="{cls}" data-node="{escape(n.id)}">')
        if tip:
            out.append(f"<title>{escape(tip)}</title>")
        out.append(f'<rect x="{n.x}" y="{n.y}" width="{NODE_W}" height="{NODE_H}" rx="8"/>')
        mark = " ⚠" if n.failing else " ✎" if n.changed else ""
        out.append(f'<text x="{n.x + 10}" y="{n.y + 22}" class="name">{escape(n.title + mark)}</text>')
        out.append(f'<text x="{n.x + 10}" y="{n.y + 42}" class="role">{escape(_cut(n.role, 34))}</text>')
        out.append(f'<text x="{n.x + 10}" y="{n.y + 60}" class="addr">{escape(_cut(n.address, 34))}</text>')
        out.append("</g></a>")
    out.extend(labels)
    out.append("</svg>")
    return "".join(out)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
