"""Benchmark: one labsim SMTP hop against a raw aiosmtpd server + aiosmtplib client, same run.

Usage: .venv/bin/python benchmarks/bench_hop.py [--pairs 12] [--messages 100] [--reuse 1,20]
(needs the `bench` extra: pip install -e '.[bench]', which `make bench` does)

What a hop is: the lab's own client shell (smtp/client.py `deliver`, as the Hub's queue uses it)
delivering to the lab's own server shell (smtp/server.py) with the Exchange receive policy, on a
lab started in live mode (`labsim up`'s wall clock). The hop measured is the Hub of CMHYBD01 to its
Mailbox Transport Delivery service (port 475, SmtpDeliveryToMailbox): the last hop of on-prem mail,
so nothing else runs behind it. Everything the lab does on that hop is counted: the vnet
announce/claim, receive connector selection, the send protocol log (Verbose; the Mailbox Delivery
receive connector keeps none), the client certificate's classification, message tracking, the
Received header, writing the .eml into the mailbox store, and flushing the logs to disk at the end
of each round.

The raw pair: aiosmtpd's SMTP server (a handler that accepts the message and keeps nothing; in a
second server of the same kind it writes each message into a file of its own, as the hop writes
its .eml) and a plain aiosmtplib client, with the very same TLS contexts the hop uses (the Hub's client context
presenting its certificate, the Mailbox Delivery service's server context requesting one: TLS 1.2
only, the lab's cipher list, the RSA 2048 certificates from labsim.pki), STARTTLS on every session,
the same message bytes and the same number of messages per connection (K).

Both run in this one process and event loop, one session at a time, in rounds of --messages
messages, interleaved raw, labsim, raw, labsim ... after one warm-up round each, so a change in the
machine's speed hits both alike; the figure to read is the per-pair ratio labsim/raw, by wall time
and by this process's CPU time (both ends run in it, so other processes' load inflates the wall
figures but hardly the CPU ones). With K=1
and K=20 (Exchange's SmtpMaxMessagesPerConnection default) the per-session and per-message costs
follow (t(K) = session + K * message, solved from the two medians).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib

try:
    from aiosmtpd.smtp import SMTP as AiosmtpdServer
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    sys.exit("bench_hop.py needs aiosmtpd: .venv/bin/pip install -e '.[bench]' (or `make bench`)")

from labsim.engine.queueing import INTRA_ORG
from labsim.engine.runtime import LabRuntime
from labsim.scenario.loader import load_scenario
from labsim.smtp.client import ClientTls, OutboundMessage, SendSpec, Target, deliver

SENDER = "alex@fabrikam.com"
RECIPIENT = "raghu@cloudmonkeys.xyz"
BODY_LINES = 40  # ~3 KB of text: an ordinary short mail


def message(n: int, side: str) -> bytes:
    """The same message on both sides (only the Message-ID differs, one per message)."""
    head = (f"From: Alex <{SENDER}>\r\nTo: Raghu <{RECIPIENT}>\r\nSubject: bench {n}\r\n"
            f"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench-{side}-{n}@fabrikam.com>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
    body = "".join(f"line {i:02d} of a benchmark message, long enough to look like ordinary text.\r\n"
                   for i in range(BODY_LINES))
    return (head + body).encode()


@dataclass
class Round:
    seconds: float  # wall
    sessions: int
    messages: int
    cpu: float = 0.0  # this process's CPU seconds (both ends run in it): what other load cannot inflate

    @property
    def msg_rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_rate(self) -> float:
        return self.messages / self.cpu

    @property
    def session_rate(self) -> float:
        return self.sessions / self.seconds


class _Sink:
    """aiosmtpd handler: accept every message and keep nothing (the cheapest possible server), or,
    with `store`, write each into a file of its own, as the labsim hop writes its .eml."""

    def __init__(self, store: Path | None = None) -> None:
        self.count = 0
        self.store = store
        self.tls = ""  # what the server saw of the first session's TLS (to show the settings match)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.count += 1
        if self.store is not None:
            (self.store / f"{self.count:06d}.eml").write_bytes(envelope.original_content)
        if not self.tls:
            sslobj = server.transport.get_extra_info("ssl_object")
            cert = sslobj.getpeercert(binary_form=True) if sslobj else None
            self.tls = (f"{sslobj.version()} {sslobj.cipher()[0]}, client certificate "
                        f"{'presented' if cert else 'NOT presented'}" if sslobj else "no TLS")
        return "250 2.6.0 Queued mail for delivery"


class RawPair:
    def __init__(self, server_ctx: Any, client_ctx: Any, store: Path | None = None) -> None:
        self.server_ctx, self.client_ctx = server_ctx, client_ctx
        if store is not None:
            store.mkdir(parents=True)
        self.sink = _Sink(store)
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.n = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: AiosmtpdServer(self.sink, hostname="raw.bench.example", tls_context=self.server_ctx,
                                   require_starttls=True),
            "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def session(self, k: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, start_tls=False,
                               local_hostname="cmhybd01.cloudmonkeys.xyz", timeout=10)
        await smtp.connect()
        await smtp.ehlo()
        await smtp.starttls(tls_context=self.client_ctx)
        await smtp.ehlo()
        for _ in range(k):
            self.n += 1
            errors, _reply = await smtp.sendmail(SENDER, [RECIPIENT], message(self.n, "raw"))
            if errors:
                raise RuntimeError(f"raw pair refused a recipient: {errors}")
        await smtp.quit()

    async def round(self, k: int, messages: int) -> Round:
        sessions = max(1, messages // k)
        before = self.sink.count
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(sessions):
            await self.session(k)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if self.sink.count - before != sessions * k:
            raise RuntimeError("raw pair lost messages")
        return Round(seconds, sessions, sessions * k, cpu)


class LabHop:
    """The Hub of CMHYBD01 delivering to its own Mailbox Transport Delivery service (port 475)."""

    def __init__(self, out: Path) -> None:
        loaded = load_scenario("hybrid-baseline")
        model = loaded.lab.model_copy(deep=True)
        self.rt = LabRuntime(model, seed=loaded.scenario.seed, out=out, live=True)
        self.n = 0
        self.tls = ""
        self.evidence_text = ""

    async def start(self) -> None:
        await self.rt.start()
        org = self.rt.model.organization
        mailbox = next(m for m in org.mailboxes if m.primary_smtp_address.lower() == RECIPIENT)
        hub_model = next(s for s in org.servers if mailbox.database in s.databases)
        self.hub = self.rt.servers[hub_model.name]
        cfg = self.hub.transport_cfg
        # what ExchangeServerRuntime.send_spec builds for an SmtpDeliveryToMailbox queue
        self.spec = SendSpec(
            src=self.hub.host, connector_id=INTRA_ORG, log=self.hub.protocol_log("Hub", "send"),
            log_enabled=cfg.intra_org_connector_protocol_logging_level == "Verbose",
            session_ids=self.hub.session_ids["Hub"], ehlo_name=self.hub.model.fqdn,
            destination_domain=mailbox.database.lower(),
            targets=[Target(self.hub.model.ip, 475, self.hub.model.fqdn)],
            tls=ClientTls(attempt=True, store=self.hub.store, client_cert=self.hub.internal_cert()))

    def tls_contexts(self) -> tuple[Any, Any]:
        """(server, client) SSL contexts of this hop: the raw pair uses the same ones."""
        cert = self.hub.internal_cert()
        assert cert is not None, "the Hub has no internal transport certificate"
        return self.hub.server_context(cert), self.hub.store.client_context(cert)

    async def stop(self) -> None:
        self.rt.flush_logs()
        await self.rt.stop()

    async def session(self, k: int) -> None:
        batch = []
        for _ in range(k):
            self.n += 1
            batch.append(OutboundMessage(self.n, SENDER, [RECIPIENT], message(self.n, "lab")))
        for res in await deliver(self.rt, self.spec, batch):
            if res.delivered != [RECIPIENT]:
                raise RuntimeError(f"the lab hop did not deliver: {res.reply or res.failure}")
        if not self.tls:
            self.tls = f"{res.tls.get('version')} {res.tls.get('cipher')}" if res.tls else "no TLS"

    async def round(self, k: int, messages: int) -> Round:
        sessions = max(1, messages // k)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(sessions):
            await self.session(k)
        self.rt.flush_logs()
        return Round(time.perf_counter() - t0, sessions, sessions * k, time.process_time() - c0)

    def evidence(self) -> str:
        """What the hop wrote: mailbox files, protocol-log and tracking-log lines."""
        out = self.rt.out
        eml = sum(1 for _ in (out / "mailboxes").rglob("*.eml"))
        proto = tracking = client_certs = 0
        for p in out.rglob("*.LOG"):
            lines = p.read_bytes().splitlines()
            if "ProtocolLog" in p.parts:
                proto += len(lines)
                if "SmtpSend" in p.parts:  # the client's row for the certificate it presented
                    client_certs += sum(1 for ln in lines if b"Sending certificate" in ln)
            elif "MessageTracking" in p.parts:
                tracking += len(lines)
        return (f"{eml} messages in the mailbox store, {proto} protocol-log lines, {tracking} message-tracking "
                f"lines; {client_certs} sessions that presented a client certificate (Mailbox Delivery's receive "
                f"connector keeps no protocol log, so these are the send side's rows)")


@dataclass
class Pairs:
    k: int
    raw: list[Round]
    raw_file: list[Round]
    lab: list[Round]

    def ratios(self, base: list[Round], cpu: bool = False) -> list[float]:
        if cpu:
            return [b.cpu_rate / a.cpu_rate for a, b in zip(base, self.lab)]
        return [b.msg_rate / a.msg_rate for a, b in zip(base, self.lab)]


async def measure(pairs: int, messages: int, reuse: list[int], out: Path) -> tuple[list[Pairs], LabHop, str]:
    lab = LabHop(out)
    await lab.start()
    raw = RawPair(*lab.tls_contexts())
    raw_file = RawPair(*lab.tls_contexts(), store=out / "raw-store")
    await raw.start()
    await raw_file.start()
    results = []
    try:
        for k in reuse:
            for side in (raw, raw_file, lab):  # warm-up: contexts, caches, first files
                await side.round(k, messages)
            p = Pairs(k, [], [], [])
            for _ in range(pairs):
                for side, rounds in ((raw, p.raw), (raw_file, p.raw_file), (lab, p.lab)):
                    gc.collect()
                    rounds.append(await side.round(k, messages))
            results.append(p)
    finally:
        await raw.stop()
        await raw_file.stop()
        await lab.stop()
    lab.evidence_text = lab.evidence()
    return results, lab, raw.sink.tls


def _spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(results: list[Pairs], pairs: int, load: tuple[float, float], lab: LabHop, raw_tls: str) -> None:
    print(f"per hop, same run, raw/labsim rounds interleaved ({pairs} pairs per K; median (min-max); "
          f"load average {load[0]:.2f} before, {load[1]:.2f} after, {os.cpu_count()} cores)")
    w = 24
    print(f"  {'K':>3}  {'':<{w}}  {'msg/s (wall)':>16}  {'msg/s (CPU)':>18}  {'sessions/s (wall)':>18}")
    for p in results:
        for name, rounds in (("raw pair", p.raw), ("raw pair, file per msg", p.raw_file), ("labsim hop", p.lab)):
            print(f"  {p.k:>3}  {name:<{w}}  {_spread([r.msg_rate for r in rounds]):>16}  "
                  f"{_spread([r.cpu_rate for r in rounds]):>18}  {_spread([r.session_rate for r in rounds]):>18}")
        for name, base in (("ratio labsim/raw", p.raw), ("ratio labsim/raw+file", p.raw_file)):
            wall, cpu = p.ratios(base), p.ratios(base, cpu=True)
            print(f"  {p.k:>3}  {name:<{w}}  {_spread(wall, '{:.2f}'):>16}  {_spread(cpu, '{:.2f}'):>18}  "
                  f"{'':>18}  target >= 0.80: {'met' if statistics.median(wall) >= 0.8 else 'not met'} (wall), "
                  f"{'met' if statistics.median(cpu) >= 0.8 else 'not met'} (CPU)")
    by_k = {p.k: p for p in results}
    if len(by_k) >= 2:
        k1, k2 = min(by_k), max(by_k)
        for side in ("raw", "raw_file", "lab"):
            parts = []
            for what in ("seconds", "cpu"):
                t1 = statistics.median(getattr(r, what) / r.sessions for r in getattr(by_k[k1], side))
                t2 = statistics.median(getattr(r, what) / r.sessions for r in getattr(by_k[k2], side))
                per_msg = (t2 - t1) / (k2 - k1)
                parts.append(f"{1000 * (t1 - k1 * per_msg):.2f} ms per session + {1000 * per_msg:.2f} ms per message "
                             f"({'wall' if what == 'seconds' else 'CPU'})")
            name = {"raw": "raw pair", "raw_file": "raw+file", "lab": "labsim  "}[side]
            print(f"  {name}: {'; '.join(parts)}  [from K={k1} and K={k2}; a session: connect, EHLO, STARTTLS, "
                  f"EHLO, QUIT]")
    cert = lab.hub.internal_cert()
    issued = cert.issued if cert is not None else None
    print(f"  TLS (STARTTLS on every session, one context pair for both): raw pair {raw_tls}; labsim {lab.tls}; "
          f"certificates {_key_text(issued.key) if issued else '?'} (client: {issued.name if issued else '?'})")
    print(f"  labsim wrote {lab.evidence_text}")


def _key_text(key: Any) -> str:
    """`RSA 2048` or `ECDSA secp256r1`."""
    curve = getattr(key, "curve", None)
    return f"ECDSA {curve.name}" if curve is not None else f"RSA {key.key_size}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--pairs", type=int, default=25, help="counted raw/labsim round pairs per K")
    ap.add_argument("--messages", type=int, default=40, help="messages per round")
    ap.add_argument("--reuse", default="1,20", help="messages per connection (K), comma-separated")
    ap.add_argument("--out", help="keep the lab's output tree here (a new folder; default: a temporary one)")
    a = ap.parse_args()
    reuse = [int(k) for k in a.reuse.split(",")]
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-session INFO lines
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="labsim-bench-hop-") as tmp:
        out = Path(a.out) if a.out else Path(tmp)
        if a.out and out.exists():
            sys.exit(f"bench_hop.py: {out} exists; give a new folder")
        results, lab, raw_tls = asyncio.run(measure(a.pairs, a.messages, reuse, out))
    report(results, a.pairs, (load0, os.getloadavg()[0]), lab, raw_tls)


if __name__ == "__main__":
    main()
