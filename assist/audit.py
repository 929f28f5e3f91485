"""The append-only audit store: every decision the service makes, hash-chained per tenant.

Each record stores `content_hash = sha256(canonical JSON of its content)`, the `prev_hash` of the
record before it in the tenant's chain, and `hash = sha256(prev_hash || content_hash)`. Every
`checkpoint_every` records, and at the head after each commit, the chain position is signed with
HMAC-SHA256(key, "tenant|seq|hash"), so a rewrite of the whole chain without the key is caught.
SQL lives in assist/audit_sql.py (durability: WAL + synchronous=FULL, see its docstring);
verification in assist/audit_verify.py; masking in assist/audit_mask.py; the group-commit
AuditWriter in assist/audit_writer.py (re-exported here).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from .audit_mask import scrub_secrets
from .audit_query import AuditPage, AuditQuery, AuditRecord, decode_cursor, encode_cursor
from .audit_sql import FTS_BATCH, SqliteAuditBackend

# Fewest records an append that finds the full-text index behind brings into it.
_BACKSTOP_MIN = 200
from .audit_writer import AuditWriter

if TYPE_CHECKING:
    from .audit_verify import VerifyReport

__all__ = [
    "AUDIT_STORE",
    "AUDIT_WRITER",
    "GENESIS",
    "AuditEvent",
    "AuditIntegrityError",
    "AuditPage",
    "AuditQuery",
    "AuditRecord",
    "AuditStore",
    "AuditWriter",
    "canonical_content",
    "checkpoint_mac",
    "setup_audit_routes",
]

log = structlog.get_logger(__name__)
GENESIS = bytes(32)  # prev_hash of a tenant's first record
_HOUR_US = 3_600_000_000


def _canonical_encoder() -> Callable[[Any], str]:
    """Compact JSON, non-ASCII kept as is, no NaN: the canonical form hashed for every record.

    The C encoder made once and reused: JSONEncoder.encode builds a new one per call, which
    was a tenth of an append's CPU time. Same output either way.
    """
    slow = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return slow

    def refuse(o: Any) -> Any:
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    fast = make(None, refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda value: "".join(fast(value, 0))


_ENCODE = _canonical_encoder()
# details are free-form: keys sorted so equal dicts store equal text; unknown types become str.
_DETAILS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str).encode


@dataclass(frozen=True)
class AuditEvent:
    """One decision to record; `at` is epoch seconds (the store's clock fills it when None)."""

    tenant: str
    kind: str
    actor: str | None = None
    conversation_id: str | None = None
    action: str | None = None
    rule_ids: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    original_text: str | None = None
    final_text: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: float | None = None


def canonical_content(row: Sequence[Any]) -> bytes:
    """The canonical JSON that `content_hash` covers, from a row in audit_sql.COLUMNS order.

    A JSON array in fixed field order (tenant, at_us, kind, actor, conversation_id, action, rule_ids,
    categories, overridden, original_text, final_text, reason, details); list and dict fields are
    the stored canonical JSON strings. `seq` and `id` are left out on purpose: the chain links fix
    the order, so a reordering shows up as a broken link, not as an edited record.
    """
    return _ENCODE([row[1], *row[3:15]]).encode()


def checkpoint_mac(key: bytes, tenant: str, seq: int, hash_: bytes) -> bytes:
    """HMAC-SHA256(key, "tenant|seq|hash-hex"): a chain position only the key holder can sign."""
    return hmac.new(key, f"{tenant}|{seq}|{hash_.hex()}".encode(), hashlib.sha256).digest()


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"AuditEvent.{name} must be a str or None, not {type(value).__name__}")


def _text(value: Any, name: str) -> str | None:
    """Free text (drafts, reasons) is where a pasted credential would hide: scrub it."""
    return scrub_secrets(_str(value, name))


# A validated event, ready to chain: (tenant, content values, content_hash, tags).
Prepared = tuple[str, tuple[Any, ...], bytes, list[str]]


def _prepare(event: AuditEvent, now: float) -> Prepared:
    """Validate an event and do all the per-record work that does not depend on the chain.

    Run by the caller (the event loop, for AuditWriter), so JSON and content hashing overlap with
    the writer thread's SQLite work instead of adding to it.
    """
    if not isinstance(event.tenant, str) or not event.tenant:
        raise ValueError("AuditEvent.tenant must be a non-empty str")
    if not isinstance(event.kind, str) or not event.kind:
        raise ValueError("AuditEvent.kind must be a non-empty str")
    rule_ids = [str(r) for r in event.rule_ids] if event.rule_ids else []
    categories = [str(c) for c in event.categories] if event.categories else []
    details = event.details
    if not isinstance(details, dict):
        raise TypeError(f"AuditEvent.details must be a dict, not {type(details).__name__}")
    overridden = int(event.kind == "override" or (bool(details) and bool(
        details.get("override_reason") or details.get("overridden"))))
    at_us = round((event.at if event.at is not None else now) * 1_000_000)
    actor, conversation_id, action = event.actor, event.conversation_id, event.action
    if not (_opt_str(actor) and _opt_str(conversation_id) and _opt_str(action)):
        for name in ("actor", "conversation_id", "action"):
            _str(getattr(event, name), name)
    values = (
        event.tenant, at_us, event.kind, actor, conversation_id, action,
        _ENCODE(rule_ids) if rule_ids else "[]", _ENCODE(categories) if categories else "[]", overridden,
        _text(event.original_text, "original_text"), _text(event.final_text, "final_text"),
        _text(event.reason, "reason"), scrub_secrets(_DETAILS(details)) if details else "{}",
    )
    content_hash = hashlib.sha256(_ENCODE(values).encode()).digest()
    tags = ([f"r:{r}" for r in dict.fromkeys(rule_ids)] + [f"c:{c}" for c in dict.fromkeys(categories)]
            if rule_ids or categories else [])
    return event.tenant, values, content_hash, tags


class AuditIntegrityError(RuntimeError):
    """The store refuses to extend a chain whose signed head is missing or does not verify."""


class AuditStore:
    """Append-only, hash-chained audit records in SQLite; thread-safe, one writer at a time."""

    def __init__(
        self,
        path: Path | str,
        *,
        hmac_key: bytes,
        checkpoint_every: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not hmac_key:
            raise ValueError("hmac_key must not be empty")
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.path = Path(path)
        self.key = hmac_key
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self.backend = SqliteAuditBackend(self.path)
        self._wlock = threading.Lock()
        self._fts_indexed = self.backend.fts_indexed()
        self._last_id: int | None = None  # highest id this store appended (None: not known yet)
        # Hour spans of actors and kinds known to be stored (see audit_facet in audit_sql.py).
        self._spans: dict[tuple[str, str], tuple[int, int]] = {}

    def prepare(self, event: AuditEvent) -> Prepared:
        """Validate an event now (raising ValueError/TypeError) so a writer batch cannot fail on it."""
        return _prepare(event, self.clock())

    def append(self, event: AuditEvent) -> int:
        """Append one record; it is durable (committed with synchronous=FULL) when this returns."""
        return self.append_many([event])[0]

    def append_many(self, events: Iterable[AuditEvent]) -> list[int]:
        """Append records in one transaction, in order; return their ids once committed."""
        return self.append_prepared([self.prepare(e) for e in events])

    def append_prepared(self, prepared: Sequence[Prepared], *, relayed: Sequence[int] | None = None) -> list[int]:
        """Chain and insert prepared rows in one transaction (the writer thread's entry point).

        `relayed`: the rows are state.db's staged records with these seqs (AuditRelay). Inside the
        transaction, rows at or below the stored relay mark are skipped and the mark moves up to
        the highest seq, so a staged record is appended exactly once, whoever relays it.
        """
        if not prepared:
            return []
        b = self.backend
        every, key = self.checkpoint_every, self.key
        sha = hashlib.sha256
        rows: list[tuple[Any, ...]] = []
        tag_rows: list[tuple[str, str, int, int]] = []
        spans = self._spans
        grown: dict[tuple[str, str], tuple[int, int]] = {}
        with self._wlock:
            b.begin()
            try:
                if relayed is not None:
                    mark = b.relay_mark()
                    prepared = [p for p, seq in zip(prepared, relayed) if seq > mark]
                rid = b.next_id()
                first = rid
                heads: dict[str, tuple[int, bytes]] = {}
                for tenant, values, content_hash, tags in prepared:
                    head = heads.get(tenant)
                    if head is None:
                        head = self._tail(tenant)
                    seq, prev = head[0] + 1, head[1]
                    hash_ = sha(prev + content_hash).digest()
                    rows.append((rid, seq, *values, content_hash, prev, hash_))
                    at_us = values[1]
                    for tag in tags:
                        tag_rows.append((tenant, tag, at_us, rid))
                    lo = at_us - at_us % _HOUR_US
                    for facet in ("k:" + values[2], "a:" + values[3] if values[3] is not None else None):
                        if facet is None:
                            continue
                        span = grown.get((tenant, facet)) or spans.get((tenant, facet))
                        if span is None or lo < span[0] or lo + _HOUR_US - 1 > span[1]:
                            grown[(tenant, facet)] = (min(lo, span[0]) if span else lo,
                                                      max(lo + _HOUR_US - 1, span[1]) if span else lo + _HOUR_US - 1)
                    if seq % every == 0:
                        b.checkpoint(tenant, seq, hash_, checkpoint_mac(key, tenant, seq, hash_))
                    heads[tenant] = (seq, hash_)
                    rid += 1
                b.insert_many(rows, tag_rows, [(t, f, *span) for (t, f), span in grown.items()])
                for tenant, (seq, hash_) in heads.items():
                    b.set_head(tenant, seq, hash_, checkpoint_mac(key, tenant, seq, hash_))
                if relayed is not None:
                    b.set_relay_mark(max(relayed))
                b.commit()
            except BaseException:
                b.rollback()
                raise
            spans.update(grown)  # only once committed: a rolled-back span must be written again
            self._last_id = rid - 1
            if rid - 1 - self._fts_indexed >= FTS_BATCH:
                # The index fell behind (the writer is never idle): catch up twice as many records
                # as this append wrote. Enough to close the gap; bounded, so one unlucky append never
                # pays for indexing a whole backlog while every request behind it waits.
                try:
                    self._index_texts_locked(max(_BACKSTOP_MIN, 2 * len(prepared)))
                except Exception:  # the records are committed; only search speed waits for the index
                    log.exception("audit.fts_index_failed")
        return list(range(first, rid))

    def relay_mark(self) -> int:
        """The highest staged record (state.db audit_relay seq) already in this store."""
        with self._wlock:
            return self.backend.relay_mark()

    def index_texts(self, *, limit: int = FTS_BATCH) -> int:
        """Bring up to `limit` records into the full-text index; return how many (0: up to date).

        Searches are exact without this (they scan the unindexed tail); indexing keeps them fast.
        The writer calls it when idle and appends call it when FTS_BATCH records wait.
        """
        if self._last_id is not None and self._fts_indexed >= self._last_id:
            return 0  # up to date: the idle writer asks often, so answer without touching the file
        with self._wlock:
            return self._index_texts_locked(limit)

    def _index_texts_locked(self, limit: int) -> int:
        n = self.backend.index_texts(limit)
        self._fts_indexed = self.backend.fts_indexed()
        return n

    def unindexed(self) -> int | None:
        """How many appended records wait for the full-text index (None: not known in this process yet)."""
        return None if self._last_id is None else max(0, self._last_id - self._fts_indexed)

    def _tail(self, tenant: str) -> tuple[int, bytes]:
        """Where the tenant's chain continues: its signed head, checked with the key.

        The head, not the last row, is the source of truth: if rows were cut off the end, the next
        record still links to the signed head and the gap stays visible to verify. A missing or
        forged head refuses the append rather than re-signing a log that was tampered with.
        """
        head = self.backend.head(tenant)
        if head is None:
            if self.backend.has_records(tenant):
                raise AuditIntegrityError(f"tenant '{tenant}' has audit records but no signed head; "
                                          "the log was tampered with: run `assist audit verify`")
            return 0, GENESIS
        seq, hash_, mac = head
        if not hmac.compare_digest(mac, checkpoint_mac(self.key, tenant, seq, hash_)):
            raise AuditIntegrityError(f"the signed head of tenant '{tenant}' does not verify with the configured "
                                      "audit_hmac_key (wrong key, or tampering): run `assist audit verify`")
        return seq, hash_

    # -- reading ---------------------------------------------------------------------------------

    def query(self, q: AuditQuery, *, keep_original: bool = False) -> AuditPage:
        """One page of records matching `q`, newest first, with the cursor of the next page."""
        after = decode_cursor(q.cursor) if q.cursor else None
        rows = self.backend.page(q.where(), after=after, limit=q.limit + 1)
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        records = [AuditRecord.from_row(r, keep_original=keep_original) for r in rows]
        cursor = encode_cursor(rows[-1][3], rows[-1][0]) if more and rows else None  # (at_us, id)
        return AuditPage(records=records, next_cursor=cursor)

    def count(self, q: AuditQuery) -> int:
        """How many records match `q` (ignoring its cursor and limit)."""
        return self.backend.count(q.where())

    def iter_query(self, q: AuditQuery, *, keep_original: bool = False, page_size: int = 500) -> Iterator[AuditRecord]:
        """Every record matching `q`, page by page (keyset), never all in memory."""
        q = q.replace(limit=page_size)
        while True:
            page = self.query(q, keep_original=keep_original)
            yield from page.records
            if page.next_cursor is None:
                return
            q = q.replace(cursor=page.next_cursor)

    def between(self, tenant: str, since: float, until: float, kinds: Sequence[str]) -> Iterator[AuditRecord]:
        """Unmasked records of `kinds` in [since, until), oldest first; for reports, never for display."""
        for row in self.backend.between(tenant, round(since * 1_000_000), round(until * 1_000_000), kinds):
            yield AuditRecord.from_row(row, keep_original=True)

    def verify(self, tenant: str | None = None, *, key: bytes | None = None) -> VerifyReport:
        """Walk the chain(s) and return a VerifyReport naming the first bad record per tenant."""
        from .audit_verify import verify_store

        return verify_store(self, tenant, key=key if key is not None else self.key)

    def close(self) -> None:
        self.backend.close()


def setup_audit_routes(app: web.Application) -> None:
    """Register GET /v1/audit, /v1/audit/export, /v1/audit/verify and /v1/reports/agents on `app`."""
    from .audit_api import setup_audit_routes as setup  # imported late: the routes import this module

    setup(app)


AUDIT_STORE: web.AppKey[AuditStore] = web.AppKey("audit_store", AuditStore)
AUDIT_WRITER: web.AppKey[AuditWriter] = web.AppKey("audit_writer", AuditWriter)
