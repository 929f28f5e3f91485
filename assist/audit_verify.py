"""Walk each tenant's hash chain and name the first record that was changed, deleted, inserted or moved.

What each tampering looks like to the walk (seq must run 1, 2, 3, ... without gaps):
- a text edited in place: the record's content no longer hashes to its `content_hash` ("changed");
- a row deleted: a gap in seq, or (if the rows after were renumbered) a link to a hash that no
  record has ("deleted"); rows cut off the end: the signed head names a later seq ("deleted");
- a row inserted: the record after it links to the record before it ("inserted");
- rows swapped: a record links to a record that now sits later in the chain ("reordered");
- the chain recomputed from some point on: the next signed checkpoint (or the signed head) no
  longer matches ("checkpoint"); a checkpoint whose HMAC fails with this key is reported too.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audit import AuditStore

__all__ = ["Problem", "TenantReport", "VerifyReport", "verify_store"]



@dataclass(frozen=True)
class Problem:
    """The first bad spot in a chain: which record (seq, id), what happened, in words."""

    kind: str  # changed | deleted | inserted | reordered | checkpoint | head
    seq: int
    record_id: int | None
    message: str


@dataclass
class TenantReport:
    tenant: str
    records: int = 0
    checkpoints: int = 0
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class VerifyReport:
    """The result of a verify: one TenantReport per tenant, and how fast the walk went."""

    tenants: list[TenantReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tenants)

    @property
    def records(self) -> int:
        return sum(t.records for t in self.tenants)

    @property
    def first_problem(self) -> tuple[str, Problem] | None:
        for t in self.tenants:
            if t.problem is not None:
                return t.tenant, t.problem
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "tenants": [
                {"tenant": t.tenant, "ok": t.ok, "records": t.records, "checkpoints": t.checkpoints,
                 "problem": asdict(t.problem) if t.problem else None}
                for t in self.tenants
            ],
        }


def _mac(key: bytes, tenant: str, seq: int, hash_: bytes) -> bytes:
    return hmac.new(key, f"{tenant}|{seq}|{hash_.hex()}".encode(), hashlib.sha256).digest()


def verify_store(store: AuditStore, tenant: str | None, *, key: bytes) -> VerifyReport:
    """Verify one tenant's chain, or every tenant's when `tenant` is None."""
    started = time.perf_counter()
    tenants = _scan(store, tenant, key)
    report = VerifyReport(tenants=tenants)
    report.seconds = time.perf_counter() - started
    return report


def _scan(store: AuditStore, only: str | None, key: bytes) -> list[TenantReport]:
    """One sequential pass over the records; a tenant with any anomaly is then walked in seq order."""
    chain = store.backend.chain(only)
    try:
        cps, heads = next(chain)
        signed = {t: {seq: h for seq, h, _ in rows} for t, rows in cps.items()}
        state: dict[str, list[Any]] = {}  # tenant -> [next seq, last hash, last id]
        suspect: set[str] = set()
        sha = hashlib.sha256
        no_cps: dict[int, bytes] = {}
        for rows in chain:
            for rid, tenant, seq, content, ch, ph, h in rows:
                st = state.get(tenant)
                if st is None:
                    st = state[tenant] = [1, bytes(32), None]
                elif tenant in suspect:
                    continue
                if (seq != st[0] or ph != st[1] or sha(content).digest() != ch or sha(ph + ch).digest() != h
                        or signed.get(tenant, no_cps).get(seq, h) != h):
                    suspect.add(tenant)
                    continue
                st[0], st[1], st[2] = seq + 1, h, rid
    finally:
        chain.close()
    out = []
    for tenant in sorted(set(state) | set(heads) | set(cps) | ({only} if only is not None else set())):
        if tenant in suspect:
            out.append(_walk(store, tenant, key))
            continue
        nxt, last_hash, last_id = state.get(tenant, [1, bytes(32), None])
        rep = TenantReport(tenant, records=nxt - 1, checkpoints=len(cps.get(tenant, [])))
        rep.problem = _signatures(tenant, key, cps.get(tenant, []), heads.get(tenant), nxt - 1, last_hash, last_id)
        out.append(rep)
    return out


def _walk(store: AuditStore, tenant: str, key: bytes) -> TenantReport:
    """Walk one tenant's chain in seq order and stop at the first problem, explained."""
    rep = TenantReport(tenant)
    chain = store.backend.chain(tenant, by_seq=True)
    try:
        cps_all, heads = next(chain)
        cps = cps_all.get(tenant, [])
        rep.checkpoints = len(cps)
        signed = {seq: h for seq, h, _ in cps}
        bad_macs = [seq for seq, h, mac in cps if not hmac.compare_digest(mac, _mac(key, tenant, seq, h))]
        stop_at = bad_macs[0] if bad_macs else None
        sha = hashlib.sha256
        expected, prev, prev_id = 1, bytes(32), None
        for rows in chain:
            for rid, _, seq, content, ch, ph, h in rows:
                if stop_at is not None and stop_at < seq:
                    break
                if seq < expected:
                    rep.problem = Problem("inserted", seq, rid, f"record id {rid} was inserted: it repeats seq {seq}")
                    return rep
                if seq != expected:
                    rep.problem = Problem("deleted", expected, None,
                                          f"record seq {expected} is missing (deleted); the chain jumps to seq {seq} (id {rid})")
                    return rep
                if sha(content).digest() != ch:
                    rep.problem = Problem("changed", seq, rid, f"record seq {seq} (id {rid}) was changed: its content does not match its hash")
                    return rep
                if ph != prev:
                    rep.problem = _broken_link(store, tenant, seq, rid, ph, prev_id)
                    return rep
                if sha(ph + ch).digest() != h:
                    rep.problem = Problem("changed", seq, rid, f"record seq {seq} (id {rid}) was changed: its chain hash was rewritten")
                    return rep
                if signed.get(seq, h) != h:
                    rep.problem = Problem("checkpoint", seq, rid,
                                          f"the chain was rewritten at or before seq {seq} (id {rid}): the signed checkpoint at seq {seq} holds another hash")
                    return rep
                prev, prev_id, expected = h, rid, expected + 1
            else:
                continue
            break
    finally:
        chain.close()
    rep.records = expected - 1
    rep.problem = _signatures(tenant, key, cps, heads.get(tenant), expected - 1, prev, prev_id)
    return rep


def _signatures(tenant: str, key: bytes, cps: list[tuple[int, bytes, bytes]], head: tuple[int, bytes, bytes] | None,
                last: int, last_hash: bytes, last_id: int | None) -> Problem | None:
    """Check checkpoint MACs and the signed head against a chain that walked clean up to `last`."""
    for seq, h, mac in cps:
        if not hmac.compare_digest(mac, _mac(key, tenant, seq, h)):
            return Problem("checkpoint", seq, None,
                           f"the checkpoint at seq {seq} does not verify with this HMAC key (forged, altered, or the wrong key)")
    beyond = [seq for seq, _, _ in cps if seq > last]
    if head is None:
        return Problem("head", last, last_id, f"the signed head of tenant '{tenant}' is missing") if last else None
    h_seq, h_hash, h_mac = head
    if not hmac.compare_digest(h_mac, _mac(key, tenant, h_seq, h_hash)):
        return Problem("head", h_seq, None, "the signed head does not verify with this HMAC key (forged, altered, or the wrong key)")
    if h_seq > last or beyond:
        return Problem("deleted", last + 1, None,
                       f"records from seq {last + 1} on were deleted: the chain ends at seq {last}, signed up to seq {max([h_seq, *beyond])}")
    if h_seq < last:
        return Problem("inserted", h_seq + 1, None,
                       f"records after seq {h_seq} were added outside the store: the signed head ends at seq {h_seq}")
    if h_hash != last_hash:
        return Problem("checkpoint", last, last_id, f"the chain was rewritten: the signed head holds another hash for seq {last}")
    return None


def _broken_link(store: AuditStore, tenant: str, seq: int, rid: int, prev_hash: bytes, prev_id: int | None) -> Problem:
    """Explain why record `seq` does not link to the record before it."""
    j = store.backend.seq_of_hash(tenant, prev_hash)
    if j is None:
        return Problem("deleted", seq, rid,
                       f"record seq {seq} (id {rid}) links to a record that no longer exists: "
                       f"a record before it was deleted, or seq {seq - 1} was rewritten")
    if j >= seq:
        return Problem("reordered", seq, rid, f"record seq {seq} (id {rid}) is out of order: it was written after the record now at seq {j}")
    return Problem("inserted", j + 1, prev_id if j == seq - 2 else None,
                   f"record seq {j + 1} was inserted: seq {seq} (id {rid}) was written right after seq {j}")
