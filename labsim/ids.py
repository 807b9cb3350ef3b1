"""Seeded identifiers.

Every id that appears in output (session ids, internal message ids, network message ids,
message-ids, certificate serials, source ports) is drawn from a generator owned by the thing that
issues it and seeded from (scenario seed, owner name). Owners draw in causal order, so the same
scenario and seed give the same ids on any machine.
"""

from __future__ import annotations

import hashlib
import random
from contextvars import ContextVar
from datetime import datetime

from .clock import dotnet_ticks


def derive_seed(seed: int, *names: str) -> int:
    """A stable 64-bit sub-seed for an owner (hash-based, so it does not depend on PYTHONHASHSEED)."""
    h = hashlib.sha256(str(seed).encode())
    for n in names:
        h.update(b"\x00" + n.encode())
    return int.from_bytes(h.digest()[:8], "big")


class IdSource:
    """The ids one owner (a transport service, a host) hands out."""

    def __init__(self, seed: int, owner: str) -> None:
        self.owner = owner
        self._rng = random.Random(derive_seed(seed, owner))

    def randint(self, lo: int, hi: int) -> int:
        """`random.Random.randint(lo, hi)`, the same draw without its layers: `k` bits of
        `getrandbits`, again while they make `hi - lo + 1` or more (CPython's `_randbelow`)."""
        n = hi - lo + 1
        if lo.__class__ is not int or hi.__class__ is not int or n <= 0:
            return self._rng.randint(lo, hi)  # its own answer (an error) for anything else
        bits, k = self._rng.getrandbits, n.bit_length()
        r = bits(k)
        while r >= n:
            r = bits(k)
        return lo + r

    def hex_bytes(self, count: int) -> list[str]:
        """`count` random bytes as two upper-case hex digits each: `f"{randint(0, 255):02X}"`
        drawn `count` times."""
        bits = self._rng.getrandbits
        out = []
        for _ in range(count):
            r = bits(9)  # randint(0, 255): 256 has 9 bits
            while r >= 256:
                r = bits(9)
            out.append(_HEX_BYTES[r])
        return out

    def guid(self) -> str:
        """`str(uuid.UUID(int=<128 random bits>, version=4))`, with the version and variant bits set
        and the text built here (a tracking row draws one; the UUID object is three times dearer)."""
        h = f"{self._rng.getrandbits(128) & _V4_KEEP | _V4_SET:032x}"
        return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def network_message_id(self, when: datetime) -> str:
        """A GUID whose last group is the top six bytes of the ticks, as Exchange's are (…-08da9a4ff8da)."""
        ticks = dotnet_ticks(when)
        head = f"{self._rng.getrandbits(128) & _V4_KEEP | _V4_SET:032x}"  # a version-4 UUID's hex
        tail = f"{ticks:016x}"
        return f"{head[0:8]}-{head[8:12]}-{head[12:16]}-{head[16:20]}-{tail[0:12]}"


# uuid.UUID(int=n, version=4): the variant bits (RFC 4122, `10`) and the version nibble (4)
_V4_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_V4_SET = (0x8000 << 48) | (4 << 76)
_HEX_BYTES = [f"{b:02X}" for b in range(256)]


class SessionIds:
    """Exchange's SMTP session ids: a 64-bit counter seeded from .NET ticks at service start.

    Real ids grow with time (2019 -> 08D7…, 2024 -> 08DC…) and consecutive sessions on one server
    differ by one, which is what a counter started from the ticks of the service start gives.
    """

    def __init__(self, seed: int, owner: str, service_start: datetime) -> None:
        rng = random.Random(derive_seed(seed, owner, "session"))
        self._next = dotnet_ticks(service_start) + rng.randint(0, 0xFFFF)

    def next(self) -> int:
        value = self._next
        self._next += 1
        return value


def session_hex(session_id: int) -> str:
    return f"{session_id:016X}"


# The id space of one part of a longer run (labsim.corpus: the index of the hour's shard), or None.
# A small counter (a range narrower than SMALL_COUNTER: the Mailbox Transport Submission's mail
# item ids, an Internet host's queue ids) gives shard i ids from its own block [lo + i*W, lo + (i+1)*W)
# (W = hi - lo + 1), starting in the block's first half: the hours' ids never meet and grow with
# time, as one server's counter does; a wide counter keeps its random start (the corpus merge checks).
ID_SPACE: ContextVar[int | None] = ContextVar("labsim_id_space", default=None)
SMALL_COUNTER = 10**9


class Counter:
    """A per-server decimal counter (InternalId / internal-message-id)."""

    def __init__(self, seed: int, owner: str, lo: int = 10**13, hi: int = 10**14 - 10**9) -> None:
        rng = random.Random(derive_seed(seed, owner, "counter"))
        space = ID_SPACE.get()
        if space is not None and hi - lo < SMALL_COUNTER:
            width = hi - lo + 1
            self._next = lo + space * width + rng.randrange(width // 2)
        else:
            self._next = rng.randint(lo, hi)

    def next(self) -> int:
        value = self._next
        self._next += 1
        return value

    def continue_after(self, used: int) -> None:
        """Never hand out `used` or anything below it again (ids read back from a queue database)."""
        self._next = max(self._next, used + 1)

    @property
    def upcoming(self) -> int:
        """The id `next()` will hand out."""
        return self._next
