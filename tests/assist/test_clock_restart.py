"""Deadlines survive a crash: restored from state.db, those passed while down fire at once, late."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from assist.audit import AuditStore
from assist.audit_process import AuditProcess
from assist.audit_query import AuditQuery
from assist.clock import ManualClock
from assist.clock_sql import ClockStore
from assist.console import ClockService
from assist.events import ConversationEvent
from assist.state_sql import StateDB
from clock_support import NIGHT, rules

HERE = Path(__file__).parent


@pytest.fixture
def audit(tmp_path: Path):
    store = AuditStore(tmp_path / "audit.db", hmac_key=b"test-key")
    yield store
    store.close()


def service(tmp_path: Path, clock: ManualClock, audit: AuditStore | None = None,
            writer: StateDB | None = None, audit_process: bool = False) -> ClockService:
    sink = AuditProcess.for_store(audit) if audit is not None and audit_process else audit
    return ClockService(clock=clock, rules_for=lambda t: rules(),
                        store=ClockStore(tmp_path / "state.db", writer=writer), audit=sink)


def ev(clock: ManualClock, kind: str, cid: str, text: str | None = None, agent: str = "a1") -> ConversationEvent:
    return ConversationEvent(kind, "t1", cid, agent, text, clock.now())  # type: ignore[arg-type]


async def crash(svc: ClockService) -> None:
    """Stop without the orderly final flush: what is in state.db is what was committed."""
    await svc.engine.scheduler.stop()
    assert svc._flusher is not None and svc._auditor is not None
    for task in (svc._flusher, svc._auditor):
        task.cancel()  # a real crash may hit mid-write; only committed rows count
    await asyncio.gather(svc._flusher, svc._auditor, return_exceptions=True)
    assert svc.store is not None
    await svc.store.close()
    if isinstance(svc.audit, AuditProcess):
        await svc.audit.close()


def audited(store: AuditStore, kind: str) -> list[tuple[str | None, str | None, bool]]:
    page = store.query(AuditQuery(kind=kind, limit=500), keep_original=True)
    return sorted((r.conversation_id, r.action, r.details["late"]) for r in page.records)


@pytest.mark.parametrize(("through_state_writer", "audit_process"), [(False, False), (True, True)],
                         ids=["own-connection+audit-thread", "state-writer+audit-process"])
async def test_reopened_database_restores_deadlines_and_fires_missed_ones_late(
    tmp_path: Path, audit, through_state_writer: bool, audit_process: bool
) -> None:
    """Alone the store writes on its own connection and audits on its thread; in the service, the
    StateDB writer commits its rows and a child process its audit records."""
    store = audit
    clock = ManualClock(NIGHT)
    writers = [StateDB(tmp_path / "state.db") for _ in range(2)] if through_state_writer else [None, None]
    svc = service(tmp_path, clock, store, writers[0], audit_process)
    await svc.start()
    await svc.handle(ev(clock, "customer_message", "c1", "请问发货了吗"))
    await svc.handle(ev(clock, "agent_message", "c2", "请您稍等2分钟"))
    await svc.handle(ev(clock, "customer_message", "c3", "谢谢"))
    await svc.handle(ev(clock, "agent_message", "c3", "不客气"))
    await svc.handle(ev(clock, "closed", "c3"))
    await clock.advance(46)  # c1's pre-warning fires before the crash
    await svc.commit()
    assert [p["rule"] for p in svc.engine.pending_for("t1", "a1")] == ["response.pre_warn"]
    await crash(svc)

    clock.set(NIGHT + 200)  # the service was down for two and a half minutes
    svc2 = service(tmp_path, clock, store, writers[1], audit_process)
    await svc2.start()
    await clock.settle()
    pending = {(p["conversation_id"], p["rule"]): p for p in svc2.engine.pending_for("t1", "a1")}
    assert set(pending) == {("c1", "response.overdue"), ("c2", "wait.overdue")}
    assert all(p["late"] for p in pending.values())
    assert pending[("c1", "response.overdue")]["seconds_left"] == -140.0
    # Once-only suggestions stay once-only across the restart, and a closed conversation reopens.
    assert svc2.engine.get("t1", "c3") is None
    await svc2.handle(ev(clock, "customer_message", "c3", "多谢"))
    assert svc2.engine.get("t1", "c3").open is True
    assert [p["rule"] for p in svc2.engine.pending_for("t1", "a1") if p["type"] == "suggestion"] == []
    await svc2.stop()

    assert audited(store, "threshold_missed") == [("c1", "response.overdue", True), ("c2", "wait.overdue", True)]
    assert audited(store, "reminder") == [
        ("c1", "response.overdue", True), ("c1", "response.pre_warn", False), ("c2", "wait.overdue", True),
        ("c2", "wait.pre_warn", True), ("c3", "thanks.reply", False)]
    for writer in writers:
        if writer is not None:
            writer.close()


CHILD = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[3])
from assist.clock import ManualClock
from assist.clock_sql import ClockStore
from assist.console import ClockService
from assist.events import ConversationEvent
from assist.state_sql import StateDB
from clock_support import rules

async def main():
    clock = ManualClock(float(sys.argv[2]))
    svc = ClockService(clock=clock, rules_for=lambda t: rules(), store=ClockStore(sys.argv[1]))
    await svc.start()
    for kind, cid, text in [("customer_message", "k1", "请问发货了吗"), ("agent_message", "k2", "请稍等"),
                            ("agent_message", "k3", "请您稍等3分钟")]:
        await svc.handle(ConversationEvent(kind, "t1", cid, "a1", text, clock.now()))
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_kill_9_then_restart_fires_passed_deadlines_late_and_keeps_the_rest(tmp_path: Path, audit) -> None:
    store = audit
    db = tmp_path / "state.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(NIGHT), str(HERE)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] not in ("ready", ""):  # log lines may come first
            lines.append((await asyncio.to_thread(child.stdout.readline)).strip())
        assert lines[-1] == "ready", lines
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    clock = ManualClock(NIGHT + 90)  # down for 90 s: past k1's 60 s and k2's 1 min, not k3's 3 min
    svc = service(tmp_path, clock, store)
    await svc.start()
    await clock.settle()
    fired = {(p["conversation_id"], p["rule"], p["late"]) for p in svc.engine.pending_for("t1", "a1")}
    assert fired == {("k1", "response.overdue", True), ("k2", "wait.overdue", True)}
    await clock.advance(75)  # k3's pre-warning (165 s) fires on time, after the restart
    k3 = [p for p in svc.engine.pending_for("t1", "a1") if p["conversation_id"] == "k3"]
    assert [(p["rule"], p["late"], p["seconds_left"]) for p in k3] == [("wait.pre_warn", False, 15.0)]
    await clock.advance(15)
    await svc.stop()
    assert audited(store, "threshold_missed") == [
        ("k1", "response.overdue", True), ("k2", "wait.overdue", True), ("k3", "wait.overdue", False)]


async def test_closed_conversations_past_the_retention_leave_state_db(tmp_path: Path) -> None:
    clock = ManualClock(NIGHT)
    svc = ClockService(clock=clock, rules_for=lambda t: rules(), store=ClockStore(tmp_path / "state.db"),
                       closed_retention_s=3600)
    await svc.start()
    await svc.handle(ev(clock, "customer_message", "old", "谢谢"))
    await svc.handle(ev(clock, "closed", "old"))
    await clock.advance(3000)
    await svc.handle(ev(clock, "customer_message", "new", "谢谢"))
    await svc.handle(ev(clock, "closed", "new"))
    await clock.advance(900)  # "old" closed 3,900 s ago, "new" 900 s ago
    assert await svc.prune_closed() == 1
    assert set(svc.engine.closed["t1"]) == {"new"}
    await svc.stop()

    svc2 = ClockService(clock=clock, rules_for=lambda t: rules(), store=ClockStore(tmp_path / "state.db"),
                        closed_retention_s=3600)
    await svc2.start()
    assert set(svc2.engine.closed["t1"]) == {"new"}  # the old row is gone from state.db too
    await svc2.stop()
