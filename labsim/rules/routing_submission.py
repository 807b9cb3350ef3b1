"""Which Transport service Mailbox Transport Submission hands a mailbox's message to.

Source: Learn, "Mail routing" (Exchange 2016/2019), section "Routing in the Mailbox Transport
service on Mailbox servers" (https://learn.microsoft.com/exchange/mail-flow/mail-routing/mail-routing):

- "the Mailbox Transport service always belongs to the same delivery group as the Mailbox server.
  This delivery group is referred to as the *local delivery group*" (its DAG, or the Mailbox
  delivery group of its AD site for a server outside any DAG: rules.routing_frontend).
- "The Mailbox Transport Submission service doesn't automatically send messages to the Transport
  service on the local Mailbox server or on other Mailbox servers in its own local delivery group
  ... The Mailbox servers in the local delivery group are used as fallback options, and for
  delivery to non-mailbox recipients."
- "the Mailbox Transport Submission service resolves the message recipients to mailbox databases
  ... For each mailbox database, the Mailbox Transport Submission service looks up the delivery
  group" - one mailbox recipient: "select a Mailbox server in the target delivery group, and give
  preference to the Mailbox server based on the proximity of the Active Directory site"; several:
  "use the first 20 recipients to select a Mailbox server in the closest delivery group"; none:
  "select a Mailbox server in the local delivery group".

The choice among the recipients' groups is the Front End's (rules.routing_frontend.closest_group).
[INFERRED] where the page is silent: within the local delivery group the submitting server comes
first, then the nearest site, then by name (the page names no random draw, unlike the Front End's
"random Mailbox server"); a group member in an AD site no chain of site links reaches is still
tried last (the distance only orders).
"""

from __future__ import annotations

from collections.abc import Callable

from ..topology.model import ExchangeServer, Organization
from .routing import _dag_of
from .routing_frontend import _site, closest_group

__all__ = ["local_delivery_group", "submission_hubs"]


def local_delivery_group(org: Organization, server: ExchangeServer) -> list[str]:
    """The Mailbox servers (names) of `server`'s own delivery group: its DAG's members, or the
    Mailbox servers of its AD site when it is in no DAG (it is always one of them)."""
    dag = _dag_of(org, server)
    if dag is not None:
        return [org.server(m).name for m in dag.members]
    here = _site(org, server)
    return [s.name for s in org.servers if s.role == "Mailbox" and _site(org, s) == here]


def submission_hubs(org: Organization, local: ExchangeServer, recipients: list[str], *,
                    distance: Callable[[str, str], float] | None = None) -> list[str]:
    """The Mailbox servers (names) whose Transport service Submission on `local` tries, in order:
    the closest delivery group of the recipients' mailboxes, then the local delivery group's
    servers not already named (its fall-back); only the local delivery group without a mailbox
    recipient. `distance(a, b)` is the cost between two AD sites (rules.routing_sites.site_costs)."""
    here = _site(org, local)
    dist = distance or (lambda a, b: 0.0 if a == b else 1.0)
    own = sorted(local_delivery_group(org, local),
                 key=lambda n: (n.lower() != local.name.lower(), dist(here, _site(org, org.server(n))), n.lower()))
    ordered = closest_group(org, local, recipients, distance) or []
    return ordered + [n for n in own if n not in ordered]
