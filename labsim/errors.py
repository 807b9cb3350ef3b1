"""One error hierarchy for the whole lab.

Errors are split by who is at fault, as h11 does: the user's input (a scenario file, a topology
change) versus the lab itself. Input errors always name the place and the problem, so the CLI can
print them as one line and exit 2 without a traceback.
"""

from __future__ import annotations


class LabsimError(Exception):
    """Base of every error labsim raises on purpose."""


class InputError(LabsimError):
    """Bad input from the user: names where (file, key) and what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class ScenarioError(InputError):
    """A scenario file that cannot be loaded or does not validate."""


class TopologyError(InputError):
    """A topology (or a change to it) that breaks Exchange's own configuration rules."""


class NetworkGuardError(LabsimError):
    """Something tried to bind or dial outside 127.0.0.0/8, or dial a virtual address.

    This is a bug in labsim, never the user's fault: the guard exists so that a lab can never
    touch a real network.
    """


class LabRuntimeError(LabsimError):
    """The lab could not start or run (for example no free loopback block)."""
