"""What every part of a server session shares: its state, and the shell's few verbs the parts call.

`smtp.server.ServerSession` is assembled from parts, each a class of its own file: the command
verbs (`smtp.verbs.EnvelopeCommands`), message content (`smtp.content.ContentCommands`) and the I/O
shell itself (the command loop, replies, time). `SessionCore` holds the state they share - what
the policy sees of a session (`smtp.session_api.ReceivingSession`) and the shell's bookkeeping -
and names the shell's methods the parts use, so each part type-checks on its own.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .session_api import Envelope
from .wire import SessionInput

if TYPE_CHECKING:  # pragma: no cover
    from .policy import ReceivePolicy


class SessionCore:
    """One inbound SMTP session's state; the shell's methods are ServerSession's."""

    input: SessionInput  # the client's bytes (ServerSession makes it: the shell is its owner)

    def __init__(self, policy: "ReceivePolicy", reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 *, now: datetime, context: dict[str, Any]) -> None:
        self.policy = policy
        self.reader = reader
        self.writer = writer
        self.live = policy.live  # the lab's clock follows the wall clock (`up`): fixed for a lab's life
        self.cursor = now
        self.context = context  # what the client announced (virtual endpoints, causal context)
        self.envelope = Envelope()
        self.tls_active = False
        self.ssl_object: ssl.SSLObject | None = None
        self.closed = False
        self.messages = 0
        self.log: Any = None  # a logs.SessionWriter, set by the policy when the session opens
        self.state: Any = None  # the policy's own session state
        self.extra: Any = None  # the service's own per-session data
        self.session_id = 0
        self.started = now
        self.data_started: datetime | None = None
        self.errors = 0  # protocol errors so far (MaxProtocolErrors)
        self.disconnect_reason: str | None = None
        self.committing = False  # between a message's end and the reply that acknowledges it
        self.stopping = False  # the service is stopping: no new message is committed (shutdown)
        self._counting = False  # the next reply answers a command (not message content)
        self.line_bare_lf = False  # the last command line ended in LF without CR
        self._wait_from = now  # when the session began waiting for the client (inactivity)
        self._disconnect_logged = False
        self.held = False  # run mode: the lab client keeps the connection for its next message

    def now(self) -> datetime:
        return self.cursor

    def touch(self) -> None:
        self.cursor = max(self.cursor, self.policy.clock_now())

    async def reply(self, text: str | list[str], *, log_as: str | None = None) -> None:
        raise NotImplementedError  # ServerSession.reply

    async def read_line(self) -> str | None:
        raise NotImplementedError  # ServerSession.read_line

    def _check_expired(self, *, data: bool = False) -> None:
        raise NotImplementedError  # ServerSession._check_expired
