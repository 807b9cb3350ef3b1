"""Mailbox stores: delivered mail as .eml files a person can open.

Layout: `mailboxes/<realm>/<address>/<NNNN>.eml`, realm `onprem-<database>`, `exo` or
`internet-<host>`; numbering per mailbox in delivery order (deterministic).

A mailbox never loses a delivered message: numbering continues after the highest file already in
the mailbox folder (a second `labsim up` on the same folder), and each file is created with
O_EXCL, so not even two processes delivering at once can overwrite one another's files (the loser
takes the next number). In `durable` mode (`up`) the file is fsync'd before `deliver` returns,
because the 250 that follows tells the sender the message is safe.
"""

from __future__ import annotations

import os
import posixpath
from collections import defaultdict
from pathlib import Path

from .persist import fsync_dir


class MailboxStore:
    def __init__(self, root: Path | None, *, durable: bool = False) -> None:
        self.root = root
        self.durable = durable
        self._count: dict[tuple[str, str], int] = defaultdict(int)
        self._folders: dict[tuple[str, str], tuple[str, str]] = {}  # (realm, address) -> (relative, on disk)

    def _highest(self, folder: Path) -> int:
        if not folder.is_dir():
            return 0
        numbers = [int(p.stem) for p in folder.glob("*.eml") if p.stem.isdigit()]
        return max(numbers, default=0)

    def deliver(self, realm: str, address: str, data: bytes) -> str:
        key = (realm, address.lower())
        folder = self._folders.get(key)
        if folder is None:  # a mailbox's folder, as a path relative to the tree and on disk
            rel_folder = Path("mailboxes", realm, address.lower())
            target = None if self.root is None else self.root / rel_folder
            if target is not None:
                target.mkdir(parents=True, exist_ok=True)
                self._count[key] = self._highest(target)
            folder = self._folders[key] = (rel_folder.as_posix(), "" if target is None else str(target))
        if self.root is None:
            self._count[key] += 1
            return posixpath.join(folder[0], f"{self._count[key]:04d}.eml")
        return self._write_new(key, folder, data)

    def _write_new(self, key: tuple[str, str], folder: tuple[str, str], data: bytes) -> str:
        rel_folder, target = folder
        while True:
            self._count[key] += 1
            name = f"{self._count[key]:04d}.eml"
            try:
                fd = os.open(os.path.join(target, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue  # another process (or an earlier run) holds this number
            except FileNotFoundError:
                Path(target).mkdir(parents=True, exist_ok=True)  # the folder was removed under us
                self._count[key] -= 1
                continue
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if self.durable:
                fsync_dir(Path(target))
            return posixpath.join(rel_folder, name)
