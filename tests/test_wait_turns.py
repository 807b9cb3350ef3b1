"""net.vnet.wait_for_turns and the registry's claim keep asyncio.wait_for's loop turns: which lab
session runs before which (and so every virtual timestamp and id) does not depend on which of the
two waited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from labsim.net.vnet import (
    ConnectionInfo,
    ConnectionRegistry,
    wait_for_turns,
    wait_set_turns,
)


async def _order(wait: Callable[[Awaitable[str]], Awaitable[str]], inner: Callable[[], Awaitable[str]]) -> list[str]:
    """What a waiting task and a ticking task do, turn by turn."""
    seen: list[str] = []

    async def waiter() -> None:
        seen.append("wait")
        try:
            seen.append(await wait(inner()))
        except LookupError as exc:
            seen.append(f"raised {exc}")

    async def ticker() -> None:
        for i in range(8):
            seen.append(f"tick {i}")
            await asyncio.sleep(0)

    await asyncio.gather(waiter(), ticker())
    return seen


async def _at_once() -> str:
    return "done"


async def _after_turns() -> str:
    for _ in range(2):
        await asyncio.sleep(0)
    return "done later"


async def _fails() -> str:
    await asyncio.sleep(0)
    raise LookupError("refused")


@pytest.mark.parametrize("inner", [_at_once, _after_turns, _fails])
async def test_wait_for_turns_resumes_on_the_turn_wait_for_does(inner: Callable[[], Awaitable[str]]) -> None:
    expected = await _order(lambda aw: asyncio.wait_for(aw, 5), inner)
    assert await _order(lambda aw: wait_for_turns(aw, 5), inner) == expected


@pytest.mark.parametrize("set_at", [None, 0, 1, 3])
async def test_wait_set_turns_resumes_on_the_turn_wait_for_does(set_at: int | None) -> None:
    """settle()'s wait: the event set before the wait, as it looks at it, or a few turns later."""

    async def run(wait: Callable[[asyncio.Event], Awaitable[object]]) -> list[str]:
        event, seen = asyncio.Event(), []
        if set_at is None:
            event.set()

        async def waiter() -> None:
            await wait(event)
            seen.append("idle")

        async def ticker() -> None:
            for i in range(8):
                if i == set_at:
                    event.set()
                seen.append(f"tick {i}")
                await asyncio.sleep(0)

        await asyncio.gather(waiter(), ticker())
        return seen

    expected = await run(lambda event: asyncio.wait_for(event.wait(), 5))
    assert await run(lambda event: wait_set_turns(event, 5)) == expected


async def test_wait_for_turns_times_out() -> None:
    with pytest.raises(TimeoutError):
        await wait_for_turns(asyncio.Event().wait(), 0.01)
    with pytest.raises(TimeoutError):
        await wait_set_turns(asyncio.Event(), 0.01)


async def test_a_claim_waiting_for_its_announcement_resumes_on_wait_for_s_turn() -> None:
    info = ConnectionInfo(("40.93.131.26", 50000), ("192.168.1.13", 25))

    async def run(claim: Callable[[ConnectionRegistry], Awaitable[object]]) -> list[str]:
        registry, seen = ConnectionRegistry(), []

        async def server() -> None:
            got = await claim(registry)
            seen.append("claimed" if got is info else f"claimed {got!r}")

        async def client() -> None:
            for i in range(6):
                if i == 1:
                    registry.announce(("127.77.0.2", 40000), info)
                seen.append(f"client {i}")
                await asyncio.sleep(0)

        await asyncio.gather(server(), client())
        return seen

    async def with_wait_for(registry: ConnectionRegistry) -> object:
        fut: asyncio.Future[ConnectionInfo] = asyncio.get_running_loop().create_future()
        registry._waiters[("127.77.0.2", 40000)] = fut
        return await asyncio.wait_for(fut, 5)

    expected = await run(with_wait_for)
    assert await run(lambda registry: registry.claim(("127.77.0.2", 40000), 5)) == expected
    assert "claimed" in expected


async def test_a_claim_for_a_stranger_gives_up_after_its_timeout() -> None:
    assert await ConnectionRegistry().claim(("127.77.0.9", 40001), 0.01) is None
