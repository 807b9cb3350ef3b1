"""Output folders: labsim only ever deletes or replaces what it wrote itself.

Theory of operation
-------------------
Every output tree labsim writes carries a marker file, `.labsim-output` (JSON: labsim version,
scenario id, seed, mode). The marker is what makes a folder labsim's: a folder that exists, is not
empty and has no marker is refused with a one-line error and left untouched, byte for byte.

`run` (RunOutput) never writes into the user's folder. It writes into a hidden sibling on the same
file system, `.<name>.labsim-tmp-<pid>`, marked as incomplete, and only when the run has finished
swaps it in: the old tree is renamed aside to `.<name>.labsim-old-<pid>`, the new one renamed into
place, then the old one (marked, so deleting it is safe) is removed. The two renames are back to
back; a crash between them leaves no folder under the user's name but both siblings beside it, and
the next `run` or `up` on that folder finishes the swap (or, if the new tree was not complete, puts
the old one back) before anything else. A run that fails or is interrupted removes only its own
temporary sibling (renamed first to `.<name>.labsim-trash-<pid>`, so a half-removed tree is never
mistaken for anything else): the previous output stays as it was. Siblings left behind by a killed
run are removed by the next run on the same folder (under its lock, no other labsim can be using
them). Removal only ever touches a tree that carries the marker, or an empty folder.

One folder, one labsim: a lock file beside the folder, `.<name>.labsim-lock`, is held with
`fcntl.flock` for as long as a run writes or a live lab (`up`) serves. The OS drops the lock when
the process dies, so a stale lock cannot happen; a second process is refused with the folder and
the holder's pid. The lock file is removed on release.

`up` (claim_live) writes into its folder directly and across restarts: a missing or empty folder is
marked for it, a marked one is reused as it is, an unmarked non-empty one is refused. It deletes
nothing.

Public API: MARKER, OutputFolderError, default_out, read_marker, Claim, claim_folder, RunOutput,
claim_live, abandon, busy, commits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import weakref
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path, PurePath
from types import TracebackType
from typing import Any

from .._version import __version__
from ..errors import InputError

MARKER = ".labsim-output"
DEFAULT_ROOT = Path("labsim-out")
_TMP, _OLD, _TRASH, _LOCK = ".labsim-tmp-", ".labsim-old-", ".labsim-trash-", ".labsim-lock"


class OutputFolderError(InputError):
    """An output folder labsim must not or cannot write: names the folder and the problem."""


# --- the default path -----------------------------------------------------------------------------

def default_out(scenario_id: str, *, where: str, suffix: str = "", root: Path = DEFAULT_ROOT) -> Path:
    """`root/<scenario_id><suffix>`, refused unless it is a folder directly inside `root`.

    A scenario id is never used raw as a path: "..", "/abs", "a/../../b" or a symlink that leads
    out of `root` are refused, so the default output can never land outside labsim-out/.
    """
    name = f"{scenario_id}{suffix}"
    problem = f"scenario id {scenario_id!r} does not name a folder inside {root}/; pass --out"
    if not name or "\x00" in name or name in (".", "..") or PurePath(name).parts != (name,) or "\\" in name:
        raise OutputFolderError(where, problem)
    path = root / name
    base = root.resolve()
    real = path.resolve()
    if real.parent != base or real == base:
        raise OutputFolderError(where, problem)
    return path


# --- the marker -----------------------------------------------------------------------------------

def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's labsim marker, or None when it has none (or one labsim did not write)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "labsim" in data and "mode" in data else None


def _write_marker(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MARKER)


def _marker(mode: str, scenario: str, seed: int, **extra: Any) -> dict[str, Any]:
    return {"labsim": __version__, "mode": mode, "scenario": scenario, "seed": seed, **extra}


# --- checks ---------------------------------------------------------------------------------------

def _fail(folder: Path, problem: str) -> OutputFolderError:
    return OutputFolderError(str(folder), problem)


def _os_problem(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _resolve(out: Path) -> Path:
    real = out.expanduser().resolve()
    if real.parent == real:
        raise _fail(out, "is the root of the file system; labsim needs a folder of its own")
    return real


def _is_empty(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return next(it, None) is None


def _precheck(out: Path, real: Path) -> None:
    """What can be told without touching anything."""
    if real.exists() and not real.is_dir():
        raise _fail(out, "is a file, not a folder; labsim writes its output into a folder")
    if real.parent.exists() and not real.parent.is_dir():
        raise _fail(out, f"cannot be created: {real.parent} is a file")


def _ensure_parent(out: Path, real: Path) -> None:
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(out, f"cannot create its parent folder {real.parent}: {_os_problem(exc)}") from None


# --- the lock -------------------------------------------------------------------------------------

def _release(path: str, fd: int) -> None:
    with contextlib.suppress(OSError):
        st, cur = os.fstat(fd), os.stat(path)
        if (st.st_dev, st.st_ino) == (cur.st_dev, cur.st_ino):
            os.unlink(path)  # while still holding it: a waiter that opened it re-checks the inode
    with contextlib.suppress(OSError):
        os.close(fd)


class Claim:
    """The lock on one output folder, held until release() (or until the process dies)."""

    def __init__(self, folder: Path, lock_path: Path, fd: int) -> None:
        self.folder = folder
        self.lock_path = lock_path
        self._finalizer = weakref.finalize(self, _release, str(lock_path), fd)

    @property
    def held(self) -> bool:
        return self._finalizer.alive

    def release(self) -> None:
        self._finalizer()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).split()[0])
        return f"pid {pid}"
    return "pid unknown"


def claim_folder(out: Path) -> Claim:
    """Lock `out` (the lock file lives beside it); refuse if another process holds it."""
    real = _resolve(out)
    _precheck(out, real)
    _ensure_parent(out, real)
    lock_path = real.parent / f".{real.name}{_LOCK}"
    for _ in range(10):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _fail(out, f"cannot write beside it in {real.parent}: {_os_problem(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise _fail(out, f"is in use by another labsim process ({holder}); wait for it to finish "
                                 "or choose another --out") from None
            raise _fail(out, f"cannot lock {lock_path}: {_os_problem(exc)}") from None
        # The holder before us may have removed the file between our open and our lock: then we
        # hold a lock nobody else can see. Only the file still at lock_path counts.
        try:
            st, cur = os.fstat(fd), os.stat(lock_path)
        except FileNotFoundError:
            os.close(fd)
            continue
        if (st.st_dev, st.st_ino) != (cur.st_dev, cur.st_ino):
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return Claim(real, lock_path, fd)
    raise _fail(out, f"cannot lock {lock_path}: it keeps being replaced")


# --- critical sections and what a hard exit must clean ---------------------------------------------

_busy = 0
_commits = 0
_pending: dict[int, RunOutput] = {}  # runs whose temporary tree is not committed yet
_removing: set[Path] = set()  # trees being removed right now


@contextlib.contextmanager
def _critical() -> Iterator[None]:
    """A few renames a hard exit (engine.interrupt) must not cut in two."""
    global _busy
    _busy += 1
    try:
        yield
    finally:
        _busy -= 1


def commits() -> int:
    """How many trees this process has swapped into place: tells an interruption after the swap
    (the new output is there) from one before it (the previous output is)."""
    return _commits


def busy() -> bool:
    """True while a tree is being renamed into or out of place; a hard exit waits for it (microseconds)."""
    return _busy > 0


def abandon() -> bool:
    """For a process that must end now: take every uncommitted temporary tree out of the way and
    have a detached child remove them, with any removal this process had begun.

    Returns at once, whatever the size of the trees (removing tens of thousands of files can take
    seconds). The previous outputs are untouched; whatever the child does not finish, the next run
    on the folder removes. Returns whether there was anything to remove.
    """
    doomed = set(_removing)
    for run in list(_pending.values()):
        doomed.add(run._to_trash())
    if not doomed:
        return False
    try:
        pid = os.fork()
    except OSError:
        pid = -1
    if pid == 0:  # the child: no lock, no terminal, just the removal
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # nobody reading our output waits for this child
                os.dup2(null, fd)
            os.closerange(3, 1 << 16)  # the folder's lock among them: it goes with the parent
            for path in sorted(doomed):
                _remove_marked(path)  # ours: checked before their removal began
        finally:
            os._exit(0)
    if pid < 0:
        for path in sorted(doomed):
            _remove_marked(path)
    return True


def _remove_tree(path: Path) -> None:
    """Remove a tree labsim made: only if it is marked as labsim's, or empty."""
    if path.is_symlink():
        return
    if read_marker(path) is None:
        with contextlib.suppress(OSError):
            path.rmdir()
        return
    _removing.add(path)
    try:
        _remove_marked(path)
    finally:
        _removing.discard(path)


def _remove_marked(path: Path) -> None:
    """Everything but the marker first, the marker last: a removal cut short (a kill, a power cut)
    leaves a tree that is still marked, which the next run on the folder finishes removing."""
    with contextlib.suppress(OSError), os.scandir(path) as it:
        entries = [e for e in it if e.name != MARKER]
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(e.path)
    with contextlib.suppress(OSError), os.scandir(path) as it:
        if any(e.name != MARKER for e in it):
            return  # something would not go: keep the marker, so that a later run tries again
    with contextlib.suppress(OSError):
        os.unlink(path / MARKER)
    with contextlib.suppress(OSError):
        path.rmdir()


# --- recovery of a crashed run --------------------------------------------------------------------

def _siblings(real: Path, *kinds: str) -> list[Path]:
    found: list[Path] = []
    with contextlib.suppress(OSError), os.scandir(real.parent) as it:
        for e in it:
            for kind in kinds:
                prefix = f".{real.name}{kind}"
                if (e.name.startswith(prefix) and e.name[len(prefix):].isdigit()
                        and e.is_dir(follow_symlinks=False)):
                    found.append(Path(e.path))
    def age(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(found, key=age)


def _recover(real: Path) -> None:
    """Finish (or undo) a swap a crash cut in two, then remove what killed runs left behind.

    Called with the folder's lock held, so no live labsim owns any of these siblings.
    """
    with _critical():
        if not real.exists():
            done = [p for p in _siblings(real, _TMP) if (m := read_marker(p)) is not None and not m.get("incomplete")]
            olds = [p for p in _siblings(real, _OLD) if read_marker(p) is not None]
            if done:
                os.rename(done[-1], real)
            elif olds:
                os.rename(olds[-1], real)
    for path in _siblings(real, _TMP, _OLD, _TRASH):
        _remove_tree(path)


# --- run: write aside, swap in when complete ----------------------------------------------------------

class RunOutput:
    """The output tree of one `run`: `with RunOutput(out, ...) as o:` write into `o.work`, then o.commit().

    Entering checks `out` (see the module docstring), takes its lock, and makes the marked
    temporary sibling `work`. commit() swaps it into place. Leaving without commit() (an error,
    a cancellation) removes `work` and leaves `out` as it was. The lock is released on leaving.
    """

    def __init__(self, out: Path, *, scenario: str, seed: int) -> None:
        self.out = out
        self.real = _resolve(out)
        self.scenario = scenario
        self.seed = seed
        self.work = self._sibling(_TMP)
        self.committed = False
        self._made = False
        self._claim: Claim | None = None

    def _sibling(self, kind: str) -> Path:
        return self.real.parent / f".{self.real.name}{kind}{os.getpid()}"

    def __enter__(self) -> RunOutput:
        out, real = self.out, self.real
        _precheck(out, real)
        with contextlib.suppress(OSError):
            cwd = Path.cwd().resolve()
            if cwd == real or real in cwd.parents:
                raise _fail(out, "holds the current folder; run labsim from outside the folder it replaces")
        self._claim = claim_folder(out)
        try:
            try:
                _recover(real)
            except OSError as exc:
                raise _fail(out, f"cannot tidy what an earlier run left beside it: {_os_problem(exc)}") from None
            self._check_replaceable()
            try:
                self.work.mkdir()  # fails if something is there: then it is not ours to remove
                self._made = True
                _pending[id(self)] = self
                _write_marker(self.work, _marker("run", self.scenario, self.seed, pid=os.getpid(), incomplete=True))
            except OSError as exc:
                raise _fail(out, f"cannot write in {real.parent}: {_os_problem(exc)}") from None
        except BaseException:
            self._leave()
            raise
        return self

    def _check_replaceable(self) -> None:
        out, real = self.out, self.real
        if not real.exists():
            return
        if not real.is_dir():
            raise _fail(out, "is a file, not a folder; labsim writes its output into a folder")
        marker = read_marker(real)
        try:
            empty = _is_empty(real)
        except OSError as exc:
            raise _fail(out, f"cannot be read: {_os_problem(exc)}") from None
        if marker is None and not empty:
            raise _fail(out, f"exists, is not empty and was not written by labsim (no {MARKER} marker); "
                             "refusing to replace it: choose an empty or new folder")
        if marker is not None and marker.get("mode") == "up":
            raise _fail(out, "holds a live lab's output (labsim up), which run does not replace; "
                             "choose another --out")

    def commit(self) -> None:
        """Swap the finished tree into place, then remove the previous one."""
        global _commits
        assert self._made and not self.committed, "commit() belongs inside the with block, once"
        real, work = self.real, self.work
        aside: Path | None = None
        try:
            _write_marker(work, _marker("run", self.scenario, self.seed))
            with _critical():
                if real.exists() and not (real.is_dir() and _is_empty(real)):
                    aside = self._sibling(_OLD)
                    os.rename(real, aside)
                try:
                    os.rename(work, real)  # over an empty folder, or into the place just vacated
                except OSError:
                    if aside is not None:
                        os.rename(aside, real)  # put the previous tree back at once
                    raise
                self.committed = True
                _commits += 1
                _pending.pop(id(self), None)
        except OSError as exc:
            raise _fail(self.out, f"could not be replaced: {_os_problem(exc)}") from None
        if aside is not None:
            _remove_tree(aside)

    def _to_trash(self) -> Path:
        """Rename the uncommitted tree out of the way (instant, whatever its size); returns its path."""
        with _critical():
            trash = self._sibling(_TRASH)
            try:
                os.rename(self.work, trash)
            except OSError:
                trash = self.work
            self._made = False
            _pending.pop(id(self), None)
        return trash

    def discard(self) -> None:
        """Remove the temporary tree (never `out`); idempotent."""
        if self.committed or not self._made:
            return
        _remove_tree(self._to_trash())

    def _leave(self) -> None:
        self.discard()
        if self._claim is not None:
            self._claim.release()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._leave()


# --- up: one folder across restarts ---------------------------------------------------------------

def claim_live(out: Path, *, scenario: str, seed: int) -> Claim:
    """Take `out` for a live lab for as long as the returned Claim is held (release() or exit).

    A missing or empty folder is created and marked; a labsim-marked one is reused as it is;
    anything else is refused. Nothing is ever deleted.
    """
    claim = claim_folder(out)
    real = claim.folder
    try:
        _recover(real)
        if real.exists():
            if read_marker(real) is None and not _is_empty(real):
                raise _fail(out, f"exists, is not empty and was not written by labsim (no {MARKER} marker); "
                                 "refusing to write into it: choose an empty or new folder")
        real.mkdir(exist_ok=True)
        if read_marker(real) is None:
            created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            _write_marker(real, _marker("up", scenario, seed, created=created))
    except OSError as exc:
        claim.release()
        raise _fail(out, f"cannot be used: {_os_problem(exc)}") from None
    except BaseException:
        claim.release()
        raise
    return claim
