"""net.vnet.guard_real remembers the addresses it let through: asking again gives the same answer."""

from __future__ import annotations

import pytest

from labsim.errors import NetworkGuardError
from labsim.net.vnet import guard_real


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.77.0.2"])
def test_an_allowed_address_stays_allowed(ip: str) -> None:
    assert [guard_real(ip) for _ in range(3)] == [ip] * 3


@pytest.mark.parametrize("ip", ["192.168.1.13", "", "127.0.0.1:25", "localhost"])
def test_a_refused_address_is_refused_every_time(ip: str) -> None:
    guard_real("127.0.0.1")
    for _ in range(3):
        with pytest.raises(NetworkGuardError):
            guard_real(ip)


def test_a_value_that_is_no_text_is_still_refused_with_the_guard_s_error() -> None:
    with pytest.raises(NetworkGuardError):
        guard_real(None)  # type: ignore[arg-type]
