"""What `pip install .` ships: every labsim package and the scenario catalog as package data.

pyproject.toml lists the packages by hand (find cannot map the top-level scenarios/ folder onto
`labsim.catalog`), so a new subpackage left out of that list would install a labsim that fails on
import; this test catches it.
"""

from __future__ import annotations

import tomllib

from conftest import REPO, SCENARIOS

from labsim.scenario.loader import BUILTIN, builtin_dir, scenario_dirs


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_labsim_package_is_listed_for_the_wheel() -> None:
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "labsim").rglob("__init__.py")}
    assert set(_setuptools()["packages"]) == on_disk | {"labsim.catalog"}


def test_the_catalog_package_is_the_scenarios_folder_with_its_toml_files() -> None:
    cfg = _setuptools()
    assert cfg["package-dir"] == {"labsim.catalog": "scenarios"}
    assert cfg["package-data"]["labsim.catalog"] == ["*.toml"]
    assert (SCENARIOS / "__init__.py").is_file()  # a regular package: importlib.resources gives a real folder


def test_the_builtin_catalog_comes_last_in_the_lookup_order(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABSIM_SCENARIOS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenarios").mkdir()
    builtin = builtin_dir()
    assert builtin is not None and len(list(builtin.glob("*.toml"))) == len(list(SCENARIOS.glob("*.toml")))
    assert scenario_dirs() == [(tmp_path.resolve(), str(tmp_path)),
                               ((tmp_path / "scenarios").resolve(), str(tmp_path / "scenarios")),
                               (builtin.resolve(), BUILTIN)]
