"""Tampering with the audit file by direct SQL is detected, and verify names the first bad record."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assist.audit import AuditEvent, AuditIntegrityError, AuditQuery, AuditStore, canonical_content
from assist.audit_mask import scrub_secrets
from assist.audit_sql import COLUMNS

KEY = b"test-audit-key"


@pytest.fixture
def store(tmp_path):
    s = AuditStore(tmp_path / "audit.db", hmac_key=KEY, checkpoint_every=10)
    s.append_many([
        AuditEvent(tenant="t1", kind="send", actor="a1", conversation_id="c1", at=1000.0 + i,
                   original_text=f"第{i + 1}条回复", final_text=f"第{i + 1}条回复")
        for i in range(25)
    ])
    s.append_many([AuditEvent(tenant="t2", kind="check", original_text="另一租户", at=2000.0)] * 3)
    yield s
    s.close()


def _sql(store: AuditStore, *statements: str, params: tuple = ()) -> sqlite3.Connection:
    conn = sqlite3.connect(store.path)
    for st in statements:
        conn.execute(st, params)
    conn.commit()
    return conn


def _problem(store: AuditStore):
    report = store.verify()
    assert not report.ok
    tenant, problem = report.first_problem
    assert tenant == "t1"
    assert store.verify("t2").ok  # the other tenant's chain is untouched
    return problem


def _rehash_from(conn: sqlite3.Connection, seq: int) -> None:
    """What an attacker without the key can do: recompute every hash from `seq` on."""
    rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit WHERE tenant='t1' ORDER BY seq").fetchall()
    prev = bytes(32)
    for r in rows:
        if r[2] >= seq:
            ch = hashlib.sha256(canonical_content(r)).digest()
            h = hashlib.sha256(prev + ch).digest()
            conn.execute("UPDATE audit SET content_hash=?, prev_hash=?, hash=? WHERE id=?", (ch, prev, h, r[0]))
            prev = h
        else:
            prev = r[17]
    conn.commit()


def test_untouched_chain_verifies(store):
    report = store.verify()
    assert report.ok and report.records == 28


def test_changed_text_is_named(store):
    _sql(store, "UPDATE audit SET final_text='改过的' WHERE tenant='t1' AND seq=7")
    p = _problem(store)
    assert (p.kind, p.seq) == ("changed", 7)
    assert "seq 7" in p.message


def test_changed_text_with_recomputed_content_hash_is_named(store):
    conn = _sql(store, "UPDATE audit SET actor='a9' WHERE tenant='t1' AND seq=4")
    row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit WHERE tenant='t1' AND seq=4").fetchone()
    conn.execute("UPDATE audit SET content_hash=? WHERE id=?", (hashlib.sha256(canonical_content(row)).digest(), row[0]))
    conn.commit()
    p = _problem(store)
    assert (p.kind, p.seq) == ("changed", 4)


def test_deleted_row_is_named(store):
    _sql(store, "DELETE FROM audit WHERE tenant='t1' AND seq=12")
    p = _problem(store)
    assert (p.kind, p.seq) == ("deleted", 12)


def test_deleted_row_with_renumbering_is_named(store):
    _sql(store, "DELETE FROM audit WHERE tenant='t1' AND seq=12",
         "UPDATE audit SET seq=-(seq-1) WHERE tenant='t1' AND seq>12",
         "UPDATE audit SET seq=-seq WHERE tenant='t1' AND seq<0")
    p = _problem(store)
    assert (p.kind, p.seq) == ("deleted", 12)


def test_deleted_tail_is_named(store):
    _sql(store, "DELETE FROM audit WHERE tenant='t1' AND seq>=24")
    p = _problem(store)
    assert (p.kind, p.seq) == ("deleted", 24)


def test_inserted_row_is_named(store):
    conn = _sql(store, "UPDATE audit SET seq=-(seq+1) WHERE tenant='t1' AND seq>=6",
                "UPDATE audit SET seq=-seq WHERE tenant='t1' AND seq<0")
    prev = conn.execute("SELECT hash FROM audit WHERE tenant='t1' AND seq=5").fetchone()[0]
    # A well-formed forged record: correct content hash and link to seq 5.
    row = (None, "t1", 6, 1_004_500_000, "send", "a1", "c1", None, "[]", "[]", 0, "伪造", "伪造", None, "{}")
    ch = hashlib.sha256(canonical_content(row)).digest()
    h = hashlib.sha256(prev + ch).digest()
    conn.execute(f"INSERT INTO audit ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * 17)})", (*row[1:], ch, prev, h))
    conn.commit()
    p = _problem(store)
    assert (p.kind, p.seq) == ("inserted", 6)


def test_row_with_a_repeated_seq_is_named(store):
    conn = sqlite3.connect(store.path)
    row = conn.execute(f"SELECT {', '.join(COLUMNS[1:])} FROM audit WHERE tenant='t1' AND seq=9").fetchone()
    conn.execute(f"INSERT INTO audit ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * 17)})", row)
    conn.commit()
    p = _problem(store)
    assert (p.kind, p.seq) == ("inserted", 9)


def test_truncated_tail_stays_visible_after_new_appends(store):
    _sql(store, "DELETE FROM audit WHERE tenant='t1' AND seq>=22")
    store.append(AuditEvent(tenant="t1", kind="send", original_text="之后的记录"))
    p = _problem(store)
    # The new record continues from the signed head (seq 26), so the gap is still there.
    assert (p.kind, p.seq) == ("deleted", 22)


def test_append_refuses_a_chain_whose_head_was_removed(store):
    _sql(store, "DELETE FROM audit_head WHERE tenant='t1'")
    with pytest.raises(AuditIntegrityError, match="no signed head"):
        store.append(AuditEvent(tenant="t1", kind="send"))
    store.append(AuditEvent(tenant="t2", kind="send"))  # other tenants keep working
    assert store.verify("t2").ok


def test_append_refuses_with_the_wrong_key(store, tmp_path):
    other = AuditStore(store.path, hmac_key=b"not-the-key")
    with pytest.raises(AuditIntegrityError, match="audit_hmac_key"):
        other.append(AuditEvent(tenant="t1", kind="send"))
    other.close()


def test_swapped_rows_are_named(store):
    _sql(store, "UPDATE audit SET seq=-1 WHERE tenant='t1' AND seq=3",
         "UPDATE audit SET seq=3 WHERE tenant='t1' AND seq=8",
         "UPDATE audit SET seq=8 WHERE tenant='t1' AND seq=-1")
    p = _problem(store)
    assert (p.kind, p.seq) == ("reordered", 3)


def test_swapped_adjacent_contents_are_named(store):
    conn = sqlite3.connect(store.path)
    cols = [c for c in COLUMNS if c not in ("id", "seq")]
    a = conn.execute(f"SELECT {', '.join(cols)} FROM audit WHERE tenant='t1' AND seq=15").fetchone()
    b = conn.execute(f"SELECT {', '.join(cols)} FROM audit WHERE tenant='t1' AND seq=16").fetchone()
    sets = ", ".join(f"{c}=?" for c in cols)
    conn.execute(f"UPDATE audit SET {sets} WHERE tenant='t1' AND seq=15", b)
    conn.execute(f"UPDATE audit SET {sets} WHERE tenant='t1' AND seq=16", a)
    conn.commit()
    p = _problem(store)
    assert (p.kind, p.seq) == ("reordered", 15)


def test_rewritten_chain_without_key_fails_at_next_checkpoint(store):
    conn = _sql(store, "UPDATE audit SET final_text='改过的' WHERE tenant='t1' AND seq=13")
    _rehash_from(conn, 13)
    p = _problem(store)
    assert (p.kind, p.seq) == ("checkpoint", 20)  # checkpoints every 10: the first after seq 13


def test_rewritten_tail_without_key_fails_at_signed_head(store):
    conn = _sql(store, "UPDATE audit SET final_text='改过的' WHERE tenant='t1' AND seq=24")
    _rehash_from(conn, 24)
    p = _problem(store)
    assert p.kind == "checkpoint" and p.seq == 25


def test_wrong_key_is_reported_at_first_checkpoint(store):
    report = store.verify(key=b"another-key")
    assert not report.ok
    tenant, p = report.first_problem
    assert (tenant, p.kind, p.seq) == ("t1", "checkpoint", 10)
    assert "HMAC" in p.message


def test_forged_checkpoint_mac_is_reported(store):
    _sql(store, "UPDATE audit_checkpoint SET mac=zeroblob(32) WHERE tenant='t1' AND seq=20")
    p = _problem(store)
    assert (p.kind, p.seq) == ("checkpoint", 20)


def test_removed_head_is_reported(store):
    _sql(store, "DELETE FROM audit_head WHERE tenant='t1'")
    p = _problem(store)
    assert p.kind == "head"


def test_python_and_sqlite_build_the_same_canonical_json(tmp_path):
    """Writes hash Python's JSON, verify hashes SQLite's json_array: they must agree byte for byte."""
    nasty = "".join(chr(c) for c in range(0, 32)) + '"\\/\u2028\u2029\x7f 中文 😀 é'
    s = AuditStore(tmp_path / "a.db", hmac_key=KEY)
    s.append(AuditEvent(tenant=nasty, kind=nasty, actor=nasty, conversation_id=nasty, action=nasty,
                        rule_ids=(nasty,), categories=(nasty, "x"), original_text=nasty, final_text=nasty,
                        reason=nasty, details={"k": nasty, "n": [1, 2.5, None, True]}, at=1_767_225_600.123457))
    s.append(AuditEvent(tenant="t", kind="send"))  # all the None fields
    conn = sqlite3.connect(s.path)
    for row in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit"):
        [sql_json] = conn.execute(
            "SELECT CAST(json_array(tenant, at_us, kind, actor, conversation_id, action, rule_ids, categories,"
            " overridden, original_text, final_text, reason, details) AS BLOB) FROM audit WHERE id = ?", (row[0],)
        ).fetchone()
        assert sql_json == canonical_content(row)
    assert s.verify().ok
    s.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), min_size=1, max_size=5))
def test_any_text_round_trips_and_verifies(tmp_path, texts):
    s = AuditStore(tmp_path / f"h{abs(hash(tuple(texts)))}.db", hmac_key=KEY)
    try:
        s.append_many([AuditEvent(tenant="t", kind="send", original_text=t, final_text=t[::-1], reason=t,
                                  details={t: t}) for t in texts])
        assert s.verify().ok
        got = [r.original_text for r in s.query(AuditQuery(tenant="t", limit=10), keep_original=True).records]
        assert got == [scrub_secrets(t) for t in reversed(texts)]
    finally:
        s.close()
