"""The web.AppKey constants under which the app keeps its shared objects (re-exported by assist.app)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .config import Settings
from .events import EventBus
from .metrics import Metrics

if TYPE_CHECKING:
    from .api_check import GuardCache
    from .audit_relay import AuditRelay
    from .auth import TokenStore
    from .conversations import ConversationService
    from .outbox import Deliverer, Outbox
    from .state_sql import StateDB

__all__ = [
    "AUDIT_RELAY", "CLOCK", "CONVERSATIONS", "DELIVERER", "EVENT_BUS", "GUARDS", "LOG_FIELDS", "METRICS", "OUTBOX",
    "SETTINGS", "STATE_DB", "TOKENS",
]

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Any)  # anything with now() -> epoch seconds (assist.clock.Clock)
EVENT_BUS = web.AppKey("event_bus", EventBus)
# Fields a handler adds to the request's one canonical log line (see assist.api.note).
LOG_FIELDS = web.RequestKey("log_fields", dict)
METRICS = web.AppKey("metrics", Metrics)
STATE_DB: web.AppKey["StateDB"] = web.AppKey("state_db")
TOKENS: web.AppKey["TokenStore"] = web.AppKey("tokens")
CONVERSATIONS: web.AppKey["ConversationService"] = web.AppKey("conversations")
GUARDS: web.AppKey["GuardCache"] = web.AppKey("guards")
DELIVERER: web.AppKey["Deliverer"] = web.AppKey("deliverer")
OUTBOX: web.AppKey["Outbox"] = web.AppKey("outbox")
AUDIT_RELAY: web.AppKey["AuditRelay"] = web.AppKey("audit_relay")
