"""The lab's inbound SMTP sessions: who is still talking, and when an action has settled.

Every accepted connection is served by `_serve`; a session that a lab client announced counts
until it ends, unless its client holds the connection open between two messages (`hold_open`).
`settle()` waits until every session the last action caused has finished, then lets the evidence
hub write what no later action can precede (engine.evidence). `close_sessions()` answers every
open session `421 4.3.2` when the lab stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..clock import VirtualClock
    from ..net.vnet import AddressBook, ConnectionRegistry
    from .evidence import TrackingHub
    from .scheduler import Scheduler

import asyncio

from ..net.vnet import wait_set_turns
from ..rules import replies as R
from ..smtp.policy import ConnectionTable, ReceivePolicy
from ..smtp.server import ServerSession

CLAIM_TIMEOUT_RUN = 5.0
SETTLE_TIMEOUT = 15.0
CLAIM_TIMEOUT_LIVE = 0.2


class SessionGate:
    """Inbound sessions of the lab and the settle() barrier between actions."""

    # the lab's (engine.runtime.LabRuntime.__init__)
    live: bool
    clock: VirtualClock
    book: AddressBook
    registry: ConnectionRegistry
    scheduler: Scheduler
    tracking: TrackingHub
    # this part's own state, set up by the runtime
    sessions: set[ServerSession]  # every open server session (a clean shutdown answers each)
    _tcp: list[asyncio.AbstractServer]  # the bound listeners
    _open: int  # in-lab server sessions still open (what settle() waits for)
    _held: int  # of those, sessions whose client holds the connection open for its next message
    _idle: asyncio.Event
    _closing: bool
    _session_tasks: set[asyncio.Task[Any]]
    _by_client: dict[tuple[Any, Any], list[ServerSession]]  # `sessions` by the client they announced
    connections: ConnectionTable  # open sessions per receive connector (connection limits)

    def _init_sessions(self) -> None:
        self._tcp = []
        self._open = 0
        self._held = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.connections = ConnectionTable()
        self.sessions = set()
        self._by_client = {}
        self._closing = False
        self._session_tasks = set()

    async def _serve(self, policy: ReceivePolicy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One inbound connection. Only sessions a lab party announced count for settle(): a
        stranger (swaks, a test, an idle telnet in `up`) never holds back the lab's actions."""
        # run: a lab client's session counts from accept, until the claim says otherwise. live: from
        # its claim, so strangers arriving all the time (a fuzzer) never hold settle() in their claim wait.
        in_lab = not self.live
        if in_lab:
            self._hold()
        session: ServerSession | None = None
        client: tuple[Any, Any] = (None, None)
        try:
            peer = writer.get_extra_info("peername")[:2]
            info = await self.registry.claim(peer, CLAIM_TIMEOUT_LIVE if self.live else CLAIM_TIMEOUT_RUN)
            if info is not None:
                if not in_lab:
                    in_lab = True
                    self._hold()
                context = dict(info.context)
                context["remote"] = info.src_virtual
            else:
                if in_lab:
                    in_lab = False
                    self._release()
                context = {"remote": (self.book.virtual_ip(peer[0]) or peer[0], peer[1])}
            session = ServerSession(policy, reader, writer, now=self.clock.now(), context=context)
            if self._closing:  # accepted just as the service stopped
                await session.shutdown(R.SERVICE_SHUTTING_DOWN)
                return
            client = self._track(session)
            await session.run()
        except Exception:  # noqa: BLE001 - one broken session must never take the lab down
            import logging
            logging.getLogger("labsim").exception("server session failed")
            writer.close()
        finally:
            if session is not None:
                self._untrack(session, client)
            if in_lab:
                self._release()

    def _track(self, session: ServerSession) -> tuple[Any, Any]:
        """An open session: in `sessions`, and findable by the client it announced (`hold_open`)."""
        self.sessions.add(session)
        client = _client_of(session)
        self._by_client.setdefault(client, []).append(session)
        return client

    def _untrack(self, session: ServerSession, client: tuple[Any, Any]) -> None:
        self.sessions.discard(session)
        same = self._by_client.get(client)
        if same is not None:
            if session in same:
                same.remove(session)
            if not same:
                del self._by_client[client]

    def _hold(self) -> None:
        self._open += 1
        self._check_idle()

    def _release(self) -> None:
        self._open -= 1
        self._check_idle()

    async def _end_sessions_of_stopped_services(self) -> None:
        """A stopped transport service ends its open sessions (`421 4.3.2`), also those a client
        holds open between two messages."""
        for session in sorted(self.sessions, key=lambda s: (str(s.context.get("client_host")),
                                                            int(s.context.get("client_session") or 0))):
            owner, listener = getattr(session.policy, "server", None), getattr(session.policy, "listener", None)
            if owner is not None and listener is not None and not owner.service_running(listener.service):
                await session.shutdown()

    def hold_open(self, delta: int, client: tuple[str, int] | None = None) -> None:
        """A lab client keeps (+1) or takes up again (-1) a connection between two messages: the
        server session waiting for its next command does not hold back settle(), and its silence
        meanwhile is no inactivity timeout. `client`: the (host, session id) the client announced."""
        self._held += delta
        if client is not None:  # a message at a time: found by the client, not by a walk of every session
            for session in self._by_client.get(client, ()):
                session.held = delta > 0
        self._check_idle()

    def _check_idle(self) -> None:
        if self._open <= self._held:
            self._idle.set()
        else:
            self._idle.clear()

    async def close_sessions(self) -> None:
        """Stop accepting and answer every open server session `421 4.3.2` (the service stops)."""
        self._closing = True
        for srv in self._tcp:
            srv.close()
        for session in self.sessions:
            session.stopping = True  # at once, for all: nothing is committed from now on
        await asyncio.gather(*(s.shutdown(R.SERVICE_SHUTTING_DOWN) for s in list(self.sessions)),
                             return_exceptions=True)

    async def settle(self) -> None:
        """Wait until every server session caused by the last action has finished."""
        for _ in range(3):
            await asyncio.sleep(0)
        if self.live:
            # Wall-clock time: order is not reproducible anyway, and sessions of outside clients
            # (which no action caused) may stay open for as long as they like.
            return
        try:
            await wait_set_turns(self._idle, SETTLE_TIMEOUT)
            for _ in range(1000):  # a server session whose client holds it open finishes its reply
                if not any(getattr(s, "_counting", False) for s in self.sessions):
                    break
                await asyncio.sleep(0)
        except asyncio.TimeoutError:
            # A peer that never finishes its session must not stall the run; its rows keep the
            # virtual times they were written with.
            self.scheduler.errors.append(f"settle: {self._open} session(s) still open after {SETTLE_TIMEOUT} s")
        self.tracking.settled()  # write the evidence no later action can precede (engine.evidence)


def _client_of(session: ServerSession) -> tuple[Any, Any]:
    """The (host, session id) a lab client announced for this session ((None, None): a stranger)."""
    return session.context.get("client_host"), session.context.get("client_session")
