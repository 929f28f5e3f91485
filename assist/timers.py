"""One scheduler for every conversation: a heap of deadlines driven by a single asyncio task.

A conversation's timers are entries in one shared heap, never a task or a sleep of their own, so
100,000 open conversations cost 100,000 small heap entries and one parked coroutine. An entry is
a tuple of plain values (deadline, seq, tag) and its target lives in a dict keyed by seq:
cancelling deletes the key (O(1)), the stale heap entry is skipped when popped, and the heap is
compacted when stale entries become the majority. Plain-value tuples matter at this size: the
garbage collector stops tracking them, so its full collections do not walk 400,000 timers and
pause every reminder behind them. Time comes from an injected `Clock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any

import structlog

from .clock import Clock

__all__ = ["FireCallback", "Scheduler"]

log = structlog.get_logger(__name__)

FireCallback = Callable[[Any, str, float], None]

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
        self._heap: list[tuple[float, int, str]] = []
        self._live: dict[int, Any] = {}  # seq -> target of every timer not yet fired or cancelled
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def __len__(self) -> int:
        """Live (not cancelled, not fired) timers."""
        return len(self._live)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def schedule(self, deadline: float, target: Any, tag: str) -> int:
        """Add a timer; returns its handle for `cancel`."""
        seq = next(self._seq)
        heap = self._heap
        earliest = not heap or deadline < heap[0][0]
        heapq.heappush(heap, (deadline, seq, tag))
        self._live[seq] = target
        if earliest:
            # The task may be parked until a later deadline; make it look again.
            self._wake.set()
        return seq

    def cancel(self, handle: int) -> None:
        """Cancel a timer; a no-op if it already fired or was cancelled."""
        if self._live.pop(handle, None) is None:
            return
        heap, live = self._heap, self._live
        if len(heap) > _COMPACT_MIN and len(heap) > 2 * len(live):
            self._heap = [e for e in heap if e[1] in live]
            heapq.heapify(self._heap)

    def is_live(self, handle: int) -> bool:
        return handle in self._live

    def next_deadline(self) -> float | None:
        """The earliest live deadline, dropping stale entries from the top of the heap."""
        heap, live = self._heap, self._live
        while heap and heap[0][1] not in live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_due(self, now: float, *, limit: int = _BATCH) -> int:
        """Fire up to `limit` timers whose deadline is <= now; returns how many fired."""
        heap, live = self._heap, self._live
        fired = 0
        while heap and fired < limit and heap[0][0] <= now:
            deadline, seq, tag = heapq.heappop(heap)
            target = live.pop(seq, None)
            if target is None:
                continue
            fired += 1
            try:
                self._on_fire(target, tag, deadline)
            except Exception:  # one bad callback must not stop every other conversation's clock
                log.exception("timer.failed", tag=tag)
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
