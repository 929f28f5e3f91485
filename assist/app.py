"""The app factory: `create_app(settings)` builds the whole service; tests and the CLI both use it.

Shared objects live under web.AppKey constants (assist/api_keys.py, re-exported here). The state
database, the audit writer, the platform adapter and the outbox worker each start and stop in
one cleanup_ctx, in that order. The platform (demo, generic webhook, Chatwoot) is chosen by
settings.platform; adapters translate and deliver, the routes that receive their webhooks live here.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from adapters.chatwoot import ChatwootDeliverer
from adapters.demo import DemoPlatform
from adapters.webhook import WebhookDeliverer

from .api import json_response, setup_routes
from .api_check import GuardCache, post_hoc_checker
from .api_demo import DEMO, setup_demo_routes
from .api_keys import (
    AUDIT_RELAY, CLOCK, CONVERSATIONS, DELIVERER, EVENT_BUS, GUARDS, LOG_FIELDS, METRICS, OUTBOX, SETTINGS, STATE_DB, TOKENS,
)
from .api_webhooks import setup_webhook_routes
from .audit import AUDIT_STORE, AUDIT_WRITER, AuditEvent, AuditStore, AuditWriter, setup_audit_routes
from .audit_relay import AuditRelay
from .auth import PRINCIPAL, TokenStore, token_from_request
from .config import Settings
from .console import clock_ctx, setup_console_routes
from .conversations import ConversationService
from .errors import AssistError, MethodNotAllowed, PayloadTooLarge, RouteNotFound, error_body
from .events import EventBus
from .metrics import Metrics
from .outbox import OutboundMessage, Outbox
from .state_sql import StateDB, prune

__all__ = [
    "CLOCK", "CONVERSATIONS", "DELIVERER", "EVENT_BUS", "GUARDS", "METRICS", "OUTBOX",
    "SETTINGS", "STATE_DB", "TOKENS", "create_app",
]

log = structlog.get_logger("assist.app")

# Where a token may come as ?access_token=: Chatwoot cannot set headers on webhooks, and a
# browser cannot set them on a WebSocket handshake.
_QUERY_TOKEN_PREFIXES = ("/v1/webhooks/", "/v1/console/ws")
_PUBLIC = {"/healthz"}
# Request ids: a per-process random prefix and a counter, unique without a syscall per request.
_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)


class _WallClock:
    def now(self) -> float:
        return time.time()


def _route_name(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    return info.route.resource.canonical if info.route.resource is not None else "unmatched"


def _as_assist_error(exc: web.HTTPException, request: web.Request) -> AssistError:
    if isinstance(exc, web.HTTPNotFound):
        return RouteNotFound(f"no route {request.method} {request.path}")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"{request.method} is not allowed here",
                                details=[{"allowed": sorted(exc.allowed_methods)}])
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS].max_body_bytes
        return PayloadTooLarge(f"body exceeds the limit of {limit} bytes", details=[{"limit_bytes": limit}])
    err = AssistError(exc.reason or "request refused", code=exc.reason.lower().replace(" ", "_") or "error")
    err.status = exc.status
    return err


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """The one middleware: request id, authentication, errors as JSON, the canonical log line,
    metrics, the refusal audit."""
    request_id = request.headers.get("X-Request-ID", "")[:64] or f"{_ID_PREFIX}-{next(_ids):x}"
    structlog.contextvars.clear_contextvars()
    cid = request.match_info.get("conversation_id")
    if cid:
        structlog.contextvars.bind_contextvars(request_id=request_id, conversation_id=cid)
    else:
        structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    error: AssistError | None = None
    try:
        await _authenticate(request)
        response = await handler(request)
    except AssistError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _as_assist_error(exc, request)
    except Exception:
        log.exception("request.crashed", method=request.method, path=request.path)
        response = json_response(error_body("internal_error", "the service failed; see its log with request_id",
                                            [{"request_id": request_id}]), status=500)
    if error is not None:
        response = json_response(error.body(), status=error.status)
        await _audit_refusal(request, error, request_id)
    response.headers["X-Request-ID"] = request_id
    route = _route_name(request)
    elapsed = time.perf_counter() - started
    request.app[METRICS].observe_request(route, request.method, response.status, elapsed)
    principal = request.get(PRINCIPAL)
    fields = dict(request.get(LOG_FIELDS) or {})
    event = fields.pop("event", "request.finished")
    log.info(event, **{**fields, "method": request.method, "route": route, "status": response.status,
                       "latency_ms": round(elapsed * 1000, 2), "error": error.code if error else None,
                       "token_id": principal.token_id if principal else None})
    return response


async def _audit_refusal(request: web.Request, error: AssistError, request_id: str) -> None:
    if error.audited or error.status >= 500:
        return
    principal = request.get(PRINCIPAL)
    try:
        await request.app[AUDIT_WRITER].append(AuditEvent(
            tenant=principal.tenant if principal else "default", kind="refused",
            actor=principal.actor if principal else None,
            conversation_id=request.match_info.get("conversation_id"), action=error.code, reason=error.message,
            details={"status": error.status, "method": request.method, "path": request.path,
                     "request_id": request_id}))
    except Exception:  # the refusal is already logged; an audit failure must not turn it into a 500
        log.exception("refusal.audit_failed", code=error.code)


async def _authenticate(request: web.Request) -> None:
    """Every route but /healthz needs a bearer token; unmatched routes fall through to a 404.

    Part of the one middleware, not a second one: each middleware layer is another coroutine and
    another wrapper call on every request.
    """
    if request.path in _PUBLIC or request.match_info.http_exception is not None:
        return
    token = token_from_request(request, allow_query=request.path.startswith(_QUERY_TOKEN_PREFIXES))
    principal = await request.app[TOKENS].principal(token)
    request[PRINCIPAL] = principal
    structlog.contextvars.bind_contextvars(role=principal.role, agent_id=principal.agent_id)


async def _housekeeping(app: web.Application) -> None:
    """Once an hour, drop dedupe ids and idempotency keys older than dedupe_retention_h."""
    while True:
        before = app[CLOCK].now() - app[SETTINGS].dedupe_retention_h * 3600
        try:
            removed = await app[STATE_DB].run(prune, before)
            if removed:
                log.info("state.pruned", rows=removed)
        except Exception:
            log.exception("state.prune_failed")
        await asyncio.sleep(3600)


async def _state_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = StateDB(settings.state_db)
    app[STATE_DB] = db
    app[TOKENS] = TokenStore(db, clock=app[CLOCK].now)
    task = asyncio.create_task(_housekeeping(app), name="state-housekeeping")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    db.close()


async def _audit_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = AuditStore(settings.audit_db, hmac_key=settings.audit_hmac_key.get_secret_value().encode(),
                       checkpoint_every=settings.audit_checkpoint_every, clock=app[CLOCK].now)
    writer = AuditWriter(store)
    await writer.start()
    # Records staged in state.db by the send path (one commit for reply and record), moved here;
    # what a previous run left staged is appended before the service answers anything.
    relay = AuditRelay(app[STATE_DB], store)
    await relay.start()
    app[AUDIT_STORE], app[AUDIT_WRITER], app[AUDIT_RELAY] = store, writer, relay
    guards_ = GuardCache(settings, app[METRICS])
    guards_.build()
    app[GUARDS] = guards_
    service = ConversationService(app[STATE_DB], relay=relay, bus=app[EVENT_BUS],
                                  history_messages=settings.history_messages)
    service.post_hoc_check = post_hoc_checker(guards_, writer, service, app[METRICS])
    app[CONVERSATIONS] = service
    yield
    await relay.stop()
    await writer.stop()
    store.close()


def _outcome_recorder(app: web.Application) -> Any:
    async def record(msg: OutboundMessage, outcome: str, details: dict[str, Any]) -> None:
        app[METRICS].child(app[METRICS].deliveries, app[SETTINGS].platform, outcome).inc()
        if outcome == "retry":
            return
        await app[AUDIT_WRITER].append(AuditEvent(
            tenant=msg.tenant, kind="delivery" if outcome == "delivered" else "delivery_failed",
            actor=f"platform:{app[SETTINGS].platform}", conversation_id=msg.conversation_id, action=outcome,
            final_text=msg.text, details={"outbox_id": msg.id, "message_kind": msg.kind, **details}))

    return record


async def _platform_ctx(app: web.Application) -> AsyncIterator[None]:
    """The deliverer for settings.platform (and the HTTP session it posts with)."""
    settings = app[SETTINGS]
    if settings.platform == "demo":
        platform = DemoPlatform(settings.data_dir / "demo-platform.jsonl", clock=app[CLOCK].now)
        app[DEMO] = platform
        app[DELIVERER] = platform
        yield
        platform.close()
        return
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.delivery_timeout_s))
    if settings.platform == "chatwoot":
        assert settings.chatwoot_base_url and settings.chatwoot_account_id and settings.chatwoot_api_token
        app[DELIVERER] = ChatwootDeliverer(session, base_url=settings.chatwoot_base_url,
                                           account_id=settings.chatwoot_account_id,
                                           token=settings.chatwoot_api_token.get_secret_value())
    else:
        app[DELIVERER] = WebhookDeliverer(session, url=str(settings.webhook_url),
                                          secret=settings.webhook_secret.get_secret_value())
    yield
    await session.close()


async def _outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    outbox = Outbox(app[STATE_DB], app[DELIVERER], clock=app[CLOCK].now,
                    backoff_base_s=settings.delivery_backoff_base_s, backoff_max_s=settings.delivery_backoff_max_s,
                    max_attempts=settings.delivery_max_attempts, on_outcome=_outcome_recorder(app))
    app[OUTBOX] = outbox
    await outbox.start()
    yield
    await outbox.stop()


async def _freeze_startup_objects(app: web.Application) -> None:
    # The phrase library, pinyin tables and guard automata are a quarter-million long-lived
    # objects: a full GC pass over them takes ~130 ms, a latency spike on whichever request
    # triggers it. Moving them to the permanent generation keeps collections to request garbage.
    gc.collect()
    gc.freeze()


def create_app(settings: Settings, *, clock: Any | None = None) -> web.Application:
    """Build the service for `settings`; `clock` (anything with now()) is injectable for tests."""
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[CLOCK] = clock if clock is not None else _WallClock()
    app[EVENT_BUS] = EventBus()
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_state_ctx)
    app.cleanup_ctx.append(_audit_ctx)
    app.cleanup_ctx.append(clock_ctx)  # conversation clock: restores deadlines, subscribes to EVENT_BUS
    setup_routes(app)
    setup_audit_routes(app)
    setup_console_routes(app)
    setup_webhook_routes(app, chatwoot_enabled=settings.platform == "chatwoot")
    if settings.platform == "demo":
        setup_demo_routes(app)
    app.cleanup_ctx.append(_platform_ctx)
    app.cleanup_ctx.append(_outbox_ctx)
    app.on_startup.append(_freeze_startup_objects)  # runs after every cleanup_ctx has started
    return app
