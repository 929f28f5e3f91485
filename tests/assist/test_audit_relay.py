"""Audit records staged in the deciding state.db transaction reach the audit store exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from assist.audit import AuditEvent, AuditStore
from assist.audit_query import AuditQuery
from assist.audit_relay import AuditRelay, drain
from assist.state_sql import StateDB


@pytest.fixture
def files(tmp_path: Path):
    db = StateDB(tmp_path / "state.db")
    store = AuditStore(tmp_path / "audit.db", hmac_key=b"test-key")
    yield db, store
    db.close()
    store.close()


def kinds(store: AuditStore) -> list[str]:
    return sorted(r.action or "" for r in store.iter_query(AuditQuery(tenant="t1", limit=500)))


def staged_rows(db: StateDB) -> int:
    return db.read(lambda c: c.execute("SELECT count(*) FROM audit_relay").fetchone()[0])


async def send(db: StateDB, store: AuditStore, relay: AuditRelay, action: str, *, fail: bool = False) -> None:
    """One decision: its state write and its audit record in one transaction."""
    prepared = [store.prepare(AuditEvent(tenant="t1", kind="send", action=action, final_text="您好"))]

    def tx(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS replies (action TEXT)")
        conn.execute("INSERT INTO replies VALUES (?)", (action,))
        seq = relay.stage(conn, prepared)
        if fail:
            raise RuntimeError("the decision's own write failed")
        return seq

    relay.committed(await db.run(tx))


async def test_staged_records_reach_the_store_and_the_chain_verifies(files) -> None:
    db, store = files
    relay = AuditRelay(db, store)
    await relay.start()
    for i in range(5):
        await send(db, store, relay, f"a{i}")
    await relay.settle()
    assert kinds(store) == ["a0", "a1", "a2", "a3", "a4"]
    assert store.verify().ok
    await send(db, store, relay, "a5")  # its transaction deletes the rows already relayed
    await relay.settle()
    assert staged_rows(db) <= 1
    await relay.stop()
    assert kinds(store) == [f"a{i}" for i in range(6)]


async def test_a_rolled_back_decision_stages_nothing(files) -> None:
    db, store = files
    relay = AuditRelay(db, store)
    await relay.start()
    with pytest.raises(RuntimeError):
        await send(db, store, relay, "lost", fail=True)
    await send(db, store, relay, "kept")
    await asyncio.wait_for(relay.settle(), 5)
    await relay.stop()
    assert kinds(store) == ["kept"]


async def test_records_a_killed_service_left_staged_are_relayed_once_at_the_next_start(files) -> None:
    db, store = files
    dead = AuditRelay(db, store)  # never started: its process "died" right after the commits
    for i in range(3):
        await send(db, store, dead, f"b{i}")
    assert staged_rows(db) == 3 and kinds(store) == []
    relay = AuditRelay(db, store)
    await relay.start()
    assert kinds(store) == ["b0", "b1", "b2"]
    await relay.stop()
    again = AuditRelay(db, store)  # a second start finds nothing new to append
    await again.start()
    await again.stop()
    assert kinds(store) == ["b0", "b1", "b2"]


async def test_a_crash_between_the_store_commit_and_the_delete_duplicates_nothing(files, tmp_path: Path) -> None:
    db, store = files
    dead = AuditRelay(db, store)
    for i in range(2):
        await send(db, store, dead, f"c{i}")
    # Another relayer (the CLI on a live data directory) appends them; the rows stay staged.
    rows = db.read(lambda c: c.execute("SELECT seq, record FROM audit_relay ORDER BY seq").fetchall())
    from assist.audit_relay import _decode

    store.append_prepared([_decode(r[1]) for r in rows], relayed=[r[0] for r in rows])
    assert staged_rows(db) == 2
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        assert drain(conn, store) == 0  # the store's mark says they are in already
    finally:
        conn.close()
    relay = AuditRelay(db, store)
    await relay.start()
    await relay.stop()
    assert kinds(store) == ["c0", "c1"]
    assert store.verify().ok


async def test_a_tenant_whose_chain_refuses_is_held_and_the_others_go_on(files) -> None:
    db, store = files
    relay = AuditRelay(db, store)
    await relay.start()
    await send(db, store, relay, "before")
    await relay.settle()
    # Tamper: the signed head of tenant t1 disappears, so its chain refuses to grow.
    store.backend._w.execute("DELETE FROM audit_head WHERE tenant = 't1'")
    other = store.prepare(AuditEvent(tenant="t2", kind="send", action="other", final_text="您好"))
    refused = store.prepare(AuditEvent(tenant="t1", kind="send", action="refused", final_text="您好"))

    def tx(conn: sqlite3.Connection) -> int:
        return relay.stage(conn, [refused, other])

    relay.committed(await db.run(tx))
    await asyncio.wait_for(relay.settle(), 5)
    assert [r.action for r in store.iter_query(AuditQuery(tenant="t2"))] == ["other"]
    held = db.read(lambda c: c.execute("SELECT record, error FROM audit_relay_held").fetchall())
    assert len(held) == 1 and "refused" in held[0][0] and "head" in held[0][1]
    await relay.stop()
    again = AuditRelay(db, store)  # each start stages held records once more; still refused: held again
    await again.start()
    await again.settle()
    await again.stop()
    assert db.read(lambda c: c.execute("SELECT count(*) FROM audit_relay_held").fetchone()[0]) == 1
