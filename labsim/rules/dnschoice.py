"""Which DNS servers a transport service asks (Set-TransportService / Set-FrontendTransportService).

`InternalDNSAdapterEnabled $true` (the default) means the network adapter's DNS servers; only when
it is `$false` are `InternalDNSServers` used (seed 001 error 7 and its fix). The same holds for the
external pair, which is used only by send connectors with `UseExternalDNSServersEnabled`.

Mailbox Transport Submission (and Delivery) read the same Server object as the Transport service:
`Set-TransportService`'s settings, not the Front End's and not the adapter's alone
(docs/transport-fidelity.md §4, [V-code] `EnhancedDns.LoadConfiguration`; `Set-MailboxTransportService`
has no DNS parameters).
"""

from __future__ import annotations

from ..topology.model import TransportServiceConfig


def transport_dns_servers(cfg: TransportServiceConfig, adapter: list[str], *, external: bool = False) -> list[str]:
    if external:
        if cfg.external_dns_adapter_enabled or not cfg.external_dns_servers:
            return list(adapter)
        return list(cfg.external_dns_servers)
    if cfg.internal_dns_adapter_enabled or not cfg.internal_dns_servers:
        return list(adapter)
    return list(cfg.internal_dns_servers)
