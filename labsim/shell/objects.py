"""The shell's objects: a typed bag of properties, and how a value prints in a cell or a list.

`PSObject` stands for what a cmdlet returns (a queue, a send connector): its type name, its
properties in the cmdlet's order, and the default view Exchange's formatting files give its type
(the columns of Format-Table, or a list). Property names match case-insensitively, as in
PowerShell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clock import us_time


@dataclass(frozen=True)
class View:
    """A type's default view: `table` columns, or a list of `list_props` (all when empty)."""

    table: tuple[str, ...] = ()
    list_props: tuple[str, ...] = ()
    group_by: str = ""  # a table grouped by this property (Get-WinEvent's ProviderName)
    widths: tuple[int, ...] = ()  # fixed column widths of the format file (0: sized to the values)
    right: tuple[str, ...] = ()  # right-aligned columns


@dataclass
class PSObject:
    type_name: str
    props: dict[str, Any] = field(default_factory=dict)
    view: View | None = None

    def key(self, name: str) -> str | None:
        if name in self.props:
            return name
        low = name.lower()
        return next((k for k in self.props if k.lower() == low), None)

    def get(self, name: str, default: Any = None) -> Any:
        k = self.key(name)
        return self.props[k] if k is not None else default

    def has(self, name: str) -> bool:
        return self.key(name) is not None


def cell(value: Any) -> str:
    """A value as PowerShell prints it in a table cell or after 'Name : '."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, datetime):
        return us_time(value)
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(cell(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(str(k) for k in value) + "}"
    if isinstance(value, PSObject):
        ident = value.get("Identity", value.get("Name"))
        return cell(ident) if ident is not None else value.type_name
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
