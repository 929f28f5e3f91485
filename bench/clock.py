"""Conversation clock at 100,000 open conversations: memory per conversation and reminder lateness.

Runs the real ClockService as the service runs it (one scheduler task, RealClock; its rows
committed by state.db's writer thread, its audit records written by a child process to the real
audit store, unless --no-audit) against a bare heap-and-sleep loop that fires the same deadlines,
each in a fresh child process so RSS and tracemalloc numbers do not mix.

All 100,000 conversations are opened first; then each gets a customer question at a random
moment of a 60 s window, 60% get an agent reply some time later (some before the pre-warning,
some after the alert, some a 请稍等), 30% a second customer message. Two profiles:

* `real` (default): the spec's thresholds (response 60 s, pre-warning 45 s, reply rate 30 s, plain
  wait 60 s); replies come 5-90 s after the question, second messages 10-120 s after it. About
  3,000 events/s during the window; a run takes about four minutes per side.
* `stress`: time compressed tenfold (response 6 s, pre-warning 4 s, reply rate 5 s, plain wait
  6 s, a named wait of 12 s standing for 2 minutes) with the same number of events, so most
  questions cross a threshold: about 3,000 events/s and 6,500 audited reminders/s, far more than
  100,000 conversations make on real thresholds. It measures the clock under overload.

Example: python bench/clock.py --conversations 100000 [--profile real|stress]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import heapq
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from array import array
from pathlib import Path
from zoneinfo import ZoneInfo

from phrases import Thresholds

SCALED = dict(response_s=6, pre_warn_s=4, reply_rate_s=5, reply_rate_hours=("00:00", "23:59"),
              wait_default_s=6, wait_max_s=18, slow_gap_s=20)
TEMPLATES = {"wait-thanks": "感谢您的耐心等待", "wait-apology": "很抱歉让您久等了", "thanks-reply": "不客气",
             "closing": "请问是否还有其他问题可以为您服务?"}
CUSTOMER = ["请问什么时候发货", "这个能便宜点吗", "在吗", "谢谢", "怎么退货", "好的"]
# Named waits are scaled like the thresholds: 12 s stands for the spec's 2 minutes.
AGENT = ["您好,已为您查询,今天发货。", "好的,请稍等", "请您稍等{wait}", "亲,可以的。"]
# Per profile: thresholds, how much later replies and follow-ups come than in `stress`, and the
# named wait an agent promises (2 minutes, scaled like the thresholds).
PROFILES = {
    "real": (dict(reply_rate_hours=("00:00", "23:59")), 10.0, "2分钟"),
    "stress": (SCALED, 1.0, "12秒"),
}


def thresholds(profile: str) -> Thresholds:
    return Thresholds(**PROFILES[profile][0])


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def schedule(n: int, window: float, seed: int, profile: str) -> list[tuple[float, str, str, str]]:
    """Random customer activity: (offset s, kind, conversation id, text), sorted by time."""
    rnd = random.Random(seed)
    _, later, wait = PROFILES[profile]
    agent = [a.format(wait=wait) for a in AGENT]
    out = []
    for i in range(n):
        cid = f"conv-{i:06d}"
        t = rnd.uniform(0, window)
        out.append((t, "customer_message", cid, rnd.choice(CUSTOMER)))
        if rnd.random() < 0.6:  # some answered before the pre-warning, some after the alert
            out.append((t + rnd.uniform(0.5, 9) * later, "agent_message", cid, rnd.choice(agent)))
        if rnd.random() < 0.3:
            out.append((t + rnd.uniform(1, 12) * later, "customer_message", cid, rnd.choice(CUSTOMER)))
    out.sort()
    return out


def _rules(profile: str):
    from assist.reminder_rules import TenantRules

    return TenantRules(thresholds(profile), ZoneInfo("UTC"), TEMPLATES)


def _service(tmp: Path, *, audit: object | None, profile: str, writer: object):
    from guards.waits import find_wait

    from assist.clock import RealClock
    from assist.clock_sql import ClockStore
    from assist.console import ClockService

    rules = _rules(profile)
    return ClockService(clock=RealClock(), rules_for=lambda t: rules,
                        store=ClockStore(tmp / "state.db", writer=writer),  # type: ignore[arg-type]
                        audit=audit, find_wait=find_wait)


async def run_engine(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    from assist.events import ConversationEvent

    audit = None
    if args.audit:
        from assist.audit_process import AuditProcess

        # As the service does (assist/console.py clock_ctx): a child process writes the records.
        audit = AuditProcess(tmp / "audit.db", hmac_key=b"bench")
    from assist.state_sql import StateDB

    # As the service does: state.db's one writer thread commits the clock's rows.
    state = StateDB(tmp / "state.db")
    svc = _service(tmp, audit=audit, profile=args.profile, writer=state)
    lateness, armed = array("d"), []
    fire = svc.engine._fire
    clock = svc.clock

    def timed(st: object, rule: str, fire_at: float) -> None:
        now = clock.now()
        lateness.append(now - fire_at)
        armed.append(fire_at)
        fire(st, rule, fire_at)  # type: ignore[arg-type]

    svc.engine.scheduler._on_fire = timed
    svc.engine.apply(ConversationEvent("agent_message", "warm", "warm", None, "请稍等", clock.now()))  # load guards' tables
    await svc.start()
    events = schedule(args.conversations, args.window, args.seed, args.profile)
    gc.collect()
    if args.freeze:
        gc.freeze()  # as create_app does once started: the guard's tables leave the GC's walks
    rss0 = rss_bytes()
    for i in range(args.conversations):  # the 100,000 conversations are open before activity starts
        cid = f"conv-{i:06d}"
        svc.engine.apply(ConversationEvent("opened", "bench", cid, f"agent-{cid[-3:]}", None, clock.now()))
    await svc.commit()
    start = clock.now() + 0.2
    peak_open = behind = 0
    for offset, kind, cid, text in events:
        delay = start + offset - clock.now()
        if delay > 0:
            await asyncio.sleep(delay)
            behind = 0
        else:
            behind += 1
            if behind % 64 == 0:  # requests arrive as separate tasks; let the scheduler in between
                await asyncio.sleep(0)
        svc.engine.apply(ConversationEvent(kind, "bench", cid, f"agent-{cid[-3:]}", text, clock.now()))  # type: ignore[arg-type]
        svc._kick()
        peak_open = max(peak_open, len(svc.engine.scheduler))
    rss_open = rss_bytes()
    while len(svc.engine.scheduler):
        await asyncio.sleep(0.05)
    await svc.commit()
    await svc.stop()  # closes the audit process too
    state.close()
    fired_at = [(a - start) for a in armed]
    (tmp / "deadlines.json").write_text(json.dumps(fired_at))
    return {"lateness": list(lateness), "rss_delta": rss_open - rss0, "peak_timers": peak_open,
            "fired": len(lateness), "events": len(events)}


async def run_bare(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """One task, one heap, one sleep: the least a scheduler of these deadlines can do."""
    offsets = json.loads((tmp / "deadlines.json").read_text())
    rnd = random.Random(args.seed)
    # Each deadline is pushed a threshold's worth (1-6 s) before it falls due, as the engine arms them.
    later = PROFILES[args.profile][1]
    pushes = sorted((max(0.0, d - rnd.uniform(1, 6) * later), d) for d in offsets)
    heap: list[tuple[float, int, str]] = []
    wake = asyncio.Event()
    lateness = array("d")
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def runner() -> None:
        while True:
            wake.clear()
            now = time.time()
            while heap and heap[0][0] <= now:
                d, _, _ = heapq.heappop(heap)
                lateness.append(time.time() - d)
            if len(lateness) == len(pushes):
                done.set()
                return
            if heap:
                h = loop.call_later(heap[0][0] - now, wake.set)
                await wake.wait()
                h.cancel()
            else:
                await wake.wait()

    task = asyncio.create_task(runner())
    gc.collect()
    if args.freeze:
        gc.freeze()
    rss0 = rss_bytes()
    start = time.time() + 0.2
    for i, (push_at, d) in enumerate(pushes):
        delay = start + push_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        first = not heap or start + d < heap[0][0]
        heapq.heappush(heap, (start + d, i, f"conv-{i:06d}"))
        if first:
            wake.set()
    rss_open = rss_bytes()
    await done.wait()
    await task
    return {"lateness": list(lateness), "rss_delta": rss_open - rss0, "fired": len(lateness)}


def measure_memory(args: argparse.Namespace, variant: str) -> dict[str, object]:
    """tracemalloc bytes held per open conversation, each with a pending question (4 timers)."""
    from assist.clock import RealClock
    from assist.events import ConversationEvent
    from assist.reminders import ReminderEngine

    n, now = args.conversations, time.time()
    cids = [f"conv-{i:06d}" for i in range(n)]  # ids exist in both variants; not counted
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    if variant == "engine":
        rules = _rules(args.profile)
        engine = ReminderEngine(clock=RealClock(), rules_for=lambda t: rules, find_wait=lambda s: None,
                                deliver=lambda t, a, e: None)
        for cid in cids:
            engine.apply(ConversationEvent("customer_message", "bench", cid, "agent-1", "请问什么时候发货", now))
        engine.dirty.clear()  # the flush task empties it after each batch
        keep: object = engine
        timers = len(engine.scheduler)
    else:
        th = thresholds(args.profile)
        heap: list[tuple[float, int, str]] = []
        seq = 0
        for cid in cids:
            for off in (th.pre_warn_s, th.response_s, th.reply_rate_s - 2, th.reply_rate_s):
                heapq.heappush(heap, (now + off, seq, cid))
                seq += 1
        keep, timers = heap, len(heap)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del keep
    return {"bytes": used, "per_conversation": used / n, "timers": timers}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def child(args: argparse.Namespace) -> None:
    tmp = Path(args.tmp)
    if args.child.startswith("mem-"):
        out = measure_memory(args, args.child[4:])
    elif args.child == "engine":
        out = asyncio.run(run_engine(args, tmp))
    else:
        out = asyncio.run(run_bare(args, tmp))
    if "lateness" in out:
        lat = [x * 1000 for x in out.pop("lateness")]  # type: ignore[union-attr]
        out.update(p50=pct(lat, 50), p99=pct(lat, 99), max=max(lat) if lat else float("nan"))
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conversations", type=int, default=100_000)
    ap.add_argument("--window", type=float, default=60.0, help="seconds over which first questions are spread")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="real", help="thresholds and pace (see above)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--audit", action=argparse.BooleanOptionalAction, default=True,
                    help="write reminder/threshold records to a real AuditStore")
    ap.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=True,
                    help="gc.freeze() the start-up heap (the guard's phrase/pinyin tables) before the run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.child:
        child(args)
        return
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("mem-engine", "mem-bare", "engine", "bare"):
            cmd = [sys.executable, __file__, "--child", name, "--tmp", tmp, "--conversations",
                   str(args.conversations), "--window", str(args.window), "--seed", str(args.seed),
                   "--profile", args.profile,
                   "--audit" if args.audit else "--no-audit", "--freeze" if args.freeze else "--no-freeze"]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            res[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    n = args.conversations
    me, mb, e, b = res["mem-engine"], res["mem-bare"], res["engine"], res["bare"]
    extra = me["per_conversation"] - mb["per_conversation"]
    print(f"conversations={n} events={e['events']} reminders fired={e['fired']} (bare fired {b['fired']})"
          f" window={args.window}s profile={args.profile} thresholds={thresholds(args.profile).model_dump()}"
          f" audit={args.audit}\n")
    print("| | clock service | bare heap+sleep | ratio / target |\n|---|---|---|---|")
    print(f"| lateness p50 (ms) | {e['p50']:.2f} | {b['p50']:.2f} | |")
    print(f"| lateness p99 (ms) | {e['p99']:.2f} | {b['p99']:.2f} | {e['p99'] / max(b['p99'], 1e-9):.2f}x "
          f"(target <= 100 ms and <= 2x) |")
    print(f"| lateness max (ms) | {e['max']:.2f} | {b['max']:.2f} | |")
    print(f"| tracemalloc per open conversation (B) | {me['per_conversation']:.0f} | {mb['per_conversation']:.0f} "
          f"| +{extra:.0f} B beyond bare (target <= 1024) |")
    print(f"| RSS delta while open, per conversation (B) | {e['rss_delta'] / n:.0f} | {b['rss_delta'] / n:.0f} | |")
    print(f"| timers held (memory run) | {me['timers']} | {mb['timers']} | |")


if __name__ == "__main__":
    main()
