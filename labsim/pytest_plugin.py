"""labsim's pytest plugin (registered through the `pytest11` entry point `labsim`).

For the tests of a log analyzer: run a scenario, get its output folder and its ground truth.

    @pytest.mark.labsim("cert-tlscertname-no-private-key")     # catalog id, a .toml path or TOML text
    def test_finds_tls_failures(labsim_run):
        found = my_analyzer.scan(labsim_run.out)
        assert found == expected_from(labsim_run.messages)

    def test_two_scenarios(labsim_runner):
        a = labsim_runner("hybrid-baseline")
        b = labsim_runner(TOML_TEXT, seed=7)

    async def test_live(labsim_lab):
        async with labsim_lab("hybrid-baseline") as lab:
            host, port = lab.address("CMHYBD01")

A run is cached for the whole test session: the same scenario (its bytes, not its name), seed and
labsim version run once, and every test asking for it gets the same `labsim.Result` (treat its
folder as read-only). Importing this module imports nothing of labsim's engine: the plugin costs
nothing in a test session that does not use it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

MARKER = "labsim"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(scenario, seed=None): the scenario the `labsim_run` fixture runs "
                   "(a catalog id, a path to a .toml file, TOML text, or a dict)")


def _fingerprint(scenario: Any, seed: int | None) -> str:
    """What decides a run's output: the scenario's content (a catalog id or path by its file's
    bytes), the seed and labsim's version."""
    from labsim import __version__
    from labsim.scenario.loader import find_scenario

    if isinstance(scenario, dict):
        content = json.dumps(scenario, sort_keys=True, default=str).encode()
    elif isinstance(scenario, os.PathLike) or (isinstance(scenario, str) and "\n" not in scenario
                                               and "=" not in scenario):
        path = find_scenario(str(scenario))
        content = path.read_bytes()
    else:
        content = str(scenario).encode()
    digest = hashlib.sha256(content + f"\0{seed}\0{__version__}".encode()).hexdigest()
    return digest[:16]


class _Runs:
    """The session's runs, by fingerprint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[str, Any] = {}

    def __call__(self, scenario: Any, *, seed: int | None = None) -> Any:
        import labsim

        key = _fingerprint(scenario, seed)
        if key not in self.done:
            self.done[key] = labsim.run(scenario, out=self.root / key, seed=seed)
        return self.done[key]


@pytest.fixture(scope="session")
def labsim_runner(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """`labsim_runner(scenario, seed=None) -> labsim.Result`, cached for the test session."""
    return _Runs(tmp_path_factory.mktemp("labsim-runs"))


@pytest.fixture
def labsim_run(request: pytest.FixtureRequest, labsim_runner: Callable[..., Any]) -> Any:
    """The `labsim.Result` of the scenario named by the test's `@pytest.mark.labsim(...)` (its
    output folder is `.out`), or of an indirect parameter: `parametrize("labsim_run", [...], indirect=True)`."""
    param = getattr(request, "param", None)
    if param is not None:
        return labsim_runner(param)
    marker = request.node.get_closest_marker(MARKER)
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{request.node.nodeid}: labsim_run needs @pytest.mark.labsim(scenario) "
                                "(a catalog id, a .toml path or TOML text)")
    return labsim_runner(marker.args[0], seed=marker.kwargs.get("seed"))


@pytest.fixture
def labsim_lab(tmp_path: Path) -> Callable[..., Any]:
    """`labsim_lab(scenario, seed=None, traffic=False)` -> a `labsim.Lab` serving into a fresh
    folder of this test: `async with labsim_lab("hybrid-baseline") as lab:`."""
    count = [0]

    def make(scenario: Any, *, seed: int | None = None, traffic: bool = False) -> Any:
        import labsim

        count[0] += 1
        return labsim.Lab(scenario, out=tmp_path / f"labsim-live-{count[0]}", seed=seed, traffic=traffic)

    return make
