"""Running a parsed script: variables, the pipeline, parameter binding and PowerShell's own
cmdlets (Where-Object, Select-Object, Sort-Object, Measure-Object, ForEach-Object,
Format-Table, Format-List).

A command is a `Spec`: its parameters (which are switches, which bind by position) and an async
function `fn(ctx, params, input) -> list` that gets the bound parameters and the objects piped
into it and returns its output objects. The lab's cmdlets (shell.cmdlets) register more Specs
in the same table. Comparison operators follow PowerShell: case-insensitive by default, the
right operand converted to the left one's type, and a collection on the left filters.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import format as fmt
from .errors import ShellError, missing_argument, no_parameter, not_recognized
from .objects import PSObject, View, cell
from .parser import (
    ArrayLit,
    Assign,
    Binary,
    Block,
    Command,
    Const,
    Expr,
    HashLit,
    Index,
    Member,
    Param,
    Pipeline,
    Script,
    Str,
    Sub,
    Unary,
    Var,
    parse,
)

Fn = Callable[["Context", dict[str, Any], list[Any]], Awaitable[list[Any]]]


@dataclass(frozen=True)
class Spec:
    name: str
    fn: Fn
    params: tuple[str, ...] = ()
    switches: tuple[str, ...] = ()
    positional: tuple[str, ...] = ()
    help: str = ""
    common: bool = True  # accepts -Confirm, -WhatIf, -Verbose, -ErrorAction... (ignored)
    open_params: bool = False  # any -Name is passed on (the lab cmdlet checks it and says what it knows)


COMMON = ("Confirm", "WhatIf", "Verbose", "Debug", "ErrorAction", "WarningAction", "ErrorVariable",
          "OutVariable", "Force", "DomainController")
COMMON_SWITCHES = ("Confirm", "WhatIf", "Verbose", "Debug", "Force")


@dataclass
class ScriptBlock:
    body: Script
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Formatted:
    """What Format-Table/Format-List return: lines, printed as they are."""

    lines: list[str]


@dataclass
class Context:
    commands: dict[str, Spec] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    width: int = fmt.DEFAULT_WIDTH

    def register(self, spec: Spec, *aliases: str) -> None:
        self.commands[spec.name.lower()] = spec
        for a in aliases:
            self.aliases[a.lower()] = spec.name

    def lookup(self, name: str) -> Spec:
        key = name.lower()
        key = self.aliases.get(key, name).lower()
        spec = self.commands.get(key)
        if spec is None:
            raise not_recognized(name)
        return spec

    def names(self) -> list[str]:
        return sorted({s.name for s in self.commands.values()})


# --- running ---------------------------------------------------------------------------------------
async def run_text(ctx: Context, text: str) -> list[Any]:
    return await run_script(ctx, parse(text))


async def run_script(ctx: Context, script: Script, dollar: Any = None) -> list[Any]:
    out: list[Any] = []
    for st in script.statements:
        if isinstance(st, Assign):
            value = await run_pipeline(ctx, st.value, dollar)
            ctx.variables[st.name.lower()] = value[0] if len(value) == 1 else (value if value else None)
        else:
            out += await run_pipeline(ctx, st, dollar)
    return out


async def run_pipeline(ctx: Context, pipeline: Pipeline, dollar: Any = None) -> list[Any]:
    data: list[Any] = []
    for n, element in enumerate(pipeline.elements):
        if isinstance(element, Command):
            spec = None
            try:
                spec = ctx.lookup(element.name)
                params = await bind(ctx, spec, element, dollar)
                if n and not data and spec.name not in _RUN_WITHOUT_INPUT:
                    continue  # nothing was piped in: the cmdlet's process block never runs
                data = await spec.fn(ctx, params, data if n else [])
            except ShellError as exc:
                if exc.command is None:
                    exc.command = spec.name if spec is not None else element.name
                raise
        else:
            data = enumerate_value(await evaluate(ctx, element, dollar))
    return data


# PowerShell's end-block cmdlets: they answer even when nothing was piped in (Measure-Object's Count 0).
_RUN_WITHOUT_INPUT = {"Measure-Object", "Sort-Object", "Format-Table", "Format-List", "Out-String"}


def enumerate_value(value: Any) -> list[Any]:
    """What an expression sends down the pipeline: a collection is unrolled, $null is nothing."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


async def bind(ctx: Context, spec: Spec, cmd: Command, dollar: Any) -> dict[str, Any]:
    """Named, switch and positional arguments to the cmdlet's parameter names."""
    names = list(spec.params) + [c for c in COMMON if spec.common and c not in spec.params]
    switches = {s.lower() for s in spec.switches} | ({c.lower() for c in COMMON_SWITCHES} if spec.common else set())
    bound: dict[str, Any] = {}
    positional: list[Any] = []
    args = list(cmd.args)
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if isinstance(a, Param):
            name = _param_name(a.name, names, spec.open_params)
            if a.value is not None:
                bound[name] = await evaluate(ctx, a.value, dollar)
            elif name.lower() in switches:
                bound[name] = True
            elif i < len(args) and not isinstance(nxt := args[i], Param):
                bound[name] = await evaluate(ctx, nxt, dollar)
                i += 1
            else:
                raise missing_argument(name)
        else:
            positional.append(await evaluate(ctx, a, dollar))
    free = [p for p in spec.positional if p not in bound]
    for value in positional:
        if not free:
            raise ShellError(f"A positional parameter cannot be found that accepts argument '{cell(value)}'.",
                             "InvalidArgument")
        bound[free.pop(0)] = value
    return bound


def _param_name(given: str, names: list[str], open_params: bool = False) -> str:
    low = given.lower()
    exact = [n for n in names if n.lower() == low]
    if exact:
        return exact[0]
    hits = [n for n in names if n.lower().startswith(low)]
    if len(hits) == 1:
        return hits[0]
    if not hits and open_params:
        return given
    if not hits:
        raise no_parameter(given)
    raise ShellError(f"Parameter cannot be processed because the parameter name '{given}' is ambiguous. "
                     f"Possible matches include: {' '.join('-' + h for h in hits)}.", "InvalidArgument")


# --- expressions -------------------------------------------------------------------------------------
_SPECIAL = {"true": True, "false": False, "null": None}


async def evaluate(ctx: Context, e: Expr, dollar: Any = None) -> Any:
    if isinstance(e, Const):
        return e.value
    if isinstance(e, Str):
        return await _expand(ctx, e.text, dollar) if e.expand else e.text
    if isinstance(e, Var):
        low = e.name.lower()
        if low in ("_", "psitem"):
            return dollar
        if low in _SPECIAL:
            return _SPECIAL[low]
        return ctx.variables.get(low)
    if isinstance(e, ArrayLit):
        return [await evaluate(ctx, x, dollar) for x in e.items]
    if isinstance(e, HashLit):
        out: dict[str, Any] = {}
        for k, v in e.pairs:
            value = await run_pipeline(ctx, v, dollar)
            out[k] = value[0] if len(value) == 1 else value
        return out
    if isinstance(e, Block):
        return ScriptBlock(e.body, e.text)
    if isinstance(e, Sub):
        values = await run_script(ctx, e.body, dollar)
        if e.array:
            return values
        return values[0] if len(values) == 1 else (values if values else None)
    if isinstance(e, Member):
        return member(await evaluate(ctx, e.target, dollar), e.name)
    if isinstance(e, Index):
        return index(await evaluate(ctx, e.target, dollar), await evaluate(ctx, e.index, dollar))
    if isinstance(e, Unary):
        return not truthy(await evaluate(ctx, e.operand, dollar))
    if isinstance(e, Binary):
        if e.op in ("and", "or", "xor"):
            left = truthy(await evaluate(ctx, e.left, dollar))
            if e.op == "and" and not left:
                return False
            if e.op == "or" and left:
                return True
            right = truthy(await evaluate(ctx, e.right, dollar))
            return (left != right) if e.op == "xor" else right
        return operate(e.op, await evaluate(ctx, e.left, dollar), await evaluate(ctx, e.right, dollar))
    raise ShellError(f"cannot evaluate {type(e).__name__}")  # pragma: no cover - every node is handled


_EXPAND = re.compile(r"(?<!\x00)\$(\(|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)")


async def _expand(ctx: Context, text: str, dollar: Any) -> str:
    """"$var", "$var.Prop" and "$(expression)" inside double quotes."""
    out: list[str] = []
    pos = 0
    for m in _EXPAND.finditer(text):
        if m.start() < pos:
            continue
        out.append(text[pos:m.start()])
        if m.group(1) == "(":
            depth, j = 1, m.end()
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            value = await run_text(ctx, text[m.end():j - 1]) if depth == 0 else []
            out.append(" ".join(cell(v) for v in value))
            pos = j
        else:
            name, _, prop = m.group(1).partition(".")
            value = await evaluate(ctx, Var(name), dollar)
            if prop and not (isinstance(value, str)):
                value = member(value, prop)
            elif prop:
                out.append(cell(value) + "." + prop)
                pos = m.end()
                continue
            out.append(" ".join(cell(v) for v in value) if isinstance(value, list) else cell(value))
            pos = m.end()
    out.append(text[pos:])
    return "".join(out).replace("\x00$", "$")


def member(value: Any, name: str) -> Any:
    low = name.lower()
    if isinstance(value, PSObject):
        if value.has(name):
            return value.get(name)
        return 1 if low in ("count", "length") else None  # one object's Count is 1 (PowerShell 3+)
    if isinstance(value, (list, tuple)):
        if low in ("count", "length"):
            return len(value)
        return [m for m in (member(v, name) for v in value) if m is not None]  # member enumeration
    if isinstance(value, dict):
        if low in ("count",):
            return len(value)
        if low == "keys":
            return list(value)
        return next((v for k, v in value.items() if str(k).lower() == low), None)
    if isinstance(value, str):
        return len(value) if low == "length" else None
    if value is None:
        return 0 if low in ("count", "length") else None  # $null.Count is 0 (PowerShell 3+)
    if low == "count":
        return 1
    return getattr(value, name, None) if not name.startswith("_") else None


def index(value: Any, i: Any) -> Any:
    if isinstance(value, (list, tuple, str)):
        try:
            return value[int(i)]
        except (IndexError, ValueError, TypeError):
            return None
    if isinstance(value, dict):
        return member(value, str(i))
    if int(i) in (0, -1) if isinstance(i, int) else False:
        return value
    return None


def truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return truthy(value[0])
        return len(value) > 0
    if isinstance(value, (bool, int, float)):
        return bool(value)
    if isinstance(value, str):
        return value != ""
    return True


def _convert(right: Any, left: Any) -> Any:
    """The right operand as the left one's type (PowerShell's comparison rule)."""
    if isinstance(left, bool):
        return truthy(right) if not isinstance(right, str) else right != ""
    if isinstance(left, (int, float)) and not isinstance(right, (int, float)):
        try:
            return float(str(right))
        except ValueError:
            return None
    if isinstance(left, str):
        return cell(right)
    return right


def compare(op: str, left: Any, right: Any) -> bool:
    case = op.startswith("c") and op[1:] in _BASE_OPS
    base = op[1:] if (op.startswith(("c", "i")) and op[1:] in _BASE_OPS) else op
    if isinstance(left, datetime) or isinstance(left, PSObject):
        left = cell(left)
    r = _convert(right, left)
    if base in ("like", "notlike"):
        a, b = cell(left), cell(right)
        if not case:
            a, b = a.lower(), b.lower()
        hit = fnmatch.fnmatchcase(a, b)
        return hit if base == "like" else not hit
    if base in ("match", "notmatch"):
        try:
            hit = re.search(cell(right), cell(left), 0 if case else re.IGNORECASE) is not None
        except re.error as exc:
            raise ShellError(f"The regular expression pattern {cell(right)} is not valid: {exc}.") from None
        return hit if base == "match" else not hit
    if isinstance(left, str) and isinstance(r, str) and not case:
        left, r = left.lower(), r.lower()
    if base == "eq":
        return bool(left == r)
    if base == "ne":
        return bool(left != r)
    if r is None or left is None:
        return False
    try:
        return {"gt": left > r, "ge": left >= r, "lt": left < r, "le": left <= r}[base]
    except TypeError:
        return False


_BASE_OPS = {"eq", "ne", "gt", "ge", "lt", "le", "like", "notlike", "match", "notmatch", "contains",
             "notcontains", "in", "notin"}


def operate(op: str, left: Any, right: Any) -> Any:
    if op == "+":
        if isinstance(left, list):
            return left + (right if isinstance(right, list) else [right])
        if isinstance(left, str):
            return left + cell(right)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            return left + right
        return operate("+", cell(left), right)
    if op == "-":
        try:
            return float(left) - float(right) if isinstance(left, float) or isinstance(right, float) else int(left) - int(right)
        except (TypeError, ValueError):
            raise ShellError(f"Cannot subtract '{cell(right)}' from '{cell(left)}'.") from None
    base = op[1:] if (op.startswith(("c", "i")) and op[1:] in _BASE_OPS) else op
    prefix = op[:1] if base != op else ""
    if base in ("contains", "notcontains"):
        hit = any(compare(prefix + "eq", x, right) for x in enumerate_value(left))
        return hit if base == "contains" else not hit
    if base in ("in", "notin"):
        hit = any(compare(prefix + "eq", x, left) for x in enumerate_value(right))
        return hit if base == "in" else not hit
    if isinstance(left, (list, tuple)):
        return [x for x in left if compare(op, x, right)]
    return compare(op, left, right)


# --- output --------------------------------------------------------------------------------------------
def render(ctx: Context, values: list[Any]) -> list[str]:
    """Out-Default: formatted lines; runs of objects of one type share one table or list."""
    lines: list[str] = []
    run: list[PSObject] = []

    def flush() -> None:
        if run:
            lines.extend(default_view(run, ctx.width))
            run.clear()

    for v in values:
        if isinstance(v, PSObject):
            if run and run[0].type_name != v.type_name:
                flush()
            run.append(v)
            continue
        flush()
        if isinstance(v, Formatted):
            lines.extend(v.lines)
        elif v is not None:
            lines.extend(cell(v).split("\n"))
    flush()
    return lines


def default_view(objs: list[PSObject], width: int) -> list[str]:
    view = objs[0].view
    if view is not None and view.table:
        if view.group_by:
            return _grouped(objs, view, width)
        return [""] + fmt.table(objs, list(view.table), width, fixed=view.widths, right=view.right) + [""]
    if view is not None and view.list_props:
        return fmt.listing(objs, list(view.list_props))
    if len(objs[0].props) <= 4:
        return [""] + fmt.table(objs, list(objs[0].props), width) + [""]
    return fmt.listing(objs, None)


def _grouped(objs: list[PSObject], view: View, width: int) -> list[str]:
    out: list[str] = []
    groups: dict[str, list[PSObject]] = {}
    for o in objs:
        groups.setdefault(cell(o.get(view.group_by)), []).append(o)
    for key, members in groups.items():
        out += ["", f"   {view.group_by}: {key}", ""]
        out += fmt.table(members, list(view.table), width, fixed=view.widths, right=view.right) + [""]
    return out


# --- PowerShell's own cmdlets ------------------------------------------------------------------------------
async def _where(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    block = p.get("FilterScript")
    if isinstance(block, ScriptBlock):
        out = []
        for obj in inp:
            if truthy(await run_script(ctx, block.body, obj)):
                out.append(obj)
        return out
    prop = p.get("Property", block)
    ops = [o for o in _WHERE_OPS if p.get(o)]
    if prop is None:
        raise ShellError("Where-Object needs a script block ({$_.Status -eq 'Retry'}) or a property and an "
                         "operator (Status -eq Retry).", "InvalidArgument")
    if len(ops) > 1:
        raise ShellError("The specified operator is not valid: use one comparison operator.", "InvalidArgument")
    op = ops[0].lower() if ops else ""
    value = p.get("Value")
    out = []
    for obj in inp:
        left = member(obj, cell(prop))
        if (operate(op, left, value) if op else left) not in (False, None, [], ""):
            out.append(obj)
    return out


_WHERE_OPS = ("EQ", "NE", "GT", "GE", "LT", "LE", "Like", "NotLike", "Match", "NotMatch", "Contains",
              "NotContains", "In", "NotIn", "CEQ", "CNE", "CLike", "CMatch")


def _names(value: Any) -> list[Any]:
    return [v for v in enumerate_value(value)]


async def _calculated(ctx: Context, obj: Any, spec: Any) -> tuple[str, Any]:
    if isinstance(spec, dict):
        name = next((v for k, v in spec.items() if k.lower() in ("n", "name", "l", "label")), None)
        expr = next((v for k, v in spec.items() if k.lower() in ("e", "expression")), None)
        if name is None or expr is None:
            raise ShellError("A calculated property needs Name (or Label) and Expression keys.", "InvalidArgument")
        if isinstance(expr, ScriptBlock):
            value = await run_script(ctx, expr.body, obj)
            return cell(name), value[0] if len(value) == 1 else value
        return cell(name), member(obj, cell(expr))
    return cell(spec), member(obj, cell(spec))


async def _select(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    objs = list(inp)
    if "First" in p or "Last" in p or "Skip" in p:
        skip = int(p.get("Skip", 0) or 0)
        objs = objs[skip:]
        if "Last" in p:
            objs = objs[-int(p["Last"]):] if int(p["Last"]) else []
        if "First" in p:
            objs = objs[:int(p["First"])]
    if "ExpandProperty" in p:
        out: list[Any] = []
        for o in objs:
            out += enumerate_value(member(o, cell(p["ExpandProperty"])))
        return out
    if "Property" not in p:
        return objs
    specs = _names(p["Property"])
    out = []
    for o in objs:
        props: dict[str, Any] = {}
        if isinstance(o, PSObject):
            plain = [s for s in specs if not isinstance(s, dict)]
            for s in specs:
                if isinstance(s, dict):
                    k, v = await _calculated(ctx, o, s)
                    props[k] = v
                else:
                    for name in fmt.expand_names([o], [cell(s)]):
                        props[o.key(name) or name] = o.get(name)
            del plain
            out.append(PSObject(f"Selected.{o.type_name}", props))
        else:
            for s in specs:
                k, v = await _calculated(ctx, o, s)
                props[k] = v
            out.append(PSObject("Selected", props))
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, cell(value).lower())


async def _sort(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    props = [cell(x) for x in _names(p.get("Property"))]
    out = sorted(inp, key=lambda o: [_sort_key(member(o, k) if props else o) for k in (props or ["_"])],
                 reverse=bool(p.get("Descending")))
    if p.get("Unique"):
        seen, uniq = set(), []
        for o in out:
            key = cell(o) if not props else tuple(cell(member(o, k)) for k in props)
            if key not in seen:
                seen.add(key)
                uniq.append(o)
        out = uniq
    return out


async def _measure(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    prop = p.get("Property")
    values = [member(o, cell(prop)) for o in inp] if prop is not None else list(inp)
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    props: dict[str, Any] = {"Count": len(values), "Average": None, "Sum": None, "Maximum": None, "Minimum": None,
                             "Property": cell(prop) if prop is not None else None}
    if p.get("Sum"):
        props["Sum"] = _num(sum(nums))
    if p.get("Average"):
        props["Average"] = _num(sum(nums) / len(nums)) if nums else None
    if p.get("Maximum"):
        props["Maximum"] = _num(max(nums)) if nums else None
    if p.get("Minimum"):
        props["Minimum"] = _num(min(nums)) if nums else None
    return [PSObject("Microsoft.PowerShell.Commands.GenericMeasureInfo", props,
                     View(list_props=("Count", "Average", "Sum", "Maximum", "Minimum", "Property")))]


def _num(x: float) -> int | float:
    return int(x) if x.is_integer() else x


async def _foreach(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    block = p.get("Process")
    out: list[Any] = []
    for obj in inp:
        if isinstance(block, ScriptBlock):
            out += await run_script(ctx, block.body, obj)
        elif block is not None:
            out += enumerate_value(member(obj, cell(block)))
    return out


async def _format_table(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    objs = [o for o in inp if isinstance(o, PSObject)]
    if not objs:
        return [Formatted([cell(o) for o in inp])] if inp else []
    if "Property" in p:
        cols = fmt.expand_names(objs, [cell(x) for x in _names(p["Property"])])
    elif objs[0].view is not None and objs[0].view.table:
        cols = list(objs[0].view.table)
    else:
        cols = list(objs[0].props)[:10]
    lines = fmt.table(objs, cols, ctx.width if not p.get("Wrap") else 10_000, header=not p.get("HideTableHeaders"))
    return [Formatted([""] + lines + [""])]


async def _format_list(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    props = [cell(x) for x in _names(p.get("Property"))] if "Property" in p else None
    if props is None:
        objs = [o for o in inp if isinstance(o, PSObject)]
        view = objs[0].view if objs else None
        props = list(view.list_props) if view is not None and view.list_props else None
    return [Formatted(fmt.listing(inp, props))]


async def _write_output(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    return enumerate_value(p.get("InputObject")) + list(inp)


async def _out_string(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    return ["\n".join(render(ctx, inp))]


async def _get_command(ctx: Context, p: dict[str, Any], inp: list[Any]) -> list[Any]:
    pattern = cell(p.get("Name", "*")).lower()
    out = []
    for name in ctx.names():
        if fnmatch.fnmatchcase(name.lower(), pattern):
            spec = ctx.commands[name.lower()]
            out.append(PSObject("System.Management.Automation.CmdletInfo",
                                {"CommandType": "Cmdlet", "Name": name, "Synopsis": spec.help},
                                View(table=("CommandType", "Name", "Synopsis"))))
    return out


def builtins() -> Context:
    ctx = Context()
    ctx.register(Spec("Where-Object", _where, ("FilterScript", "Property", "Value", *_WHERE_OPS),
                      _WHERE_OPS, ("FilterScript", "Value"), "Selects objects by a condition."), "where", "?")
    ctx.register(Spec("Select-Object", _select, ("Property", "First", "Last", "Skip", "ExpandProperty", "Unique"),
                      ("Unique",), ("Property",), "Selects properties or the first/last objects."), "select")
    ctx.register(Spec("Sort-Object", _sort, ("Property", "Descending", "Unique"), ("Descending", "Unique"),
                      ("Property",), "Sorts objects by property values."), "sort")
    ctx.register(Spec("Measure-Object", _measure, ("Property", "Sum", "Average", "Maximum", "Minimum"),
                      ("Sum", "Average", "Maximum", "Minimum"), ("Property",), "Counts objects."), "measure")
    ctx.register(Spec("ForEach-Object", _foreach, ("Process", "MemberName"), (), ("Process",),
                      "Runs a script block for each object."), "foreach", "%")
    ctx.register(Spec("Format-Table", _format_table, ("Property", "AutoSize", "Wrap", "HideTableHeaders"),
                      ("AutoSize", "Wrap", "HideTableHeaders"), ("Property",), "Formats as a table."), "ft")
    ctx.register(Spec("Format-List", _format_list, ("Property",), (), ("Property",), "Formats as a list."), "fl")
    ctx.register(Spec("Write-Output", _write_output, ("InputObject",), (), ("InputObject",),
                      "Sends objects down the pipeline."), "echo", "write")
    ctx.register(Spec("Write-Host", _write_output, ("Object",), (), ("InputObject",), "Prints text."))
    ctx.register(Spec("Out-String", _out_string, ("Width",), (), (), "Renders objects as text."))
    ctx.register(Spec("Get-Command", _get_command, ("Name",), (), ("Name",), "Lists the commands."), "gcm")
    return ctx
