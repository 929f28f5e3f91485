"""Conversation events and the in-process bus the reminder clock and the console subscribe to."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import structlog

from adapters.base import EventKind

__all__ = ["EVENT_KINDS", "ConversationEvent", "EventBus"]

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


class EventBus:
    """Fan-out of events to subscribers, in subscription order; one failing handler harms no other."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def unsubscribe(self, handler: Handler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)

    async def publish(self, event: ConversationEvent) -> None:
        for handler in list(self._handlers):
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a subscriber's bug must not fail the request that published
                log.exception("event.handler_failed", kind=event.kind, conversation_id=event.conversation_id)
