"""The README's tour, run as written: every `.venv/bin/labsim ...` line of "A short tour" and
"Reading a run like an admin", in order, from a fresh folder (a new user's first hour)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from conftest import run_cli

from labsim.scenario.loader import builtin_dir

README = Path(__file__).resolve().parent.parent / "README.md"
SECTIONS = ("## A short tour", "### Reading a run like an admin")
SLOW = ("view",)  # a server that runs until Ctrl-C (tests/test_web.py serves a run the same way)


def _commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    found = []
    for head in SECTIONS:
        block = text[text.index(head):]
        block = block[block.index("```sh") + 5:block.index("```", block.index("```sh") + 5)]
        found += [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.startswith(".venv/bin/labsim")]
    return found


@pytest.mark.skipif(not README.is_file(), reason="no README.md beside the tests (an installed copy)")
def test_the_readme_tour_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    commands = _commands()
    assert len(commands) >= 10, commands
    monkeypatch.chdir(tmp_path)
    builtin = builtin_dir()
    assert builtin is not None
    (tmp_path / "scenarios").symlink_to(builtin, target_is_directory=True)  # a clone's scenarios/ folder
    for command in commands:
        argv = shlex.split(command)[1:]
        if any(a in SLOW for a in argv):
            assert (tmp_path / argv[1] / "summary.json").is_file(), command  # it has a run to show
            continue
        rc, out, err = run_cli(argv)
        assert rc == 0, f"{command}\n{out}\n{err}"
        assert out.strip(), command
