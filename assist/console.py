"""The agent console channel and the clock's lifecycle: WebSocket push, polling, persistence, audit.

`ClockService` owns the reminder engine, its one scheduler task and one flush task that writes
changed conversations to state.db and reminder/threshold records to the audit trail in batches.
`ConsoleHub` fans reminder events out to each agent's open WebSockets. Routes:
`GET /v1/console/ws` (agent token; pushes JSON events) and `GET /v1/agents/me/reminders`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import structlog
from aiohttp import WSMsgType, web

from .api_keys import CLOCK, EVENT_BUS, SETTINGS
from .audit import AUDIT_WRITER
from .auth import require_role
from .clock import Clock, RealClock
from .clock_sql import ClockStore, restore_state, row_of
from .errors import BadRequest
from .events import ConversationEvent
from .reminders import AuditNote, ReminderEngine, TenantRules

__all__ = ["CLOCK_SERVICE", "ClockService", "ConsoleHub", "clock_ctx", "setup_console_routes", "tenant_rules_from"]

log = structlog.get_logger(__name__)


class AuditSink(Protocol):
    async def append(self, event: Any) -> int: ...


class ConsoleHub:
    """Open console sockets per (tenant, agent); each has a bounded queue drained by its sender."""

    def __init__(self, *, queue_size: int = 512) -> None:
        self._queue_size = queue_size
        self._conns: dict[tuple[str, str], set[asyncio.Queue[dict[str, Any]]]] = {}
        self.dropped = 0

    def connect(self, tenant: str, agent_id: str) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._conns.setdefault((tenant, agent_id), set()).add(q)
        return q

    def disconnect(self, tenant: str, agent_id: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        qs = self._conns.get((tenant, agent_id))
        if qs is not None:
            qs.discard(q)
            if not qs:
                del self._conns[(tenant, agent_id)]

    def push(self, tenant: str, agent_id: str | None, event: dict[str, Any]) -> None:
        """Queue `event` for every socket of the agent; never blocks the scheduler."""
        if agent_id is None:
            return
        for q in self._conns.get((tenant, agent_id), ()):
            if q.full():  # a stalled console loses its oldest push; the pending list still has it
                q.get_nowait()
                self.dropped += 1
            q.put_nowait(event)


def _default_find_wait(text: str) -> Any:
    from guards.waits import find_wait

    return find_wait(text)


class ClockService:
    """The conversation clock as a running part of the service."""

    def __init__(self, *, clock: Clock, rules_for: Callable[[str], TenantRules], store: ClockStore | None,
                 audit: AuditSink | None = None, find_wait: Callable[[str], Any] | None = None,
                 hub: ConsoleHub | None = None) -> None:
        self.clock = clock
        self.hub = hub or ConsoleHub()
        self.store = store
        self.audit = audit
        self.engine = ReminderEngine(clock=clock, rules_for=rules_for, find_wait=find_wait or _default_find_wait,
                                     deliver=self.hub.push)
        self.engine.on_change = self._kick
        self._kicked = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False

    async def start(self) -> None:
        """Restore persisted conversations, then start the scheduler and the flush task."""
        if self.store is not None:
            await self.store.open()
            rows = await self.store.load()
            for row in rows:
                restore_state(self.engine, row)
            self.engine.restored_at = self.clock.now()
            log.info("clock.restored", conversations=len(rows), timers=len(self.engine.scheduler))
        self._closing = False
        self._flusher = asyncio.create_task(self._flush_loop(), name="clock-flush")
        await self.engine.scheduler.start()

    async def stop(self) -> None:
        """Stop the scheduler, let the flush task finish its batch, write the rest, close."""
        await self.engine.scheduler.stop()
        self._closing = True
        self._kick()
        if self._flusher is not None:
            await self._flusher  # not cancelled: a cancelled write would lose its batch
            self._flusher = None
        await self.flush()
        if self.store is not None:
            await self.store.close()

    async def handle(self, event: ConversationEvent) -> None:
        """EventBus subscriber: apply the event, return once its new deadlines are stored."""
        self.engine.apply(event)
        await self.commit()

    async def commit(self) -> None:
        """Wait until everything changed so far is written (group commit with other callers)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._kick()
        await fut

    def _kick(self) -> None:
        self._kicked.set()

    async def _flush_loop(self) -> None:
        while not self._closing:
            await self._kicked.wait()
            self._kicked.clear()
            try:
                await self.flush()
            except Exception:  # keep the clock running; what failed is queued again for the next try
                log.exception("clock.flush_failed")

    async def flush(self) -> None:
        """Write changed conversations and queued audit records now; failures are re-queued."""
        async with self._lock:
            engine, waiters = self.engine, self._waiters
            self._waiters = []
            states = list(engine.dirty)
            engine.dirty.clear()
            records, engine.audit_outbox = engine.audit_outbox, []
            try:
                if states and self.store is not None:
                    now = self.clock.now()
                    try:
                        await self.store.save([row_of(st, now) for st in states])
                    except Exception:
                        engine.dirty.update(states)
                        raise
                if records and self.audit is not None:
                    await self._audit(records)
            except Exception as err:
                for f in waiters:
                    if not f.done():
                        f.set_exception(err)
                raise
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    async def _audit(self, records: list[AuditNote]) -> None:
        from .audit import AuditEvent

        assert self.audit is not None
        failed: list[AuditNote] = []
        # The writer commits concurrent appends together; chunks bound the futures in flight.
        for i in range(0, len(records), 1000):
            chunk = records[i:i + 1000]
            results = await asyncio.gather(
                *(self.audit.append(AuditEvent(tenant=r.tenant, kind=r.kind, actor=r.actor,
                                               conversation_id=r.conversation_id, action=r.action,
                                               details=r.details, at=r.at)) for r in chunk),
                return_exceptions=True)
            failed += [r for r, res in zip(chunk, results) if isinstance(res, BaseException)]
        if failed:
            self.engine.audit_outbox[:0] = failed
            raise RuntimeError(f"{len(failed)} audit record(s) not written; queued again")


CLOCK_SERVICE = web.AppKey("clock_service", ClockService)


def tenant_rules_from(settings: Any) -> Callable[[str], TenantRules]:
    """Per-tenant rules from Settings (library thresholds and templates, policy time zone), cached."""
    cache: dict[str, TenantRules] = {}

    def rules_for(tenant: str) -> TenantRules:
        found = cache.get(tenant)
        if found is None:
            key = tenant if settings.policy(tenant) is not None else "default"
            found = cache[tenant] = TenantRules.from_library(settings.library_for(key),
                                                             settings.tenants[key].timezone)
        return found

    return rules_for


async def clock_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx for create_app, after the audit context: runs the clock and subscribes it."""
    app_clock = app[CLOCK]
    # The app's clock may be a plain now()-only clock; the scheduler then waits on the real one.
    clock = app_clock if hasattr(app_clock, "sleep_until") else RealClock()
    settings = app[SETTINGS]
    service = ClockService(clock=clock, rules_for=tenant_rules_from(settings),
                           store=ClockStore(settings.state_db), audit=app.get(AUDIT_WRITER))
    await service.start()
    app[CLOCK_SERVICE] = service
    app[EVENT_BUS].subscribe(service.handle)
    try:
        yield
    finally:
        app[EVENT_BUS].unsubscribe(service.handle)
        await service.stop()


def _agent_of(request: web.Request) -> tuple[str, str]:
    principal = require_role(request, "agent")
    agent_id = principal.agent_id or request.query.get("agent_id")
    if not agent_id:
        raise BadRequest("a token without an agent id must name one: ?agent_id=<id>",
                         code="agent_id_required", details=[{"loc": "query.agent_id", "msg": "required"}])
    return principal.tenant, agent_id


async def list_reminders(request: web.Request) -> web.Response:
    """GET /v1/agents/me/reminders: the caller's pending reminders and suggestions."""
    tenant, agent_id = _agent_of(request)
    pending = request.app[CLOCK_SERVICE].engine.pending_for(tenant, agent_id)
    return web.json_response({"agent_id": agent_id, "reminders": pending})


async def console_ws(request: web.Request) -> web.WebSocketResponse:
    """GET /v1/console/ws: a snapshot of pending reminders, then every new one as it fires."""
    tenant, agent_id = _agent_of(request)  # refuse before the upgrade, so the error is JSON
    service = request.app[CLOCK_SERVICE]
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    queue = service.hub.connect(tenant, agent_id)
    log.info("console.connected", agent_id=agent_id)

    async def sender() -> None:
        while True:
            await ws.send_json(await queue.get())

    task = asyncio.create_task(sender())
    try:
        await ws.send_json({"type": "snapshot", "reminders": service.engine.pending_for(tenant, agent_id)})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_json({"type": "pong"})
    finally:
        service.hub.disconnect(tenant, agent_id, queue)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
        log.info("console.disconnected", agent_id=agent_id)
    return ws


def setup_console_routes(app: web.Application) -> None:
    """Register the console WebSocket and the polling endpoint."""
    app.router.add_get("/v1/console/ws", console_ws)
    app.router.add_get("/v1/agents/me/reminders", list_reminders)
