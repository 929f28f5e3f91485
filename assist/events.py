"""Conversation events and the in-process bus the reminder clock and the console subscribe to."""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from adapters.base import EventKind

__all__ = ["EVENT_KINDS", "ConversationEvent", "EventBus", "Stage", "Staged"]

# The adapters translate platform payloads into exactly these kinds; one list serves both.
EVENT_KINDS: tuple[str, ...] = EventKind.__args__  # type: ignore[attr-defined]

log = structlog.get_logger("assist.events")


@dataclass(frozen=True)
class ConversationEvent:
    """Something that happened in a conversation, with the time it happened (epoch seconds)."""

    kind: EventKind
    tenant: str
    conversation_id: str
    agent_id: str | None
    text: str | None
    at: float
    message_id: str | None = None


Handler = Callable[[ConversationEvent], Any]


@dataclass(frozen=True)
class Stage:
    """What a subscriber stages for an event: rows to write in the publisher's transaction, and
    what to do if that transaction does not commit."""

    write: Callable[[sqlite3.Connection], Any]
    abort: Callable[[], None]


# A subscriber's stage function: apply the event in memory and return its writes, or None to
# take the event the ordinary way, after the commit. Synchronous, so nothing runs between the
# staging and the publisher queueing its transaction (see EventBus.stage).
Stager = Callable[[ConversationEvent], "Stage | None"]


@dataclass
class Staged:
    """An event whose subscribers' writes ride in the publisher's own state.db transaction.

    Call `write(conn)` inside that transaction; then `committed()` once it has committed (it
    runs the subscribers that stage nothing), or `aborted()` if it did not.
    """

    bus: EventBus
    event: ConversationEvent
    stages: list[Stage] = field(default_factory=list)
    rest: list[Handler] = field(default_factory=list)

    def write(self, conn: sqlite3.Connection) -> None:
        for stage in self.stages:
            stage.write(conn)

    async def committed(self) -> None:
        await self.bus._deliver(self.event, self.rest)

    def aborted(self) -> None:
        for stage in self.stages:
            stage.abort()


class EventBus:
    """Fan-out of events to subscribers, in subscription order; one failing handler harms no other.

    A subscriber that persists what an event changes (the clock: new deadlines) may also give a
    `stage` function. A publisher that writes state.db for the event anyway (the send path) then
    calls `stage(event)` and puts the subscriber's rows in its own transaction: one commit where
    publishing after the commit would cost a second one, in sequence.
    """

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._stagers: dict[Handler, Stager] = {}

    def subscribe(self, handler: Handler, *, stage: Stager | None = None) -> None:
        self._handlers.append(handler)
        if stage is not None:
            self._stagers[handler] = stage

    def unsubscribe(self, handler: Handler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)
        self._stagers.pop(handler, None)

    def stage(self, event: ConversationEvent) -> Staged:
        """Let staging subscribers apply `event` now; see Staged for the rest of the protocol.

        The publisher must queue its transaction before it next awaits: state.db's writer runs
        calls in order, so no later write of the same rows can then be committed before it.
        """
        staged = Staged(self, event)
        for handler in list(self._handlers):
            stager = self._stagers.get(handler)
            if stager is None:
                staged.rest.append(handler)
                continue
            try:
                stage = stager(event)
            except Exception:
                log.exception("event.stage_failed", kind=event.kind, conversation_id=event.conversation_id)
                staged.rest.append(handler)  # it gets the event the ordinary way, after the commit
                continue
            if stage is None:
                staged.rest.append(handler)
            else:
                staged.stages.append(stage)
        return staged

    async def publish(self, event: ConversationEvent) -> None:
        await self._deliver(event, list(self._handlers))

    async def _deliver(self, event: ConversationEvent, handlers: list[Handler]) -> None:
        for handler in handlers:
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a subscriber's bug must not fail the request that published
                log.exception("event.handler_failed", kind=event.kind, conversation_id=event.conversation_id)
