"""Every SQL statement of the audit store, for SQLite; a PostgreSQL backend would mirror this module.

`AuditStore` (assist/audit.py) holds the logic: hashing, checkpoints, masking, verification. This
module only moves rows in and out. Its public methods are the backend interface; keep it the only
place that speaks SQL so a second backend is one new module.

Durability: the database runs in WAL mode with `synchronous=FULL`. In WAL mode FULL makes every
COMMIT fsync the write-ahead log before it returns, so a transaction the caller saw commit survives
a kill -9 *and* a power cut. `synchronous=NORMAL` only syncs at checkpoints: it survives a killed
process, but a power loss or OS crash may roll back the last transactions that were already
reported committed, which an audit log that acknowledges records must not allow.

Times are stored as integer microseconds (`at_us`): exact, sortable, and the same JSON number
whether Python or SQLite writes it, which lets verification build each record's canonical JSON in
SQLite (`json_array`, see `chain`) instead of decoding every column into Python.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .state_sql import begin_immediate

__all__ = ["COLUMNS", "FTS_BATCH", "FTS_DRIVE_MAX", "SqliteAuditBackend"]

# Up to this many full-text candidates, a query is driven by their rowids (see _candidates).
FTS_DRIVE_MAX = 5000
# The FTS index is brought up to date once this many records wait (or when the writer is idle).
FTS_BATCH = 2000

# Column order of every row this module returns (and of the tuples `insert` takes, minus `id`).
COLUMNS = (
    "id", "tenant", "seq", "at_us", "kind", "actor", "conversation_id", "action", "rule_ids",
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
    at_us INTEGER NOT NULL,
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
-- Every listing is "newest first" within a tenant, read backwards along an index, never sorted.
-- audit_time also carries kind and actor, so those filters are checked inside the index without
-- touching the table: an agent's page is a short index-only walk. Appends land at its end (time
-- grows), while a (tenant, actor, ...) index would dirty one leaf per active agent per commit and
-- cost more than the rest of the schema together. Conversations are too selective for a walk.
CREATE INDEX IF NOT EXISTS audit_time ON audit(tenant, at_us, kind, actor);
-- Time in the key too: without it the planner (no statistics) prefers walking audit_time for
-- its order and reads a whole tenant to find one conversation.
CREATE INDEX IF NOT EXISTS audit_conv ON audit(tenant, conversation_id, at_us);
CREATE INDEX IF NOT EXISTS audit_overridden ON audit(tenant, at_us) WHERE overridden = 1;
-- Rule ids and categories are lists; one row per value makes "rule r1" an index lookup.
CREATE TABLE IF NOT EXISTS audit_tag (
    tenant TEXT NOT NULL, tag TEXT NOT NULL, at_us INTEGER NOT NULL, audit_id INTEGER NOT NULL,
    PRIMARY KEY (tenant, tag, at_us, audit_id)
) WITHOUT ROWID;
-- trigram: Chinese has no spaces, so any 3+ character substring must be findable. Contentless
-- (rowid = audit.id) with both texts in one column, once when they are equal: the log is
-- append-only, so the index never has to delete, and half the trigrams are saved on plain sends.
-- The index trails the log: rows above audit_meta 'fts_indexed' are not in it yet and searches
-- scan them with LIKE. Indexing in batches of FTS_BATCH keeps FTS5's fixed per-transaction cost
-- (a new segment per commit) off every append, which is what the durable send path waits for.
-- detail=none keeps only rowids per trigram (no positions): a search ANDs the query's trigrams
-- and confirms the substring on the row with LIKE, so positions would be paid for and unused.
CREATE VIRTUAL TABLE IF NOT EXISTS audit_fts USING fts5(body, content='', tokenize='trigram', detail='none');
-- Merge segments 16 at a time instead of 4: about half the insert cost (every commit adds a
-- segment), for a query that reads a few more segments (still well under a millisecond).
INSERT INTO audit_fts (audit_fts, rank) SELECT 'automerge', 16 WHERE NOT EXISTS (SELECT 1 FROM audit);
-- The time span of every actor and kind per tenant, in whole hours (so it changes about once an
-- hour, not with every record): a filter on an agent who stopped working last month, or a kind
-- seen twice, reads only that span of audit_time instead of walking the tenant's whole history.
CREATE TABLE IF NOT EXISTS audit_facet (
    tenant TEXT NOT NULL, facet TEXT NOT NULL, first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,
    PRIMARY KEY (tenant, facet)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('fts_indexed', 0);
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
    "INSERT INTO audit (id, seq, tenant, at_us, kind, actor, conversation_id, action, rule_ids, categories,"
    " overridden, original_text, final_text, reason, details, content_hash, prev_hash, hash)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
# The canonical content of a record, built by SQLite; byte-identical to audit.canonical_content
# (same field order; SQLite and Python's json escape strings the same way; no floats involved).
_CONTENT = ("CAST(json_array(tenant, at_us, kind, actor, conversation_id, action, rule_ids, categories,"
            " overridden, original_text, final_text, reason, details) AS BLOB)")
_CHAIN_COLS = f"id, tenant, seq, {_CONTENT}, content_hash, prev_hash, hash"


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
        # Another writer (the clock's audit process, see audit_process.py) may hold the lock: wait
        # by polling finely (begin_immediate), not with SQLite's busy handler, which sleeps 1, 2,
        # 5, 10 ... ms and so would put whole milliseconds on a send waiting for its audit commit.
        self._w.execute("PRAGMA busy_timeout=0")
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # -- writing (the caller holds the store's write lock) -------------------------------------

    def begin(self) -> None:
        # IMMEDIATE takes the write lock now, so the chain heads read next cannot go stale.
        begin_immediate(self._w)

    def commit(self) -> None:
        self._w.execute("COMMIT")

    def rollback(self) -> None:
        if self._w.in_transaction:
            self._w.execute("ROLLBACK")

    def head(self, tenant: str) -> tuple[int, bytes, bytes] | None:
        """The signed head (seq, hash, mac) of a tenant's chain, read inside the write transaction."""
        return self._w.execute("SELECT seq, hash, mac FROM audit_head WHERE tenant = ?", (tenant,)).fetchone()

    def has_records(self, tenant: str) -> bool:
        return self._w.execute("SELECT 1 FROM audit WHERE tenant = ? LIMIT 1", (tenant,)).fetchone() is not None

    def next_id(self) -> int:
        """The id the next record gets (ids are assigned here so a batch inserts with executemany)."""
        # Never below the text index's high-water mark: ids are not reused even if rows were cut off.
        return max(self._w.execute("SELECT max(id) FROM audit").fetchone()[0] or 0, self.fts_indexed()) + 1

    def insert_many(self, rows: Sequence[Sequence[Any]], tags: Sequence[tuple[str, str, int, int]],
                    facets: Sequence[tuple[str, str, int, int]]) -> None:
        """Insert records (id, seq, then the content values and hashes), their tags, facet spans."""
        self._w.executemany(_INSERT, rows)
        if tags:
            self._w.executemany("INSERT INTO audit_tag (tenant, tag, at_us, audit_id) VALUES (?,?,?,?)", tags)
        if facets:
            self._w.executemany(
                "INSERT INTO audit_facet (tenant, facet, first_us, last_us) VALUES (?,?,?,?)"
                " ON CONFLICT (tenant, facet) DO UPDATE SET first_us = min(first_us, excluded.first_us),"
                " last_us = max(last_us, excluded.last_us)", facets)

    def relay_mark(self) -> int:
        """The highest state.db audit_relay seq already appended here (see assist/audit_relay.py)."""
        row = self._w.execute("SELECT value FROM audit_meta WHERE key = 'relay_upto'").fetchone()
        return int(row[0]) if row else 0

    def set_relay_mark(self, upto: int) -> None:
        self._w.execute("INSERT INTO audit_meta (key, value) VALUES ('relay_upto', ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)", (upto,))

    def fts_indexed(self) -> int:
        """The highest record id whose texts are in the FTS index."""
        return self._w.execute("SELECT value FROM audit_meta WHERE key = 'fts_indexed'").fetchone()[0]

    def index_texts(self, limit: int) -> int:
        """Add up to `limit` not-yet-indexed records to the FTS index, in one transaction; return the count."""
        self.begin()
        try:
            done = self.fts_indexed()
            rows = self._w.execute(
                "SELECT id, original_text, final_text FROM audit WHERE id > ? ORDER BY id LIMIT ?", (done, limit)
            ).fetchall()
            bodies = []
            for rid, original, final in rows:
                if original is not None or final is not None:
                    # "\n" between the texts keeps a trigram from spanning both.
                    bodies.append((rid, original if final is None or final == original else
                                   final if original is None else f"{original}\n{final}"))
            self._w.executemany("INSERT INTO audit_fts (rowid, body) VALUES (?,?)", bodies)
            if rows:
                self._w.execute("UPDATE audit_meta SET value = ? WHERE key = 'fts_indexed'", (rows[-1][0],))
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return len(rows)

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
        rows = self._reader().execute("SELECT tenant FROM audit_head UNION SELECT DISTINCT tenant FROM audit")
        return sorted(r[0] for r in rows)

    def chain(self, tenant: str | None, *, by_seq: bool = False, batch: int = 5000) -> Iterator[Any]:
        """Yield signatures, then chain rows `(id, tenant, seq, content, content_hash, prev_hash, hash)`.

        The first item is `(checkpoints, heads)`: {tenant: [(seq, hash, mac)]} and {tenant: (seq,
        hash, mac)}. Rows follow in id (append) order, a sequential read of the table, or with
        `by_seq` in (seq, id) order, the chain's own order, for explaining a problem. One snapshot,
        so a verify beside the writer sees a consistent chain.
        """
        conn = connect(self.path, readonly=True)
        try:
            conn.execute("BEGIN")
            where, params = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
            cps: dict[str, list[tuple[int, bytes, bytes]]] = {}
            for t, seq, h, mac in conn.execute(
                    f"SELECT tenant, seq, hash, mac FROM audit_checkpoint {where} ORDER BY tenant, seq", params):
                cps.setdefault(t, []).append((seq, h, mac))
            heads = {t: (seq, h, mac) for t, seq, h, mac in
                     conn.execute(f"SELECT tenant, seq, hash, mac FROM audit_head {where}", params)}
            yield cps, heads
            order = "seq, id" if by_seq else "id"
            cur = conn.execute(f"SELECT {_CHAIN_COLS} FROM audit {where} ORDER BY {order}", params)
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

    def between(self, tenant: str, since: int, until: int, kinds: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """A tenant's records of `kinds` with since <= at < until, oldest first (for reports)."""
        marks = ",".join("?" * len(kinds))
        cur = connect(self.path, readonly=True)
        try:
            rows = cur.execute(
                f"SELECT {_COLS} FROM audit WHERE tenant = ? AND kind IN ({marks}) AND at_us >= ? AND at_us < ?"
                " ORDER BY at_us, id", (tenant, *kinds, since, until))
            while batch := rows.fetchmany(2000):
                yield from batch
        finally:
            cur.close()

    def _candidates(self, text: str | None) -> tuple[list[int], int] | None:
        """FTS candidates for `text` and the index's high-water id, when the candidates are few.

        Few candidates drive the query by rowid (fast however rare the text), together with the
        unindexed tail above the high-water id. Many mean the text is common: scanning newest-first
        with LIKE fills a page quickly, and building a huge candidate set would cost more than it
        saves. Both are read in one snapshot so no record falls between them.
        """
        if not text or len(text) < 3:
            return None
        grams = {text[i:i + 3] for i in range(len(text) - 2)}
        match = " AND ".join('"' + g.replace('"', '""') + '"' for g in sorted(grams))
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            high = conn.execute("SELECT value FROM audit_meta WHERE key = 'fts_indexed'").fetchone()[0]
            ids = [r[0] for r in conn.execute(
                "SELECT rowid FROM audit_fts WHERE audit_fts MATCH ? LIMIT ?", (match, FTS_DRIVE_MAX + 1))]
        finally:
            conn.execute("COMMIT")
        return (ids, high) if len(ids) <= FTS_DRIVE_MAX else None

    def page(self, where: dict[str, Any], *, after: tuple[int, int] | None, limit: int) -> list[tuple[Any, ...]]:
        """Records matching `where`, newest first, strictly after the keyset `after` (at_us, id)."""
        sql, params = _page_sql(where, after, limit, self._candidates(where.get("text")))
        return self._reader().execute(sql, params).fetchall()

    def count(self, where: dict[str, Any]) -> int:
        """How many records match `where` (for progress bars)."""
        sql, params = _page_sql(where, None, -1, self._candidates(where.get("text")))
        return self._reader().execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]

    def explain(self, where: dict[str, Any], *, after: tuple[int, int] | None, limit: int) -> list[str]:
        sql, params = _page_sql(where, after, limit, self._candidates(where.get("text")))
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


def _page_sql(where: dict[str, Any], after: tuple[int, int] | None, limit: int,
              candidates: tuple[list[int], int] | None) -> tuple[str, list[Any]]:
    """Build one keyset page query; `where` keys are AuditQuery field names (validated there)."""
    conds: list[str] = []
    params: list[Any] = []
    joins = ""
    tag = where.get("rule_id")
    tag = f"r:{tag}" if tag is not None else (f"c:{where['category']}" if where.get("category") else None)
    if tag is not None and where.get("tenant") is not None:
        # Drive from the tag index, which is already in (at, id) order for this tenant and tag.
        joins = " JOIN audit_tag t ON t.audit_id = a.id"
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
        conds.append("a.at_us >= ?")
        params.append(where["since"])
    if where.get("until") is not None:
        conds.append("a.at_us < ?")
        params.append(where["until"])
    # Order by the driving table's columns so the planner reads its index backwards, unsorted.
    at, rid = ("t.at_us", "t.audit_id") if joins else ("a.at_us", "a.id")
    for key, prefix in (("actor", "a:"), ("kind", "k:")):
        if where.get(key) is not None and where.get("tenant") is not None:
            # Constant subqueries: the planner uses them as range bounds on the index it reads.
            span = "(SELECT {} FROM audit_facet WHERE tenant = ? AND facet = ?)"
            conds.append(f"{at} >= {span.format('first_us')} AND {at} <= {span.format('last_us')}")
            params += [where["tenant"], prefix + where[key]] * 2
    if where.get("overridden") is not None:
        conds.append("a.overridden = ?")
        params.append(1 if where["overridden"] else 0)
    text = where.get("text")
    if text:
        if candidates is not None:
            # Integers from the FTS index, inlined so the planner sees a short rowid list to drive
            # by, plus the records the index has not reached yet.
            ids, high = candidates
            conds.append(f"(a.id IN ({','.join(map(str, ids)) or 'NULL'}) OR a.id > {int(high)})")
        # LIKE is the truth: it confirms FTS candidates (rows holding every trigram of the text,
        # in any order, ASCII case folded) and alone scans newest-first for common or 1-2 char text.
        esc = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conds.append("(a.original_text LIKE ? ESCAPE '\\' OR a.final_text LIKE ? ESCAPE '\\')")
        params += [f"%{esc}%", f"%{esc}%"]
    if after is not None:
        conds.append(f"({at}, {rid}) < (?, ?)")
        params += list(after)
    sql = f"SELECT {_ACOLS} FROM audit a{joins}"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += f" ORDER BY {at} DESC, {rid} DESC LIMIT ?"
    params.append(limit)
    return sql, params
