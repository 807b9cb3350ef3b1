"""A lab session: the scenario's lab running on a virtual clock that the trainee's commands drive.

Theory of operation. The lab is the same `LabRuntime` `labsim run` uses, on a virtual clock. The
shell moves the clock: before each command by the wall time that has passed (interactive use),
and by `Start-Sleep -Seconds N` / `Skip-LabTime HH:MM:SS`; moving it runs every action that falls
due (a retry, the next message of the scenario) through the runtime's scheduler, as `run` does.
Scripted use (--command, stdin) moves it only by those verbs, so a script gives the same lab on
every replay.

A change the trainee makes is a scheduler action at the current time built by the timeline's own
`engine.driver.timeline_change`: configuration through `topology.changes.apply_change`, operations
(Retry-Queue, Restart-Service, ...) through `engine.operations`. Changes that a running service
only reads at start (topology.restart_rules) are held as pending (Get- shows them, as AD would)
until Start-Service/Restart-Service of that service on that server applies them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..engine.driver import check_timeline_operations, inject_message, timeline_change
from ..engine.runtime import LabRuntime
from ..errors import LabsimError, TopologyError
from ..scenario.loader import LoadedScenario
from ..scenario.model import Exercise, Message
from ..topology.changes import apply_change
from ..topology.restart_rules import split_change
from ..topology.timespec import parse_timespan
from . import cmdlets, files, views
from .errors import ShellError
from .evaluator import (
    Context,
    ScriptBlock,
    Spec,
    builtins,
    enumerate_value,
    render,
    run_script,
    truthy,
)
from .findings import CAUSE_ACTIONS, Submitted, grade_finding
from .objects import PSObject, cell


@dataclass
class PendingChange:
    cmdlet: str
    server: str
    service: str
    params: dict[str, Any]


@dataclass
class CheckResult:
    what: str
    ok: bool
    detail: str


@dataclass
class Grade:
    objective: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def lines(self) -> list[str]:
        out = [f"Exercise: {self.objective}"]
        for c in self.checks:
            out.append(f"  [{'PASS' if c.ok else 'FAIL'}] {c.what}" + ("" if c.ok or not c.detail else f": {c.detail}"))
        out.append("Result: " + ("PASSED" if self.passed else "NOT PASSED"))
        return out


class LabSession:
    def __init__(self, loaded: LoadedScenario, out: Path, *, exercise: bool = False, seed: int | None = None,
                 wall_clock: bool = False) -> None:
        scn = loaded.scenario
        if exercise and scn.exercise is None:
            raise ShellError(f"scenario {scn.id} has no [exercise]")
        self.loaded = loaded
        self.exercise: Exercise | None = scn.exercise if exercise else None
        self.out = out
        self.seed = scn.seed if seed is None else seed
        self.wall_clock = wall_clock
        self.rt: LabRuntime = LabRuntime(loaded.lab.model_copy(deep=True), seed=self.seed, out=out)
        self.pending: list[PendingChange] = []
        self.hints_used = 0
        self.probes = 0
        self.notes: list[str] = []  # WARNING: lines of the command being run
        self._wall = time.monotonic()
        servers = self.rt.model.organization.servers
        self.local = next((s.name for s in servers if s.role == "Mailbox"), servers[0].name if servers else "")
        dc = next((d.name for d in self.rt.model.dns_servers if str(d.site) == "onprem"), "DC01")
        domain = next((a.domain_name for a in self.rt.model.organization.accepted_domains), "")
        self.domain_controller = f"{dc}.{domain}" if domain else dc
        self.ctx: Context = builtins()
        cmdlets.register(self.ctx, self)
        files.register(self.ctx, self)
        self._register_lab_verbs()

    # --- life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        loaded, scn = self.loaded, self.loaded.scenario
        check_timeline_operations(loaded)
        await self.rt.start()
        ex = self.exercise
        fix_at = parse_timespan(ex.fix_at) if ex is not None and ex.fix_at else None
        for m in scn.message:
            off = parse_timespan(m.at)
            if fix_at is None or off < fix_at:
                self.rt.scheduler.call_at(loaded.start + off, f"message {m.id}", inject_message(self.rt, m))
        for ch in scn.change:
            if ch.at is None:
                continue
            off = parse_timespan(ch.at)
            if fix_at is None or off < fix_at:
                self.rt.scheduler.call_at(loaded.start + off, f"change {ch.cmdlet}",
                                          timeline_change(self.rt, ch.cmdlet, ch.params))
        broken = loaded.start
        if ex is not None:  # starts broken: the lab is run up to its last fault change (a stop at +00:00:30)
            offs = [parse_timespan(ch.at) for ch in scn.change if ch.at is not None]
            offs = [o for o in offs if fix_at is None or o < fix_at]
            broken = loaded.start + max(offs, default=timedelta(0))
        await self.advance_to(max(broken, self.now()))
        self._wall = time.monotonic()

    async def stop(self) -> None:
        rt = self.rt
        try:
            rt.collect_pending()
            rt.flush_logs()
            rt.write_summary()
            rt.write_event_logs()
        finally:
            await rt.stop()

    # --- time ---------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.rt.clock.now()

    async def advance_to(self, when: datetime) -> None:
        """Run the lab up to `when`, a minute of lab time at a time: Ctrl-C (`stop_requested`) stops
        between two steps, never inside an action, so the lab is always left consistent."""
        while True:
            step = min(when, self.now() + timedelta(seconds=60))
            await self.rt.scheduler.run(self.rt.settle, until=step)
            self.rt.clock.set(step)
            if step >= when:
                return
            if self.stop_requested:
                self.stop_requested = False
                raise ShellError(f"Stopped (Ctrl-C); the lab's time is {self.now().strftime('%H:%M:%S')}.",
                                 "OperationStopped")

    stop_requested = False

    async def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ShellError("Cannot validate argument: time does not run backwards.", "InvalidArgument")
        await self.advance_to(self.now() + timedelta(seconds=seconds))

    async def catch_up(self) -> None:
        """Interactive use: the lab's time follows the wall clock between commands."""
        if not self.wall_clock:
            return
        t = time.monotonic()
        elapsed, self._wall = t - self._wall, t
        await self.advance(elapsed)

    async def _act(self, label: str, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run `fn` as a scheduler action now (settled like a timeline step); its error is raised here."""
        errors: list[BaseException] = []

        async def action() -> None:
            try:
                await fn()
            except (TopologyError, ShellError) as exc:
                errors.append(exc)

        self.rt.scheduler.call_at(self.now(), label, action)
        await self.advance_to(self.now())
        if errors:
            exc = errors[0]
            if isinstance(exc, TopologyError):
                raise ShellError(exc.problem, "InvalidOperation") from None
            raise exc

    # --- changes ---------------------------------------------------------------------------------------
    def server(self, name: str) -> Any:
        try:
            return self.rt.model.organization.server(name)
        except KeyError:
            raise ShellError(f"The operation couldn't be performed because object '{name}' couldn't be found on "
                             f"'{self.domain_controller}'.", "NotSpecified") from None

    def overlay(self, cmdlet: str, identity: str, props: dict[str, Any]) -> dict[str, Any]:
        """What Active Directory holds: the pending values on top of what the service runs with."""
        for p in self.pending:
            if p.cmdlet.lower() == cmdlet.lower() and p.server.lower() == identity.lower():
                for k, v in p.params.items():
                    if k.lower() == "identity":
                        continue
                    key = next((x for x in props if x.lower() == k.lower()), k)
                    props[key] = v
        return props

    def _current(self, cmdlet: str, identity: str, prop: str) -> list[Any]:
        getters: dict[str, Callable[[], list[PSObject]]] = {
            "set-sendconnector": lambda: cmdlets.send_connector_objects(self),
            "set-receiveconnector": lambda: cmdlets.receive_connector_objects(self),
            "set-transportservice": lambda: cmdlets.transport_service_objects(self, False),
            "set-frontendtransportservice": lambda: cmdlets.transport_service_objects(self, True),
        }
        get = getters.get(cmdlet.lower())
        if get is None:
            raise ShellError(f"-{prop}: @{{Add=...; Remove=...}} is not supported by {cmdlet} in the lab; "
                             "give the whole list.", "InvalidArgument")
        for o in get():
            if cell(o.get("Identity")).lower() == identity.lower() or cell(o.get("Name")).lower() == identity.lower():
                return list(enumerate_value(o.get(prop)))
        raise ShellError(f"The operation couldn't be performed because object '{identity}' couldn't be found on "
                         f"'{self.domain_controller}'.", "NotSpecified")

    def _values(self, cmdlet: str, params: dict[str, Any]) -> dict[str, Any]:
        """Shell values as the topology cmdlets take them: @{Add=..;Remove=..} against the current
        list, script blocks as their text, objects as their identity."""
        out: dict[str, Any] = {}
        identity = cell(next((v for k, v in params.items() if k.lower() == "identity"), ""))
        for k, v in params.items():
            if isinstance(v, dict) and {x.lower() for x in v} <= {"add", "remove"}:
                current = self._current(cmdlet, identity, k)
                add = [cell(x) for x in enumerate_value(next((x for y, x in v.items() if y.lower() == "add"), None))]
                rem = {cell(x).lower() for x in
                       enumerate_value(next((x for y, x in v.items() if y.lower() == "remove"), None))}
                v = [x for x in current if cell(x).lower() not in rem] + [a for a in add if a not in current]
            elif isinstance(v, ScriptBlock):
                v = "{" + v.text + "}"
            elif isinstance(v, PSObject):
                v = cell(v)
            elif isinstance(v, list):
                v = [cell(x) if isinstance(x, PSObject) else x for x in v]
            if not isinstance(v, list) and v is not None and cmdlets.is_list_param(cmdlet, k):
                v = [v]  # PowerShell binds one value to a multi-valued parameter as a list of one
            out[k] = v
        return out

    def _certificate_params(self, cmdlet: str, params: dict[str, Any]) -> dict[str, Any]:
        """Exchange's ways of naming a certificate, as the lab's cmdlets take it (-Server,
        -Certificate NAME): -Thumbprint, an -Identity SERVER\\THUMBPRINT (a piped
        Get-ExchangeCertificate), and for Import- a -FileName whose name is the lab certificate's
        (NAME.pfx brings the private key, NAME.cer does not)."""
        out = dict(params)
        low = {k.lower(): k for k in out}
        server = cell(out.pop(low["server"])) if "server" in low else self.local
        thumb = None
        if "thumbprint" in low:
            thumb = cell(out.pop(low["thumbprint"]))
        elif "identity" in low and "\\" in cell(out[low["identity"]]):
            server, _, thumb = cell(out.pop(low["identity"])).partition("\\")
        elif "identity" in low:
            thumb = cell(out.pop(low["identity"]))
        if thumb is not None:
            srv = self.server(server)
            names = [e.certificate for e in srv.certificates
                     if self.rt.pki.issued(e.certificate).thumbprint.lower() == thumb.lower()]
            if not names:
                raise ShellError(f"The certificate with thumbprint {thumb} was not found.", "ObjectNotFound")
            out["Certificate"] = names[0]
        if "filename" in low and cmdlet.lower() == "import-exchangecertificate":
            path = cell(out.pop(low["filename"])).replace("\\", "/")
            stem, _, ext = path.rsplit("/", 1)[-1].rpartition(".")
            out["Certificate"] = stem
            out["HasPrivateKey"] = ext.lower() == "pfx"
            for k in ("password", "privatekeyexportable"):
                if k in low:
                    out.pop(low[k])
        out["Server"] = server
        return out

    async def change(self, cmdlet: str, params: dict[str, Any]) -> None:
        params = self._values(cmdlet, params)
        if cmdlet.lower().endswith("-exchangecertificate"):
            params = self._certificate_params(cmdlet, params)
        now, later = split_change(cmdlet, params)
        if later:
            try:  # refused now if it would be refused at the restart
                apply_change(self.rt.model.model_copy(deep=True), cmdlet, dict(params))
            except TopologyError as exc:
                raise ShellError(exc.problem, "InvalidArgument") from None
            identity = cell(next((v for k, v in params.items() if k.lower() == "identity"), ""))
            server = self.server(identity).name
            for service in sorted(set(later.values())):
                held = {k: v for k, v in params.items() if later.get(k) == service}
                self.pending.append(PendingChange(cmdlet, server, service, {"Identity": server, **held}))
            if not [k for k in now if k.lower() != "identity"]:
                return
        await self._act(f"shell {cmdlet}", timeline_change(self.rt, cmdlet, now))

    async def operation(self, name: str, params: dict[str, Any]) -> None:
        await self._act(f"shell {name}", timeline_change(self.rt, name, self._values(name, params)))

    async def service(self, verb: str, service: str, server: str) -> None:
        srv = self.server(server)
        due = [p for p in self.pending if verb != "Stop-Service" and p.server == srv.name
               and p.service.lower() == service.lower()]
        run = timeline_change(self.rt, verb, {"Name": service, "Server": srv.name})

        async def action() -> None:
            for p in due:
                apply_change(self.rt.model, p.cmdlet, dict(p.params))
            await run()

        await self._act(f"shell {verb}", action)
        for p in due:
            self.pending.remove(p)

    # --- network views ----------------------------------------------------------------------------------
    async def resolve(self, name: str, qtype: str, server: Any) -> list[PSObject]:
        rt = self.rt
        host = rt.net.host(self.local)
        servers = rt.host_dns(host)
        if server is not None:
            s = cell(server)
            d = next((x for x in rt.model.dns_servers if x.name.lower() == s.lower() or x.ip == s), None)
            servers = [d.ip if d is not None else s]
        qtype = qtype.upper()
        try:
            if qtype == "MX":
                answers = await rt.resolver(host, servers, "Dnscache").resolve_mx(name)
                return [PSObject("Microsoft.DnsClient.Commands.DnsRecord_MX",
                                 {"Name": name, "Type": "MX", "TTL": 3600, "Section": "Answer",
                                  "NameExchange": host_, "Preference": pref}, views.DNS_MX) for pref, host_ in answers]
            if qtype != "A":
                raise ShellError(f"Resolve-DnsName: the lab answers -Type A and MX, not {qtype}.", "InvalidArgument")
            ips = await rt.resolve_a(host, servers, name, service="Dnscache")
        except ShellError:
            raise
        except LabsimError as exc:
            text = next((t for cls, t in cmdlets.DNS_ERRORS if isinstance(exc, cls)), str(exc))
            raise ShellError(f"{name} : {text}", "ResourceUnavailable") from None
        except ValueError as exc:
            raise ShellError(f"{name} : {exc}", "InvalidArgument") from None
        return [PSObject("Microsoft.DnsClient.Commands.DnsRecord_A",
                         {"Name": name, "Type": "A", "TTL": 3600, "Section": "Answer", "IPAddress": ip},
                         views.DNS_A) for ip in ips]

    async def test_connection(self, target: str, port: int, source: str) -> PSObject:
        rt = self.rt
        try:
            src = rt.net.host(source)
        except KeyError:
            raise ShellError(f"-Source {source!r} is not a host of the lab.", "InvalidArgument") from None
        ip = target
        if not all(p.isdigit() for p in target.split(".")) or target.count(".") != 3:
            if target.lower() in rt.net.by_name:
                ip = rt.net.host(target).ip
            else:
                found = await self.resolve(target, "A", None)
                ip = cell(found[0].get("IPAddress"))
        plan = rt.net.plan(src, ip, port)
        ok = False
        if plan.failure is None and rt.book.knows(plan.dial_ip):
            from ..net.vnet import ConnectionInfo

            real_dst = (rt.book.real_ip(plan.dial_ip), rt.book.real_port(port))
            real_src = rt.book.real_ip(plan.seen_src_ip)

            async def probe() -> None:
                nonlocal ok
                ok = await cmdlets.tcp_probe(real_dst, real_src, 5.0)

            rt.registry.announce((real_src, 0), ConnectionInfo(
                src_virtual=(plan.seen_src_ip, rt.source_port(src.name)), dst_virtual=(ip, port),
                context={"client_host": src.name}))
            await self._act("shell Test-NetConnection", probe)
        if not ok:
            self.notes.append(f"WARNING: TCP connect to ({ip} : {port}) failed")
        return PSObject("TestNetConnectionResult",
                        {"ComputerName": target, "RemoteAddress": ip, "RemotePort": port, "InterfaceAlias": "Ethernet",
                         "SourceAddress": src.ip, "TcpTestSucceeded": ok}, views.NET_CONNECTION)

    async def validate_outbound(self, identity: str, recipients: list[str]) -> PSObject:
        """Validate-OutboundConnector: the lab's connector test (engine.validate_connectors) on the
        running lab: a real test message through the connector's smart hosts and TLS plan."""
        from ..engine.validate_connectors import validate_connectors

        conns = [c for c in self.rt.model.tenant.outbound_connectors if c.name.lower() == identity.lower()]
        if not conns:
            raise ShellError(f"The operation couldn't be performed because object '{identity}' couldn't be found.",
                             "ObjectNotFound")
        found: list[Any] = []

        async def run() -> None:
            found.extend(r for r in await validate_connectors(self.rt)
                         if r.side == "Exchange Online" and r.connector == conns[0].name)

        await self._act("shell Validate-OutboundConnector", run)
        r = found[0] if found else None
        if r is None:
            raise ShellError(f"The connector '{identity}' is disabled.", "InvalidOperation")
        return PSObject("ValidationResult", {
            "Identity": r.connector, "Target": r.target, "Recipient": r.recipient, "IsTaskSuccessful": r.ok,
            "Status": r.status, "TlsStatus": r.tls.get("status", "") if r.tls else ""},
            views.VALIDATION)

    def event_level(self, event_id: int) -> str:
        from ..engine.eventlog import EVENTS

        d = EVENTS.get(event_id)
        return d.level if d is not None else "Information"

    # --- exercises -------------------------------------------------------------------------------------
    def next_hint(self) -> str:
        ex = self.exercise
        if ex is None:
            raise ShellError("This lab was not started as an exercise (labsim shell ID --exercise).")
        if self.hints_used >= len(ex.hints):
            return "No more hints."
        self.hints_used += 1
        return ex.hints[self.hints_used - 1]

    async def grade(self) -> Grade:
        ex = self.exercise
        if ex is None:
            raise ShellError("This lab was not started as an exercise (labsim shell ID --exercise).")
        g = Grade(ex.objective)
        keys = []
        for probe in ex.check.probe:
            self.probes += 1
            key = f"exercise-probe-{self.probes}"
            msg = Message.model_validate({"id": key, "from": probe.sender, "to": probe.to,
                                          "subject": f"{probe.subject} {self.probes}"})
            self.rt.scheduler.call_at(self.now(), f"message {key}", inject_message(self.rt, msg))
            keys.append((key, probe))
        limit = self.now() + parse_timespan(ex.check.wait)
        while True:
            await self.advance_to(min(limit, self.now() + timedelta(seconds=60)))
            done = all(self._settled(k) for k, _ in keys)
            if (done and (not ex.check.drained or not self._queued())) or self.now() >= limit:
                break
        for n, (key, probe) in enumerate(keys, 1):
            fate = self.rt.ledger.fates.get(key)
            realm, _, address = probe.mailbox.partition(":")
            hit = fate is not None and any(d["realm"] == realm and d["recipient"].lower() == address.lower()
                                           for d in fate.delivered)
            g.checks.append(CheckResult(f"probe message {n} delivered to {probe.mailbox}", hit,
                                        "" if hit else self._where(fate)))
        if ex.check.drained:
            left = self._queued()
            g.checks.append(CheckResult("queues drained", not left,
                                        "still queued: " + ", ".join(f"{q} ({n})" for q, n in left)))
        if ex.check.finding is not None:
            self.rt.flush_logs()
            for what, ok, detail in grade_finding(self.out, self.rt.model, ex.check.finding, self.finding):
                g.checks.append(CheckResult(what, ok, detail))
        for r in ex.check.require:
            try:
                ok = truthy(await run_script(self.ctx, _parse(r.test)))
                detail = ""
            except ShellError as exc:
                ok, detail = False, f"{r.says} ({exc.message})"
            g.checks.append(CheckResult(r.says, ok, detail))
        return g

    def _settled(self, key: str) -> bool:
        fate = self.rt.ledger.fates.get(key)
        return fate is not None and fate.fate in ("delivered", "failed", "partial")

    def _where(self, fate: Any) -> str:
        """Where an undelivered probe is: failed (and why), or the queue that holds it and its error."""
        if fate is None:
            return "it was never sent"
        if fate.failed:
            return "failed: " + "; ".join(x["reason"] for x in fate.failed)
        rt = self.rt
        for party in [*rt.servers.values(), rt.exo, *rt.internet.values()]:
            for q in party.queues.all():
                for qm in q.messages:
                    if qm.item.message_id == fate.message_id:
                        return f"still queued in {q.identity}: {qm.last_error or q.last_error or q.status}"
        if any(h.message_id == fate.message_id for h in rt.service_state.outbox.held):
            return "still in the sender's Outbox (not submitted)"
        return "not delivered within the wait"

    def _queued(self) -> list[tuple[str, int]]:
        rt = self.rt
        left = []
        for party in [*rt.servers.values(), rt.exo, *rt.internet.values()]:
            for q in party.queues.all():
                if q.messages:
                    left.append((q.identity, len(q.messages)))
        outbox = rt.service_state.outbox.held
        if outbox:
            left.append(("Outbox", len(outbox)))
        return left

    # --- lab verbs ----------------------------------------------------------------------------------------
    def _register_lab_verbs(self) -> None:
        s = self

        async def sleep(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            secs = float(p.get("Seconds") or 0) + float(p.get("Milliseconds") or 0) / 1000 + \
                float(p.get("Minutes") or 0) * 60
            await s.advance(secs)
            return []

        async def skip(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            span = p.get("Duration")
            if span is None:
                raise ShellError("Missing an argument for parameter 'Duration' (e.g. Skip-LabTime 01:00:00).",
                                 "InvalidArgument")
            try:
                delta = parse_timespan(cell(span))
            except (ValueError, LabsimError) as exc:
                raise ShellError(f"Cannot convert '{cell(span)}' to a TimeSpan: {exc}", "InvalidArgument") from None
            await s.advance(delta.total_seconds())
            return [f"Lab time is now {s.now().strftime('%Y-%m-%d %H:%M:%S')} UTC"]

        async def lab_time(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            start = s.loaded.start
            return [PSObject("LabTime", {"Now": s.now(), "Elapsed": str(s.now() - start).split(".")[0],
                                         "Clock": "wall" if s.wall_clock else "manual"})]

        async def hint(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            text = s.next_hint()
            total = len(s.exercise.hints) if s.exercise else 0
            return [PSObject("LabHint", {"Hint": text, "Number": f"{s.hints_used} of {total}",
                                         "Remaining": total - s.hints_used}, views.HINT)]

        async def test_exercise(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            g = await s.grade()
            s.last_grade = g
            return ["\n".join(g.lines())]

        async def pending(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            return [PSObject("LabPendingChange", {"Server": x.server, "Service": x.service, "Cmdlet": x.cmdlet,
                                                  "Parameters": [k for k in x.params if k != "Identity"]})
                    for x in s.pending]

        async def objective(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            if s.exercise is None:
                raise ShellError("This lab was not started as an exercise (labsim shell ID --exercise).")
            return [s.exercise.objective]

        async def submit_finding(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
            cause, evidence = p.get("Cause"), p.get("Evidence")
            if cause is None or evidence is None:
                raise ShellError("Submit-LabFinding needs -Cause and -Evidence (a session id or a protocol log line).",
                                 "InvalidArgument")
            if cell(cause) not in CAUSE_ACTIONS:
                raise ShellError(f"Cannot validate argument on parameter 'Cause'. The argument \"{cell(cause)}\" does "
                                 f"not belong to the set \"{','.join(CAUSE_ACTIONS)}\".", "InvalidArgument")
            link = [cell(x) for x in enumerate_value(p.get("Link"))] if p.get("Link") is not None else []
            s.finding = Submitted(cell(cause), cell(evidence), link)
            return [PSObject("LabFinding", {"Cause": s.finding.cause, "Evidence": s.finding.evidence,
                                            "Link": ",".join(link), "Submitted": s.now()})]

        reg = self.ctx.register
        reg(Spec("Submit-LabFinding", submit_finding, ("Cause", "Evidence", "Link"), (), ("Cause",),
                 "Names the cause of the fault, with a session that shows it (diagnosis exercises)."))
        reg(Spec("Start-Sleep", sleep, ("Seconds", "Milliseconds", "Minutes"), (), ("Seconds",),
                 "Waits: the lab's clock moves on (retries happen)."), "sleep")
        reg(Spec("Skip-LabTime", skip, ("Duration",), (), ("Duration",), "Moves the lab's clock on by a TimeSpan."))
        reg(Spec("Get-LabTime", lab_time, (), (), (), "The lab's virtual time."))
        reg(Spec("Get-Hint", hint, (), (), (), "The exercise's next hint."))
        reg(Spec("Test-Exercise", test_exercise, (), (), (), "Grades the exercise (sends its probe messages)."),
            "Test-LabObjective")
        reg(Spec("Get-LabPendingChange", pending, (), (), (), "Changes waiting for a service restart."))
        reg(Spec("Get-LabObjective", objective, (), (), (), "The exercise's objective."))

    last_grade: Grade | None = None
    finding: Submitted | None = None

    def render(self, values: list[Any]) -> list[str]:
        return render(self.ctx, values)


def _parse(text: str) -> Any:
    from .parser import parse

    return parse(text)


__all__ = ["Grade", "LabSession", "PendingChange"]
