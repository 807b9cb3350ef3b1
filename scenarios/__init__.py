"""The built-in scenario catalog: these TOML files ship inside the package as `labsim.catalog`.

pyproject.toml maps the package onto this folder, so the catalog keeps its home here in the repo
and `pip install` still brings every scenario (read with importlib.resources, see
labsim.scenario.loader.builtin_dir). Add a scenario by adding its .toml file here.
"""
