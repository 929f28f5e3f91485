"""AuditWriter: group commit under concurrency, errors reach their caller, acked records survive kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from assist.audit import AuditEvent, AuditQuery, AuditStore, AuditWriter

KEY = b"test-audit-key"


@pytest.fixture
def store(tmp_path):
    s = AuditStore(tmp_path / "audit.db", hmac_key=KEY, checkpoint_every=25)
    yield s
    s.close()


async def test_group_commit_under_200_concurrent_appends(store):
    transactions: list[int] = []
    real = store.append_prepared

    def counting(prepared):  # a spy on the real method: counts transactions, changes nothing
        transactions.append(len(prepared))
        return real(prepared)

    store.append_prepared = counting  # type: ignore[method-assign]
    writer = AuditWriter(store)
    await writer.start()
    events = [AuditEvent(tenant=f"t{i % 4}", kind="send", actor=f"a{i}", original_text=f"回复{i}") for i in range(200)]
    ids = await asyncio.gather(*(writer.append(e) for e in events))
    await writer.stop()
    assert len(set(ids)) == 200
    assert sum(transactions) == 200
    assert len(transactions) < 200  # batched: fewer transactions than appends
    stored = {r.id: r.actor for r in store.iter_query(AuditQuery(limit=1000))}
    assert {stored[rid] for rid in ids} == {f"a{i}" for i in range(200)}
    # Each caller got the id of its own record.
    assert all(stored[rid] == e.actor for rid, e in zip(ids, events))
    assert store.verify().ok


async def test_invalid_event_fails_its_caller_only(store):
    writer = AuditWriter(store)
    await writer.start()
    with pytest.raises(ValueError, match="tenant"):
        await writer.append(AuditEvent(tenant="", kind="send"))
    assert await writer.append(AuditEvent(tenant="t1", kind="send")) == 1
    await writer.stop()


async def test_commit_failure_reaches_every_caller_of_the_batch(store):
    writer = AuditWriter(store)
    await writer.start()
    store.backend._w.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    results = await asyncio.gather(*(writer.append(AuditEvent(tenant="t1", kind="send")) for _ in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    store.backend._w.execute("DROP TRIGGER refuse")
    assert await writer.append(AuditEvent(tenant="t1", kind="send")) == 1  # the chain carries on at seq 1
    await writer.stop()
    assert store.verify().ok


async def test_a_refusing_tenant_fails_only_its_own_callers(store):
    store.append(AuditEvent(tenant="broken", kind="send"))
    store.backend._w.execute("DELETE FROM audit_head WHERE tenant = 'broken'")
    writer = AuditWriter(store)
    await writer.start()
    events = [AuditEvent(tenant="broken" if i % 5 == 0 else "ok", kind="send") for i in range(50)]
    results = await asyncio.gather(*(writer.append(e) for e in events), return_exceptions=True)
    await writer.stop()
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == list(range(0, 50, 5))
    assert store.verify("ok").ok and store.verify("ok").records == 40


async def test_idle_writer_catches_the_text_index_up(store):
    writer = AuditWriter(store)
    await writer.start()
    ids = await asyncio.gather(*(writer.append(AuditEvent(tenant="t1", kind="send", original_text=f"空闲时建索引{i}"))
                                 for i in range(40)))
    for _ in range(500):  # the writer thread indexes when its queue runs dry; wait for that, not for a time
        if store.backend.fts_indexed() == max(ids):
            break
        await asyncio.sleep(0.01)
    await writer.stop()
    assert store.backend.fts_indexed() == max(ids)


async def test_append_before_start_is_an_error(store):
    with pytest.raises(RuntimeError):
        await AuditWriter(store).append(AuditEvent(tenant="t1", kind="send"))


def test_acked_records_survive_kill_9(tmp_path):
    db = tmp_path / "audit.db"
    script = Path(__file__).with_name("audit_kill_writer.py")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(db), "16"], stdout=subprocess.PIPE, env=env, text=True)
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(int(line))
            if len(acked) >= 1500:
                break
        # Mid-stream: the writer thread is in the middle of batches and COMMITs right now.
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        # Printed after its commit, before the kill landed; a line cut short by the kill is no ack.
        acked += [int(x) for x in rest.splitlines(keepends=True) if x.endswith("\n")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = AuditStore(db, hmac_key=b"kill-test-key", checkpoint_every=50)
    try:
        ids = set(store.backend._reader().execute("SELECT id FROM audit").fetchall())
        ids = {i for (i,) in ids}
        missing = [a for a in acked if a not in ids]
        assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
        report = store.verify()
        assert report.ok, report.to_dict()
        assert report.records >= len(acked)
        # The store accepts new records on the recovered chain.
        store.append(AuditEvent(tenant="t0", kind="send"))
        assert store.verify("t0").ok
    finally:
        store.close()
