"""The server session's input: bounded reads from the socket into one buffer, lines out of it.

Theory of operation
-------------------
`SessionInput.fill` reads at most READ_CHUNK bytes at once into `buffer`; `next_line` takes one
command line out of it without awaiting (None: more bytes are needed), so the shell's loop is
`next_line`, else `fill`, and a pipelined client's commands cost no read at all. A line over
MAX_COMMAND_LENGTH is thrown away as it comes and reported once as TOO_LONG. `has_line` tells the
shell a further command is already buffered (it then holds a pipelined group's replies), and `fill`
asks the owner to send what it holds (`before_wait`) before it waits for the client.

A read waits for the client at most the session's wall timeout (the owner's `wall_timeout()`:
ConnectionInactivityTimeout in `up`, RUN_WALL_IDLE real seconds in `run`). Rather than a new
`asyncio.timeout` (a timer scheduled and cancelled) per read, one watchdog timer per session keeps
the deadline of the read in progress: a read only moves the deadline, and the timer, when it fires
before the deadline it was set for, sets itself again for the current one. When it fires at or
after the deadline of a read still waiting, it cancels the task exactly as `asyncio.timeout` does,
and `fill` turns that cancellation (and only that one) into the owner's timeout. Nothing here
awaits anything but the socket read itself, so the event loop runs sessions in the same order.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..rules import replies as R

READ_CHUNK = 64 * 1024  # the most the shell reads from the socket at once
TOO_LONG_LINE = b"\x00too long\x00"  # next_line's marker for a line over MAX_COMMAND_LENGTH


class InputOwner(Protocol):
    """What the input needs of its session (smtp.server.ServerSession)."""

    disconnect_reason: str | None

    def wall_timeout(self) -> float | None: ...

    def silence_is_expected(self) -> bool: ...

    def waited_too_long(self) -> BaseException: ...

    def before_wait(self) -> None: ...


class _Closed:
    """The owner of a closed input: the peer is gone, every wait is over."""

    disconnect_reason: str | None = None

    def wall_timeout(self) -> float | None:
        return None

    def silence_is_expected(self) -> bool:
        return False

    def waited_too_long(self) -> BaseException:
        return ConnectionResetError("the session is closed")

    def before_wait(self) -> None:
        return None


_CLOSED = _Closed()


class SessionInput:
    """Bytes read from one client and not yet consumed, and the watchdog of the read in progress."""

    __slots__ = ("reader", "owner", "buffer", "eof", "_scanned", "_skipping", "_deadline", "_timer", "_timer_at",
                 "_task", "_loop", "_cancelling", "_fired")

    def __init__(self, reader: asyncio.StreamReader, owner: InputOwner) -> None:
        self.reader = reader
        self.owner = owner
        self.buffer = bytearray()  # always the same object: callers may keep a reference
        self.eof = False
        self._scanned = 0  # bytes of the buffer already searched for the end of the current line
        self._skipping = False  # the current line went over the limit; its bytes are dropped
        # the watchdog: the deadline of the read in progress (loop time), the timer and its time
        self._deadline: float | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        self._task: asyncio.Task[object] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancelling = 0  # the task's cancel requests when the read began (asyncio.timeout's rule)
        self._fired = False  # the watchdog cancelled the task for the read in progress

    # --- lines ------------------------------------------------------------------------------
    def next_line(self) -> bytearray | bytes | None:
        """The next line from the buffer with its ending, TOO_LONG_LINE for an overlong one, or None
        when the buffer holds no whole line yet (then `fill` and ask again)."""
        buf = self.buffer
        j = buf.find(b"\n", self._scanned)
        if j >= 0:
            raw = buf[:j + 1]
            del buf[:j + 1]
            skipped, self._skipping, self._scanned = self._skipping, False, 0
            return TOO_LONG_LINE if skipped or j >= R.MAX_COMMAND_LENGTH else raw
        if len(buf) > R.MAX_COMMAND_LENGTH:  # throw the rest of the overlong line away
            self._skipping = True
            buf.clear()
        self._scanned = len(buf)
        return None

    def has_line(self) -> bool:
        """A whole further line is already buffered: the client pipelined it (RFC 2920)."""
        return self.buffer.find(b"\n", self._scanned) >= 0

    def forget_line(self) -> None:
        """The peer is gone mid-line: the next line starts afresh."""
        self._skipping, self._scanned = False, 0

    async def read_exactly(self, count: int, keep: bool) -> bytes | None:
        """The next `count` bytes (BDAT), read in bounded pieces; dropped as they come unless `keep`."""
        buf = self.buffer
        kept = bytearray()
        left = count
        while left:
            if not buf and not await self.fill():
                return None
            take = min(left, len(buf))
            if keep:
                kept += buf[:take]
            del buf[:take]
            left -= take
        return bytes(kept)

    def discard(self) -> None:
        """Forget what the client sent after a command that changes the stream (STARTTLS)."""
        self.buffer.clear()

    # --- the socket -------------------------------------------------------------------------
    async def fill(self) -> bool:
        """Read the next piece from the socket into the buffer; False when the peer is gone."""
        if self.eof:
            return False
        owner = self.owner
        owner.before_wait()  # replies held for a pipelined group go out before the client is waited for
        while True:
            timeout = owner.wall_timeout()
            if timeout is not None:
                self._arm(timeout)
            try:
                piece = await self.reader.read(READ_CHUNK)
            except asyncio.CancelledError:
                if not self._disarm(cancelled=True):
                    raise  # someone else's cancellation
            except TimeoutError:  # the socket's own (ETIMEDOUT) counts as a timeout, as it always did
                self._disarm(cancelled=False)
            except ConnectionResetError:
                self._disarm(cancelled=False)
                owner.disconnect_reason = "Remote(ConnectionReset)"
                self.eof = True
                return False
            except (ConnectionError, OSError):
                self._disarm(cancelled=False)
                self.eof = True
                return False
            else:
                self._deadline = None
                if self._fired:
                    self._disarm(cancelled=False)
                break
            if not owner.silence_is_expected():  # silence the lab itself causes is waited out
                raise owner.waited_too_long() from None
        if not piece:
            self.eof = True
            return False
        self.buffer += piece
        return True

    def _arm(self, timeout: float) -> None:
        """A read begins that may wait `timeout` seconds: set its deadline; make sure a timer runs."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a timed read must run inside a task")
        loop = self._loop
        if loop is None:
            loop = self._loop = task.get_loop()
        deadline = loop.time() + timeout
        self._deadline = deadline
        self._task = task
        self._cancelling = task.cancelling()
        timer = self._timer
        if timer is not None:
            if deadline >= self._timer_at:
                return  # the timer fires first and moves itself on to this deadline
            timer.cancel()
        self._schedule(loop, deadline)

    def _schedule(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self._timer_at = deadline
        if deadline <= loop.time():
            self._timer = loop.call_soon(self._watch)
        else:
            self._timer = loop.call_at(deadline, self._watch)

    def _watch(self) -> None:
        """The watchdog's timer: the read in progress is overdue, or its deadline moved on."""
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._task is None:
            return  # no read waits: the next one sets a timer again
        if deadline > self._timer_at:
            self._schedule(self._task.get_loop(), deadline)
            return
        self._fired = True
        self._task.cancel()

    def _disarm(self, *, cancelled: bool) -> bool:
        """The read ended: was it the watchdog's cancellation, and no other (asyncio.timeout's rule)?"""
        self._deadline = None
        if not self._fired:
            return False
        self._fired = False
        assert self._task is not None
        return self._task.uncancel() <= self._cancelling and cancelled

    def close(self) -> None:
        """The session is over: no timer outlives it, and nothing here keeps the session (its owner)
        or its task alive, so both go as soon as the last reference does, without the cyclic GC."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._task = self._loop = None
        self.owner = _CLOSED
