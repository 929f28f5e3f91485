"""The clock's audit records, written by a child process.

Reminders come in bursts of thousands, and each audit record is Python work: its details, the
canonical JSON, the secret scrub, the hash chain. Done on a thread of the service process, that
work held the GIL while due timers waited for it: with 414,000 audited reminders over four minutes,
a timer's lateness p99 was 4-7 ms, against 2 ms with auditing off. A child process does it beside
the scheduler instead; the service only pickles the notes (plain tuples) across a pipe.

The child opens its own AuditStore on the same file. The store is safe with several writers: each
append reads the chain heads inside its BEGIN IMMEDIATE transaction, and ids come from the table.
A batch is answered only once committed, so the clock's durability is unchanged. If the child
dies, the batch it held is reported failed and queued again (so a batch committed just before a
crash may be written twice: duplicated, never lost), and the next batch starts a new child.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import structlog

from .audit import AuditEvent, AuditStore
from .reminder_state import AuditNote

__all__ = ["AuditProcess", "AuditThread", "write_notes"]

log = structlog.get_logger(__name__)

# Records per audit transaction. Small enough that a chunk's AuditEvents die before the garbage
# collector promotes them (big chunks promoted thousands of objects each, and every 25% growth of
# the old generation costs a full collection).
NOTES_PER_COMMIT = 200


def write_notes(store: AuditStore, notes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Append the clock's notes (AuditNote tuples) in transactions; return those not written."""
    for i in range(0, len(notes), NOTES_PER_COMMIT):
        chunk = [AuditNote._make(n) for n in notes[i:i + NOTES_PER_COMMIT]]
        try:
            store.append_many([AuditEvent(tenant=n.tenant, kind=n.kind, actor=n.actor,
                                          conversation_id=n.conversation_id, action=n.action,
                                          details=n.details(), at=n.at) for n in chunk])
        except Exception:
            log.exception("clock.audit_failed", records=len(notes) - i)
            return notes[i:]
    return []


_STORE: AuditStore | None = None


def _open(path: str, hmac_key: bytes, checkpoint_every: int) -> None:
    global _STORE
    _STORE = AuditStore(path, hmac_key=hmac_key, checkpoint_every=checkpoint_every)
    # A pool worker never learns that its parent died (it holds both ends of its call queue), and
    # it shares the parent's stdout and stderr. Exit with the parent, so a kill -9'd service leaves
    # nothing behind holding its files and pipes.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _write(notes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    assert _STORE is not None
    return write_notes(_STORE, notes)


def _ready() -> bool:
    return _STORE is not None


class AuditProcess:
    """A one-process pool that appends notes to the audit store at `path`."""

    def __init__(self, path: Path | str, *, hmac_key: bytes, checkpoint_every: int = 1000) -> None:
        self._args = (str(path), hmac_key, checkpoint_every)
        self._pool: ProcessPoolExecutor | None = None

    @classmethod
    def for_store(cls, store: AuditStore) -> AuditProcess:
        """A child writing to the same file, with the same key and checkpoint interval, as `store`."""
        return cls(store.path, hmac_key=store.key, checkpoint_every=store.checkpoint_every)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the service has threads (SQLite writers, the event loop's helpers)
            # whose locks a forked child would inherit held.
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_open, initargs=self._args)
        return self._pool

    async def start(self) -> None:
        """Start the child now, so the first burst of reminders does not wait for its start-up."""
        await asyncio.get_running_loop().run_in_executor(self._executor(), _ready)

    async def write(self, notes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Append `notes` durably; return those not written (all of them if the child died)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor(), _write, notes)
        except BrokenProcessPool:
            log.error("clock.audit_process_died", records=len(notes))
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.shutdown(wait=False)
            return notes

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)


class AuditThread:
    """The same interface as AuditProcess, writing with `store` on a worker thread of this process.

    For tools and tests that hand the clock an AuditStore; the service uses AuditProcess, since
    this thread's Python work competes with the scheduler for the GIL. `executor` is shut down by
    close() only when this object made it.
    """

    def __init__(self, store: AuditStore, executor: ThreadPoolExecutor | None = None) -> None:
        self._store = store
        self._own = executor is None
        self._executor = executor or ThreadPoolExecutor(1, "clock-audit")

    async def start(self) -> None:
        return None

    async def write(self, notes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, write_notes, self._store, notes)

    async def close(self) -> None:
        if self._own:
            self._executor.shutdown(wait=True)
