"""DNS block list checks on the running lab: EOP's built-in lists and the Edge's IP Block List providers.

The decisions (query name, what matches, the words) are `rules.reputation`; this module asks the
lab's DNS from the checking host, as that host would, and remembers the verdict for the session
(the Connection Filtering agent keeps it in session properties; later RCPTs are refused alike).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..clock import iso_ms
from ..net.resolver import DnsError
from ..rules.dnschoice import transport_dns_servers
from ..rules.reputation import (
    connection_filter_reply,
    eop_block_reply,
    on_ip_allow_list,
    provider_matches,
    providers_in_order,
    query_name,
)
from .connectivity import log_rejection
from .ports import Resolution, Timekeeping

if TYPE_CHECKING:  # pragma: no cover
    from ..rules.network import HostInfo
    from ..smtp.session_api import ReceivingSession
    from ..topology.model import ExchangeServer, ExoTenant, TransportServiceConfig


class _Lookups(Resolution, Timekeeping, Protocol):
    """DNS from a given host, on the lab's clock."""


class EopFront(Protocol):
    """EOP's front end, as the block-list check sees it (engine.exo.ExoRuntime)."""

    model: ExoTenant
    host_in: HostInfo
    frontend_fqdn: str

    @property
    def lab(self) -> _Lookups: ...


class EdgeAgent(Protocol):
    """An Edge server's Connection Filtering agent, as the check sees it (engine.onprem)."""

    model: ExchangeServer
    host: HostInfo

    @property
    def lab(self) -> _Lookups: ...

    @property
    def transport_cfg(self) -> TransportServiceConfig: ...

_KEY = "_dnsbl_verdict"


async def _lookup(lab: Any, host: Any, servers: list[str], name: str, session: "ReceivingSession") -> list[str]:
    try:
        return await lab.resolve_a(host, servers, name)
    except DnsError as exc:  # not listed (NXDOMAIN), or the list is unreachable: fail open
        lab.clock.advance(exc.elapsed_virtual)
        return []
    finally:
        session.touch()


async def eop_block_list_reply(exo: "EopFront", session: "ReceivingSession") -> str | None:
    """EOP: mail not attributed to an on-premises connector is checked against the block lists."""
    st = session.state
    if st.attribution is not None and st.attribution.directionality == "Originating":
        return None
    if _KEY in session.context:
        return session.context[_KEY] or None
    verdict = ""
    for zone, provider in exo.model.ip_block_lists.items():
        if await _lookup(exo.lab, exo.host_in, exo.model.dns_servers, query_name(st.remote_ip, zone), session):
            stamp = f"{exo.frontend_fqdn} {iso_ms(session.now())} {session.session_id:016X}"
            verdict = eop_block_reply(st.remote_ip, zone, provider, stamp)
            break
    session.context[_KEY] = verdict
    return verdict or None


async def edge_connection_filter_reply(server: "EdgeAgent", session: "ReceivingSession",
                                       recipient: str = "", local_port: int = 25) -> str | None:
    """The Connection Filtering agent at RCPT TO (Edge servers with IP Block List providers); each
    rejection is also an agent log row (engine.connectivity.log_rejection)."""
    state = session.state
    providers = providers_in_order(server.model.ip_block_list_providers)
    if not providers or "BypassAntiSpam" in state.rights:
        return None
    m = server.model
    if on_ip_allow_list(m.ip_allow_list_entries, m.ip_allow_list_config, state.remote_ip, session.now()):
        return None  # "Connecting IP on allow list.  Skipping verification." (OnRcptToHandler)
    if _KEY in session.context:
        if session.context[_KEY]:
            log_rejection(server, session, recipient, local_port, *session.context[_KEY + "provider"])
        return session.context[_KEY] or None
    servers = transport_dns_servers(server.transport_cfg, server.model.adapter_dns_servers, external=True)
    verdict = ""
    for p in providers:
        answers = await _lookup(server.lab, server.host, servers, query_name(state.remote_ip, p.lookup_domain), session)
        if provider_matches(p, answers):
            verdict = connection_filter_reply(p, state.remote_ip)
            # log-formats.md §2.4 lists the context "Rejected by agent: {0}" [UNVERIFIED]; {0} = the
            # agent's name [INFERRED]
            session.log.info("", "Rejected by agent: Connection Filtering Agent")
            session.context[_KEY + "provider"] = (verdict, p.name)
            log_rejection(server, session, recipient, local_port, verdict, p.name)
            break
    session.context[_KEY] = verdict
    return verdict or None
