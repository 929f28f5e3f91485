"""Benchmark the audit store: appends vs plain sqlite-utils, query latency, export, verify, size.

    python bench/audit.py --records 1000000      # full run (minutes); --records 20000 for a smoke run

Both sides run on a real file with WAL and synchronous=FULL and commit once per batch of
`--batch` records; the baseline is sqlite-utils `insert_all` into a table with the same columns and
no chain, indexes or FTS. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlite_utils

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assist.audit import AuditEvent, AuditQuery, AuditStore, AuditWriter  # noqa: E402
from assist.audit_export import csv_header, render  # noqa: E402

T0 = 1_767_225_600.0
PRODUCTS = ["羽绒服", "运动鞋", "蓝牙耳机", "保温杯", "儿童书包", "电饭煲", "行李箱", "面霜", "手机壳", "台灯"]
ISSUES = ["什么时候发货", "可以退款吗", "尺码偏大怎么办", "快递到哪里了", "能开发票吗", "有优惠券吗", "颜色发错了"]
REPLIES = ["您好,这边马上为您查询", "好的,已经为您登记退款申请", "请您稍等2分钟,我帮您确认一下库存",
           "感谢您的耐心等待,包裹已到达转运中心", "很抱歉给您带来不便,我们为您补发", "请问是否还有其他问题可以为您服务?"]
KINDS = ["customer_message"] * 40 + ["send"] * 35 + ["check"] * 10 + ["rewrite"] * 6 + ["block"] * 5 + \
    ["override"] * 2 + ["reminder"] * 2
RULES = [("ct-insult", "contempt"), ("rq-told-you", "rhetorical_question"), ("im-annoyed", "impatience"),
         ("fp-dunno", "forbidden_phrase"), ("pu-exclaim", "punctuation"), ("op-promise", "over_promise")]
TENANTS = ["shop-a", "shop-b", "shop-c"]


def make_events(n: int, seed: int = 7, *, start: int = 0, total: int | None = None) -> list[AuditEvent]:
    """Records start..start+n of a synthetic month of `total`: 3 tenants, 300 agents, conversations
    of ~10 records, a few violations."""
    rnd = random.Random(seed * 1_000_003 + start)
    total = total or n
    out = []
    span = 30 * 86400
    for i in range(start, start + n):
        kind = rnd.choice(KINDS)
        conv = i // 10
        tenant = TENANTS[conv % 3]
        agent = f"agent:{(conv * 7) % 300}"
        product = rnd.choice(PRODUCTS)
        cust = f"{product}{rnd.choice(ISSUES)},订单号{rnd.randrange(10**9, 10**10)}"
        reply = f"{rnd.choice(REPLIES)}({product})"
        rules: tuple[tuple[str, str], ...] = ()
        if kind in ("rewrite", "block", "override") or (kind == "check" and rnd.random() < 0.5):
            rules = (rnd.choice(RULES),)
        out.append(AuditEvent(
            tenant=tenant, kind=kind, actor=None if kind == "customer_message" else agent,
            conversation_id=f"conv-{conv}", action="block" if kind == "block" else ("rewrite" if kind == "rewrite" else "pass"),
            rule_ids=tuple(r for r, _ in rules), categories=tuple(c for _, c in rules),
            original_text=cust if kind == "customer_message" else reply,
            final_text=None if kind in ("customer_message", "block") else reply,
            reason="客户坚持" if kind == "override" else None,
            details={"override_reason": "客户坚持"} if kind == "override" else {},
            at=T0 + span * i / total))
    return out


def plain_rows(events: list[AuditEvent]) -> list[dict]:
    return [{"tenant": e.tenant, "at": e.at, "kind": e.kind, "actor": e.actor, "conversation_id": e.conversation_id,
             "action": e.action, "rule_ids": ",".join(e.rule_ids), "categories": ",".join(e.categories),
             "original_text": e.original_text, "final_text": e.final_text, "reason": e.reason, "details": "{}"}
            for e in events]


def plain_db(path: Path) -> sqlite_utils.Database:
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def bench_pair(work: Path, name: str, n: int, batch: int, *, chunk: int = 20_000) -> tuple[dict[str, float], AuditStore]:
    """Append n records to both stores in alternating chunks, so machine noise hits both alike.

    Returns rates (wall clock), the median of the per-chunk wall ratios, the CPU time of this
    process per record for each side (robust when other jobs share the machine), and the store.
    """
    db = plain_db(work / f"plain-{name}.db")
    table = db["audit"]
    store = AuditStore(work / f"audit-{name}.db", hmac_key=b"bench-key")
    wall = {"ours": 0.0, "plain": 0.0}
    cpu = {"ours": 0.0, "plain": 0.0}
    ratios = []
    for c in range(0, n, chunk):
        events = make_events(min(chunk, n - c), start=c, total=n)
        rows = plain_rows(events)
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(rows), batch):
            table.insert_all(rows[i:i + batch], batch_size=batch)  # one transaction per call
        w1, c1 = time.perf_counter(), time.process_time()
        for i in range(0, len(events), batch):
            store.append_many(events[i:i + batch])
        w2, c2 = time.perf_counter(), time.process_time()
        wall["plain"] += w1 - w0
        wall["ours"] += w2 - w1
        cpu["plain"] += c1 - c0
        cpu["ours"] += c2 - c1
        ratios.append((w1 - w0) / (w2 - w1))
        if (c // chunk) % 10 == 9:
            print(f"  {c + len(events):,} records", file=sys.stderr)
    db.close()
    return {"ours": n / wall["ours"], "plain": n / wall["plain"], "ratio": statistics.median(ratios),
            "rounds": len(ratios), "cpu_ours_us": cpu["ours"] / n * 1e6, "cpu_plain_us": cpu["plain"] / n * 1e6}, store


def append_row(label: str, r: dict[str, float]) -> tuple[str, str, str]:
    return (label, f"{r['ours']:,.0f} rec/s; CPU {r['cpu_ours_us']:.1f} µs/rec",
            f"{r['plain']:,.0f} rec/s; CPU {r['cpu_plain_us']:.1f} µs/rec. Ours/plain: wall {r['ratio']:.0%} "
            f"(median of {r['rounds']} interleaved rounds), CPU {r['cpu_plain_us'] / r['cpu_ours_us']:.0%}")


async def bench_writer(store: AuditStore, events: list[AuditEvent], concurrency: int) -> float:
    writer = AuditWriter(store)
    await writer.start()
    it = iter(events)

    async def worker() -> None:
        for e in it:
            await writer.append(e)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await writer.stop()
    return len(events) / elapsed


def latency(store: AuditStore, queries: list[AuditQuery], repeat: int) -> tuple[float, float, int]:
    times = []
    hits = 0
    for _ in range(repeat):
        for q in queries:
            started = time.perf_counter()
            page = store.query(q)
            times.append((time.perf_counter() - started) * 1000)
            hits += len(page.records)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], hits // repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000, help="records per transaction for the bulk appends")
    ap.add_argument("--repeat", type=int, default=20, help="runs of each query for the latency percentiles")
    ap.add_argument("--dir", type=Path, default=None, help="where to put the databases (default: a temp dir)")
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="audit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    n = args.records
    rows: list[tuple[str, str, str]] = []

    # Small batches: the fsync-bound case (each commit waits for the disk), as group commit sees it.
    for batch, count, chunk in ((10, 3000, 300), (100, 20_000, 2000)):
        r, small = bench_pair(work, f"b{batch}", count, batch, chunk=chunk)
        rows.append(append_row(f"append, {batch} records/commit, {count:,} records", r))
        if batch == 10:
            writer_rate = asyncio.run(bench_writer(small, make_events(10_000, seed=9), 200))
            rows.append(("append via AuditWriter, 200 concurrent callers (group commit)",
                         f"{writer_rate:,.0f} rec/s", "-"))
        small.close()

    print("bulk appends ...", file=sys.stderr)
    r, store = bench_pair(work, "bulk", n, args.batch)
    rows.append(append_row(f"append, {args.batch} records/commit, {n:,} records (builds the query set)", r))
    store.backend._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(p.stat().st_size for p in work.glob("audit-bulk.db*"))
    psize = sum(p.stat().st_size for p in work.glob("plain-bulk.db*"))
    rows.append(("bytes on disk per record", f"{size / n:,.0f} B", f"{psize / n:,.0f} B"))

    mid = T0 + 15 * 86400
    filtered = [AuditQuery(tenant="shop-a")]
    filtered += [AuditQuery(tenant=t, actor=f"agent:{a}") for t, a in (("shop-a", 0), ("shop-b", 7), ("shop-c", 14))]
    filtered += [AuditQuery(tenant="shop-b", kind="block"), AuditQuery(tenant="shop-c", rule_id="ct-insult"),
                 AuditQuery(tenant="shop-a", category="over_promise"), AuditQuery(tenant="shop-b", overridden=True),
                 AuditQuery(tenant="shop-a", conversation_id="conv-3000"),
                 AuditQuery(tenant="shop-c", since=mid, until=mid + 86400, kind="send"),
                 AuditQuery(tenant="shop-a", since=T0, until=T0 + 86400, actor="agent:21")]
    p50, p99, hits = latency(store, filtered, args.repeat)
    rows.append((f"filtered first page (50), {len(filtered)} query shapes", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                 f"{hits} rows/round"))
    fts = [AuditQuery(tenant="shop-a", text="蓝牙耳机"), AuditQuery(tenant="shop-b", text="尺码偏大"),
           AuditQuery(tenant="shop-c", text="补发"), AuditQuery(tenant="shop-a", text="已到达转运中心"),
           AuditQuery(tenant="shop-b", text="订单号12345"), AuditQuery(tenant="shop-c", text="颜色发错", kind="customer_message"),
           AuditQuery(tenant="shop-a", text="保温杯可以退款"), AuditQuery(tenant="shop-b", text="订单号12345"),
           AuditQuery(tenant="shop-c", text="不存在的句子")]
    p50, p99, hits = latency(store, fts, args.repeat)
    rows.append((f"full-text first page (50), {len(fts)} queries (trigram FTS5 + LIKE; one 2-char)", f"p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                 f"{hits} rows/round"))

    q = AuditQuery(tenant="shop-a")
    started, cpu0 = time.perf_counter(), time.process_time()
    exported = 0
    with open(work / "export.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(csv_header())
        batch = []
        for rec in store.iter_query(q, page_size=1000):
            batch.append(rec)
            if len(batch) == 1000:
                fh.write(render("csv", batch, ZoneInfo("Asia/Shanghai")))
                exported += len(batch)
                batch = []
        fh.write(render("csv", batch, ZoneInfo("Asia/Shanghai")))
        exported += len(batch)
    export_rate, export_cpu = exported / (time.perf_counter() - started), exported / (time.process_time() - cpu0)
    rows.append((f"CSV export (one tenant, {exported:,} records, masked)", f"{export_rate:,.0f} rec/s; {export_cpu:,.0f} rec per CPU-second", "-"))

    cpu0 = time.process_time()
    report = store.verify()
    verify_cpu = report.records / (time.process_time() - cpu0)
    assert report.ok, report.to_dict()
    rows.append((f"verify ({report.records:,} records, 3 chains)", f"{report.records / report.seconds:,.0f} rec/s; {verify_cpu:,.0f} rec per CPU-second", "-"))
    store.close()

    print(f"\n{n:,} records, WAL + synchronous=FULL, data in {work}\n")
    print("| measurement | audit store | plain sqlite-utils |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
