"""Durable outbox: accepted replies wait in state.db until the platform has them, exactly once.

A reply is written here in the same transaction that accepts it, before the HTTP answer goes out.
One worker task delivers in id order (per conversation, a later message waits for an earlier
one), retries timeouts, 5xx and 429 with exponential backoff and jitter, and resumes after a
restart. A try that may have reached the platform (timeout, 5xx, crash mid-request) marks the
row `uncertain`; before re-posting, the worker asks the platform whether it already has it.
A platform 4xx is final: the row is marked failed (shown on GET /v1/conversations/{id}) and audited.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import structlog

from adapters.base import Adapter, DeliveryError, DeliveryReceipt, OutboundMessage

from .state_sql import StateDB

__all__ = [
    "DeliveryError",
    "DeliveryReceipt",
    "Deliverer",
    "Outbox",
    "OutboundMessage",
    "enqueue",
]

log = structlog.get_logger("assist.outbox")


# The delivery protocol and its values belong to the adapters; the outbox only drives them.
Deliverer = Adapter


def enqueue(
    conn: sqlite3.Connection, *, tenant: str, conversation_id: str, kind: str, text: str,
    platform_ref: dict[str, Any], now: float,
) -> int:
    """Insert a message into the outbox inside the caller's transaction; return its id."""
    cur = conn.execute(
        "INSERT INTO outbox (tenant, conversation_id, kind, text, platform_ref, next_attempt_at, created_at)"
        " VALUES (?,?,?,?,?,?,?)",
        (tenant, conversation_id, kind, text, json.dumps(platform_ref), now, now),
    )
    return int(cur.lastrowid or 0)


_CLAIM = """
SELECT * FROM outbox o
WHERE o.status = 'pending' AND o.next_attempt_at <= ?
  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.tenant = o.tenant AND p.conversation_id = o.conversation_id
                  AND p.id < o.id AND p.status IN ('pending', 'inflight'))
ORDER BY o.id LIMIT ?
"""

OnOutcome = Callable[[OutboundMessage, str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class _Result:
    msg: OutboundMessage
    receipt: DeliveryReceipt | None
    error: DeliveryError | None
    found_on_platform: bool
    uncertain: bool


class Outbox:
    """The delivery worker and read side of the outbox table.

    The worker claims a batch of due messages (at most one per conversation, the oldest, so order
    within a conversation holds), delivers the batch concurrently, records every outcome in one
    transaction, and audits them together.
    """

    def __init__(
        self, db: StateDB, deliverer: Deliverer, *, clock: Callable[[], float],
        backoff_base_s: float, backoff_max_s: float, max_attempts: int,
        on_outcome: OnOutcome | None = None, batch: int = 32, settle_s: float = 0.005,
    ) -> None:
        self._db = db
        self._deliverer = deliverer
        self._clock = clock
        self._base = backoff_base_s
        self._max = backoff_max_s
        self._max_attempts = max_attempts
        self._on_outcome = on_outcome
        self._batch = batch
        self._settle_s = settle_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Tell the worker a new message is waiting."""
        self._wake.set()

    async def start(self) -> None:
        # A row left inflight was being posted when the process died: it may have arrived.
        await self._db.run(lambda c: c.execute(
            "UPDATE outbox SET status = 'pending', uncertain = 1 WHERE status = 'inflight'"))
        self._task = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def backoff_s(self, attempts: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, capped at backoff_max_s."""
        step = min(self._max, self._base * (2 ** max(0, attempts - 1)))
        return step / 2 + random.uniform(0, step / 2)

    async def depth(self) -> int:
        row = self._db.read(lambda c: c.execute(
            "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'inflight')").fetchone())
        return int(row[0])

    async def _claim(self) -> tuple[list[tuple[OutboundMessage, bool]], float | None]:
        now, limit = self._clock(), self._batch

        def claim(conn: sqlite3.Connection) -> tuple[list[tuple[OutboundMessage, bool]], float | None]:
            rows = conn.execute(_CLAIM, (now, limit)).fetchall()
            if not rows:
                nxt = conn.execute(
                    "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'").fetchone()[0]
                return [], nxt
            conn.executemany("UPDATE outbox SET status = 'inflight', attempts = attempts + 1 WHERE id = ?",
                             [(r["id"],) for r in rows])
            return [(OutboundMessage(r["id"], r["tenant"], r["conversation_id"], r["kind"], r["text"],
                                     json.loads(r["platform_ref"]), r["attempts"] + 1), bool(r["uncertain"]))
                    for r in rows], None

        return await self._db.run(claim)

    async def _run(self) -> None:
        while True:
            try:
                claimed, next_due = await self._claim()
            except Exception:
                log.exception("outbox.claim_failed")
                claimed, next_due = [], self._clock() + 1.0
            if not claimed:
                timeout = None if next_due is None else max(0.0, next_due - self._clock())
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                    # Let replies accepted in the next few ms join this batch: one claim, one
                    # outcome transaction and one audit commit for several messages.
                    await asyncio.sleep(self._settle_s)
                except asyncio.TimeoutError:
                    pass
                continue
            results = await asyncio.gather(*(self._attempt(m, u) for m, u in claimed))
            await self._record(list(results))

    async def _attempt(self, msg: OutboundMessage, uncertain: bool) -> _Result:
        try:
            receipt = await self._deliverer.find_delivered(msg) if uncertain else None
            if receipt is not None:
                return _Result(msg, receipt, None, True, uncertain)
            uncertain = False  # the platform does not have it: this try starts from certainty
            return _Result(msg, await self._deliverer.deliver(msg), None, False, uncertain)
        except DeliveryError as err:
            return _Result(msg, None, err, False, uncertain)
        except Exception as err:  # an adapter bug: retry later rather than lose the reply
            log.exception("outbox.adapter_error", outbox_id=msg.id)
            return _Result(msg, None, DeliveryError(repr(err), retryable=True, reached=True), False, uncertain)

    async def _record(self, results: list[_Result]) -> None:
        now = self._clock()
        updates: list[tuple[str, tuple[Any, ...]]] = []
        events: list[tuple[OutboundMessage, str, dict[str, Any]]] = []
        for r in results:
            msg, err = r.msg, r.error
            if err is None:
                pid = r.receipt.platform_message_id if r.receipt else None
                updates.append(("UPDATE outbox SET status = 'delivered', delivered_at = ?, platform_message_id = ?,"
                                " last_error = NULL, uncertain = 0 WHERE id = ?", (now, pid, msg.id)))
                log.info("reply.delivered", outbox_id=msg.id, conversation_id=msg.conversation_id,
                         attempts=msg.attempts, found_on_platform=r.found_on_platform)
                events.append((msg, "delivered", {"platform_message_id": pid, "attempts": msg.attempts,
                                                  "found_on_platform": r.found_on_platform}))
                continue
            still_uncertain = 1 if (r.uncertain or err.reached) else 0
            info = {"status": err.status, "error": str(err), "attempts": msg.attempts}
            if err.retryable and msg.attempts < self._max_attempts:
                delay = max(self.backoff_s(msg.attempts), err.retry_after_s or 0.0)
                updates.append(("UPDATE outbox SET status = 'pending', next_attempt_at = ?, last_error = ?,"
                                " uncertain = ? WHERE id = ?", (now + delay, str(err), still_uncertain, msg.id)))
                log.warning("reply.delivery_retried", outbox_id=msg.id, status=err.status, attempts=msg.attempts,
                            retry_in_s=round(delay, 3))
                events.append((msg, "retry", info))
            else:
                updates.append(("UPDATE outbox SET status = 'failed', last_error = ?, uncertain = ? WHERE id = ?",
                                (str(err), still_uncertain, msg.id)))
                log.error("reply.delivery_failed", outbox_id=msg.id, status=err.status, attempts=msg.attempts)
                events.append((msg, "failed", info))

        def write(conn: sqlite3.Connection) -> None:
            for sql, params in updates:
                conn.execute(sql, params)

        # Audit first: a crash between the two leaves the row inflight, so the restart asks the
        # platform and records the delivery again (found_on_platform) rather than never.
        await asyncio.gather(*(self._emit(*e) for e in events))
        await self._db.run(write)

    async def _emit(self, msg: OutboundMessage, outcome: str, details: dict[str, Any]) -> None:
        if self._on_outcome is None:
            return
        try:
            await self._on_outcome(msg, outcome, details)
        except Exception:
            log.exception("outbox.outcome_hook_failed", outbox_id=msg.id)
