"""Every SQL statement of the audit store, for SQLite; a PostgreSQL backend would mirror this module.

`AuditStore` (assist/audit.py) holds the logic: hashing, checkpoints, masking, verification. This
module only moves rows in and out. Its public methods are the backend interface; keep it the only
place that speaks SQL so a second backend is one new module.

Durability: the database runs in WAL mode with `synchronous=FULL`. In WAL mode FULL makes every
COMMIT fsync the write-ahead log before it returns, so a transaction the caller saw commit survives
a kill -9 *and* a power cut. `synchronous=NORMAL` only syncs at checkpoints: it survives a killed
process, but a power loss or OS crash may roll back the last transactions that were already
reported committed, which an audit log that acknowledges records must not allow.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "SqliteAuditBackend"]

# Column order of every row this module returns (and of the tuples `insert` takes, minus `id`).
COLUMNS = (
    "id", "tenant", "seq", "at", "kind", "actor", "conversation_id", "action", "rule_ids",
    "categories", "overridden", "original_text", "final_text", "reason", "details",
    "content_hash", "prev_hash", "hash",
)
_COLS = ", ".join(COLUMNS)
_ACOLS = ", ".join(f"a.{c}" for c in COLUMNS)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    conversation_id TEXT,
    action TEXT,
    rule_ids TEXT NOT NULL DEFAULT '[]',
    categories TEXT NOT NULL DEFAULT '[]',
    overridden INTEGER NOT NULL DEFAULT 0,
    original_text TEXT,
    final_text TEXT,
    reason TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    content_hash BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS audit_chain ON audit(tenant, seq);
-- Every listing is "newest first" within a tenant; each filter gets (tenant, column, at) so a
-- first page is an index range scan read backwards, never a sort of the whole table.
CREATE INDEX IF NOT EXISTS audit_at ON audit(tenant, at);
CREATE INDEX IF NOT EXISTS audit_actor ON audit(tenant, actor, at);
CREATE INDEX IF NOT EXISTS audit_conv ON audit(tenant, conversation_id, at);
CREATE INDEX IF NOT EXISTS audit_kind ON audit(tenant, kind, at);
CREATE INDEX IF NOT EXISTS audit_action ON audit(tenant, action, at);
CREATE INDEX IF NOT EXISTS audit_overridden ON audit(tenant, at) WHERE overridden = 1;
-- Rule ids and categories are lists; one row per value makes "rule r1" an index lookup.
CREATE TABLE IF NOT EXISTS audit_tag (
    tenant TEXT NOT NULL, tag TEXT NOT NULL, at REAL NOT NULL, audit_id INTEGER NOT NULL,
    PRIMARY KEY (tenant, tag, at, audit_id)
) WITHOUT ROWID;
-- trigram: Chinese has no spaces, so any 3+ character substring must be findable.
CREATE VIRTUAL TABLE IF NOT EXISTS audit_fts USING fts5(
    original_text, final_text, content='audit', content_rowid='id', tokenize='trigram'
);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    tenant TEXT NOT NULL, seq INTEGER NOT NULL, hash BLOB NOT NULL, mac BLOB NOT NULL,
    PRIMARY KEY (tenant, seq)
);
-- The signed head of each chain: catches records cut off or forged after the last checkpoint.
CREATE TABLE IF NOT EXISTS audit_head (
    tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash BLOB NOT NULL, mac BLOB NOT NULL
);
"""

_INSERT = (
    "INSERT INTO audit (tenant, seq, at, kind, actor, conversation_id, action, rule_ids, categories,"
    " overridden, original_text, final_text, reason, details, content_hash, prev_hash, hash)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a connection in autocommit mode with the store's pragmas (see module docstring)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


class SqliteAuditBackend:
    """The SQLite side of the audit store: one write connection, one read connection per thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._w = connect(self.path)
        self._w.executescript(_SCHEMA)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # -- writing (the caller holds the store's write lock) -------------------------------------

    def begin(self) -> None:
        # IMMEDIATE takes the write lock now, so the chain heads read next cannot go stale.
        self._w.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._w.execute("COMMIT")

    def rollback(self) -> None:
        if self._w.in_transaction:
            self._w.execute("ROLLBACK")

    def tail(self, tenant: str) -> tuple[int, bytes] | None:
        """The last (seq, hash) of a tenant's chain, read inside the write transaction."""
        return self._w.execute(
            "SELECT seq, hash FROM audit WHERE tenant = ? ORDER BY seq DESC LIMIT 1", (tenant,)
        ).fetchone()

    def insert(self, row: Sequence[Any], tags: Sequence[str]) -> int:
        """Insert one record (columns of COLUMNS minus id), its tags and its FTS entry; return id."""
        cur = self._w.execute(_INSERT, row)
        rid = cur.lastrowid
        assert rid is not None
        if tags:
            self._w.executemany(
                "INSERT INTO audit_tag (tenant, tag, at, audit_id) VALUES (?,?,?,?)",
                [(row[0], t, row[2], rid) for t in tags],
            )
        if row[10] is not None or row[11] is not None:
            self._w.execute(
                "INSERT INTO audit_fts (rowid, original_text, final_text) VALUES (?,?,?)",
                (rid, row[10], row[11]),
            )
        return rid

    def checkpoint(self, tenant: str, seq: int, hash_: bytes, mac: bytes) -> None:
        self._w.execute(
            "INSERT INTO audit_checkpoint (tenant, seq, hash, mac) VALUES (?,?,?,?)", (tenant, seq, hash_, mac)
        )

    def set_head(self, tenant: str, seq: int, hash_: bytes, mac: bytes) -> None:
        self._w.execute(
            "INSERT INTO audit_head (tenant, seq, hash, mac) VALUES (?,?,?,?) ON CONFLICT(tenant)"
            " DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
            (tenant, seq, hash_, mac),
        )

    # -- reading (any thread) --------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def tenants(self) -> list[str]:
        rows = self._reader().execute("SELECT DISTINCT tenant FROM audit_head UNION SELECT DISTINCT tenant FROM audit")
        return sorted(r[0] for r in rows)

    def chain(self, tenant: str, *, batch: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
        """Yield a tenant's records in seq order, in batches, plus its checkpoints and head first.

        The first item is `(checkpoints, head)`; everything is read in one snapshot so a verify
        running beside the writer sees a consistent chain.
        """
        conn = connect(self.path, readonly=True)
        try:
            conn.execute("BEGIN")
            cps = conn.execute(
                "SELECT seq, hash, mac FROM audit_checkpoint WHERE tenant = ? ORDER BY seq", (tenant,)
            ).fetchall()
            head = conn.execute("SELECT seq, hash, mac FROM audit_head WHERE tenant = ?", (tenant,)).fetchone()
            yield [(cps, head)]
            cur = conn.execute(f"SELECT {_COLS} FROM audit WHERE tenant = ? ORDER BY seq", (tenant,))
            while rows := cur.fetchmany(batch):
                yield rows
            conn.execute("COMMIT")
        finally:
            conn.close()

    def seq_of_hash(self, tenant: str, hash_: bytes) -> int | None:
        """The seq of the record whose hash is `hash_` (used only to explain a broken link)."""
        row = self._reader().execute(
            "SELECT seq FROM audit WHERE tenant = ? AND hash = ?", (tenant, hash_)
        ).fetchone()
        return row[0] if row else None

    def between(self, tenant: str, since: float, until: float, kinds: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """A tenant's records of `kinds` with since <= at < until, oldest first (for reports)."""
        marks = ",".join("?" * len(kinds))
        cur = connect(self.path, readonly=True)
        try:
            rows = cur.execute(
                f"SELECT {_COLS} FROM audit WHERE tenant = ? AND kind IN ({marks}) AND at >= ? AND at < ?"
                " ORDER BY at, id", (tenant, *kinds, since, until))
            while batch := rows.fetchmany(2000):
                yield from batch
        finally:
            cur.close()

    def page(self, where: dict[str, Any], *, after: tuple[float, int] | None, limit: int) -> list[tuple[Any, ...]]:
        """Records matching `where`, newest first, strictly after the keyset `after` (at, id)."""
        sql, params = _page_sql(where, after, limit)
        return self._reader().execute(sql, params).fetchall()

    def count(self, where: dict[str, Any]) -> int:
        """How many records match `where` (for progress bars)."""
        sql, params = _page_sql(where, None, -1)
        return self._reader().execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]

    def explain(self, where: dict[str, Any], *, after: tuple[float, int] | None, limit: int) -> list[str]:
        sql, params = _page_sql(where, after, limit)
        return [r[-1] for r in self._reader().execute("EXPLAIN QUERY PLAN " + sql, params)]

    def size_bytes(self) -> int:
        r = self._reader()
        pages = r.execute("PRAGMA page_count").fetchone()[0]
        return pages * r.execute("PRAGMA page_size").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._w.close()


def _page_sql(where: dict[str, Any], after: tuple[float, int] | None, limit: int) -> tuple[str, list[Any]]:
    """Build one keyset page query; `where` keys are AuditQuery field names (validated there)."""
    conds: list[str] = []
    params: list[Any] = []
    joins = ""
    tag = where.get("rule_id")
    tag = f"r:{tag}" if tag is not None else (f"c:{where['category']}" if where.get("category") else None)
    if tag is not None and where.get("tenant") is not None:
        # Drive from the tag index, which is already in (at, id) order for this tenant and tag.
        joins = " JOIN audit_tag t ON t.audit_id = a.id AND t.tenant = a.tenant AND t.at = a.at"
        conds += ["t.tenant = ?", "t.tag = ?"]
        params += [where["tenant"], tag]
    if where.get("rule_id") is not None and where.get("category") and joins:
        conds.append("EXISTS (SELECT 1 FROM json_each(a.categories) WHERE value = ?)")
        params.append(where["category"])
    elif tag is not None and not joins:
        col = "rule_ids" if where.get("rule_id") is not None else "categories"
        conds.append(f"EXISTS (SELECT 1 FROM json_each(a.{col}) WHERE value = ?)")
        params.append(tag[2:])
    for key in ("tenant", "actor", "conversation_id", "kind", "action"):
        if where.get(key) is not None:
            conds.append(f"a.{key} = ?")
            params.append(where[key])
    if where.get("since") is not None:
        conds.append("a.at >= ?")
        params.append(where["since"])
    if where.get("until") is not None:
        conds.append("a.at < ?")
        params.append(where["until"])
    if where.get("overridden") is not None:
        conds.append("a.overridden = ?")
        params.append(1 if where["overridden"] else 0)
    text = where.get("text")
    if text:
        if len(text) >= 3:
            conds.append("a.id IN (SELECT rowid FROM audit_fts WHERE audit_fts MATCH ?)")
            params.append('"' + text.replace('"', '""') + '"')
        else:
            # trigram cannot index 1-2 characters; a LIKE scan stops at the first full page.
            esc = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append("(a.original_text LIKE ? ESCAPE '\\' OR a.final_text LIKE ? ESCAPE '\\')")
            params += [f"%{esc}%", f"%{esc}%"]
    # Order by the driving table's columns so the planner reads its index backwards, unsorted.
    at, rid = ("t.at", "t.audit_id") if joins else ("a.at", "a.id")
    if after is not None:
        conds.append(f"({at}, {rid}) < (?, ?)")
        params += list(after)
    sql = f"SELECT {_ACOLS} FROM audit a{joins}"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += f" ORDER BY {at} DESC, {rid} DESC LIMIT ?"
    params.append(limit)
    return sql, params
