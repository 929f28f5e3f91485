"""One scheduler for every conversation: a heap of deadlines driven by a single asyncio task.

A conversation's timers are entries in one shared heap, never a task or a sleep of their own, so
100,000 open conversations cost 100,000 small heap entries and one parked coroutine. Cancelling
marks an entry dead in place (O(1)); dead entries are skipped when popped and the heap is
compacted when they become the majority. Time comes from an injected `Clock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

import structlog

from .clock import Clock

__all__ = ["Entry", "FireCallback", "Scheduler"]

log = structlog.get_logger(__name__)

# An entry is a plain list [deadline, seq, target, tag]: lists compare element-wise, so the heap
# orders by deadline then by insertion, and a list costs less memory than an object per timer.
Entry = list
FireCallback = Callable[[Any, str, float], None]

_DEADLINE, _SEQ, _TARGET, _TAG = range(4)
# Fire at most this many entries before yielding, so a burst (deadlines that passed while the
# service was down) does not hold the event loop for seconds.
_BATCH = 2000
_COMPACT_MIN = 1024


class Scheduler:
    """A heap of (deadline, target, tag) timers; `on_fire(target, tag, deadline)` runs when due.

    `on_fire` is synchronous and must not block: it runs inside the one scheduler task, and any
    slow work (audit writes, database) belongs in a queue drained elsewhere.
    """

    def __init__(self, clock: Clock, on_fire: FireCallback) -> None:
        self._clock = clock
        self._on_fire = on_fire
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._dead = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def __len__(self) -> int:
        """Live (not cancelled, not fired) timers."""
        return len(self._heap) - self._dead

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def schedule(self, deadline: float, target: Any, tag: str) -> Entry:
        """Add a timer; returns its entry, the handle for `cancel`."""
        entry: Entry = [deadline, next(self._seq), target, tag]
        heap = self._heap
        earliest = not heap or deadline < heap[0][_DEADLINE]
        heapq.heappush(heap, entry)
        if earliest:
            # The task may be parked until a later deadline; make it look again.
            self._wake.set()
        return entry

    def cancel(self, entry: Entry) -> None:
        """Cancel a timer in place; a no-op if it already fired or was cancelled."""
        if entry[_TARGET] is None:
            return
        entry[_TARGET] = None
        self._dead += 1
        if self._dead > _COMPACT_MIN and self._dead * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[_TARGET] is not None]
            heapq.heapify(self._heap)
            self._dead = 0

    @staticmethod
    def is_live(entry: Entry) -> bool:
        return entry[_TARGET] is not None

    def next_deadline(self) -> float | None:
        """The earliest live deadline, dropping dead entries from the top of the heap."""
        heap = self._heap
        while heap and heap[0][_TARGET] is None:
            heapq.heappop(heap)
            self._dead -= 1
        return heap[0][_DEADLINE] if heap else None

    def fire_due(self, now: float, *, limit: int = _BATCH) -> int:
        """Fire up to `limit` timers whose deadline is <= now; returns how many fired."""
        heap = self._heap
        fired = 0
        while heap and fired < limit and heap[0][_DEADLINE] <= now:
            entry = heapq.heappop(heap)
            target = entry[_TARGET]
            if target is None:
                self._dead -= 1
                continue
            entry[_TARGET] = None  # fired: a later cancel() is a no-op
            fired += 1
            try:
                self._on_fire(target, entry[_TAG], entry[_DEADLINE])
            except Exception:  # one bad callback must not stop every other conversation's clock
                log.exception("timer.failed", tag=entry[_TAG])
        return fired

    async def _run(self) -> None:
        clock = self._clock
        try:
            while not self._stopping:
                self._wake.clear()
                if self.fire_due(clock.now()) >= _BATCH:
                    await asyncio.sleep(0)
                    continue
                await clock.sleep_until(self.next_deadline(), self._wake)
        finally:
            clock.release(self._wake)

    async def start(self) -> None:
        """Start the one scheduler task."""
        if self.running:
            return
        self._stopping = False
        self._clock.attach(self._wake)
        self._task = asyncio.create_task(self._run(), name="conversation-clock")

    async def stop(self) -> None:
        """Stop the task; pending timers stay in the heap (they are persisted by their owner)."""
        if self._task is None:
            return
        self._stopping = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
