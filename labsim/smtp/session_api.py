"""What a receive policy (smtp.policy) sees of the session it serves: the envelope and the session API.

The session shell (`smtp.server.ServerSession`) calls its policy for every decision, and the policy
answers through the session (`reply`, `log`, its rule `state`). The shell imports the policy;
the policy knows the shell only by the `ReceivingSession` protocol here, so neither imports the
other both ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass
class Envelope:
    mail_from: str = ""
    mail_params: dict[str, str] = field(default_factory=dict)
    recipients: list[str] = field(default_factory=list)
    data: bytes = b""
    declared_size: int | None = None
    chunked: bool = False  # the content came in BDAT chunks (else DATA)


class ReceivingSession(Protocol):
    """One inbound SMTP session as its policy uses it (implemented by smtp.server.ServerSession)."""

    state: Any  # the policy's rule state (rules.receive.ReceiveState, or a simpler one)
    extra: Any  # the policy's per-session extras (certificate, peer chain, TLS, connection count)
    log: Any  # the protocol-log writer of the session (logs.protocol_log.SessionWriter), or None
    context: dict[str, Any]  # what the connecting lab client announced ("remote", "proxied", ...)
    session_id: int
    envelope: Envelope
    closed: bool
    started: datetime
    messages: int
    data_started: datetime | None
    writer: Any  # the asyncio StreamWriter (STARTTLS upgrades it)

    def now(self) -> datetime: ...

    def touch(self) -> None: ...

    async def reply(self, text: str | list[str], *, log_as: str | None = None) -> None: ...

    async def read_line(self) -> str | None: ...
