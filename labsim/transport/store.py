"""Mailbox stores: delivered mail as .eml files a person can open.

Layout: `mailboxes/<realm>/<address>/<NNNN>.eml`, realm `onprem-<database>`, `exo` or
`internet-<host>`; numbering per mailbox in delivery order (deterministic).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


class MailboxStore:
    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._count: dict[tuple[str, str], int] = defaultdict(int)
        self.delivered: list[tuple[str, str, str]] = []  # (realm, address, relative path)

    def deliver(self, realm: str, address: str, data: bytes) -> str:
        key = (realm, address.lower())
        self._count[key] += 1
        rel = Path("mailboxes", realm, address.lower(), f"{self._count[key]:04d}.eml")
        if self.root is not None:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.delivered.append((realm, address.lower(), rel.as_posix()))
        return rel.as_posix()
