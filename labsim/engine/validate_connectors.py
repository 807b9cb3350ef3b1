"""`labsim validate`: test each hybrid connector the way Validate-OutboundConnector does.

Validate-OutboundConnector (Exchange Online) connects to each smart host of an outbound connector
and sends a test message to a recipient in the connector's domains (transport-behavior.md §7.1;
seed 000 shows it used to prove the cloud-to-on-premises path after an 11022). The lab does the
same for every EXO outbound connector, and the on-premises equivalent for every send connector
to Exchange Online (CloudServicesMailEnabled, e.g. 'Outbound to Office 365') from each of its
source servers: a real session through the lab's real SMTP, TLS, DNS and CRL checks, with the
connector's own TLS plan. The result per connector is Success or the exact error the sending side
would record (EXO's `450 4.4.317 …` reason, the on-premises queue LastError, or the remote reply).

It runs the scenario's world at its start (or after its timeline changes up to `--at`), in a
scratch output folder: the test messages really arrive, as Validate-OutboundConnector's do.
Output format of the real cmdlet is not public (transport-behavior.md "What remains uncertain" 4);
the table below is the lab's own.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..net.resolver import DnsError
from ..rules.exo import ExoRoute
from ..rules.outbound import AttemptFailure, exo_last_error
from ..rules.routing import Route
from ..scenario.loader import LoadedScenario
from ..smtp.client import MessageResult, OutboundMessage, SendSpec, deliver
from ..topology.changes import apply_change
from ..topology.timespec import parse_timespan
from ..transport.message import new_message
from .operations import is_operation
from .runtime import LabRuntime

__all__ = ["ConnectorResult", "validate_connectors", "run_validation", "format_results"]


@dataclass
class ConnectorResult:
    side: str  # "Exchange Online" or the on-prem source server
    connector: str
    target: str  # smart hosts / next hop
    recipient: str
    ok: bool
    status: str  # "Success" or the error text
    tls: dict[str, Any] = field(default_factory=dict)  # what TLS gave: version, cipher, status

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _probe_data(rt: LabRuntime, sender: str, recipient: str, owner: str) -> bytes:
    ids = rt.ids_for(f"{owner}/validate")
    return new_message(mail_from=sender, to=[recipient], subject="Validate connector test message",
                       body="This is a test message sent by labsim validate.\n",
                       message_id=f"<{ids.guid()}@labsim.validate>", when=rt.clock.now(), utc_offset_minutes=0)


def _outcome(res: MessageResult, word: Any) -> tuple[bool, str]:
    if res.delivered:
        return True, "Success"
    if res.rejected:
        return False, next(iter(res.rejected.values()))
    if res.deferred:
        reply = next(iter(res.deferred.values()))
        return False, word(AttemptFailure(kind="response", target_ip=res.remote_ip, target_port=25,
                                          target_name=res.remote_host, response=reply))
    return False, word(res.failure) if res.failure is not None else "no target to connect to"


async def _send(rt: LabRuntime, spec: SendSpec, msg: OutboundMessage) -> MessageResult:
    res = (await deliver(rt, spec, [msg]))[0]
    await rt.settle()
    return res


async def _exo_connector(rt: LabRuntime, conn: Any) -> ConnectorResult:
    tenant = rt.model.tenant
    domain = next((d.split(":")[-1].split(";")[0] for d in conn.recipient_domains if "*" not in d), None)
    rcpt = next((m.primary_smtp_address for m in rt.model.organization.mailboxes
                 if domain and m.primary_smtp_address.lower().endswith("@" + domain.lower())),
                f"postmaster@{domain or 'invalid'}")
    target = ",".join(conn.smart_hosts) if conn.smart_hosts else f"MX of {domain}"
    route = ExoRoute(recipient=rcpt, kind="connector" if not conn.use_mx_record else "mx", connector=conn)
    queue = SimpleNamespace(route=route, next_hop_domain=target, identity="EXO\\Validate")
    try:
        spec, failure = await rt.exo.send_spec(queue, [])  # type: ignore[arg-type]
    except DnsError:
        failure, spec = AttemptFailure(kind="dns", target_ip="", target_port=25, target_name=target), None
    if spec is None:
        return ConnectorResult("Exchange Online", conn.name, target, rcpt, False,
                               exo_last_error(failure) if failure else "no route")
    sender = f"postmaster@{tenant.initial_domain}"
    res = await _send(rt, spec, OutboundMessage(None, sender, [rcpt], _probe_data(rt, sender, rcpt, "EXO")))
    ok, status = _outcome(res, exo_last_error)
    return ConnectorResult("Exchange Online", conn.name, target, rcpt, ok, status, _tls_view(res))


async def _onprem_connector(rt: LabRuntime, sc: Any, server: str) -> ConnectorResult:
    srv = rt.servers[server]
    space = next((a.domain for a in sc.address_spaces if a.domain not in ("*", "--")), None)
    tenant = rt.model.tenant
    known = [a for mb in tenant.mailboxes for a in [mb.primary_smtp_address, *mb.email_addresses]]
    known += [a for h in rt.model.internet_hosts for a in h.mailboxes]
    rcpt = next((a for a in known if space and a.lower().endswith("@" + space.lower())),
                f"postmaster@{space or tenant.routing_domain}")
    target = ",".join(sc.smart_hosts) if sc.smart_hosts else (space or "")
    route = Route(recipient=rcpt, delivery_type="SmartHostConnectorDelivery" if sc.smart_hosts else
                  "DnsConnectorDelivery", next_hop_domain=target, connector=sc,
                  smart_hosts=tuple(sc.smart_hosts), dns_domain=None if sc.smart_hosts else space, external=True)
    queue = SimpleNamespace(route=route, next_hop_domain=target, identity=f"{server}\\Validate")
    batch = [SimpleNamespace(recipients=[rcpt])]
    try:
        spec, failure = await srv.send_spec(queue, batch)  # type: ignore[arg-type]
    except DnsError as exc:
        failure = srv.dns_failure(queue, exc)  # type: ignore[arg-type]
        spec = None
    if spec is None:
        return ConnectorResult(server, sc.name, target, rcpt, False, srv.last_error_text(failure) if failure else "no route")
    org = rt.model.organization
    default = next((d.domain_name for d in org.accepted_domains if d.default), org.accepted_domains[0].domain_name)
    sender = f"postmaster@{default}"
    res = await _send(rt, spec, OutboundMessage(None, sender, [rcpt], _probe_data(rt, sender, rcpt, server)))
    ok, status = _outcome(res, srv.last_error_text)  # worded as this server's build does
    return ConnectorResult(server, sc.name, target, rcpt, ok, status, _tls_view(res))


def _tls_view(res: MessageResult) -> dict[str, Any]:
    view = {k: v for k, v in res.tls.items() if k in ("version", "cipher", "status")}
    if res.failure is not None and res.failure.status:
        # The certificate or credential status behind a failed attempt (SubjectMismatch,
        # UntrustedRoot, NoCredentials, ...): what an admin needs next to the reply text.
        view["status"] = res.failure.status
    return view


async def validate_connectors(rt: LabRuntime) -> list[ConnectorResult]:
    """Probe every hybrid connector of a running lab: EXO's outbound connectors, then the on-prem
    send connectors to Exchange Online from each source server."""
    results: list[ConnectorResult] = []
    for conn in rt.model.tenant.outbound_connectors:
        if conn.enabled:
            results.append(await _exo_connector(rt, conn))
    for sc in rt.model.organization.send_connectors:
        if not sc.enabled or not sc.cloud_services_mail_enabled:
            continue
        for server in sc.source_transport_servers or [s.name for s in rt.model.organization.servers
                                                      if s.role == "Mailbox"]:
            name = rt.model.organization.server(server).name
            results.append(await _onprem_connector(rt, sc, name))
    return results


async def run_validation(loaded: LoadedScenario, *, at: str | None = None, seed: int | None = None,
                         out: Path | None = None) -> tuple[list[ConnectorResult], str]:
    """Start the scenario's lab (its start state, plus timeline changes up to `at`) and validate."""
    model = loaded.lab.model_copy(deep=True)
    offset = parse_timespan(at) if at else timedelta(0)
    for ch in loaded.scenario.change:
        if ch.at is not None and not is_operation(ch.cmdlet) and parse_timespan(ch.at) <= offset:
            apply_change(model, ch.cmdlet, ch.params)
    scratch = None
    if out is None:
        scratch = tempfile.TemporaryDirectory(prefix="labsim-validate-")
        out = Path(scratch.name)
    rt = LabRuntime(model, seed=loaded.scenario.seed if seed is None else seed, out=out)
    await rt.start()
    try:
        rt.clock.set(loaded.start + offset)
        when = rt.clock.now()
        results = await validate_connectors(rt)
        rt.flush_logs()
        return results, when.strftime("%Y-%m-%dT%H:%M:%SZ")
    finally:
        await rt.stop()
        if scratch is not None:
            scratch.cleanup()


def format_results(scenario: str, when: str, results: list[ConnectorResult]) -> str:
    lines = [f"labsim validate {scenario}: {len(results)} connector(s) at {when}"]
    for r in results:
        lines.append(f"  {r.side}: {r.connector} -> {r.target} (test recipient {r.recipient})")
        lines.append("      Success" if r.ok else f"      Failed   {r.status}")
        if not r.ok and r.tls.get("status"):
            lines.append(f"      Status   {r.tls['status']}")
    healthy = sum(r.ok for r in results)
    lines.append(f"  {healthy}/{len(results)} connector(s) healthy")
    return "\n".join(lines)


def validate_scenario(loaded: LoadedScenario, **kw: Any) -> tuple[list[ConnectorResult], str]:
    return asyncio.run(run_validation(loaded, **kw))
