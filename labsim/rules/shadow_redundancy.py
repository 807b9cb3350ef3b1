"""Shadow redundancy's transport high availability boundary: which Mailbox servers may hold the
shadow copy of a message a server receives.

Source: Learn, "Shadow redundancy in Exchange Server"
(https://learn.microsoft.com/exchange/mail-flow/transport-high-availability/shadow-redundancy):
- "Transport high availability boundary: A database availability group (DAG) in DAG environments,
  or an Active Directory site in non-DAG environments. For DAGs that span multiple Active Directory
  sites, the DAG itself is still the boundary (not the site)."
- "If the Mailbox server isn't a member of a DAG, the other Mailbox servers must be in the local
  Active Directory site. If the Mailbox server is a member of a DAG, the other Mailbox servers must
  belong to the same DAG ... By default, if the DAG spans multiple Active Directory sites, shadow
  redundancy prefers creating a redundant copy of the message in a remote site"
  (ShadowMessagePreferenceSetting PreferRemote; RemoteOnly and LocalOnly; outside a DAG the local
  site is used "regardless of the value").
- "These are the situations where shadow redundancy can't protect messages in transit: In single
  Exchange server environments. In under-provisioned DAGs."

The lab does not make shadow copies yet (docs/network-dns-routing.md §6 holds the protocol for
it); what it uses today is whether a server *has* a shadow candidate: without one its tracking log
says HAREDIRECTFAIL `No suitable shadow servers` for each message it receives.
[INFERRED] the order among equally preferred candidates: by name.
"""

from __future__ import annotations

from typing import Literal

from ..topology.model import ExchangeServer, Organization
from .routing import _dag_of

__all__ = ["boundary_peers", "shadow_candidates", "ShadowPreference"]

ShadowPreference = Literal["PreferRemote", "RemoteOnly", "LocalOnly"]


def _site(org: Organization, server: ExchangeServer) -> str:
    return (server.site or org.ad_site).lower()


def boundary_peers(org: Organization, server: ExchangeServer) -> list[ExchangeServer]:
    """The other Mailbox servers of the server's boundary: its DAG, else its AD site's Mailbox servers."""
    if server.role != "Mailbox":
        return []
    dag = _dag_of(org, server)
    if dag is not None:
        members = {m.lower() for m in dag.members}
        return [s for s in org.servers if s.name.lower() in members and s.name.lower() != server.name.lower()]
    here = _site(org, server)
    return [s for s in org.servers if s.role == "Mailbox" and s.name.lower() != server.name.lower()
            and _site(org, s) == here]


def shadow_candidates(org: Organization, server: ExchangeServer,
                      preference: ShadowPreference = "PreferRemote") -> list[str]:
    """The servers a shadow copy is tried on, in order (empty: no suitable shadow server)."""
    peers = sorted(boundary_peers(org, server), key=lambda s: s.name.lower())
    if _dag_of(org, server) is None:
        return [s.name for s in peers]  # outside a DAG: the local site whatever the preference
    here = _site(org, server)
    remote = [s.name for s in peers if _site(org, s) != here]
    local = [s.name for s in peers if _site(org, s) == here]
    if preference == "RemoteOnly":
        return remote
    if preference == "LocalOnly":
        return local
    return remote + local
