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
import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audit import AuditStore

__all__ = ["Problem", "TenantReport", "VerifyReport", "verify_store"]

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


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
    names = [tenant] if tenant is not None else store.backend.tenants()
    report = VerifyReport(tenants=[_verify_tenant(store, t, key) for t in names])
    report.seconds = time.perf_counter() - started
    return report


def _verify_tenant(store: AuditStore, tenant: str, key: bytes) -> TenantReport:
    rep = TenantReport(tenant)
    chain = store.backend.chain(tenant)
    try:
        [(cps, head)] = next(chain)
        rep.checkpoints = len(cps)
        signed = {seq: h for seq, h, _ in cps}
        bad_macs = [seq for seq, h, mac in cps if not hmac.compare_digest(mac, _mac(key, tenant, seq, h))]
        first_bad_mac = bad_macs[0] if bad_macs else None
        sha, enc = hashlib.sha256, _ENCODE
        expected, prev, prev_id = 1, bytes(32), None
        for rows in chain:
            for r in rows:
                seq = r[2]
                if first_bad_mac is not None and first_bad_mac < seq:
                    break
                if seq != expected:
                    rep.problem = Problem("deleted", expected, None,
                                          f"record seq {expected} is missing (deleted); the chain jumps to seq {seq} (id {r[0]})")
                    return rep
                content_hash = r[15]
                if sha(enc([r[1], *r[3:15]]).encode()).digest() != content_hash:
                    rep.problem = Problem("changed", seq, r[0], f"record seq {seq} (id {r[0]}) was changed: its content does not match its hash")
                    return rep
                if r[16] != prev:
                    rep.problem = _broken_link(store, tenant, r, prev_id)
                    return rep
                if sha(prev + content_hash).digest() != r[17]:
                    rep.problem = Problem("changed", seq, r[0], f"record seq {seq} (id {r[0]}) was changed: its chain hash was rewritten")
                    return rep
                if seq in signed and signed[seq] != r[17]:
                    rep.problem = Problem("checkpoint", seq, r[0],
                                          f"the chain was rewritten at or before seq {seq} (id {r[0]}): the signed checkpoint at seq {seq} holds another hash")
                    return rep
                prev, prev_id, expected = r[17], r[0], expected + 1
            else:
                continue
            break
        rep.records = expected - 1
        last = expected - 1
        if first_bad_mac is not None:
            rep.problem = Problem("checkpoint", first_bad_mac, None,
                                  f"the checkpoint at seq {first_bad_mac} does not verify with this HMAC key (forged, altered, or the wrong key)")
            return rep
        beyond = [s for s in signed if s > last]
        if head is None:
            if last:
                rep.problem = Problem("head", last, prev_id, f"the signed head of tenant '{tenant}' is missing")
            return rep
        h_seq, h_hash, h_mac = head
        if not hmac.compare_digest(h_mac, _mac(key, tenant, h_seq, h_hash)):
            rep.problem = Problem("head", h_seq, None, "the signed head does not verify with this HMAC key (forged, altered, or the wrong key)")
        elif h_seq > last or beyond:
            gone = min([h_seq, *beyond])
            rep.problem = Problem("deleted", last + 1, None,
                                  f"records from seq {last + 1} on were deleted: the chain ends at seq {last}, signed up to seq {max(gone, h_seq)}")
        elif h_seq < last:
            rep.problem = Problem("inserted", h_seq + 1, None,
                                  f"records after seq {h_seq} were added outside the store: the signed head ends at seq {h_seq}")
        elif h_hash != prev:
            rep.problem = Problem("checkpoint", last, prev_id, f"the chain was rewritten: the signed head holds another hash for seq {last}")
        return rep
    finally:
        chain.close()


def _broken_link(store: AuditStore, tenant: str, r: tuple[Any, ...], prev_id: int | None) -> Problem:
    """Explain why record `r` does not link to the record before it."""
    seq, rid = r[2], r[0]
    j = store.backend.seq_of_hash(tenant, r[16])
    if j is None:
        return Problem("deleted", seq, rid,
                       f"record seq {seq} (id {rid}) links to a record that no longer exists: "
                       f"a record before it was deleted, or seq {seq - 1} was rewritten")
    if j >= seq:
        return Problem("reordered", seq, rid, f"record seq {seq} (id {rid}) is out of order: it was written after the record now at seq {j}")
    return Problem("inserted", j + 1, prev_id if j == seq - 2 else None,
                   f"record seq {j + 1} was inserted: seq {seq} (id {rid}) was written right after seq {j}")
