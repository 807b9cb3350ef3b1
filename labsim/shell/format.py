"""Format-Table and Format-List as Windows PowerShell 5.1 lays them out.

Table: a header row of property names, a row of dashes under each name (as long as the name),
then one row per object; columns are separated by one space, padded to the widest value, and
when the whole row is wider than the console the widest columns are cut and end in '...'
(PowerShell 5.1 uses three dots). List: one 'Name : Value' line per property, names padded to the
longest, a blank line before each object. [INFERRED] PowerShell sizes a table from the first
objects it sees (a 300 ms look-ahead); the shell sizes it from all objects, which gives the same
result for the small outputs of a lab.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from .objects import PSObject, cell

DEFAULT_WIDTH = 120
ELLIPSIS = "..."


def expand_names(objects: list[PSObject], patterns: list[str]) -> list[str]:
    """Property names matching `patterns` (wildcards allowed; `*` is every property), in order."""
    names: list[str] = []
    for pat in patterns:
        for obj in objects:
            for k in obj.props:
                if fnmatch.fnmatchcase(k.lower(), pat.lower()) and k not in names:
                    names.append(k)
            if not any(ch in pat for ch in "*?[") and pat not in names and not any(
                    n.lower() == pat.lower() for n in names):
                names.append(pat)  # an unknown property is an empty column, as in PowerShell
    return names


def table(objects: list[Any], columns: list[str], width: int = DEFAULT_WIDTH, header: bool = True,
          fixed: tuple[int, ...] = (), right: tuple[str, ...] = ()) -> list[str]:
    """`fixed`: the format file's column widths (a view's own; 0 or missing: sized to the values;
    the last column is never padded). `right`: right-aligned columns (numbers of a fixed view)."""
    rows = [[_first_line(cell(o.get(c)) if isinstance(o, PSObject) else cell(o)) for c in columns] for o in objects]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    for i, w in enumerate(fixed[:len(columns)]):
        if w:
            widths[i] = w
    if fixed and len(columns) == len(fixed) + 1:  # the last column of a fixed view takes what is left
        widths[-1] = max(len(columns[-1]), min(widths[-1], width - 1 - sum(widths[:-1]) - len(widths) + 1))
    _fit(widths, columns, width)
    align = [c in right for c in columns]
    out = []
    if header:
        out.append(_line([c for c in columns], widths, align))
        out.append(_line(["-" * len(c) for c in columns], widths, align))
    for r in rows:
        out.append(_line(r, widths, align))
    return out


def _first_line(text: str) -> str:
    """A multi-line value shows its first line and '...' in a table cell (Get-WinEvent's Message)."""
    head, sep, _ = text.partition("\n")
    return head.rstrip("\r") + ("..." if sep else "")


def _fit(widths: list[int], columns: list[str], width: int) -> None:
    """Shrink the widest columns until the row fits (never below the header's length or 3)."""
    def total() -> int:
        return sum(widths) + max(0, len(widths) - 1)
    while total() > width - 1:
        i = max(range(len(widths)), key=lambda k: widths[k])
        floor = max(3, min(len(columns[i]), 10))
        if widths[i] <= floor:
            break
        widths[i] -= 1


def _line(values: list[str], widths: list[int], right: list[bool] | None = None) -> str:
    parts = []
    for i, (v, w) in enumerate(zip(values, widths)):
        if len(v) > w:
            v = v[:max(0, w - len(ELLIPSIS))] + ELLIPSIS
        parts.append(v.rjust(w) if right and right[i] else v.ljust(w))
    return " ".join(parts).rstrip()


def listing(objects: list[Any], props: list[str] | None) -> list[str]:
    out: list[str] = []
    for o in objects:
        if not isinstance(o, PSObject):
            out += ["", cell(o)]
            continue
        names = props if props else list(o.props)
        names = expand_names([o], names) if props else names
        pad = max((len(n) for n in names), default=0)
        out.append("")
        for n in names:
            text = cell(o.get(n))
            lines = text.split("\n") or [""]
            out.append(f"{n.ljust(pad)} : {lines[0]}")
            out += [" " * (pad + 3) + rest for rest in lines[1:]]
    if out:
        out += [""]
    return out
