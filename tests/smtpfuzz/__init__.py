"""A bounded SMTP fuzzer for a running lab (tests/test_fuzz_smtp.py; `make fuzz` runs it longer)."""

from .run import FuzzConfig, fuzz
from .verdict import PROPS, FuzzReport

__all__ = ["FuzzConfig", "FuzzReport", "PROPS", "fuzz"]
