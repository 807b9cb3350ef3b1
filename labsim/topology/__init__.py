"""The lab's world as plain, validated data: organisations, servers, connectors, DNS, PKI, network.

Nothing here does I/O. A scenario starts from `default_lab()` and applies changes (see `changes`).
"""

from .defaults import default_lab  # noqa: F401
from .model import *  # noqa: F401,F403
