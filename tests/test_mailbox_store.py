"""The mailbox store's paths and numbering (the paths land in the ledger and the tracking logs)."""

from __future__ import annotations

import shutil
from pathlib import Path

from labsim.transport.store import MailboxStore


def test_paths_are_relative_posix_and_numbered_per_mailbox(tmp_path: Path) -> None:
    store = MailboxStore(tmp_path)
    assert store.deliver("onprem-DB01", "Alice@Contoso.com", b"a") == "mailboxes/onprem-DB01/alice@contoso.com/0001.eml"
    assert store.deliver("onprem-DB01", "alice@contoso.com", b"b") == "mailboxes/onprem-DB01/alice@contoso.com/0002.eml"
    assert store.deliver("exo", "alice@contoso.com", b"c") == "mailboxes/exo/alice@contoso.com/0001.eml"
    assert (tmp_path / "mailboxes/onprem-DB01/alice@contoso.com/0002.eml").read_bytes() == b"b"


def test_numbering_goes_on_after_files_already_there_and_a_removed_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mailboxes" / "exo" / "bob@contoso.com"
    folder.mkdir(parents=True)
    (folder / "0007.eml").write_bytes(b"kept")
    store = MailboxStore(tmp_path)
    assert store.deliver("exo", "bob@contoso.com", b"x").endswith("/0008.eml")
    shutil.rmtree(folder)  # removed under the store: made again, the numbering goes on
    assert store.deliver("exo", "bob@contoso.com", b"y") == "mailboxes/exo/bob@contoso.com/0009.eml"
    assert (folder / "0009.eml").read_bytes() == b"y"


def test_without_a_root_only_the_paths_are_counted() -> None:
    store = MailboxStore(None)
    assert [store.deliver("exo", "c@contoso.com", b"") for _ in range(2)] == [
        "mailboxes/exo/c@contoso.com/0001.eml", "mailboxes/exo/c@contoso.com/0002.eml"]
