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

Without a candidate a server's tracking log says HAREDIRECTFAIL `No suitable shadow servers` for
each message it receives; with one, engine.shadow makes the copy with the verbs below
(docs/network-dns-routing.md §6.3).
[INFERRED] the order among equally preferred candidates: by name.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

from ..topology.model import ExchangeServer, Organization
from .routing import _dag_of

__all__ = ["boundary_peers", "shadow_candidates", "ShadowPreference", "ShadowSessionState", "encode_context",
           "decode_context", "xshadowrequest_reply", "xshadow_reply", "xqdiscard_count", "discard_reply",
           "queued_for_redundancy", "HEARTBEAT_FREQUENCY_SECONDS", "MAX_DISCARD_IDS"]

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


# --- the shadow verbs (E15 compatibility: XSHADOWREQUEST, heartbeat XSHADOW + XQDISCARD) ------------------
# [V-code evilashz/exchange-server-27065: XShadowRequestSmtpCommand, XShadowSmtpCommand,
# XQDiscardSmtpCommand, RsetShadowSmtpCommand, SmtpResponse.QueuedMailForRedundancy,
# ShadowRedundancyManager.GetE15ShadowContext/EncodeShadowContext, TransportAppConfig]

HEARTBEAT_FREQUENCY_SECONDS = 120  # Set-TransportConfig -ShadowHeartbeatFrequency, default 2 minutes [V-doc]
MAX_DISCARD_IDS = 50  # ShadowRedundancyMaxDiscardIdsPerSmtpCommand: default 50 (50..1000) [V-code]
MAX_CONTEXT = 255  # PrimaryServerStateMaxLength / ShadowServerContextMaxLength [V-code]
EMPTY_DISCARD_LIST = "251 OK, no discard events"  # XQDiscardSmtpCommand.EmptyDiscardListResponseText
XQDISCARD_COUNT_REQUIRED = "501 5.0.0 XQDISCARD requires maximum discard events count"
XSHADOW_CONTEXT_REQUIRED = "501 5.0.0 XSHADOW requires Shadow server's context"
NOT_AUTHORIZED = "550 5.7.1 Not authorized"  # SmtpResponse.NotAuthorized


@dataclass
class ShadowSessionState:
    """What a receive session knows of shadow redundancy: a peer shadow session (XSHADOWREQUEST:
    the next message is a shadow copy for `primary`) or a heartbeat of a shadow server (XSHADOW)."""

    primary: str | None = None  # the primary server's FQDN (XSHADOWREQUEST's first argument)
    shadowed_by: str | None = None  # the shadow server's context (XSHADOW's argument)


def encode_context(server_name: str) -> str:
    """EncodeShadowContext: Base64 of the server's name (Encoding.Default; ASCII names)."""
    return base64.b64encode(server_name.encode("ascii", "replace")).decode("ascii")


def decode_context(context: str) -> str | None:
    try:
        return base64.b64decode(context, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None


def _refusal(state: ShadowSessionState, *, offered: bool, authorized: bool) -> str | None:
    """What both shadow verbs answer before reading their argument: a session already in a shadow
    role (503), a verb the connector does not offer (502), a peer without the permission."""
    if state.primary is not None or state.shadowed_by is not None:
        return "503 5.5.1 Bad sequence of commands"
    if not offered:
        return "502 5.3.3 Command not implemented"
    if not authorized:
        return NOT_AUTHORIZED
    return None


def xshadowrequest_reply(state: ShadowSessionState, arg: str, *, offered: bool, authorized: bool,
                         own_name: str) -> str:
    """XShadowRequestSmtpCommand.ParseCommand + InboundProcessCommand (EHLO checked by the caller)."""
    refused = _refusal(state, offered=offered, authorized=authorized)
    if refused is not None:
        return refused
    words = arg.split()
    if len(words) < 2 or len(words[1]) > MAX_CONTEXT:
        return "501 5.5.4 Invalid arguments"
    state.primary = words[0]
    return f"250 {encode_context(own_name)}"


def xshadow_reply(state: ShadowSessionState, arg: str, *, offered: bool, authorized: bool, database_id: str) -> str:
    """XShadowSmtpCommand: the shadow server's heartbeat names itself; the answer is the primary's
    queue database id (DatabaseIdForTransmit)."""
    refused = _refusal(state, offered=offered, authorized=authorized)
    if refused is not None:
        return refused
    words = arg.split()
    if not words:
        return XSHADOW_CONTEXT_REQUIRED
    if len(words[0]) > MAX_CONTEXT:
        return "501 5.5.4 Invalid arguments"
    state.shadowed_by = words[0]
    return f"250 {database_id}"


def xqdiscard_count(state: ShadowSessionState, arg: str, *, offered: bool) -> int | str:
    """XQDiscardSmtpCommand.ParseCommand: the maximum count, or the refusal."""
    if not offered:
        return "502 5.3.3 Command not implemented"
    if state.shadowed_by is None:
        return "503 5.5.1 Bad sequence of commands"
    words = arg.split()
    if not words:
        return XQDISCARD_COUNT_REQUIRED
    if not words[0].isdigit() or int(words[0]) <= 0:
        return "501 5.5.4 Invalid arguments"
    return int(words[0])


def discard_reply(ids: list[str]) -> list[str]:
    """The discard notifications, one id per line (`250`), or `251 OK, no discard events`."""
    if not ids:
        return [EMPTY_DISCARD_LIST]
    return [f"250-{i}" for i in ids[:-1]] + [f"250 {ids[-1]}"]


def queued_for_redundancy(message_id: str, internal_id: int, hostname: str) -> str:
    """SmtpResponse.QueuedMailForRedundancy(messageId, recordId, hostname)."""
    return f"250 2.6.0 {message_id} [InternalId={internal_id}, Hostname={hostname}] Queued mail for redundancy"
