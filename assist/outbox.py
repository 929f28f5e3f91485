"""Durable outbox: accepted replies wait in state.db until the platform has them, exactly once.

A reply is written here in the same transaction that accepts it, before the HTTP answer goes out.
One worker task delivers in id order (per conversation, a later message waits for an earlier
one), retries timeouts, 5xx and 429 with exponential backoff and jitter, and resumes after a
restart. A try that may have reached the platform (timeout, 5xx, crash mid-request) marks the
row `uncertain`; before re-posting, the worker asks the platform whether it already has it.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
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
ORDER BY o.id LIMIT 1
"""

OnOutcome = Callable[[OutboundMessage, str, dict[str, Any]], Awaitable[None]]


class Outbox:
    """The delivery worker and read side of the outbox table."""

    def __init__(
        self, db: StateDB, deliverer: Deliverer, *, clock: Callable[[], float],
        backoff_base_s: float, backoff_max_s: float, max_attempts: int,
        on_outcome: OnOutcome | None = None,
    ) -> None:
        self._db = db
        self._deliverer = deliverer
        self._clock = clock
        self._base = backoff_base_s
        self._max = backoff_max_s
        self._max_attempts = max_attempts
        self._on_outcome = on_outcome
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
        row = await self._db.run(lambda c: c.execute(
            "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'inflight')").fetchone())
        return int(row[0])

    async def _claim(self) -> tuple[OutboundMessage | None, bool, float | None]:
        now = self._clock()

        def claim(conn: sqlite3.Connection) -> tuple[OutboundMessage | None, bool, float | None]:
            row = conn.execute(_CLAIM, (now,)).fetchone()
            if row is None:
                nxt = conn.execute(
                    "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'").fetchone()[0]
                return None, False, nxt
            conn.execute("UPDATE outbox SET status = 'inflight', attempts = attempts + 1 WHERE id = ?", (row["id"],))
            msg = OutboundMessage(
                row["id"], row["tenant"], row["conversation_id"], row["kind"], row["text"],
                json.loads(row["platform_ref"]), row["attempts"] + 1,
            )
            return msg, bool(row["uncertain"]), None

        return await self._db.run(claim)

    async def _run(self) -> None:
        while True:
            try:
                msg, uncertain, next_due = await self._claim()
            except Exception:
                log.exception("outbox.claim_failed")
                msg, uncertain, next_due = None, False, self._clock() + 1.0
            if msg is None:
                timeout = None if next_due is None else max(0.0, next_due - self._clock())
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                except asyncio.TimeoutError:
                    pass
                continue
            await self._attempt(msg, uncertain)

    async def _attempt(self, msg: OutboundMessage, uncertain: bool) -> None:
        try:
            receipt = await self._deliverer.find_delivered(msg) if uncertain else None
            checked = receipt is not None
            if receipt is None:
                uncertain = False  # the platform does not have it: this try starts from certainty
                receipt = await self._deliverer.deliver(msg)
        except DeliveryError as err:
            await self._failed(msg, err, uncertain)
            return
        except Exception as err:  # an adapter bug: retry later rather than lose the reply
            log.exception("outbox.adapter_error", outbox_id=msg.id)
            await self._failed(msg, DeliveryError(repr(err), retryable=True, reached=True), uncertain)
            return
        now = self._clock()
        await self._db.run(lambda c: c.execute(
            "UPDATE outbox SET status = 'delivered', delivered_at = ?, platform_message_id = ?, last_error = NULL"
            " WHERE id = ?", (now, receipt.platform_message_id, msg.id)))
        log.info("reply.delivered", outbox_id=msg.id, conversation_id=msg.conversation_id,
                 attempts=msg.attempts, found_on_platform=checked)
        await self._emit(msg, "delivered", {"platform_message_id": receipt.platform_message_id,
                                            "attempts": msg.attempts, "found_on_platform": checked})

    async def _failed(self, msg: OutboundMessage, err: DeliveryError, uncertain: bool) -> None:
        now = self._clock()
        still_uncertain = 1 if (uncertain or err.reached) else 0
        if err.retryable and msg.attempts < self._max_attempts:
            delay = max(self.backoff_s(msg.attempts), err.retry_after_s or 0.0)
            await self._db.run(lambda c: c.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?, last_error = ?, uncertain = ?"
                " WHERE id = ?", (now + delay, str(err), still_uncertain, msg.id)))
            log.warning("reply.delivery_retried", outbox_id=msg.id, status=err.status,
                        attempts=msg.attempts, retry_in_s=round(delay, 3))
            await self._emit(msg, "retry", {"status": err.status, "error": str(err), "attempts": msg.attempts})
            return
        await self._db.run(lambda c: c.execute(
            "UPDATE outbox SET status = 'failed', last_error = ?, uncertain = ? WHERE id = ?",
            (str(err), still_uncertain, msg.id)))
        log.error("reply.delivery_failed", outbox_id=msg.id, status=err.status, attempts=msg.attempts)
        await self._emit(msg, "failed", {"status": err.status, "error": str(err), "attempts": msg.attempts})

    async def _emit(self, msg: OutboundMessage, outcome: str, details: dict[str, Any]) -> None:
        if self._on_outcome is None:
            return
        try:
            await self._on_outcome(msg, outcome, details)
        except Exception:
            log.exception("outbox.outcome_hook_failed", outbox_id=msg.id)
