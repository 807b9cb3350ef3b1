"""Scenarios: a training case as data (id, training text, changes to the world, traffic, expectations)."""

from .loader import find_scenario, list_scenarios, load_scenario  # noqa: F401
from .model import Scenario  # noqa: F401
