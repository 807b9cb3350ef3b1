"""Ground truth: what happened to each message of a scenario, for summaries and expectations.

Every party reports into the ledger as it acts (received, sent on, delivered, failed); messages
are tied to the scenario's traffic by their Message-ID. Nothing reads the ledger to decide
anything: it is evidence, never policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clock import iso_ms
from ..transport.message import header_value


@dataclass
class Fate:
    key: str
    message_id: str
    sender: str
    recipients: list[str]
    subject: str
    injected: datetime
    hops: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    pending: list[dict[str, str]] = field(default_factory=list)
    notifications: list[dict[str, str]] = field(default_factory=list)  # DSNs about it: generated, delivered

    @property
    def fate(self) -> str:
        if self.pending:
            return "pending"
        if self.failed and self.delivered:
            return "partial"
        if self.failed:
            return "failed"
        if self.delivered:
            return "delivered"
        return "lost"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.key, "message_id": self.message_id, "from": self.sender, "to": self.recipients,
            "subject": self.subject, "injected": iso_ms(self.injected), "fate": self.fate,
            "delivered": self.delivered, "failed": self.failed, "pending": self.pending, "hops": self.hops,
            "notifications": self.notifications,
        }


class Ledger:
    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.fates: dict[str, Fate] = {}
        self._by_mid: dict[str, str] = {}
        self._dsn_by_mid: dict[str, tuple[str, int]] = {}  # DSN Message-ID -> (fate key, index)

    def register(self, key: str, message_id: str, sender: str, recipients: list[str], subject: str) -> None:
        self.fates[key] = Fate(key, message_id, sender, list(recipients), subject, self.clock.now())
        self._by_mid[message_id] = key

    def key_for(self, message_id: str) -> str:
        return self._by_mid.get(message_id, "")

    def _fate(self, item: Any) -> Fate | None:
        return self.fates.get(getattr(item, "lab_key", "") or self.key_for(getattr(item, "message_id", "")))

    def _hop(self, item: Any, server: str, event: str, **extra: str) -> None:
        fate = self._fate(item)
        if fate is not None:
            fate.hops.append({"time": iso_ms(self.clock.now()), "server": server, "event": event, **extra})

    def received(self, item: Any, server: str) -> None:
        self._hop(item, server, "RECEIVE", internal_id=str(item.internal_id))

    def sent(self, item: Any, recipients: list[str], server: str, next_hop: str) -> None:
        self._hop(item, server, "SEND", to=";".join(recipients), next_hop=next_hop)

    def dsn_generated(self, item: Any, dsn_message_id: str, action: str, server: str,
                      about: list[str]) -> None:
        """A server generated a DSN (an NDR, a delay notice) about some recipients of `item`."""
        fate = self._fate(item)
        if fate is None:
            return
        fate.notifications.append({"time": iso_ms(self.clock.now()), "action": action, "server": server,
                                   "message_id": dsn_message_id, "about": ";".join(about),
                                   "delivered_to": "", "realm": "", "path": ""})
        self._dsn_by_mid[dsn_message_id] = (fate.key, len(fate.notifications) - 1)

    def delivered(self, item: Any, recipient: str, realm: str, path: str, server: str) -> None:
        dsn = self._dsn_by_mid.get(getattr(item, "message_id", ""))
        if dsn is not None:
            note = self.fates[dsn[0]].notifications[dsn[1]]
            note.update(delivered_to=recipient, realm=realm, path=path)
            return
        fate = self._fate(item)
        self._hop(item, server, "DELIVER", to=recipient)
        if fate is not None:
            fate.delivered.append({"recipient": recipient, "realm": realm, "server": server, "path": path})

    def failed(self, item: Any, recipients: list[str], reason: str, server: str) -> None:
        fate = self._fate(item)
        self._hop(item, server, "FAIL", to=";".join(recipients), reason=reason)
        if fate is not None:
            for r in recipients:
                fate.failed.append({"recipient": r, "server": server, "reason": reason})

    def submit_failed(self, data: bytes, recipients: list[str], reason: str, server: str) -> None:
        key = self.key_for(header_value(data, "Message-ID"))
        fate = self.fates.get(key)
        if fate is not None:
            fate.hops.append({"time": iso_ms(self.clock.now()), "server": server, "event": "SUBMITFAIL",
                              "reason": reason})
            for r in recipients:
                fate.failed.append({"recipient": r, "server": server, "reason": reason})

    def pending(self, item: Any, recipients: list[str], server: str, queue: str, last_error: str) -> None:
        fate = self._fate(item)
        if fate is not None:
            for r in recipients:
                fate.pending.append({"recipient": r, "server": server, "queue": queue, "last_error": last_error})
