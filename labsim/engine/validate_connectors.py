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

Besides the probes, the hybrid certificate's names are checked (seed 003, S18; rules.hybrid_names):
the certificate on-premises presented to Exchange Online's probe against the outbound connector's
TlsDomain, the certificate the send connector presents against the inbound connector's
TlsSenderCertificateName, and each Mailbox server's IIS certificate against
autodiscover.<domain> of every hybrid domain (a warning: Autodiscover is not mail flow).
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
from ..pki.validate import certificate_names
from ..rules.exo import ExoRoute
from ..rules.hybrid_names import (
    SanCheck,
    autodiscover_needs,
    check_names,
    exo_inbound_needs,
    exo_outbound_need,
)
from ..rules.outbound import AttemptFailure, exo_last_error
from ..rules.routing import Route
from ..scenario.loader import LoadedScenario
from ..smtp.client import MessageResult, OutboundMessage, SendSpec, deliver
from ..topology.changes import apply_change
from ..topology.timespec import parse_timespan
from ..transport.message import new_message
from .operations import is_operation
from .runtime import LabRuntime

__all__ = [
    "ConnectorResult",
    "ValidationReport",
    "format_report",
    "format_results",
    "run_report",
    "run_validation",
    "san_as_dict",
    "validate_connectors",
    "validate_report",
]


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


def _presented(rt: LabRuntime, res: MessageResult) -> Any:
    """The server certificate a probe was shown: from the session, or (a handshake whose
    certificate failed validation) the lab certificate with the failure's thumbprint."""
    chain = res.tls.get("remote_chain") or []
    if chain:
        return chain[0]
    thumb = res.failure.thumbprint if res.failure is not None else None
    return next((c for c in rt.pki.all_leaf_certs() if thumb and rt.certificate_thumbprint(c) == thumb), None)


def _label(rt: LabRuntime, cert: Any) -> str:
    return f"{rt.certificate_subject(cert)} (thumbprint {rt.certificate_thumbprint(cert)})"


async def _exo_connector(rt: LabRuntime, conn: Any, san: list[SanCheck]) -> ConnectorResult:
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
    need = exo_outbound_need(conn)
    leaf = _presented(rt, res)
    if need is not None and leaf is not None:  # the certificate on-premises presented to this connector
        host, ip = (res.failure.target_name, res.failure.target_ip) if res.failure else (res.remote_host, res.remote_ip)
        where = f"{host or target} [{ip}] to Exchange Online's '{conn.name}'"
        san.append(check_names(where, _label(rt, leaf), certificate_names(leaf), [need]))
    return ConnectorResult("Exchange Online", conn.name, target, rcpt, ok, status, _tls_view(res))


async def _onprem_connector(rt: LabRuntime, sc: Any, server: str, san: list[SanCheck]) -> ConnectorResult:
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
    needs = exo_inbound_needs(tenant)
    stored = spec.tls.client_cert
    if needs and stored is not None:  # the certificate the send connector presents (TlsCertificateName)
        san.append(check_names(f"{server}: send connector '{sc.name}'", _label(rt, stored.cert),
                               certificate_names(stored.cert), needs, any_of=True))
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


def _autodiscover_checks(rt: LabRuntime) -> list[SanCheck]:
    """Each Mailbox server's IIS certificate (the last one enabled for IIS in its store: each
    Enable-ExchangeCertificate -Services IIS rebinds the web site [INFERRED]) against
    autodiscover.<domain> of the hybrid domains."""
    needs = autodiscover_needs(rt.model.organization, rt.model.tenant)
    checks: list[SanCheck] = []
    if not needs:
        return checks
    for model in rt.model.organization.servers:
        if model.role != "Mailbox":
            continue
        iis = [e for e in rt.servers[model.name].store.entries if any(s.upper() == "IIS" for s in e.services)]
        if iis:
            cert = iis[-1].cert
            checks.append(check_names(f"{model.name}: IIS (Autodiscover)", _label(rt, cert),
                                      certificate_names(cert), needs))
    return checks


async def validate_connectors(rt: LabRuntime, san: list[SanCheck] | None = None) -> list[ConnectorResult]:
    """Probe every hybrid connector of a running lab: EXO's outbound connectors, then the on-prem
    send connectors to Exchange Online from each source server. `san` collects the certificate
    name checks (rules.hybrid_names) of what each probe presented, and the Autodiscover checks."""
    results: list[ConnectorResult] = []
    san = [] if san is None else san
    for conn in rt.model.tenant.outbound_connectors:
        if conn.enabled:
            results.append(await _exo_connector(rt, conn, san))
    for sc in rt.model.organization.send_connectors:
        if not sc.enabled or not sc.cloud_services_mail_enabled:
            continue
        for server in sc.source_transport_servers or [s.name for s in rt.model.organization.servers
                                                      if s.role == "Mailbox"]:
            name = rt.model.organization.server(server).name
            results.append(await _onprem_connector(rt, sc, name, san))
    san.extend(_autodiscover_checks(rt))
    return results


@dataclass
class ValidationReport:
    """What `labsim validate` found: the connector probes and the certificate name checks."""

    connectors: list[ConnectorResult]
    when: str
    certificates: list[SanCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.connectors) and all(c.ok for c in self.certificates)


async def run_validation(loaded: LoadedScenario, *, at: str | None = None, seed: int | None = None,
                         out: Path | None = None) -> tuple[list[ConnectorResult], str]:
    """Start the scenario's lab (its start state, plus timeline changes up to `at`) and validate."""
    report = await run_report(loaded, at=at, seed=seed, out=out)
    return report.connectors, report.when


async def run_report(loaded: LoadedScenario, *, at: str | None = None, seed: int | None = None,
                     out: Path | None = None) -> ValidationReport:
    """run_validation with the certificate name checks (seed 003, S18)."""
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
        san: list[SanCheck] = []
        results = await validate_connectors(rt, san)
        rt.flush_logs()
        return ValidationReport(results, when.strftime("%Y-%m-%dT%H:%M:%SZ"), san)
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


def format_report(scenario: str, report: ValidationReport) -> str:
    """The connector table, then what each presented certificate lacks."""
    lines = [format_results(scenario, report.when, report.connectors)]
    if report.certificates:
        lines.append("  Hybrid certificate names (Certificate requirements for hybrid deployments; seed 003):")
    for c in report.certificates:
        lines.append(f"  {c.where}: {c.certificate}")
        lines.append(f"      Names    {', '.join(c.names) or '(none)'}")
        for n in c.satisfied:
            lines.append(f"      Has      {n.name}: {n.used_by}")
        for n in c.missing:
            if c.any_of and c.satisfied:
                continue  # another inbound connector's name is on the certificate: that one attributes
            word = "Missing " if n.mail_flow else "Warning "
            lines.append(f"      {word} {n.name}: {n.used_by} - {n.breaks}")
    return "\n".join(lines)


def san_as_dict(check: SanCheck) -> dict[str, Any]:
    return {"where": check.where, "certificate": check.certificate, "names": list(check.names), "ok": check.ok,
            "has": [asdict(n) for n in check.satisfied], "missing": [asdict(n) for n in check.missing]}


def validate_scenario(loaded: LoadedScenario, **kw: Any) -> tuple[list[ConnectorResult], str]:
    return asyncio.run(run_validation(loaded, **kw))


def validate_report(loaded: LoadedScenario, **kw: Any) -> ValidationReport:
    return asyncio.run(run_report(loaded, **kw))
