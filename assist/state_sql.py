"""SQL for the service's own state in <data_dir>/state.db: tokens, conversations, outbox, idempotency.

One sqlite3 connection, used from one worker thread, so the event loop never blocks on a write and
writes never interleave. WAL with synchronous=FULL: a commit that returned survives kill -9 and a
power cut, which is what "accepted means stored" needs. The audit trail lives elsewhere
(assist/audit*.py, its own file).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

__all__ = ["SCHEMA", "StateDB"]

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
CREATE TABLE IF NOT EXISTS inbound_seen (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
"""


class StateDB:
    """The state database: one connection, one writer thread, every call a transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-db")

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) in one transaction on the calling thread (CLI, start-up)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) in one transaction on the state thread; committed when it returns."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.run_sync, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._conn.close()
