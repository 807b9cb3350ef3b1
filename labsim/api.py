"""labsim's public Python API: run a scenario, read its ground truth, or serve a live lab.

    import labsim

    result = labsim.run("cert-expired", out=tmp_path / "out")        # by id, path, TOML text or dict
    result = await labsim.run_async(scenario_text, out=..., seed=7)  # the same, on a running loop
    for m in result.messages:
        print(m.message_id, m.fate, [h.session_id for h in m.hops])

    async with labsim.Lab("hybrid-baseline", out=tmp_path / "live") as lab:
        host, port = lab.address("CMHYBD01", "SMTP FrontEnd")       # drive it with your own client

Everything here is built on the engine's entry points (engine.driver.run_loaded and serve) and on
what a run writes: the result is read back from the output folder's manifest.json (labsim.manifest),
so a result and the files it points at always agree. Names not listed in `__all__` are private.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, ScenarioError

if TYPE_CHECKING:  # pragma: no cover
    from .scenario.loader import LoadedScenario

__all__ = ["Evidence", "Fault", "Hop", "Lab", "Listener", "Message", "Queue", "Recipient", "Result", "load",
           "read_result", "run", "run_async"]

# --- the result ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """Where the logs show something: `file` (relative to the output folder), 1-based `lines`, each
    of which contains `shows` (and `session_id` / the event record id when given)."""

    file: str
    lines: tuple[int, ...]
    shows: str
    session_id: str | None = None
    record_id: int | None = None


@dataclass(frozen=True)
class Hop:
    """One step of a message: RECEIVE, SEND, DELIVER, DEFER, FAIL, SUBMITFAIL or PENDING (still queued at the
    end) on a server."""

    time: str
    server: str
    event: str
    connector: str | None
    session_id: str | None
    internal_id: str | None
    recipients: tuple[str, ...]
    next_hop: str | None
    reply: str | None
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class Recipient:
    """A recipient's fate: delivered (with its mailbox file), failed or pending, and the final reply."""

    address: str
    fate: str
    server: str
    reply: str | None
    mailbox: str | None = None
    queue: str | None = None


@dataclass(frozen=True)
class Message:
    id: str  # the scenario's [[message]] id (a live lab's client message: its Message-ID)
    message_id: str
    network_message_ids: tuple[str, ...]
    internal_ids: Mapping[str, tuple[str, ...]]  # server -> the InternalIds it gave
    sender: str
    recipients: tuple[str, ...]
    subject: str
    fate: str  # delivered | failed | partial | pending | lost
    results: tuple[Recipient, ...]
    hops: tuple[Hop, ...]


@dataclass(frozen=True)
class Fault:
    """A change the scenario made to the world, where and when it acted, and the evidence it left."""

    index: int
    scenario: str  # whose [[change]] it is (in a corpus: the catalog fault scheduled into it)
    cmdlet: str
    kind: str  # configuration | operation
    target: str | None
    server: str | None
    params: Mapping[str, Any]
    at: str | None
    acted: str
    window: tuple[str, str | None]  # when it was in effect (None: to the end of the run)
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class Queue:
    identity: str
    delivery_type: str
    status: str
    message_count: int
    next_hop_domain: str
    last_error: str


@dataclass(frozen=True)
class Result:
    """A finished run: read from its output folder, so it agrees with the files byte for byte."""

    scenario: str
    seed: int
    out: Path
    ok: bool  # every expectation of the scenario holds
    messages: tuple[Message, ...]
    faults: tuple[Fault, ...]
    queues: tuple[Queue, ...]
    files: tuple[Path, ...]  # every file written, absolute, sorted
    manifest: Mapping[str, Any]

    def message(self, id: str) -> Message:
        """The message of the scenario's [[message]] `id` (or of this Message-ID)."""
        for m in self.messages:
            if id in (m.id, m.message_id):
                return m
        raise KeyError(id)


def _evidence(items: list[dict[str, Any]]) -> tuple[Evidence, ...]:
    return tuple(Evidence(p["file"], tuple(p["lines"]), p["shows"], p["session_id"], p["record_id"]) for p in items)


def _result(out: Path, manifest: dict[str, Any], ok: bool) -> Result:
    messages = tuple(Message(
        id=m["id"], message_id=m["message_id"], network_message_ids=tuple(m["network_message_ids"]),
        internal_ids={k: tuple(v) for k, v in m["internal_ids"].items()}, sender=m["from"],
        recipients=tuple(m["to"]), subject=m["subject"], fate=m["fate"],
        results=tuple(Recipient(r["recipient"], r["fate"], r["server"], r["reply"], r.get("mailbox"), r.get("queue"))
                      for r in m["recipients"]),
        hops=tuple(Hop(h["time"], h["server"], h["event"], h["connector"], h["session_id"], h["internal_id"],
                       tuple(h["recipients"]), h["next_hop"], h["reply"], _evidence(h["evidence"]))
                   for h in m["hops"]))
        for m in manifest["messages"])
    faults = tuple(Fault(f["index"], f["scenario"], f["cmdlet"], f["kind"], f["target"], f["server"], f["params"],
                         f["at"], f["acted"], (f["window"]["start"], f["window"]["end"]), _evidence(f["evidence"]))
                   for f in manifest["faults"])
    queues = tuple(Queue(q["Identity"], q["DeliveryType"], q["Status"], int(q["MessageCount"]),
                         q.get("NextHopDomain", ""), q.get("LastError", "")) for q in manifest["queues"])
    files = tuple(sorted(p for p in out.rglob("*") if p.is_file() and p.name != ".labsim-output"))
    sc = manifest["scenario"]
    return Result(sc["id"], sc["seed"], out, ok, messages, faults, queues, files, manifest)


def read_result(out: str | os.PathLike[str]) -> Result:
    """The Result of a finished run from its output folder (its manifest.json)."""
    from .manifest import read_manifest

    folder = Path(out)
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError):
        raise InputError(str(folder), "no readable manifest.json: not the output folder of a finished labsim run") from None
    return _result(folder, manifest, ok=all(e["ok"] for e in manifest.get("expectations") or []))


# --- running ---------------------------------------------------------------------------------------------

def load(scenario: Any) -> LoadedScenario:
    """A scenario, checked: a catalog id, a path to a TOML file, TOML text, or a dict of its data."""
    from .scenario import loader

    if isinstance(scenario, loader.LoadedScenario):
        return scenario
    if isinstance(scenario, Mapping):
        return loader.load_scenario_data(dict(scenario))
    if isinstance(scenario, os.PathLike):
        return loader.load_scenario(Path(scenario))
    if isinstance(scenario, str):
        if "\n" in scenario or "=" in scenario:
            return loader.load_scenario_text(scenario)
        return loader.load_scenario(scenario)
    raise ScenarioError(repr(scenario)[:80], "a scenario is an id, a path, TOML text or a dict")


async def run_async(scenario: Any, *, out: str | os.PathLike[str], seed: int | None = None) -> Result:
    """Run `scenario` to completion on virtual time into `out` (replaced only when the run has
    finished; a folder labsim did not write is refused). Same scenario and seed, same bytes."""
    from .engine.driver import run_loaded

    loaded = load(scenario)
    folder = Path(out)
    done = await run_loaded(loaded, out=folder, seed=seed)
    from .manifest import read_manifest

    return _result(folder, read_manifest(folder), ok=done.ok)


def run(scenario: Any, *, out: str | os.PathLike[str], seed: int | None = None) -> Result:
    """`run_async` on a new event loop (not from inside a running loop: await run_async there)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_async(scenario, out=out, seed=seed))
    raise RuntimeError("labsim.run() was called inside a running event loop; use `await labsim.run_async(...)`")


# --- a live lab -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listener:
    """A service of the live lab: the host it belongs to, its address inside the lab and where it
    really listens on loopback (connect there)."""

    host: str
    service: str  # e.g. "SMTP FrontEnd", "SMTP Hub", "DNS", "CRL HTTP"
    virtual: str
    address: tuple[str, int]


class Lab:
    """A lab on wall-clock time, as `labsim up` serves it, for a test that drives it itself:

        async with labsim.Lab("hybrid-baseline", out=tmp_path / "live") as lab:
            host, port = lab.address("CMHYBD01", "SMTP FrontEnd")

    On leaving, open sessions are answered 421, queues are committed, logs and manifest.json are
    written under `out` (what is still queued is kept there for the next Lab on that folder). The
    mail the test's own clients hand the lab is ground truth like the scenario's (`result()`).
    """

    def __init__(self, scenario: Any, *, out: str | os.PathLike[str], seed: int | None = None,
                 traffic: bool = False, ready_timeout: float = 60.0) -> None:
        self.scenario = load(scenario)
        self.out = Path(out)
        self.seed = seed
        self.traffic = traffic
        self._timeout = ready_timeout
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[Any] | None = None
        self._rt: Any = None
        self.listeners: tuple[Listener, ...] = ()

    async def __aenter__(self) -> Lab:
        from .engine.driver import serve

        self._stop = asyncio.Event()
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ready(rt: Any) -> None:
            if not ready.done():
                ready.set_result(rt)

        self._task = asyncio.create_task(serve(self.scenario, out=self.out, seed=self.seed, traffic=self.traffic,
                                               ready=on_ready, stop=self._stop, clients=True))
        waiter = asyncio.ensure_future(ready)
        finished, _ = await asyncio.wait({waiter, self._task}, timeout=self._timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        if waiter not in finished:
            waiter.cancel()
            if self._task in finished:
                self._task.result()  # serve() failed: its error, as it is
            self._stop.set()
            raise TimeoutError(f"the lab did not start within {self._timeout} s")
        self._rt = waiter.result()
        self.listeners = tuple(Listener(host, what, vaddr, (ip, port))
                               for host, vaddr, ip, port, what in self._rt.listen_table)
        return self

    def address(self, host: str, service: str = "SMTP FrontEnd") -> tuple[str, int]:
        """The real (ip, port) of `host`'s first `service` listener."""
        for lst in self.listeners:
            if lst.host.lower() == host.lower() and lst.service == service:
                return lst.address
        known = ", ".join(sorted({f"{x.host}/{x.service}" for x in self.listeners}))
        raise KeyError(f"{host}/{service} (listeners: {known})")

    def roots_pem(self) -> bytes:
        """The lab's root certificates (PEM), to trust it from a client that verifies TLS."""
        from cryptography.hazmat.primitives.serialization import Encoding

        return b"".join(c.public_bytes(Encoding.PEM) for c in self._rt.pki.roots())

    async def __aexit__(self, *exc: object) -> None:
        if self._stop is not None and self._task is not None:
            self._stop.set()
            await self._task

    def result(self) -> Result:
        """After the `async with` block: what the lab wrote, read back (messages, hops, faults). Its
        messages include every message the lab accepted from a client of the test's own, under its
        Message-ID, with its hops and fate like a scenario's."""
        return read_result(self.out)
