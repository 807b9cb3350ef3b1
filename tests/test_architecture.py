"""The layers only look down: no import circle in labsim, smtp/ below engine/, parties below the runtime.

Imports are read from the source (also those under `if TYPE_CHECKING:` and inside functions), as
docs/architecture.md's command reads them.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import labsim

ROOT = Path(labsim.__file__).parent


def _graph() -> dict[str, set[str]]:
    mods = {".".join(("labsim", *p.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__"): p
            for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = pkg.rsplit(".", node.level - 1)[0] if node.level else ""
                target = ".".join(x for x in (base, node.module or "") if x)
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    deps.add(full if full in mods else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def test_no_import_circle_in_labsim() -> None:
    graphlib.TopologicalSorter(_graph()).prepare()  # raises CycleError naming the circle


def test_the_layers_below_the_engine_never_import_it() -> None:
    below = ("labsim.smtp", "labsim.transport", "labsim.logs", "labsim.net", "labsim.pki", "labsim.rules",
             "labsim.topology")
    wrong = [(m, d) for m, deps in _graph().items() if m.startswith(below)
             for d in deps if d.startswith("labsim.engine")]
    assert wrong == []


def test_parties_know_the_lab_only_by_its_interfaces() -> None:
    parties = ("exo", "internet", "onprem", "onprem_receive", "frontend_proxy", "mailbox_submission", "queueing",
               "queue_base", "queue_drain", "queue_admin", "notifications", "reputation", "evidence", "eventlog",
               "trace")
    graph = _graph()
    wrong = [(p, d) for p in parties for d in graph[f"labsim.engine.{p}"]
             if d in ("labsim.engine.runtime", "labsim.engine.driver", "labsim.engine.operations")]
    assert wrong == []
