"""SQL for the conversation clock's state in <data_dir>/state.db: deadlines and pending reminders.

One row per conversation holds its open/closed state, the once-only flags (不客气, closing), the
due times it is counting toward, its armed timers as [fire_at, rule] pairs and the reminders still
waiting for an answer. After a kill -9 the rows are read back, every timer is re-armed, and those
whose time passed while the service was down fire at once, marked late. Own tables (clock_*) and own
connection, used from one worker thread so the event loop never blocks on SQLite; in the service
its writes go through the state database's writer thread instead (one writer for the file).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .reminder_state import ConvState
from .reminders import ReminderEngine
from .state_sql import StateDB, in_transaction

__all__ = ["SCHEMA", "ClockStore", "restore_state", "row_of", "upsert_rows"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS clock_conversations (
    tenant TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    agent_id TEXT,
    open INTEGER NOT NULL,
    flags INTEGER NOT NULL DEFAULT 0,      -- bit 1: 不客气 suggested, bit 2: closing suggested
    question_at REAL,                      -- oldest unanswered customer message (epoch s)
    response_due REAL,
    rate_due REAL,
    wait_due REAL,
    timers TEXT NOT NULL DEFAULT '[]',     -- JSON [[fire_at, rule], ...] still to fire
    pending TEXT,                          -- JSON {rule: [type, due, late, template_id]} fired, unanswered
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
) WITHOUT ROWID;
"""

_UPSERT = """
INSERT INTO clock_conversations (tenant, conversation_id, agent_id, open, flags, question_at,
    response_due, rate_due, wait_due, timers, pending, updated_at)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (tenant, conversation_id) DO UPDATE SET agent_id=excluded.agent_id, open=excluded.open,
    flags=excluded.flags, question_at=excluded.question_at, response_due=excluded.response_due,
    rate_due=excluded.rate_due, wait_due=excluded.wait_due, timers=excluded.timers,
    pending=excluded.pending, updated_at=excluded.updated_at
"""

Row = tuple[Any, ...]


def row_of(engine: ReminderEngine, st: ConvState, now: float) -> Row:
    """The row that persists one conversation's clock."""
    timers = engine.timer_specs(st)
    pending = json.dumps({p[0]: list(p[1:]) for p in st.pending}, ensure_ascii=False) if st.pending else None
    return (st.tenant, st.cid, st.agent, int(st.open), st.flags, st.question_at, st.response_due,
            st.rate_due, st.wait_due, json.dumps(timers), pending, now)


def restore_state(engine: ReminderEngine, row: sqlite3.Row | Row) -> ConvState | None:
    """Rebuild one conversation in `engine` from its row and re-arm its timers."""
    (tenant, cid, agent, open_, flags, question_at, response_due, rate_due, wait_due, timers,
     pending, updated) = tuple(row)
    if not open_ and not pending and timers == "[]":  # closed: only its once-only flags matter
        engine.closed.setdefault(tenant, {})[cid] = (int(flags), float(updated))
        return None
    st = ConvState(tenant, cid, agent)
    st.open, st.flags, st.question_at = bool(open_), int(flags), question_at
    st.response_due, st.rate_due, st.wait_due = response_due, rate_due, wait_due
    if pending:
        st.pending = tuple((rule, str(t), float(d), bool(late), tid) for rule, (t, d, late, tid) in json.loads(pending).items())
    for fire_at, rule in json.loads(timers):
        engine.rearm(st, str(rule), float(fire_at))
    engine.put(st)
    return st


def upsert_rows(conn: sqlite3.Connection, rows: list[Row]) -> int:
    """Write clock rows inside the caller's transaction."""
    if rows:
        conn.executemany(_UPSERT, rows)
    return len(rows)


def _prune_closed(conn: sqlite3.Connection, before: float) -> int:
    return int(conn.execute(
        "DELETE FROM clock_conversations WHERE open = 0 AND pending IS NULL AND timers = '[]' AND updated_at < ?",
        (before,),
    ).rowcount)


class ClockStore:
    """The clock's tables in state.db: reads on its own worker thread, writes there or on `writer`'s."""

    def __init__(self, path: Path | str, *, writer: StateDB | None = None) -> None:
        """`writer`: the service's StateDB, whose one writer thread then also commits the clock's
        rows, in its group commits. Two writer connections on one file contend for its lock; a send
        waits for both its reply's commit and its conversation's new deadlines."""
        self.path = Path(path)
        self._writer = writer
        self._conn: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clock-sql")

    def open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives kill -9 (it is in the WAL file);
        # only an OS crash could lose the last commits, and the clock then only re-fires late.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(SCHEMA)
        # Writes wait for the state thread's connection by polling finely (begin_immediate), not
        # with SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms: behind a state.db writer
        # that commits hundreds of times a second those sleeps added up to 100 ms, and a send
        # waits for the clock's commit of its new deadlines.
        conn.execute("PRAGMA busy_timeout=0")
        self._conn = conn

    @property
    def writer(self) -> StateDB | None:
        """The StateDB whose thread writes the clock's rows (None: this store's own connection)."""
        return self._writer

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The one worker thread this store's connection is used from."""
        return self._pool

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("ClockStore is not open")
        return self._conn

    def save_sync(self, rows: Iterable[Row]) -> int:
        return in_transaction(self._c(), upsert_rows, list(rows))

    def load_sync(self) -> list[Row]:
        cur = self._c().execute(
            "SELECT tenant, conversation_id, agent_id, open, flags, question_at, response_due, rate_due,"
            " wait_due, timers, pending, updated_at FROM clock_conversations"
        )
        return cur.fetchall()

    def prune_closed_sync(self, before: float) -> int:
        """Delete the rows of conversations closed (nothing pending, no timer) before `before`."""
        return in_transaction(self._c(), _prune_closed, before)

    def close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        await self._run(self.open_sync)

    async def save(self, rows: list[Row]) -> int:
        if self._writer is not None:
            return int(await self._writer.run(upsert_rows, rows))
        return int(await self._run(self.save_sync, rows))

    async def load(self) -> list[Row]:
        return list(await self._run(self.load_sync))

    async def prune_closed(self, before: float) -> int:
        if self._writer is not None:
            return int(await self._writer.run(_prune_closed, before))
        return int(await self._run(self.prune_closed_sync, before))

    async def close(self) -> None:
        await self._run(self.close_sync)
        self._pool.shutdown(wait=True)
