"""labsim: a simulated Exchange hybrid mail-flow lab on loopback.

Layers, in the order data flows: scenario -> topology -> pki / dns / net -> smtp sessions ->
transport decisions (rules) -> logs -> cli.
"""

__version__ = "0.1.0"
