"""AuditRelay: audit records that commit with the state.db transaction that made the decision.

The send path used to commit twice in a row before answering 202: the reply in state.db, then
its audit records in audit.db, each an fsync. Now the records are staged in state.db's
`audit_relay` table inside the reply's own transaction, so the 202 waits for one fsync, and the
records are exactly as durable as the reply (synchronous=FULL, survive kill -9 and power loss).
A relay task then appends them to the audit store, in staging order, and the store records in
the same transaction the highest staged seq it holds (`audit_meta.relay_upto`) and skips rows at
or below it, so a crash between the two commits (or a second relayer, such as the CLI on a live
data directory) neither loses nor duplicates a record. Staged rows the store already
holds are deleted later, inside the next staging transaction (no extra commit) or when idle. A
record the store refuses (its tenant's chain no longer verifies) moves to `audit_relay_held` in
state.db, logged, so it is kept and the other tenants' records go on; each start stages the held
records again, so they reach the store once the chain is repaired.

Readers of the audit store call `settle()` first: everything staged before the call is then in
the store, so an auditor never misses a decision the service already answered for. Records reach
the hash chain a few milliseconds after their decision; until then they sit in state.db, where
the relay appends them at the next start if the service died first.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from .audit import AuditEvent, AuditIntegrityError, AuditStore, Prepared
from .state_sql import SCHEMA, StateDB

__all__ = ["AuditRelay", "drain"]

log = structlog.get_logger(__name__)


def _encode(p: Prepared) -> str:
    tenant, values, content_hash, tags = p
    return json.dumps([tenant, list(values), content_hash.hex(), tags], ensure_ascii=False)


def _decode(text: str) -> Prepared:
    tenant, values, content_hash, tags = json.loads(text)
    return tenant, tuple(values), bytes.fromhex(content_hash), list(tags)


def _pending(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, str]]:
    return conn.execute("SELECT seq, record FROM audit_relay WHERE seq > ? ORDER BY seq LIMIT ?",
                        (after, limit)).fetchall()


def _append(store: AuditStore, rows: Sequence[tuple[int, str]]) -> int:
    """Append staged (seq, record) rows to `store`, skipping those it already holds; how many went in."""
    return len(store.append_prepared([_decode(r) for _, r in rows], relayed=[seq for seq, _ in rows]))


def _hold(conn: sqlite3.Connection, seq: int, record: str, error: str, at: float) -> None:
    conn.execute("INSERT OR REPLACE INTO audit_relay_held (seq, record, error, held_at) VALUES (?,?,?,?)",
                 (seq, record, error, at))
    conn.execute("DELETE FROM audit_relay WHERE seq = ?", (seq,))


def _unhold(conn: sqlite3.Connection) -> int:
    """Stage held records again (new seqs: none of them ever reached the store)."""
    moved = conn.execute("INSERT INTO audit_relay (record) SELECT record FROM audit_relay_held ORDER BY seq").rowcount
    conn.execute("DELETE FROM audit_relay_held")
    return moved


def _forget(conn: sqlite3.Connection, upto: int) -> None:
    conn.execute("DELETE FROM audit_relay WHERE seq <= ?", (upto,))


def drain(conn: sqlite3.Connection, store: AuditStore, *, batch: int = 500) -> int:
    """Move every staged record into `store` now, synchronously (the offline CLI); return how many.

    `conn`: an autocommit connection to state.db (its schema is created if the file is new)."""
    conn.executescript(SCHEMA)
    moved = 0
    mark = store.relay_mark()
    while True:
        rows = _pending(conn, mark, batch)
        if not rows:
            break
        mark = rows[-1][0]
        moved += _append(store, rows)
    _forget(conn, mark)
    return moved


class AuditRelay:
    """Stages audit records in a state.db transaction; moves them to the audit store after it commits."""

    def __init__(self, db: StateDB, store: AuditStore, *, batch: int = 500) -> None:
        self._db = db
        self._store = store
        self._batch = batch
        self._kicked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-relay")
        self._relayed = 0  # highest seq the store holds
        self._forgotten = 0  # highest seq deleted from state.db
        self._staged = 0  # highest seq a committed staging transaction is known to hold
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._stopping = False

    # -- the caller's transaction ----------------------------------------------------------------

    def prepare(self, event: AuditEvent) -> Prepared:
        """Validate and hash a record now (AuditStore.prepare), to stage it in a transaction."""
        return self._store.prepare(event)

    def stage(self, conn: sqlite3.Connection, prepared: Sequence[Prepared]) -> int:
        """Inside the caller's state.db transaction: stage `prepared` (from AuditStore.prepare).
        Returns the last staged seq, for `committed` once the transaction has committed.

        Also deletes rows already relayed, so the table stays small without commits of its own.
        """
        relayed = self._relayed
        if relayed > self._forgotten:
            _forget(conn, relayed)
            self._forgotten = relayed  # if this transaction rolls back, a later delete covers them
        seq = 0
        for p in prepared:
            seq = int(conn.execute("INSERT INTO audit_relay (record) VALUES (?)", (_encode(p),)).lastrowid or 0)
        return seq

    def committed(self, seq: int) -> None:
        """The transaction that staged up to `seq` committed: move its records soon."""
        self._staged = max(self._staged, seq)
        self._kicked.set()

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Relay what a previous run left staged (and held records, once more), then start the task."""
        await self._db.run(_unhold)
        self._relayed = self._forgotten = await self._in_pool(self._store.relay_mark)
        moved = 0
        while n := await self._move():
            moved += n
        if moved:
            log.info("audit.relay_recovered", records=moved)
        self._task = asyncio.create_task(self._run(), name="audit-relay")

    async def stop(self) -> None:
        """Relay everything staged, then stop."""
        self._stopping = True
        self._kicked.set()
        if self._task is not None:
            await self._task
            self._task = None
        while await self._move():
            pass
        self._pool.shutdown(wait=True)

    async def settle(self, timeout: float = 5.0) -> bool:
        """Return once every record staged before this call is in the audit store (True), or after
        `timeout` if the store cannot take them now (False; they stay staged and are retried)."""
        target = self._staged
        if target <= self._relayed:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._kicked.set()
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            log.warning("audit.relay_behind", staged=target, relayed=self._relayed)
            return False

    # -- the relay task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._kicked.wait(), timeout=1.0)
            except TimeoutError:
                # Idle: delete what was relayed but not yet deleted by a staging transaction.
                if self._relayed > self._forgotten:
                    upto = self._relayed
                    try:
                        await self._db.run(_forget, upto)
                        self._forgotten = max(self._forgotten, upto)
                    except Exception:
                        log.exception("audit.relay_forget_failed")
                continue
            self._kicked.clear()
            try:
                while await self._move():
                    pass
            except Exception:  # the rows stay staged; the next kick (or the timeout) retries
                log.exception("audit.relay_failed")
                await asyncio.sleep(0.1)
                self._kicked.set()

    async def _move(self) -> int:
        rows = self._db.read(_pending, self._relayed, self._batch)
        if not rows:
            self._release()
            return 0
        upto = rows[-1][0]
        try:
            await self._in_pool(_append, self._store, rows)
        except Exception:
            # One tenant's chain may refuse (AuditIntegrityError after tampering): append the
            # batch record by record so the others go on, and hold the refused ones in state.db.
            await self._one_by_one(rows)
        self._relayed = upto
        self._staged = max(self._staged, upto)
        self._release()
        return len(rows)

    async def _one_by_one(self, rows: list[tuple[int, str]]) -> None:
        for seq, record in rows:
            try:
                await self._in_pool(_append, self._store, [(seq, record)])
            except AuditIntegrityError as err:  # anything else is retried by the relay loop
                log.error("audit.relay_held", seq=seq, error=str(err))
                await self._db.run(_hold, seq, record, str(err), time.time())

    def _release(self) -> None:
        keep = []
        for target, fut in self._waiters:
            if target <= self._relayed:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep

    async def _in_pool(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
