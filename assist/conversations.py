"""Conversation state: who is assigned, whether the first reply and the closing went out, history.

Inbound platform events (customer message, opened, assigned, closed, transferred) come here
through `ConversationService.ingest`, are stored in state.db, audited, then published on the
EventBus for the reminder clock. The guard reads its history from here.
"""

from __future__ import annotations

import json
import sqlite3
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import structlog

from guards import Message

from .audit import AuditEvent
from .audit_relay import AuditRelay
from .errors import ConversationNotFound
from .events import ConversationEvent, EventBus
from .state_sql import StateDB

__all__ = ["Conversation", "ConversationService", "InboundEvent", "upsert_conversation"]

log = structlog.get_logger("assist.conversations")


@dataclass(frozen=True)
class InboundEvent:
    """An event an adapter read from a platform, with what the adapter needs to reply later."""

    event: ConversationEvent
    source: str
    platform_ref: dict[str, Any] = field(default_factory=dict)
    # An agent message typed on the platform itself: already sent, so it can only be checked.
    post_hoc: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Conversation:
    """One conversation's state row."""

    tenant: str
    id: str
    status: str
    agent_id: str | None
    platform_ref: dict[str, Any]
    greeted: bool
    closing_sent: bool
    customer_messages: int
    agent_messages: int
    last_customer_at: float | None
    last_agent_at: float | None
    created_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Conversation:
        return cls(
            row["tenant"], row["id"], row["status"], row["agent_id"], json.loads(row["platform_ref"]),
            bool(row["greeted"]), bool(row["closing_sent"]), row["customer_messages"], row["agent_messages"],
            row["last_customer_at"], row["last_agent_at"], row["created_at"],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.id, "tenant": self.tenant, "status": self.status,
            "agent_id": self.agent_id, "greeted": self.greeted, "closing_sent": self.closing_sent,
            "customer_messages": self.customer_messages, "agent_messages": self.agent_messages,
            "last_customer_at": self.last_customer_at, "last_agent_at": self.last_agent_at,
            "created_at": self.created_at,
        }


def upsert_conversation(conn: sqlite3.Connection, tenant: str, cid: str, ref: dict[str, Any], now: float) -> None:
    """Create the conversation row if it is new; merge what the platform told us about it."""
    row = conn.execute("SELECT platform_ref FROM conversations WHERE tenant = ? AND id = ?", (tenant, cid)).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO conversations (tenant, id, platform_ref, created_at, updated_at) VALUES (?,?,?,?,?)",
            (tenant, cid, json.dumps(ref), now, now),
        )
    elif ref:
        merged = {**json.loads(row["platform_ref"]), **ref}
        conn.execute("UPDATE conversations SET platform_ref = ? WHERE tenant = ? AND id = ?",
                     (json.dumps(merged), tenant, cid))


def _apply(conn: sqlite3.Connection, inbound: InboundEvent) -> None:
    ev = inbound.event
    upsert_conversation(conn, ev.tenant, ev.conversation_id, inbound.platform_ref, ev.at)
    key = (ev.tenant, ev.conversation_id)
    if ev.kind == "customer_message":
        conn.execute("INSERT INTO messages (tenant, conversation_id, role, text, at, message_id) VALUES (?,?,?,?,?,?)",
                     (*key, "customer", ev.text or "", ev.at, ev.message_id))
        # A customer writing again reopens a closed conversation; the platform may name the assignee.
        conn.execute("UPDATE conversations SET customer_messages = customer_messages + 1, last_customer_at = ?,"
                     " status = CASE status WHEN 'closed' THEN 'open' ELSE status END,"
                     " agent_id = COALESCE(?, agent_id), updated_at = ? WHERE tenant = ? AND id = ?",
                     (ev.at, ev.agent_id, ev.at, *key))
    elif ev.kind == "agent_message":
        # Typed on the platform: it is the agent's first reply if none went out before.
        conn.execute("INSERT INTO messages (tenant, conversation_id, role, text, at, message_id) VALUES (?,?,?,?,?,?)",
                     (*key, "agent", ev.text or "", ev.at, ev.message_id))
        conn.execute("UPDATE conversations SET agent_messages = agent_messages + 1, last_agent_at = ?, greeted = 1,"
                     " agent_id = COALESCE(?, agent_id), updated_at = ? WHERE tenant = ? AND id = ?",
                     (ev.at, ev.agent_id, ev.at, *key))
    elif ev.kind == "opened":
        conn.execute("UPDATE conversations SET status = 'open', agent_id = COALESCE(?, agent_id), updated_at = ?"
                     " WHERE tenant = ? AND id = ?", (ev.agent_id, ev.at, *key))
    elif ev.kind == "closed":
        conn.execute("UPDATE conversations SET status = 'closed', updated_at = ? WHERE tenant = ? AND id = ?",
                     (ev.at, *key))
    elif ev.kind in ("assigned", "transferred"):
        conn.execute("UPDATE conversations SET agent_id = ?, updated_at = ? WHERE tenant = ? AND id = ?",
                     (ev.agent_id, ev.at, *key))


PostHocCheck = Callable[[InboundEvent], Awaitable[None]]
T = TypeVar("T")
_CACHE_SIZE = 10_000


class ConversationService:
    """Reads and updates conversation state; the one place inbound events enter the service."""

    def __init__(self, db: StateDB, *, relay: AuditRelay, bus: EventBus, history_messages: int) -> None:
        self.db = db
        # An inbound event's state, its audit record (relayed to the audit store) and the clock's
        # new deadlines (staged on the bus) commit in one state.db transaction.
        self._relay = relay
        self._bus = bus
        self._history = history_messages
        self.post_hoc_check: PostHocCheck | None = None
        # Conversation rows and recent history, kept in step with every write this process makes
        # (one process owns a data dir): the send path reads them without touching SQLite. History
        # is kept as the guard's Message values, so a check does not rebuild (and re-validate) them.
        self._cache: dict[tuple[str, str], tuple[Conversation, deque[Message]]] = {}

    def _not_found(self, tenant: str, cid: str) -> ConversationNotFound:
        return ConversationNotFound(f"no conversation '{cid}' for tenant '{tenant}'",
                                    details=[{"conversation_id": cid, "tenant": tenant}])

    async def get(self, tenant: str, cid: str) -> Conversation:
        """The conversation, or ConversationNotFound."""
        return (await self.with_history(tenant, cid))[0]

    async def with_history(self, tenant: str, cid: str) -> tuple[Conversation, list[dict[str, str]]]:
        """The conversation and its last messages as {role, text} dicts, oldest first."""
        conv, messages = await self.with_messages(tenant, cid)
        return conv, [{"role": m.role, "text": m.text} for m in messages]

    async def with_messages(self, tenant: str, cid: str) -> tuple[Conversation, tuple[Message, ...]]:
        """The conversation and its last messages as the guard takes them (cached; the send path's one read)."""
        cached = self._cache.get((tenant, cid))
        if cached is not None:
            return cached[0], tuple(cached[1])
        limit = self._history

        def read(conn: sqlite3.Connection) -> tuple[sqlite3.Row | None, list[sqlite3.Row]]:
            row = conn.execute("SELECT * FROM conversations WHERE tenant = ? AND id = ?", (tenant, cid)).fetchone()
            if row is None:
                return None, []
            return row, conn.execute(
                "SELECT role, text FROM messages WHERE tenant = ? AND conversation_id = ? ORDER BY seq DESC LIMIT ?",
                (tenant, cid, limit)).fetchall()

        row, rows = self.db.read(read)
        if row is None:
            raise self._not_found(tenant, cid)
        conv = Conversation.from_row(row)
        history = deque((Message(role=r["role"], text=r["text"]) for r in reversed(rows)), maxlen=limit)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # oldest entry first
        self._cache[(tenant, cid)] = (conv, history)
        return conv, tuple(history)

    def remember(self, row: sqlite3.Row, messages: list[dict[str, str]]) -> None:
        """After a committed write: the conversation's new row and the messages it added."""
        key = (row["tenant"], row["id"])
        cached = self._cache.get(key)
        if cached is not None:
            cached[1].extend(Message(role=m["role"], text=m["text"]) for m in messages)
            self._cache[key] = (Conversation.from_row(row), cached[1])

    def forget(self, tenant: str, cid: str) -> None:
        self._cache.pop((tenant, cid), None)

    async def history(self, tenant: str, cid: str) -> list[dict[str, str]]:
        """The last messages, oldest first, in the shape the guard takes ([] for an unknown conversation)."""
        try:
            return (await self.with_history(tenant, cid))[1]
        except ConversationNotFound:
            return []

    async def deliveries(self, tenant: str, cid: str) -> list[dict[str, Any]]:
        """Every outbox row of the conversation: what was sent and where it stands."""
        rows = self.db.read(lambda c: c.execute(
            "SELECT id, kind, text, status, attempts, last_error, platform_message_id, created_at, delivered_at"
            " FROM outbox WHERE tenant = ? AND conversation_id = ? ORDER BY id", (tenant, cid)).fetchall())
        return [dict(r) for r in rows]

    async def ingest(self, inbound: InboundEvent, *, actor: str | None) -> None:
        """Store, audit and publish one inbound event (and check a post-hoc agent message): its
        state, audit record and the clock's new deadlines in one state.db commit."""
        ev = inbound.event
        if inbound.post_hoc and ev.kind == "agent_message" and self.post_hoc_check is not None:
            # Checked against the history before this message, as if it had been a draft.
            await self.post_hoc_check(inbound)
        def apply(conn: sqlite3.Connection) -> tuple[None, list[AuditEvent]]:
            _apply(conn, inbound)
            return None, [self._record(inbound, actor=actor)]

        try:
            await self.commit_event(ev, apply)
        finally:
            self.forget(ev.tenant, ev.conversation_id)
        log.info("event.received", kind=ev.kind, source=inbound.source, conversation_id=ev.conversation_id,
                 tenant=ev.tenant, text_len=len(ev.text or ""))

    async def commit_event(self, event: ConversationEvent,
                           fn: Callable[[sqlite3.Connection], tuple[T, list[AuditEvent] | None]]) -> T:
        """Run fn(conn) in one state.db transaction with what the event's subscribers stage on the
        bus (the clock's new deadlines) and the audit records fn returns (staged for the relay):
        the decision, its record and its deadlines in one commit. fn returns None for the records
        when nothing happened (an idempotent replay); the event is then dropped. Returns fn's
        result, once subscribers that did not stage have the event too."""
        relay = self._relay
        staged = self._bus.stage(event)  # nothing awaits between this and queueing the transaction

        def tx(conn: sqlite3.Connection) -> tuple[T, int | None]:
            result, records = fn(conn)
            if records is None:
                return result, None
            staged.write(conn)
            return result, relay.stage(conn, [relay.prepare(r) for r in records])

        try:
            result, seq = await self.db.run(tx)
        except BaseException:
            staged.aborted()
            raise
        if seq is None:
            staged.aborted()
            return result
        relay.committed(seq)
        await staged.committed()
        return result

    @staticmethod
    def _record(inbound: InboundEvent, *, actor: str | None) -> AuditEvent:
        ev = inbound.event
        if ev.kind == "customer_message":
            record = AuditEvent(tenant=ev.tenant, kind="customer_message", actor=actor,
                                conversation_id=ev.conversation_id, original_text=ev.text, at=ev.at,
                                details={"source": inbound.source, "message_id": ev.message_id})
        else:
            record = AuditEvent(tenant=ev.tenant, kind="conversation_event", actor=actor,
                                conversation_id=ev.conversation_id, action=ev.kind, at=ev.at,
                                final_text=ev.text if ev.kind == "agent_message" else None,
                                details={"source": inbound.source, "agent_id": ev.agent_id,
                                         "message_id": ev.message_id, "post_hoc": inbound.post_hoc,
                                         **inbound.details})
        return record
