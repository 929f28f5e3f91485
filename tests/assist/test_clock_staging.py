"""A reply's new deadlines commit in the reply's own state.db transaction (EventBus.stage)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from clock_support import T0, rules

from assist.clock import ManualClock
from assist.clock_sql import ClockStore
from assist.console import ClockService
from assist.events import ConversationEvent, EventBus
from assist.state_sql import StateDB


def ev(clock: ManualClock, kind: str, text: str | None = None, cid: str = "c1") -> ConversationEvent:
    return ConversationEvent(kind, "t1", cid, "a1", text, clock.now())  # type: ignore[arg-type]


@pytest.fixture
async def setup(tmp_path: Path):
    clock = ManualClock(T0)
    db = StateDB(tmp_path / "state.db")
    svc = ClockService(clock=clock, rules_for=lambda t: rules(), store=ClockStore(tmp_path / "state.db", writer=db))
    await svc.start()
    bus = EventBus()
    bus.subscribe(svc.handle, stage=svc.stage)
    yield clock, db, svc, bus
    await svc.stop()
    db.close()


def response_due(db: StateDB, cid: str = "c1") -> float | None:
    row = db.read(lambda c: c.execute(
        "SELECT response_due FROM clock_conversations WHERE conversation_id = ?", (cid,)).fetchone())
    assert row is not None
    return row[0]


def commits(db: StateDB) -> list[int]:
    """Count state.db commits from now on."""
    count = [0]
    original = db._commit_batch

    def counted(batch):  # type: ignore[no-untyped-def]
        count[0] += 1
        return original(batch)

    db._commit_batch = counted  # type: ignore[method-assign]
    return count


async def test_staged_rows_commit_in_the_publishers_transaction(setup) -> None:
    clock, db, svc, bus = setup
    await bus.publish(ev(clock, "customer_message", "我的快递到哪了?"))
    assert response_due(db) is not None  # the unanswered question has a deadline in state.db
    count = commits(db)
    staged = bus.stage(ev(clock, "agent_message", "您的快递明天送达。"))
    assert staged.stages and not staged.rest

    def reply(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS replies (text TEXT)")
        conn.execute("INSERT INTO replies VALUES ('您的快递明天送达。')")
        staged.write(conn)

    await db.run(reply)
    assert response_due(db) is None  # answered: cleared in the same commit as the reply
    await staged.committed()
    await asyncio.sleep(0.05)  # give the flush task its chance: it has nothing left to write
    assert count[0] == 1
    assert not svc.engine.dirty


async def test_a_failed_transaction_leaves_the_rows_to_the_flush_task(setup) -> None:
    clock, db, svc, bus = setup
    await bus.publish(ev(clock, "customer_message", "在吗?"))
    staged = bus.stage(ev(clock, "agent_message", "在的,请问有什么可以帮您?"))

    def failing(conn: sqlite3.Connection) -> None:
        staged.write(conn)
        raise RuntimeError("the reply's own write failed")

    with pytest.raises(RuntimeError):
        await db.run(failing)
    assert response_due(db) is not None  # rolled back with the reply
    staged.aborted()
    await svc.commit()
    assert response_due(db) is None  # the engine applied the event; its row is written after all


async def test_no_staging_while_a_flush_is_writing(setup) -> None:
    clock, db, svc, bus = setup
    await bus.publish(ev(clock, "customer_message", "在吗?"))
    async with svc._lock:  # a flush in progress may hold an older row of the same conversation
        staged = bus.stage(ev(clock, "agent_message", "您好,请讲。"))
        assert not staged.stages and staged.rest == [svc.handle]
        assert response_due(db) is not None  # not applied yet: it goes through handle after the commit
    await db.run(staged.write)
    await staged.committed()
    assert response_due(db) is None


async def test_a_failing_stager_gets_the_event_after_the_commit(setup) -> None:
    clock, db, _, bus = setup
    seen: list[str] = []

    def broken(event: ConversationEvent) -> None:
        raise RuntimeError("bug")

    async def handler(event: ConversationEvent) -> None:
        seen.append(event.kind)

    bus.subscribe(handler, stage=broken)  # type: ignore[arg-type]
    staged = bus.stage(ev(clock, "customer_message", "在吗?"))
    assert staged.rest == [handler]
    await db.run(staged.write)
    await staged.committed()
    assert seen == ["customer_message"]


async def test_a_large_flush_leaves_the_young_generation_small(setup) -> None:
    """Rows encoded for a flush are collected young, slice by slice. CPython's young-generation
    counter is allocations minus deallocations, and freeing an *old* object counts: while the
    rest of the service frees old objects (events replacing conversations' states), the counter
    stays low and, without the per-slice collection, every row of the flush piles up young."""
    import gc

    clock, db, svc, _ = setup
    n = 3000
    for i in range(n):
        svc.engine.apply(ev(clock, "customer_message", "在吗?", cid=f"c{i}"))
    old = [[] for _ in range(40 * n)]  # tracked objects, made old by the next line
    gc.collect()
    peak = 0

    async def free_old() -> None:  # the rest of the service, freeing old objects meanwhile
        nonlocal peak
        while old:
            del old[-400:]
            peak = max(peak, len(gc.get_objects(0)))  # what a young collection now would walk
            await asyncio.sleep(0)

    await asyncio.gather(svc.commit(), free_old())
    assert response_due(db, f"c{n - 1}") is not None
    assert peak < 1000  # without the per-slice collection: most of the 3,000 rows at once
