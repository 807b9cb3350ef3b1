"""Which Transport service the Front End Transport service proxies an inbound message to.

Source: Learn, "Mail routing" (Exchange 2016/2019), section "Routing in the Front End Transport
service on Mailbox servers" (https://learn.microsoft.com/exchange/mail-flow/mail-routing/mail-routing):

- "Routing in the Front End Transport service resolves message recipients to mailbox databases ...
  For each mailbox database, the Front End Transport service looks up the delivery group": a
  routable DAG (the DAG's members, even across AD sites), or the Mailbox delivery group (the
  Mailbox servers of the database's AD site, for a database on a server outside any DAG).
- "For messages with a single mailbox recipient, select a Mailbox server in the target delivery
  group, and give preference to the Mailbox server based on the proximity of the Active Directory
  site."
- "For messages with multiple mailbox recipients, use the first 20 recipients to select a Mailbox
  server in the closest delivery group, based on the proximity of the Active Directory site ...
  only one Mailbox server is ultimately selected, regardless of number of recipients."
- "If the message has no mailbox recipients, select a random Mailbox server in the local Active
  Directory site." (the lab draws it from the server's own seeded stream).
- "The routing tables contain a special list of Mailbox servers in the local Active Directory site
  for fast fail-over purposes": after the chosen group's servers, the local site's Mailbox servers
  are tried.

[INFERRED] where the page is silent: proximity is 0 for a group with a member in the Front End's
own AD site, otherwise the least AD site link cost to a member's site (rules.routing_sites; 1 per
site without costs); equally close groups keep the order of the recipients; within the group the
members of the nearest site come first, the Front End's own server first among them, then by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..topology.model import ExchangeServer, Organization
from .routing import _dag_of, _find_mailbox, database_server

__all__ = ["MAX_ROUTING_RECIPIENTS", "DeliveryGroup", "closest_group", "delivery_group", "frontend_hubs"]

MAX_ROUTING_RECIPIENTS = 20  # "use the first 20 recipients"


@dataclass(frozen=True)
class DeliveryGroup:
    """A routable DAG or a Mailbox delivery group (an AD site's Mailbox servers)."""

    kind: str  # "RoutableDag" | "MailboxDeliveryGroup"
    name: str  # the DAG's name or the AD site's
    servers: tuple[str, ...]  # Mailbox server names


def _site(org: Organization, server: ExchangeServer) -> str:
    return (server.site or org.ad_site).lower()


def delivery_group(org: Organization, database: str) -> DeliveryGroup | None:
    """The delivery group that serves a mailbox database (None: the database is on no server)."""
    target = database_server(org, database)
    if target is None:
        return None
    dag = _dag_of(org, target)
    if dag is not None:
        return DeliveryGroup("RoutableDag", dag.name, tuple(org.server(m).name for m in dag.members))
    site = _site(org, target)
    return DeliveryGroup("MailboxDeliveryGroup", target.site or org.ad_site,
                         tuple(s.name for s in org.servers if s.role == "Mailbox" and _site(org, s) == site))


def frontend_hubs(org: Organization, local: ExchangeServer, recipients: list[str], *,
                  pick: Callable[[int], int],
                  distance: Callable[[str, str], float] | None = None) -> list[str]:
    """The Mailbox servers (names) whose Transport service the Front End on `local` tries, in order.

    `pick(n)` draws an index below n (the random server of a message without mailbox recipients);
    `distance(a, b)` is the cost between two AD sites (lower case names; default 0 for the same
    site, 1 for any other)."""
    here = _site(org, local)
    mailbox = [s for s in org.servers if s.role == "Mailbox"]
    local_site = sorted((s for s in mailbox if _site(org, s) == here),
                        key=lambda s: (s.name.lower() != local.name.lower(), s.name.lower()))
    ordered = closest_group(org, local, recipients, distance)
    if ordered is None:
        if not local_site:
            return []
        first = local_site[pick(len(local_site))] if len(local_site) > 1 else local_site[0]
        return [first.name] + [s.name for s in local_site if s is not first]
    return ordered + [s.name for s in local_site if s.name not in ordered]


def closest_group(org: Organization, local: ExchangeServer, recipients: list[str],
                  distance: Callable[[str, str], float] | None = None) -> list[str] | None:
    """The Mailbox servers (names) of the closest delivery group of the first 20 mailbox recipients,
    nearest site first, `local` first among equals, then by name; None: no mailbox recipient.
    Shared by the Front End and Mailbox Transport Submission (rules.routing_submission)."""
    here = _site(org, local)
    dist = distance or (lambda a, b: 0.0 if a == b else 1.0)
    groups: list[DeliveryGroup] = []
    for rcpt in recipients[:MAX_ROUTING_RECIPIENTS]:
        mb = _find_mailbox(org, rcpt)
        group = delivery_group(org, mb.database) if mb is not None else None
        if group is not None and group not in groups:
            groups.append(group)
    if not groups:
        return None

    def near(name: str) -> float:
        return dist(here, _site(org, org.server(name)))

    group = min(groups, key=lambda g: (min(near(n) for n in g.servers), groups.index(g)))
    return sorted(group.servers, key=lambda n: (near(n), n.lower() != local.name.lower(), n.lower()))
