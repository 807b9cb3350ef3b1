"""`labsim generate`: a corpus of realistic hybrid traffic with catalog faults scheduled into it.

Theory of operation
-------------------
A corpus is cut into *shards* of one hour of traffic each. The cut depends only on the corpus
(days, mailboxes, faults, seed), never on how many processes run it: shard i has its own start
(the corpus start + i hours), its own seed (derived from the corpus seed and i), its own traffic
and the faults scheduled into its hour. Each shard is an ordinary scenario run (engine.driver.
run_loaded) into its own folder: the default hybrid organisation (hybrid-baseline's world), grown
by the corpus's mailboxes, plus the [[change]]s of the fault scenarios scheduled into it and their
own [[message]]s (the traffic each was written to show, beside the hour's ordinary mail). Its SMTP
session ids are counters started from the ticks of its hour, so shards' session ids never meet;
every other id is drawn from the shard's own seed, and the merge checks that no InternalId or
Message-ID appears in two shards.

`run_shards` sends the shards to any concurrent.futures.Executor (a process pool for `--jobs`,
a Dask cluster for `--executor dask://HOST:PORT`); each writes only its own folder, so the result
is the same whatever runs it and in whatever order. Mail still queued when an hour's lab stops is
carried into the next hour (engine.carry): the next shard runs again with it taken up, so a
shard's output is a function of (shard, carried-in mail) and still not of the executor.
`labsim._corpus_merge` then merges the shard folders into one tree as the servers would have
written it: each log's rows in time order across shards, re-cut into hourly files with the 10 MB
rollover, the event logs renumbered, the mailboxes numbered in order, a carried message joined
into one; and the corpus manifest (labsim.manifest) records every fault as a window.

The traffic (all [INFERRED]; Microsoft publishes no distribution, these are conventional shapes):
- each mailbox sends a Poisson number of messages an hour, its rate following a working-day curve
  in its own time zone (busy 09-12 and 14-17 on weekdays, a lunch dip, little at night, a tenth of
  it at weekends); 60 % of the mailboxes are on-premises, 40 % in Exchange Online, and each sits in
  one of three time zones (the organisation's, +05:30; Europe, +01:00; America, -05:00);
- the four hybrid directions: on-premises -> Exchange Online, Exchange Online -> on-premises,
  on-premises -> the Internet, the Internet -> on-premises (in the ratios of DIRECTIONS);
- one to eight recipients (most messages have one), sizes log-normal around 25 KB capped at 10 MB;
- one message in five is a reply (RE:) to an earlier message of the same hour, one in twenty a
  forward (FW:) to someone else;
- connection reuse is the lab's own: the sending servers keep a session for the next message.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .errors import InputError, ScenarioError
from .ids import ID_SPACE, derive_seed

__all__ = ["CorpusSpec", "Shard", "corpus_faults", "plan", "run_shard", "run_shards"]

CORPUS_START = datetime(2026, 5, 4, tzinfo=timezone.utc)  # a Monday, 00:00 UTC
SHARD_HOURS = 1
SETTLE = "00:30:00"  # how long each shard's lab runs on after its last message (retries, NDRs)
ZONES = ((330, 0.6), (60, 0.25), (-300, 0.15))  # (UTC offset in minutes, share of the mailboxes)
CLOUD_SHARE = 0.4
MESSAGES_PER_DAY = 4.0  # sent per mailbox on a working day, on the curve below
# (direction, weight) of what a message does; the Internet's inbound mail is drawn per correspondent
DIRECTIONS = {"onprem": (("exo", 0.6), ("internet", 0.4)), "exo": (("onprem", 1.0),)}
INBOUND_SHARE = 0.25  # Internet -> on-premises, as a share of the organisation's own sending
# relative activity by local hour on a working day (sums to about 10)
CURVE = (0.02, 0.01, 0.01, 0.01, 0.02, 0.05, 0.15, 0.35, 0.7, 0.95, 1.0, 0.9,
         0.55, 0.7, 0.95, 1.0, 0.85, 0.6, 0.35, 0.2, 0.15, 0.1, 0.06, 0.03)
WEEKEND = 0.1
SUBJECTS = ("Quarterly report", "Invoice", "Meeting notes", "Project update", "Contract draft", "Travel plan",
            "Budget review", "Customer escalation", "Weekly status", "Purchase order", "Release checklist",
            "Training schedule", "Security notice", "Shipment details", "Interview feedback")


@dataclass(frozen=True)
class CorpusSpec:
    days: int
    mailboxes: int
    faults: tuple[str, ...] = ()
    seed: int = 1
    start: datetime = CORPUS_START

    def check(self) -> None:
        if not 1 <= self.days <= 366:
            raise InputError("--days", f"{self.days} is not a number of days from 1 to 366")
        if not 1 <= self.mailboxes <= 100_000:
            raise InputError("--mailboxes", f"{self.mailboxes} is not a number of mailboxes from 1 to 100000")
        if len(self.faults) > self.days * 24 // SHARD_HOURS:
            raise InputError("--faults", f"{len(self.faults)} faults need at least {len(self.faults)} hours (one "
                                         f"an hour); {self.days} day(s) have {self.days * 24}: give more --days")


@dataclass(frozen=True)
class Mailbox:
    address: str
    realm: str  # onprem | exo | internet
    offset: int  # minutes from UTC


@dataclass(frozen=True)
class Shard:
    index: int
    start: datetime
    seed: int
    spec: CorpusSpec
    faults: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"


def corpus_faults(text: str | None) -> tuple[str, ...]:
    """`--faults ID,...|all`: catalog ids (checked), for `all` every scenario but hybrid-baseline
    that runs on the default organisation. A corpus is the default organisation's traffic, so a
    scenario that declares its own organisation (topology.org_file) cannot be one of its faults."""
    from .scenario.loader import catalog, load_scenario

    if not text:
        return ()
    if text.strip() == "all":
        entries = catalog()
        broken = next((e for e in entries if e.error), None)
        if broken is not None:  # as `run --all`: a file that does not load is an error, not skipped
            raise ScenarioError(str(broken.path), broken.error or "does not load")
        return tuple(e.id for e in entries if e.id != "hybrid-baseline"
                     and load_scenario(e.id).scenario.organization is None)
    ids = tuple(x.strip() for x in text.split(",") if x.strip())
    for fid in ids:
        loaded = load_scenario(fid)  # an unknown or broken one is its one-line error, now
        if loaded.scenario.organization is not None:
            raise ScenarioError(f"--faults {fid}", "it declares its own organisation; a corpus is the default "
                                "organisation's traffic, so only its scenarios can be scheduled into it")
    return ids


def plan(spec: CorpusSpec) -> list[Shard]:
    """The shards of the corpus, in time order; faults spread evenly over them."""
    spec.check()
    n = spec.days * 24 // SHARD_HOURS
    at: dict[int, list[str]] = {}
    for i, fid in enumerate(spec.faults):
        at.setdefault(int((i + 0.5) * n / len(spec.faults)), []).append(fid)
    return [Shard(i, spec.start + timedelta(hours=i * SHARD_HOURS), derive_seed(spec.seed, "shard", str(i)) >> 1,
                  spec, tuple(at.get(i, ()))) for i in range(n)]


# --- the population and its traffic --------------------------------------------------------------------

def population(spec: CorpusSpec) -> list[Mailbox]:
    """The corpus's mailboxes (the same for every shard): on-premises, in EXO, and correspondents."""
    rng = random.Random(derive_seed(spec.seed, "population"))
    cloud = round(spec.mailboxes * CLOUD_SHARE)
    people = []
    for i in range(spec.mailboxes):
        offset = rng.choices([z for z, _ in ZONES], [w for _, w in ZONES])[0]
        realm = "exo" if i >= spec.mailboxes - cloud else "onprem"
        people.append(Mailbox(f"user{i + 1:05d}@cloudmonkeys.xyz", realm, offset))
    for i in range(max(10, spec.mailboxes // 10)):
        people.append(Mailbox(f"contact{i + 1:04d}@fabrikam.com", "internet", rng.choice([60, 0, -300, -480])))
    return people


def _rate(offset: int, when: datetime) -> float:
    local = when + timedelta(minutes=offset)
    weight = CURVE[local.hour] * (WEEKEND if local.weekday() >= 5 else 1.0)
    return MESSAGES_PER_DAY * weight / sum(CURVE)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _size(rng: random.Random) -> int:
    return int(min(10 * 1024 * 1024, max(800, rng.lognormvariate(math.log(25_000), 1.0))))


def _recipients(rng: random.Random, pool: list[Mailbox], sender: str) -> list[str]:
    n = rng.choices([1, 2, 3, 4, 5, 6, 8], [75, 12, 6, 3, 2, 1, 1])[0]
    picked: list[str] = []
    for _ in range(n * 3):
        if len(picked) == min(n, len(pool)):
            break
        a = rng.choice(pool).address
        if a != sender and a not in picked:
            picked.append(a)
    return picked


def traffic(shard: Shard, people: list[Mailbox]) -> list[dict[str, Any]]:
    """The shard's messages as scenario [[message]] tables, in time order."""
    rng = random.Random(derive_seed(shard.seed, "traffic"))
    by_realm: dict[str, list[Mailbox]] = {}
    for p in people:
        by_realm.setdefault(p.realm, []).append(p)
    drafts: list[tuple[int, str, list[str]]] = []  # (second of the hour, sender, recipients)
    own = [p for p in people if p.realm != "internet"]
    for p in own:
        for _ in range(_poisson(rng, _rate(p.offset, shard.start) * SHARD_HOURS)):
            where = rng.choices([d for d, _ in DIRECTIONS[p.realm]], [w for _, w in DIRECTIONS[p.realm]])[0]
            rcpts = _recipients(rng, by_realm.get(where, []), p.address)
            if rcpts:
                drafts.append((rng.randrange(SHARD_HOURS * 3600), p.address, rcpts))
    inbound = INBOUND_SHARE * sum(_rate(p.offset, shard.start) for p in own) * SHARD_HOURS
    outsiders = by_realm.get("internet", [])
    for _ in range(_poisson(rng, inbound) if outsiders else 0):
        sender = rng.choice(outsiders).address
        rcpts = _recipients(rng, by_realm.get("onprem", []), sender)
        if rcpts:
            drafts.append((rng.randrange(SHARD_HOURS * 3600), sender, rcpts))
    drafts.sort(key=lambda d: d[0])
    realm = {p.address: p.realm for p in people}
    messages: list[dict[str, Any]] = []
    for n, (second, sender, rcpts) in enumerate(drafts):
        subject = f"{rng.choice(SUBJECTS)} {rng.randrange(1000, 9999)}"
        roll = rng.random()
        earlier = [m for m in messages if realm[m["to"][0]] != "internet" and m["from"] != m["to"][0]]
        if roll < 0.2 and earlier:  # a reply: an earlier recipient answers its sender
            first = rng.choice(earlier)
            if realm[first["from"]] != "internet" or realm[first["to"][0]] == "onprem":
                sender, rcpts = first["to"][0], [first["from"]]
                subject = "RE: " + first["subject"].removeprefix("RE: ").removeprefix("FW: ")
        elif roll < 0.25 and earlier:  # a forward of an earlier message to this message's recipients
            subject = "FW: " + rng.choice(earlier)["subject"].removeprefix("RE: ").removeprefix("FW: ")
        if realm[sender] == "exo" and any(realm[r] == "internet" for r in rcpts):
            rcpts = [r for r in rcpts if realm[r] != "internet"] or [by_realm["onprem"][0].address]
        messages.append({"id": f"{shard.name}-{n:06d}", "at": f"+{second // 3600:02d}:{second // 60 % 60:02d}:"
                         f"{second % 60:02d}", "from": sender, "to": rcpts, "subject": subject,
                         "size": _size(rng)})
    return messages


# --- one shard -------------------------------------------------------------------------------------------

def shard_scenario(shard: Shard) -> Any:
    """The shard as a LoadedScenario: hybrid-baseline's world, the corpus's mailboxes, the changes
    of the faults scheduled into it, and its traffic."""
    import tomllib

    from .scenario.loader import find_scenario, load_scenario, load_scenario_data
    from .scenario.model import Message

    base = tomllib.loads(find_scenario("hybrid-baseline").read_text(encoding="utf-8"))
    changes = list(base.get("change", []))
    trigger: list[dict[str, Any]] = []  # the fault scenario's own messages: the traffic that shows it
    for fid in shard.faults:
        fault = load_scenario(fid).scenario
        changes += [{"cmdlet": ch.cmdlet, **({"at": ch.at} if ch.at else {}), **ch.params} for ch in fault.change]
        trigger += [{**m.model_dump(by_alias=True, exclude_none=True), "id": f"{shard.name}-{fid}-{m.id}"}
                    for m in fault.message]
    data = {"id": f"corpus-{shard.name}", "title": f"corpus hour {shard.index}", "seed": shard.seed,
            "start": shard.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "duration": SETTLE,
            "training": base["training"], "change": changes}
    where = f"corpus {shard.name}" + (f" (faults {', '.join(shard.faults)})" if shard.faults else "")
    loaded = load_scenario_data(data, where=where)
    people = population(shard.spec)
    _grow(loaded.lab, people)
    loaded.scenario.message = [Message.model_validate(m) for m in traffic(shard, people) + trigger]
    return loaded


def _grow(lab: Any, people: list[Mailbox]) -> None:
    """Add the corpus's mailboxes to the world, as a hybrid organisation has them: an on-prem
    mailbox is a mail user in EXO, an EXO mailbox a remote mailbox on-premises."""
    from .topology.model import ExoMailbox, ExoMailUser, RemoteMailbox
    from .topology.model import Mailbox as OnPremMailbox

    org, tenant = lab.organization, lab.tenant
    routing = org.remote_mailboxes[0].remote_routing_address.split("@", 1)[1]
    host = next(h for h in lab.internet_hosts if "fabrikam.com" in h.domains)
    for p in people:
        alias = p.address.split("@", 1)[0]
        if p.realm == "onprem":
            org.mailboxes.append(OnPremMailbox(alias=alias, primary_smtp_address=p.address))
            tenant.mail_users.append(ExoMailUser(alias=alias, primary_smtp_address=p.address,
                                                 external_email_address=p.address))
        elif p.realm == "exo":
            org.remote_mailboxes.append(RemoteMailbox(alias=alias, primary_smtp_address=p.address,
                                                      remote_routing_address=f"{alias}@{routing}"))
            tenant.mailboxes.append(ExoMailbox(alias=alias, primary_smtp_address=p.address,
                                               email_addresses=[f"{alias}@{tenant.initial_domain}",
                                                                f"{alias}@{routing}"]))
        else:
            host.mailboxes.append(p.address)


def carry_folder(out: str | Path) -> Path:
    """Where a shard's run leaves the mail still queued at its end (engine.carry), beside its folder."""
    return Path(f"{out}.carry")


def run_shard(shard: Shard, out: str, carry_in: str | None = None) -> dict[str, Any]:
    """Run one shard into `out` (a folder of its own), with the mail an earlier hour left queued
    (`carry_in`, that hour's carry folder) taken up; its own end-of-run queues go to
    carry_folder(out). Top-level and picklable: any Executor can run it (a process pool, a Dask
    worker sharing the file system)."""
    import asyncio
    import shutil

    from .engine.carry import HANDOVER_FILE, carried_count
    from .engine.driver import run_loaded
    from .engine.outdir import OutputFolderError

    loaded = shard_scenario(shard)
    block = (31 + 13 * (shard.index % 17)) % 250 + 2  # shards side by side on other loopback blocks
    carry_out = carry_folder(out)
    if carry_out.exists():
        # Only a hand-over this shard's earlier run left (its handover.json) is taken away.
        if not (carry_out / HANDOVER_FILE).is_file():
            raise OutputFolderError(str(carry_out), "exists and is not a hand-over labsim wrote; "
                                                    "move it away or choose another output folder")
        shutil.rmtree(carry_out)
    token = ID_SPACE.set(shard.index)  # the small per-host counters draw from the hour's own block (labsim.ids)
    try:
        result = asyncio.run(run_loaded(loaded, out=Path(out), block=block, carry_out=carry_out,
                                        carry_in=Path(carry_in) if carry_in else None))
    finally:
        ID_SPACE.reset(token)
    return {"index": shard.index, "messages": len(loaded.scenario.message), "wall": result.wall_seconds,
            "carried_in": carried_count(Path(carry_in)) if carry_in else 0, "carried_out": carried_count(carry_out)}


def run_shards(shards: list[Shard], work: Path, executor: Executor | None,
               progress: Callable[[dict[str, Any]], None] | None = None) -> list[Path]:
    """Run every shard into `work/<shard name>` on `executor` (None: here, one after another);
    returns the folders in shard order.

    Queues across hours: every shard first runs with nothing carried in (all at once on the
    executor); then a shard whose predecessor ended with mail queued runs again with that mail
    taken up (engine.carry), and hands its own end state on. A shard's output is a function of
    (shard, carried-in mail) only, so the corpus does not depend on the executor. Only the hours
    after one that ended with mail queued run twice; the re-runs go in waves (every shard whose
    predecessor's final state is known, at once), so only a chain of hours that each end with mail
    queued runs one after another."""
    folders = [work / s.name for s in shards]
    first = _run_all([(s, str(f), None) for s, f in zip(shards, folders)], executor, progress)
    final: dict[int, dict[str, Any]] = {0: first[0]} if shards else {}
    while len(final) < len(shards):
        wave = []
        for k in range(1, len(shards)):
            if k in final or k - 1 not in final:
                continue
            if final[k - 1]["carried_out"]:
                wave.append(k)
            else:
                final[k] = first[k]  # nothing carried in: its first run is the one
        reruns = [(shards[k], str(folders[k]), str(carry_folder(folders[k - 1]))) for k in wave]
        for k, done in zip(wave, _run_all(reruns, executor, progress, rerun=True)):
            final[k] = done
    return folders


def _run_all(runs: Sequence[tuple[Shard, str, str | None]], executor: Executor | None,
             progress: Callable[[dict[str, Any]], None] | None, *, rerun: bool = False) -> list[dict[str, Any]]:
    """run_shard over `runs` (here one after another, or all at once on `executor`); results in order."""
    if executor is None:
        results = []
        for args in runs:
            results.append(run_shard(*args))
            if progress:
                progress({**results[-1], "rerun": rerun})
        return results
    from concurrent.futures import as_completed

    futures = {executor.submit(run_shard, *args): k for k, args in enumerate(runs)}
    done: dict[int, dict[str, Any]] = {}
    try:
        for fut in as_completed(futures):
            done[futures[fut]] = fut.result()
            if progress:
                progress({**done[futures[fut]], "rerun": rerun})
    finally:
        for fut in futures:
            fut.cancel()
    return [done[k] for k in range(len(runs))]


# --- the whole corpus ------------------------------------------------------------------------------------

def generate(spec: CorpusSpec, out: Path, *, executor: Executor | None = None,
             progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Write the corpus into `out` (replaced only when it is complete, as a run's folder is:
    engine.outdir): the shards on `executor`, merged, and its manifest. Returns its counts."""
    import shutil

    from ._corpus_merge import merge
    from .engine.outdir import RunOutput
    from .manifest import write_corpus_manifest
    from .scenario.loader import load_scenario

    shards = plan(spec)
    with RunOutput(out, scenario="corpus", seed=spec.seed) as output:
        work = output.work / ".shards"
        work.mkdir()
        folders = run_shards(shards, work, executor, progress)
        lab = load_scenario("hybrid-baseline").lab
        servers = [s.name for s in lab.organization.servers]
        merge(folders, output.work)
        windows = []
        for shard, folder in zip(shards, folders):
            if not shard.faults:
                continue
            end = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["end"]
            for fid in shard.faults:
                changes = load_scenario(fid).scenario.change
                windows.append({"scenario": fid, "start": shard.start.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "end": end,
                                "changes": [{"cmdlet": c.cmdlet, "params": c.params, "at": c.at} for c in changes]})
        corpus = {"title": f"{spec.days} day(s), {spec.mailboxes} mailboxes, {len(spec.faults)} fault(s)",
                  "days": spec.days, "mailboxes": spec.mailboxes, "faults": list(spec.faults), "seed": spec.seed,
                  "shards": len(shards), "shard_hours": SHARD_HOURS}
        counts = write_corpus_manifest(output.work, corpus=corpus, windows=windows, servers=servers,
                                       summaries=[f / "summary.json" for f in folders])
        shutil.rmtree(work)
        output.commit()
    return dict(counts)
