"""Which configuration changes a running service only picks up when it starts again.

Exchange keeps its configuration in Active Directory: a Set- cmdlet changes it at once and the
Get- cmdlet shows the new value, but a transport service reads some of its settings only when the
service process starts. Until `Restart-Service` the service works with the old values. The lab's
timeline (engine.driver) applies every change at once (a scenario writes its own restarts where
the story needs them); the trainee's shell (labsim.shell.session) holds the changes this table
names until the service named here is restarted on that server.

Sources (docs/shell.md §3):
- seed 001 §2.3: "Restart transport to apply Restart-Service MSExchangeTransport ... Always restart
  MSExchangeTransport after changing protocol logging settings to ensure the changes take effect"
  (Set-TransportService -ReceiveProtocolLogPath / -SendProtocolLogPath).
- The transport services' DNS settings (InternalDNSServers, ExternalDNSServers and the adapter
  switches) are read by the service's DNS client at start [INFERRED: the brief of issue 13 names
  Set-TransportService -InternalDNSServers as needing a restart; no Microsoft page confirmed it,
  and seed 001's error 7 fix does not mention one].
"""

from __future__ import annotations

# (cmdlet, parameter) -> the Windows service whose start applies it (on the server of -Identity)
RESTART_REQUIRED: dict[tuple[str, str], str] = {
    **{("Set-TransportService", p): "MSExchangeTransport" for p in (
        "InternalDNSServers", "InternalDNSAdapterEnabled", "ExternalDNSServers", "ExternalDNSAdapterEnabled",
        "ReceiveProtocolLogPath", "SendProtocolLogPath")},
    **{("Set-FrontendTransportService", p): "MSExchangeFrontEndTransport" for p in (
        "InternalDNSServers", "InternalDNSAdapterEnabled", "ExternalDNSServers", "ExternalDNSAdapterEnabled",
        "ReceiveProtocolLogPath", "SendProtocolLogPath")},
}


def split_change(cmdlet: str, params: dict[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    """(parameters that apply at once, {parameter: service} of those that wait for a restart)."""
    now: dict[str, object] = {}
    later: dict[str, str] = {}
    for key, value in params.items():
        service = next((svc for (c, p), svc in RESTART_REQUIRED.items()
                        if c.lower() == cmdlet.lower() and p.lower() == key.lower()), None)
        if service is None:
            now[key] = value
        else:
            later[key] = service
    return now, later
