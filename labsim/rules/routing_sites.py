"""Least-cost routing between Active Directory sites (AD IP site links and their Exchange costs).

Sources (Learn, https://learn.microsoft.com/exchange/mail-flow/mail-routing/mail-routing, "Routing
messages"): "Calculate the least-cost routing path by adding the cost of the IP site links that must
be traversed to reach the destination. If the destination is a connector, the cost assigned to the
address space is added to the cost to reach the selected connector." Connector selection
(connector-selection.md): "Aggregate cost: ... the sum of the cost that's assigned to all the IP site
links between the source Active Directory site and the Active Directory site that contains the source
servers for the connector, and the cost that's assigned to the address space on the connector".
Set-AdSiteLink: "The Exchange-specific cost is a separate attribute used instead of the Active
Directory-assigned cost to determine the least cost routing path."

[INFERRED] where the lab must choose: an organisation that declares no site links has every site in
one link of cost 100 (Active Directory's DEFAULTIPSITELINK, whose default cost is 100); two sites no
chain of links joins are unreachable from each other (cost infinity: their connectors are not used,
as Exchange cannot compute a path). Hub sites are not modelled.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

from ..topology.model import Organization

__all__ = ["DEFAULT_SITE_LINK_COST", "link_cost", "site_cost_table", "site_costs"]

DEFAULT_SITE_LINK_COST = 100


def link_cost(cost: int, exchange_cost: int | None) -> int:
    """The cost Exchange routes by: ExchangeCost when set, else the AD cost."""
    return exchange_cost if exchange_cost is not None else cost


def site_cost_table(org: Organization) -> dict[str, dict[str, float]]:
    """Least path cost between every pair of sites (lower-case names), by Dijkstra over the links."""
    names = [org.ad_site.lower(), *(s.name.lower() for s in org.sites)]
    edges: dict[str, dict[str, int]] = {n: {} for n in names}
    if org.site_links:
        for link in org.site_links:
            members = [s.lower() for s in link.sites]
            weight = link_cost(link.cost, link.exchange_cost)
            for a in members:
                for b in members:
                    if a != b and a in edges and b in edges:
                        edges[a][b] = min(edges[a].get(b, weight), weight)
    else:
        for a in names:
            edges[a] = {b: DEFAULT_SITE_LINK_COST for b in names if b != a}
    table: dict[str, dict[str, float]] = {}
    for start in names:
        best: dict[str, float] = {start: 0.0}
        todo = [(0.0, start)]
        while todo:
            d, here = heapq.heappop(todo)
            if d > best.get(here, math.inf):
                continue
            for there, w in sorted(edges[here].items()):
                if d + w < best.get(there, math.inf):
                    best[there] = d + w
                    heapq.heappush(todo, (d + w, there))
        table[start] = {n: best.get(n, math.inf) for n in names}
    return table


def site_costs(org: Organization) -> Callable[[str, str], float]:
    """cost(a, b): the least-cost path between two AD sites (0 within a site, infinity unreachable)."""
    table = site_cost_table(org)

    def cost(a: str, b: str) -> float:
        a, b = a.lower(), b.lower()
        if a == b:
            return 0.0
        return table.get(a, {}).get(b, math.inf)

    return cost
