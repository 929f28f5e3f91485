"""AuditWriter: the service's asynchronous front to the audit store, with group commit."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from .audit import AuditEvent, AuditStore

__all__ = ["AuditWriter"]

log = structlog.get_logger(__name__)


class AuditWriter:
    """Group commit for the service: many coroutines' appends, one transaction per batch.

    Appends queue to one writer thread; it takes everything waiting (up to `max_batch`), commits it
    in one transaction, and only then releases each caller with its record id. While one COMMIT
    waits on fsync the next batch forms, so throughput grows with concurrency at no cost to
    durability: nobody is told "done" before their record is on disk.
    """

    def __init__(self, store: AuditStore, *, max_batch: int = 1000, idle_s: float = 0.05,
                 busy_slice: int = 100, idle_slice: int = 500) -> None:
        self.store = store
        self.max_batch = max_batch
        # The full-text index is caught up when the writer has been idle for idle_s, or when a
        # whole slice waits: not every time the queue runs dry, which under steady load is after
        # every batch and put an extra fsync'd transaction in front of the next batch's commit.
        # While appends keep coming the slice stays small, so an append waits at most for ~100
        # records' indexing (a few ms), never for a 500-record transaction.
        self.idle_s = idle_s
        self.busy_slice = busy_slice
        self.idle_slice = idle_slice
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    async def append(self, event: AuditEvent) -> int:
        """Record `event`; return its id once committed durably. Raises on an invalid event."""
        if self._thread is None or self._loop is None:
            raise RuntimeError("AuditWriter.start() has not been awaited")
        prepared = self.store.prepare(event)
        fut = self._loop.create_future()
        self._q.put((prepared, fut))
        return await fut

    async def append_many(self, events: list[AuditEvent]) -> list[int]:
        """Record `events` in order, queued together so they share a commit; their ids once durable.

        Like gathering append() for each, without a task per record. An invalid event raises
        at once; the ones queued before it are still committed, as with gather.
        """
        if self._thread is None or self._loop is None:
            raise RuntimeError("AuditWriter.start() has not been awaited")
        futures = []
        for event in events:
            prepared = self.store.prepare(event)
            fut = self._loop.create_future()
            self._q.put((prepared, fut))
            futures.append(fut)
        return [await fut for fut in futures]

    async def stop(self) -> None:
        """Commit what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._q.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                batch = [self._q.get_nowait()]
            except queue.Empty:
                batch = self._idle()
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            if None in batch:
                stopping = True
                batch = [b for b in batch if b is not None]
            if not batch:
                continue
            try:
                ids: list[Any] = self.store.append_prepared([p for p, _ in batch])
            except Exception:
                # The batch rolled back. Retry one record per transaction so one bad tenant (a
                # chain that refuses to extend) fails only its own callers; each caller learns
                # its own outcome and nothing is dropped silently.
                ids = [self._one(p) for p, _ in batch]
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(_settle, [f for _, f in batch], ids)
            except RuntimeError:  # loop closed: callers are gone, records are committed anyway
                pass


    def _idle(self) -> list[Any]:
        """Wait for the next append; meanwhile catch the full-text index up, a slice at a time."""
        waiting = self.store.unindexed()
        limit = self.busy_slice
        if waiting is None or waiting < self.busy_slice:
            try:
                return [self._q.get(timeout=self.idle_s)]
            except queue.Empty:
                limit = self.idle_slice
        while True:
            try:
                if not self.store.index_texts(limit=limit):
                    break
            except Exception:  # searches stay exact without the index (they scan the tail)
                log.exception("audit.fts_index_failed")
                break
            try:  # appends waiting go first: a slice at a time, so they never wait long
                return [self._q.get_nowait()]
            except queue.Empty:
                pass
        return [self._q.get()]

    def _one(self, prepared: Any) -> Any:
        try:
            return self.store.append_prepared([prepared])[0]
        except Exception as exc:
            return exc


def _settle(futures: list[asyncio.Future[int]], results: list[Any]) -> None:
    for fut, res in zip(futures, results):
        if fut.done():
            continue
        if isinstance(res, BaseException):
            fut.set_exception(res)
        else:
            fut.set_result(res)
