"""Queues of one transport server, with Exchange's identities and fields (transport-behavior.md §6).

Delivery queues are created on demand per next hop (`<SERVER>\\<n>`, numbered in creation order);
the persistent queues are `Submission`, `Unreachable` and `Poison`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .message import MailItem


@dataclass
class QueuedMessage:
    item: MailItem
    recipients: list[str]
    status: str = "Ready"  # Active, Ready, Retry, Suspended
    last_error: str = ""
    retry_count: int = 0


@dataclass
class Queue:
    identity: str
    delivery_type: str
    next_hop_domain: str
    route: object = None  # the rules.routing.Route (or EXO route) that created it
    messages: list[QueuedMessage] = field(default_factory=list)
    status: str = "Ready"
    last_error: str = ""
    retry_count: int = 0
    first_retry_time: datetime | None = None
    last_retry_time: datetime | None = None
    next_retry_time: datetime | None = None
    draining: bool = False
    scheduled: bool = False

    @property
    def message_count(self) -> int:
        return len(self.messages)


class QueueSet:
    """All queues of one server."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._next = 1
        self.by_key: dict[tuple[str, str], Queue] = {}
        self.special = {name: Queue(identity=f"{server}\\{name}", delivery_type=dtype, next_hop_domain=hop)
                        for name, dtype, hop in (("Submission", "Undefined", "Submission"),
                                                 ("Unreachable", "Unreachable", "Unreachable Domain"),
                                                 ("Poison", "Undefined", "Poison Message"))}

    def for_route(self, key: tuple[str, str], delivery_type: str, next_hop: str, route: object) -> Queue:
        if delivery_type == "Unreachable":
            return self.special["Unreachable"]
        q = self.by_key.get(key)
        if q is None:
            q = Queue(identity=f"{self.server}\\{self._next}", delivery_type=delivery_type,
                      next_hop_domain=next_hop, route=route)
            self._next += 1
            self.by_key[key] = q
        return q

    def all(self) -> list[Queue]:
        return list(self.by_key.values()) + list(self.special.values())
