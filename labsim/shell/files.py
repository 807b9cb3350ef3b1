"""Get-ChildItem and Get-Content over the lab's own log folders, so a trainee can read a
protocol log's tail the way seed 001 §2.4 does:

    Get-ChildItem 'C:\\Program Files\\Microsoft\\Exchange Server\\V15\\TransportRoles\\Logs\\Hub\\ProtocolLog\\SmtpSend' |
        Sort-Object LastWriteTime | Select-Object -Last 1 | Get-Content -Tail 30

Only paths under a server's `TransportRoles\\Logs` exist (the part before it is the server's
Exchange install path, whatever it is written as); they map to `<out>/<SERVER>/TransportRoles/Logs`,
the tree the lab writes. `..` is refused, so nothing outside the lab's output is ever read.
[INFERRED] LastWriteTime is the lab's current time for every file (the files are being written);
Exchange's log file names sort by time, and the listing is in name order.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .errors import ShellError
from .evaluator import Context, Spec, enumerate_value
from .objects import PSObject, View, cell

if TYPE_CHECKING:  # pragma: no cover
    from .cmdlets import LabSession

MARK = "transportroles/logs"
INSTALL = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
FILE_VIEW = View(table=("Mode", "LastWriteTime", "Length", "Name"), group_by="Directory")


def _resolve(s: "LabSession", text: str) -> tuple[Path, str]:
    """(a path under the lab's output, the part that may hold wildcards) for a Windows path."""
    norm = text.replace("/", "\\")
    low = norm.lower().replace("\\", "/")
    at = low.find(MARK)
    if at < 0:
        raise ShellError(f"Cannot find path '{text}' because it does not exist. (The lab has the Exchange "
                         "logs only: ...\\TransportRoles\\Logs\\...)", "ObjectNotFound")
    rest = [p for p in norm[at + len(MARK):].split("\\") if p]
    if any(p in ("..", ".") for p in rest):
        raise ShellError(f"Cannot find path '{text}' because it does not exist.", "ObjectNotFound")
    server = s.local
    if norm.startswith("\\\\"):  # \\SERVER\c$\Program Files\...
        server = norm[2:].split("\\", 1)[0]
        server = s.server(server).name
    base = s.rt.out / server / "TransportRoles" / "Logs"
    return base, "/".join(rest)


def _matches(base: Path, pattern: str) -> list[Path]:
    if not pattern:
        return [base] if base.is_dir() else []
    parts = PurePosixPath(pattern).parts
    found = [base]
    for part in parts:
        nxt: list[Path] = []
        for d in found:
            if not d.is_dir():
                continue
            for child in sorted(d.iterdir(), key=lambda p: p.name.lower()):
                if fnmatch.fnmatchcase(child.name.lower(), part.lower()):
                    nxt.append(child)
        found = nxt
    return found


def _windows(s: "LabSession", p: Path) -> str:
    rel = p.relative_to(s.rt.out)
    server, *rest = rel.parts
    path = INSTALL + "\\".join(rest)
    if server.lower() != s.local.lower():  # listed through \\SERVER\c$: PowerShell keeps the UNC path
        return f"\\\\{server}\\c$" + path[2:]
    return path


def _item(s: "LabSession", p: Path) -> PSObject:
    is_dir = p.is_dir()
    return PSObject("System.IO.FileInfo" if not is_dir else "System.IO.DirectoryInfo", {
        "Mode": "d-----" if is_dir else "-a----", "LastWriteTime": s.now(),
        "Length": None if is_dir else p.stat().st_size, "Name": p.name,
        "FullName": _windows(s, p), "Directory": _windows(s, p.parent), "PSIsContainer": is_dir,
    }, FILE_VIEW)


def register(ctx: Context, s: "LabSession") -> None:
    async def get_child_item(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        s.rt.flush_logs()
        paths = [cell(x) for x in enumerate_value(p.get("Path"))] or [INSTALL + "TransportRoles\\Logs"]
        out = []
        for text in paths:
            base, pattern = _resolve(s, text)
            hits = _matches(base, pattern)
            if not hits:
                raise ShellError(f"Cannot find path '{text}' because it does not exist.", "ObjectNotFound")
            for h in hits:
                children = sorted(h.iterdir(), key=lambda x: x.name.lower()) if h.is_dir() else [h]
                if "Filter" in p:
                    children = [x for x in children if fnmatch.fnmatchcase(x.name.lower(), cell(p["Filter"]).lower())]
                out += [_item(s, x) for x in children]
        return out

    async def get_content(c: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
        s.rt.flush_logs()
        paths = [cell(x) for x in enumerate_value(p.get("Path"))]
        paths += [cell(o.get("FullName")) for o in inp if isinstance(o, PSObject) and o.has("FullName")]
        if not paths:
            raise ShellError("Missing an argument for parameter 'Path'.", "InvalidArgument")
        lines: list[str] = []
        for text in paths:
            base, pattern = _resolve(s, text)
            hits = [h for h in _matches(base, pattern) if h.is_file()]
            if not hits:
                raise ShellError(f"Cannot find path '{text}' because it does not exist.", "ObjectNotFound")
            for h in hits:
                lines += h.read_bytes().decode("utf-8-sig", errors="replace").splitlines()
        if p.get("Tail") is not None:
            n = int(p["Tail"])
            lines = lines[-n:] if n else []
        if p.get("TotalCount") is not None:
            lines = lines[:int(p["TotalCount"])]
        return list(lines)

    ctx.register(Spec("Get-ChildItem", get_child_item, ("Path", "Filter", "Recurse", "File"), ("Recurse", "File"),
                      ("Path",), "Lists the lab's Exchange log folders."), "dir", "ls", "gci")
    ctx.register(Spec("Get-Content", get_content, ("Path", "Tail", "TotalCount", "Wait"), ("Wait",), ("Path",),
                      "Reads a log file (-Tail N for its last lines)."), "gc", "cat", "type")
