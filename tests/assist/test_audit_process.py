"""The clock's audit child process: records land in the shared store; a dead child loses nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assist.audit import AuditEvent, AuditStore
from assist.audit_process import AuditProcess
from assist.reminder_state import AuditNote


def _note(cid: str, at: float) -> tuple:
    return tuple(AuditNote(tenant="t1", kind="reminder", actor="agent:a1", conversation_id=cid,
                           action="response.pre_warn", typ="reminder", due=at + 15, late=False,
                           template_id=None, lateness_s=0.0, at=at))


def _conversations(store: AuditStore) -> list[str]:
    from assist.audit_query import AuditQuery

    return sorted(r.conversation_id for r in store.iter_query(AuditQuery(kind="reminder", limit=500)))


@pytest.fixture
async def store_and_child(tmp_path: Path) -> AsyncIterator[tuple[AuditStore, AuditProcess]]:
    store = AuditStore(tmp_path / "audit.db", hmac_key=b"k")
    child = AuditProcess.for_store(store)
    await child.start()
    yield store, child
    await child.close()
    store.close()


async def test_child_writes_into_the_store_beside_an_in_process_writer(store_and_child) -> None:
    store, child = store_and_child
    now = time.time()
    assert await child.write([_note("c1", now), _note("c2", now)]) == []
    # The in-process writer extends the same chain between the child's batches.
    store.append(AuditEvent(tenant="t1", kind="send", actor="agent:a1", conversation_id="c3", action="pass"))
    assert await child.write([_note("c4", now)]) == []
    assert _conversations(store) == ["c1", "c2", "c4"]
    assert store.verify().ok


async def test_a_dead_child_hands_its_batch_back_and_the_next_batch_gets_a_new_one(store_and_child) -> None:
    store, child = store_and_child
    pool = child._executor()
    pids = list(pool._processes)  # the one worker
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    notes = [_note("c1", time.time())]
    assert await child.write(notes) == notes  # reported failed, for the clock to queue again
    assert await child.write(notes) == []  # a new child writes it
    assert _conversations(store) == ["c1"]
    assert store.verify().ok
