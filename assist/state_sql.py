"""SQL for the service's own state in <data_dir>/state.db: tokens, conversations, outbox, idempotency.

One sqlite3 connection, used from one writer thread that group-commits, so the event loop never
blocks on a write and writes never interleave. WAL with synchronous=FULL: a commit that returned survives kill -9 and a
power cut, which is what "accepted means stored" needs. The audit trail lives elsewhere
(assist/audit*.py, its own file).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

__all__ = ["SCHEMA", "StateDB", "begin_immediate", "in_transaction", "prune"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,            -- sha256 hex of the bearer token; the token itself is never stored
    role TEXT NOT NULL,
    tenant TEXT NOT NULL,
    agent_id TEXT,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS conversations (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    agent_id TEXT,
    platform_ref TEXT NOT NULL DEFAULT '{}', -- JSON: what the adapter needs to reply (e.g. account id)
    greeted INTEGER NOT NULL DEFAULT 0,
    closing_sent INTEGER NOT NULL DEFAULT 0,
    customer_messages INTEGER NOT NULL DEFAULT 0,
    agent_messages INTEGER NOT NULL DEFAULT 0,
    last_customer_at REAL,
    last_agent_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    role TEXT NOT NULL,                   -- customer | agent
    text TEXT NOT NULL,
    at REAL NOT NULL,
    message_id TEXT
);
CREATE INDEX IF NOT EXISTS messages_conv ON messages (tenant, conversation_id, seq);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    kind TEXT NOT NULL,                   -- reply | greeting | closing
    text TEXT NOT NULL,
    platform_ref TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'pending', -- pending | inflight | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    uncertain INTEGER NOT NULL DEFAULT 0, -- a try may have reached the platform: check before re-posting
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    platform_message_id TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_conv ON outbox (tenant, conversation_id, id);
-- Only undelivered rows: the worker's "no earlier message of this conversation waits" test stays
-- an index probe however many delivered rows the table keeps.
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (tenant, conversation_id, id)
    WHERE status IN ('pending', 'inflight');
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant, key)
);
-- Audit records staged by the transaction that made the decision; assist/audit_relay.py moves
-- them into the audit store and deletes them here.
CREATE TABLE IF NOT EXISTS audit_relay (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record TEXT NOT NULL                  -- JSON of a prepared audit record (tenant, values, hash, tags)
);
-- Staged records the audit store refused (a tenant whose chain no longer verifies), kept here,
-- not lost; each start of the service stages them again (assist/audit_relay.py).
CREATE TABLE IF NOT EXISTS audit_relay_held (
    seq INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    error TEXT NOT NULL,
    held_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS inbound_seen (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
"""


# How long a write waits for another connection to state.db (the clock's) to finish its transaction.
_BUSY_TIMEOUT_S = 5.0


def begin_immediate(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, retried every 0.1-2 ms for up to _BUSY_TIMEOUT_S while another connection writes
    (state.db's clock store, audit.db's clock audit process).

    SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries, so a lock held for 0.3 ms
    cost a waiting send 1-8 ms (the tail of send latency); polling finely waits about as long as
    the lock is actually held. The writer connection's busy_timeout is 0 so this loop is the one waiting.
    Any other writer of state.db (the clock's ClockStore) can use it the same way.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as err:
        if "locked" not in str(err) and "busy" not in str(err):
            raise
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    delay = 0.0001
    while True:
        time.sleep(delay)
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as err:
            if ("locked" not in str(err) and "busy" not in str(err)) or time.monotonic() >= deadline:
                raise
        delay = min(delay * 2, 0.002)


def in_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """fn(conn, *args) in one BEGIN IMMEDIATE ... COMMIT, rolled back if it raises."""
    begin_immediate(conn)
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def prune(conn: sqlite3.Connection, before: float) -> int:
    """Forget inbound delivery ids and idempotency keys recorded before `before`; return rows removed."""
    removed = conn.execute("DELETE FROM inbound_seen WHERE at < ?", (before,)).rowcount
    removed += conn.execute("DELETE FROM idempotency WHERE created_at < ?", (before,)).rowcount
    return removed


class StateDB:
    """The state database: one connection on one thread, calls group-committed.

    Each call runs in its own SAVEPOINT, so one failing call rolls back only itself; every call
    waiting when the thread comes round shares one COMMIT (one fsync). Nobody is answered before
    the COMMIT that holds their write has returned.
    """

    def __init__(self, path: Path, *, max_batch: int = 256) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max_batch = max_batch
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        self._conn.execute("PRAGMA busy_timeout=0")  # begin_immediate waits instead (see there)
        # Reads use their own connection on the event loop thread: a WAL reader sees every committed
        # write and never waits behind the writer's fsync.
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._reader.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) in one transaction on the calling thread (CLI, start-up)."""
        with self._lock:
            return in_transaction(self._conn, fn, *args)

    def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read-only fn(conn, *args) now, on the calling thread (small indexed lookups only)."""
        return fn(self._reader, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) on the state thread; its writes are committed when this returns."""
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="state-db", daemon=True)
            self._thread.start()
        fut = loop.create_future()
        self._q.put((fn, args, fut, loop))
        return await fut

    def _serve(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._q.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self._commit_batch(batch)

    def _commit_batch(self, batch: list[Any]) -> None:
        results: list[tuple[Any, bool]] = []
        with self._lock:
            conn = self._conn
            try:
                begin_immediate(conn)
                for fn, args, _, _ in batch:
                    conn.execute("SAVEPOINT call")
                    try:
                        results.append((fn(conn, *args), True))
                        conn.execute("RELEASE call")
                    except Exception as err:  # the caller gets its own exception; others go on
                        conn.execute("ROLLBACK TO call")
                        conn.execute("RELEASE call")
                        results.append((err, False))
                conn.execute("COMMIT")
            except Exception as err:  # the COMMIT itself failed: nothing in this batch is stored
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                results = [(err, False)] * len(batch)
        for (_, _, fut, loop), (value, ok) in zip(batch, results):
            loop.call_soon_threadsafe(_settle, fut, value, ok)

    def close(self) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None
        self._reader.close()
        self._conn.close()


def _settle(fut: asyncio.Future[Any], value: Any, ok: bool) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
