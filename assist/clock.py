"""Injectable time: the real wall clock for the service, a manual clock for tests.

The scheduler never calls `time.time()` or `asyncio.sleep()` itself; it asks its clock for `now()`
and parks in `clock.sleep_until(when, wake)`. The manual clock moves only when a test calls
`advance()`, and steps through every wake-up time on the way, so the 60 s, 1 min and 3 min rules
run in milliseconds and fire in the same order, at the same instants, every run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "RealClock"]


class Clock(Protocol):
    """What the scheduler needs from time: the current epoch second and a way to wait for one."""

    def now(self) -> float: ...

    def attach(self, wake: asyncio.Event) -> None:
        """A sleeper (the scheduler task) starts using this clock with `wake` as its event."""
        ...

    def release(self, wake: asyncio.Event) -> None:
        """The sleeper owning `wake` has stopped."""
        ...

    async def sleep_until(self, when: float | None, wake: asyncio.Event) -> None:
        """Return once `now() >= when` or `wake` is set; `when=None` waits for `wake` only."""
        ...


class RealClock:
    """Wall-clock time; waits use one loop timer, not a task per sleeper."""

    def now(self) -> float:
        return time.time()

    def attach(self, wake: asyncio.Event) -> None:
        pass

    def release(self, wake: asyncio.Event) -> None:
        pass

    async def sleep_until(self, when: float | None, wake: asyncio.Event) -> None:
        if when is None:
            await wake.wait()
            return
        delay = when - time.time()
        if delay <= 0:
            return
        # call_later + the scheduler's own Event avoids wait_for()'s extra task per wait.
        handle = asyncio.get_running_loop().call_later(delay, wake.set)
        try:
            await wake.wait()
        finally:
            handle.cancel()


class ManualClock:
    """A clock that moves only on `advance()`; for deterministic tests of time rules."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)
        self._known: set[asyncio.Event] = set()  # attached sleepers: busy unless parked here
        self._sleepers: dict[asyncio.Event, float | None] = {}  # parked sleepers and their time

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        """Jump to `when` without waking anyone (for a clock that moved while a service was down)."""
        self._now = float(when)

    def attach(self, wake: asyncio.Event) -> None:
        self._known.add(wake)

    def release(self, wake: asyncio.Event) -> None:
        self._known.discard(wake)
        self._sleepers.pop(wake, None)

    async def sleep_until(self, when: float | None, wake: asyncio.Event) -> None:
        if when is not None and when <= self._now:
            return
        self._sleepers[wake] = when
        try:
            await wake.wait()
        finally:
            self._sleepers.pop(wake, None)

    def next_wakeup(self) -> float | None:
        """The earliest time a parked sleeper waits for, if any."""
        times = [w for w in self._sleepers.values() if w is not None]
        return min(times) if times else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, stopping at every wake-up on the way and letting it run."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        target = self._now + seconds
        await self.settle()
        while True:
            nxt = self.next_wakeup()
            if nxt is None or nxt > target:
                break
            self._now = max(self._now, nxt)
            self._wake_due()
            await self.settle()
        self._now = target
        self._wake_due()
        await self.settle()

    def _wake_due(self) -> None:
        for wake, when in list(self._sleepers.items()):
            if when is not None and when <= self._now:
                wake.set()

    async def settle(self, *, max_spins: int = 100_000) -> None:
        """Yield to the loop until every attached sleeper is parked again (its work is done)."""
        for _ in range(max_spins):
            await asyncio.sleep(0)
            if all(w in self._sleepers and not w.is_set() for w in self._known):
                return
        raise RuntimeError("clock sleepers did not settle; is a scheduler stuck?")
