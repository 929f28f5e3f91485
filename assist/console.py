"""The agent console channel and the clock's lifecycle: WebSocket push, polling, persistence, audit.

`ClockService` owns the reminder engine, its one scheduler task and one flush task that writes
changed conversations to state.db and reminder/threshold records to the audit trail in batches.
`ConsoleHub` fans reminder events out to each agent's open WebSockets. Routes:
`GET /v1/console/ws` (agent token; pushes JSON events) and `GET /v1/agents/me/reminders`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import structlog
from aiohttp import WSMsgType, web

from .api_keys import CLOCK, EVENT_BUS, SETTINGS, STATE_DB
from .audit import AUDIT_STORE
from .audit_process import AuditProcess, AuditThread
from .auth import require_role
from .clock import Clock, RealClock
from .clock_sql import ClockStore, restore_state, row_of, upsert_rows
from .errors import BadRequest
from .events import ConversationEvent, Stage
from .reminder_rules import TenantRules
from .reminder_state import ConvState
from .reminders import ReminderEngine

__all__ = ["CLOCK_SERVICE", "ClockService", "ConsoleHub", "clock_ctx", "setup_console_routes", "tenant_rules_from"]

log = structlog.get_logger(__name__)

# How often closed conversations past their retention are forgotten.
_PRUNE_EVERY_S = 3600.0
# Conversations encoded between two yields to the event loop while saving (about 10 µs each), so a
# due timer never waits long behind a save.
_ENCODE_SLICE = 32


class AuditSink(Protocol):
    """The audit store (assist.audit.AuditStore): thread-safe, durable when append_many returns."""

    def append_many(self, events: Any) -> list[int]: ...


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

    def listening(self, tenant: str, agent_id: str | None) -> bool:
        """Whether the agent has a console open (events for nobody are not even built)."""
        return agent_id is not None and (tenant, agent_id) in self._conns

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
                 audit: AuditSink | AuditProcess | None = None, find_wait: Callable[[str], Any] | None = None,
                 hub: ConsoleHub | None = None, closed_retention_s: float = 72 * 3600) -> None:
        self.clock = clock
        self.closed_retention_s = closed_retention_s
        self._pruned_at = float("-inf")
        self.hub = hub or ConsoleHub()
        self.store = store
        self.audit = audit
        self.engine = ReminderEngine(clock=clock, rules_for=rules_for, find_wait=find_wait or _default_find_wait,
                                     deliver=self.hub.push, listening=self.hub.listening)
        self.engine.on_change = self._kick
        self._kicked = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._auditor: asyncio.Task[None] | None = None
        self._audit_kicked = asyncio.Event()
        self._lock = asyncio.Lock()
        self._audit_lock = asyncio.Lock()
        # Reminders come in bursts of thousands: batched transactions cost far less than an awaited
        # AuditWriter.append (task + future) per record. An AuditProcess writes them in a child
        # process (the service does: see audit_process.py); an AuditStore, on the state store's
        # worker thread, which then contends with the event loop for the GIL.
        self._audit_writer: AuditProcess | AuditThread | None = (
            audit if audit is None or isinstance(audit, AuditProcess)
            else AuditThread(audit, store.executor if store is not None else None))  # type: ignore[arg-type]
        self._closing = False

    async def start(self) -> None:
        """Restore persisted conversations, then start the scheduler and the flush task."""
        if self.store is not None:
            await self.store.open()
            await self.store.prune_closed(self.clock.now() - self.closed_retention_s)
            self._pruned_at = self.clock.now()
            rows = await self.store.load()
            for row in rows:
                restore_state(self.engine, row)
            self.engine.restored_at = self.clock.now()
            log.info("clock.restored", conversations=len(rows), timers=len(self.engine.scheduler))
        if self._audit_writer is not None:
            await self._audit_writer.start()
        self._closing = False
        self._flusher = asyncio.create_task(self._run_on_kick(self._kicked, self._flush_and_prune, "clock.flush_failed"),
                                            name="clock-flush")
        self._auditor = asyncio.create_task(self._run_on_kick(self._audit_kicked, self.write_audit, "clock.audit_failed"),
                                            name="clock-audit")
        await self.engine.scheduler.start()

    async def stop(self) -> None:
        """Stop the scheduler, let the flush task finish its batch, write the rest, close."""
        await self.engine.scheduler.stop()
        self._closing = True
        self._kick()
        for task in (self._flusher, self._auditor):
            if task is not None:
                await task  # not cancelled: a cancelled write would lose its batch
        self._flusher = self._auditor = None
        await self.flush()
        await self.write_audit()
        if self._audit_writer is not None:
            await self._audit_writer.close()
        if self.store is not None:
            await self.store.close()

    async def handle(self, event: ConversationEvent) -> None:
        """EventBus subscriber: apply the event, return once its new deadlines are stored.

        Not once queued reminder records are audited too: those are written by their own task,
        so a reply waits for one state.db commit, not for a burst of other conversations' records.
        """
        self.engine.apply(event)
        await self.commit(audit=False)

    def stage(self, event: ConversationEvent) -> Stage | None:
        """EventBus stager: apply the event and hand its conversation's new row to the publisher's
        state.db transaction, so a reply and its deadlines commit together.

        Only when the store writes through the service's StateDB (the publisher's transaction is
        then on the same file). None (take the event through `handle` after the commit) while a
        flush is writing: it may hold an older row of the same conversation, not yet queued, which
        must not be committed after this newer one.
        """
        if self.store is None or self.store.writer is None or self._lock.locked():
            return None
        self.engine.apply(event)
        key = (event.tenant, event.conversation_id)
        packed = self.engine.dirty.pop(key, None)
        if packed is None:
            return Stage(write=lambda conn: None, abort=lambda: None)
        row = row_of(self.engine, ConvState.unpack(packed), self.clock.now())

        def abort() -> None:  # the transaction failed: the flush task writes the row instead
            self.engine.dirty.setdefault(key, packed)
            self._kick()

        return Stage(write=lambda conn: upsert_rows(conn, [row]), abort=abort)

    async def commit(self, *, audit: bool = True) -> None:
        """Wait until every change so far is stored (group commit with other callers), and with
        `audit`, every audit record queued so far is written too."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._kick()
        await fut
        if audit:
            await self.write_audit()

    def _kick(self) -> None:
        self._kicked.set()
        self._audit_kicked.set()

    async def _run_on_kick(self, kicked: asyncio.Event, step: Callable[[], Awaitable[None]], failed: str) -> None:
        """The flush and audit tasks: run `step` after each kick until stopping. What a step fails
        to write is queued again, so the clock keeps running and the next kick retries it."""
        while not self._closing:
            await kicked.wait()
            kicked.clear()
            try:
                await step()
            except Exception:
                log.exception(failed)

    async def write_audit(self) -> None:
        """Write the audit records queued so far; those that fail are queued again (and raised)."""
        async with self._audit_lock:
            records, self.engine.audit_outbox = self.engine.audit_outbox, []
            await self._audit(records)

    async def _flush_and_prune(self) -> None:
        await self.flush()
        if self.clock.now() - self._pruned_at >= _PRUNE_EVERY_S:
            await self.prune_closed()

    async def prune_closed(self) -> int:
        """Forget conversations closed longer ago than the retention, in memory and in state.db."""
        self._pruned_at = now = self.clock.now()
        before = now - self.closed_retention_s
        removed = self.engine.prune_closed(before)
        if self.store is not None:
            await self.store.prune_closed(before)
        if removed:
            log.info("clock.closed_pruned", conversations=removed)
        return removed

    async def flush(self) -> None:
        """Write changed conversations now; failures are re-queued."""
        async with self._lock:
            engine, waiters = self.engine, self._waiters
            self._waiters = []
            states = list(engine.dirty.values())  # packed ConvStates
            engine.dirty.clear()
            err: BaseException | None = None
            try:
                await self._save(states)
            except Exception as exc:
                err = exc
            for f in waiters:
                if not f.done():
                    f.set_exception(err) if err is not None else f.set_result(None)
            if err is not None:
                raise err

    async def _save(self, states: list[tuple[Any, ...]]) -> None:
        if not states or self.store is None:
            return
        now = self.clock.now()
        rows = []
        try:
            for i in range(0, len(states), _ENCODE_SLICE):  # encode in slices; keep the loop free
                rows += [row_of(self.engine, ConvState.unpack(p), now) for p in states[i:i + _ENCODE_SLICE]]
                # CPython starts a young collection when allocations minus deallocations pass 700,
                # and freeing an old object counts too. Events replace conversations' old states
                # while these rows pile up, so the count stays low and the young generation grows
                # to tens of thousands of rows; the collection that finally walks them stalled the
                # clock for 20-300 ms (bench/clock.py: p99 lateness 3.9 -> 2.0 ms with this).
                gc.collect(0)
                await asyncio.sleep(0)
            await self.store.save(rows)
        except Exception:
            for p in states:  # a newer change of the same conversation wins
                self.engine.dirty.setdefault(p[0], p)
            raise

    async def _audit(self, records: list[tuple[Any, ...]]) -> None:
        if not records or self._audit_writer is None:
            return
        try:
            failed = await self._audit_writer.write(records)
        except Exception:
            failed = records
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
    store = app.get(AUDIT_STORE)
    service = ClockService(clock=clock, rules_for=tenant_rules_from(settings),
                           store=ClockStore(settings.state_db, writer=app[STATE_DB]),
                           audit=AuditProcess.for_store(store) if store is not None else None,
                           closed_retention_s=settings.clock_closed_retention_h * 3600)
    await service.start()
    app[CLOCK_SERVICE] = service
    app[EVENT_BUS].subscribe(service.handle, stage=service.stage)
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
