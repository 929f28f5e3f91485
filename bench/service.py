"""Throughput and latency of the service next to a bare aiohttp handler, in one run.

Measures POST /v1/check (clean draft; and a draft with a violation, which writes an audit record)
and the send path POST /v1/conversations/{id}/replies (guard + state.db transaction + outbox +
durable audit), each at concurrency 32 with `wrk`, alternating rounds between the service and a
bare aiohttp server that returns the same JSON, and a third server, "bare + guard": the bare handler
that also runs Guard.check on the body's text, the floor under the service's cost (the guard and
HTTP, none of the service's own work). Reports medians over rounds and the ratio, then
p50/p99 at a fixed 300 requests/s. Beside req/s it reports each server's CPU time per request
(utime+stime of the whole process, all threads, from /proc), counted until the server is idle
again after the round, so work a round leaves behind (outbox deliveries) is charged to it. On a
machine shared with other work, req/s moves with the neighbours' load; CPU per request much less.

The send path's cost includes delivery: the demo platform runs inside the service, so each
accepted reply is also claimed from the outbox, "delivered" (a JSON line appended to a file),
marked delivered in state.db and audited, all in the measured process. A real platform is an HTTP
POST from the same process, so this is the service's real per-reply work; the bare handler does
none of it. wrk2 is not packaged for Debian, so the fixed rate comes from an
asyncio client that schedules each request on a fixed clock and measures from the scheduled time
(as wrk2 does), so a stall is counted rather than hidden.

Run: python bench/service.py [--duration 5] [--rounds 3] [--rate-seconds 10]
Needs: wrk (apt-get install -y wrk). Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHECK_CLEAN = "您好,您的订单已经发货,预计明天送达,请您留意物流信息。"
CHECK_VIOLATION = "这个我也不知道,你自己不会看吗"
REPLY = "您好,您的订单已经发货,预计明天送达。"
CONVERSATIONS = 64
CONCURRENCY = 32

_LUA = """
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.body = [==[{body}]==]
request = function()
  if {nconv} > 0 then
    counter = counter + 1
    return wrk.format(nil, "/v1/conversations/bench" .. (counter % {nconv}) .. "/replies")
  end
  return wrk.format(nil, "{path}")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "non2xx": %d}}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def serve_bare(port_file: str, bodies_file: str, kind: str = "bare") -> None:
    """The baseline: aiohttp handlers that read the body and return canned JSON of the same size.

    kind "guard" also decodes the body and runs Guard.check on its text (default library) before
    answering: the floor of the service's cost, guard and HTTP and nothing else (no token, log
    line, metrics, audit, state or outbox).
    """
    import gc

    from aiohttp import web

    bodies = json.loads(Path(bodies_file).read_text(encoding="utf-8"))
    guard = None
    if kind == "guard":
        import guards
        import phrases

        guard = guards.Guard(phrases.load_library())
        gc.collect()
        gc.freeze()  # as the service does after start-up

    def handler(name: str, status: int) -> Any:
        text = json.dumps(bodies[name], ensure_ascii=False)

        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            if guard is not None:
                guard.check(json.loads(raw)["text"])
            return web.Response(text=text, status=status, content_type="application/json")
        return handle

    app = web.Application()
    app.router.add_post("/v1/check", handler("check", 200))
    app.router.add_post("/v1/check-violation", handler("check_violation", 200))
    app.router.add_post("/v1/conversations/{cid}/replies", handler("send", 202))

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        Path(port_file).write_text(str(runner.addresses[0][1]))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def _start_service(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "assist", "serve", "--port", "0", "--data-dir", str(data)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if m:
            # Keep reading stderr in the background so the server never blocks on the pipe.
            import threading
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore
            return proc, m.group(1)
    raise SystemExit("assist serve did not start")


def _start_bare(tmp: Path, bodies: dict[str, Any], kind: str = "bare") -> tuple[subprocess.Popen, str]:
    port_file, bodies_file = tmp / f"{kind}.port", tmp / "bodies.json"
    bodies_file.write_text(json.dumps(bodies, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port_file), str(bodies_file), kind])
    for _ in range(600):
        if port_file.exists() and port_file.read_text():
            return proc, f"http://127.0.0.1:{port_file.read_text()}"
        time.sleep(0.05)
    raise SystemExit("bare server did not start")


def _token(env: dict[str, str], data: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "assist", "token", "create", "--role", "agent", "--agent", "1001",
                          "--data-dir", str(data)], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


async def _request(url: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_until_idle(pid: int, *, quiet_s: float = 0.2, limit_s: float = 10.0) -> float:
    """The process's CPU seconds once it has used (almost) none for quiet_s: its backlog is done."""
    deadline = time.monotonic() + limit_s
    last = _cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = _cpu_s(pid)
        if now - last < quiet_s * 0.02:
            return now
        last = now
    return last


def _wrk(base: str, lua: Path, duration: int, pid: int) -> dict[str, float]:
    cpu0 = _cpu_until_idle(pid)
    out = subprocess.run(["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{duration}s", "-s", str(lua), base],
                         capture_output=True, text=True, timeout=duration + 60)
    cpu1 = _cpu_until_idle(pid)
    m = re.search(r"BENCH (\{.*\})", out.stdout)
    if not m:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "errors": r["errors"] + r["non2xx"],
            "cpu_us": (cpu1 - cpu0) * 1e6 / max(1, r["requests"])}


async def _fixed_rate(urls: list[str], token: str, body: dict[str, Any], *, rate: float,
                      seconds: float) -> dict[str, float]:
    """Send `rate` requests per second on a fixed schedule; latency counts from the scheduled time."""
    import aiohttp

    data = json.dumps(body, ensure_ascii=False).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as s:
        start = time.perf_counter() + 0.1

        async def one(at: float, url: str) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            async with s.post(url, data=data, headers=headers) as r:
                await r.read()
                if r.status >= 300:
                    errors += 1
            latencies.append(time.perf_counter() - at)

        await asyncio.gather(*[one(start + i / rate, urls[i % len(urls)]) for i in range(int(rate * seconds))])
    latencies.sort()
    return {"p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server and endpoint")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="length of the fixed-rate runs")
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second of the fixed-rate runs")
    parser.add_argument("--serve-bare", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(*args.serve_bare)
        return
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    tmp = Path(tempfile.mkdtemp(prefix="assist-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSIST_")}
    env |= {"ASSIST_AUDIT_HMAC_KEY": "bench", "ASSIST_LOG_FORMAT": "json"}
    data = tmp / "data"
    token = _token(env, data)
    service, surl = _start_service(data, env)
    procs = [service]
    try:
        import urllib.request
        for _ in range(200):
            try:
                urllib.request.urlopen(surl + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        bodies: dict[str, Any] = {}
        for i in range(CONVERSATIONS):
            status, _ = asyncio.run(_request(f"{surl}/demo/customer/bench{i}", token, {"text": "在吗?"}))
            assert status == 201
            status, _ = asyncio.run(_request(f"{surl}/v1/conversations/bench{i}/replies", token, {"text": REPLY}))
            assert status == 202  # the greeting goes out once here, so the measured sends are plain
        _, bodies["check"] = asyncio.run(_request(f"{surl}/v1/check", token, {"text": CHECK_CLEAN}))
        _, bodies["check_violation"] = asyncio.run(_request(f"{surl}/v1/check", token, {"text": CHECK_VIOLATION}))
        _, bodies["send"] = asyncio.run(_request(f"{surl}/v1/conversations/bench0/replies", token, {"text": REPLY}))
        bare, burl = _start_bare(tmp, bodies)
        procs.append(bare)
        floor, furl = _start_bare(tmp, bodies, "guard")
        procs.append(floor)

        cases = [
            ("POST /v1/check (clean)", "/v1/check", "/v1/check", {"text": CHECK_CLEAN}, 0),
            ("POST /v1/check (violation, audited)", "/v1/check", "/v1/check-violation",
             {"text": CHECK_VIOLATION}, 0),
            ("POST …/replies (send path)", None, None, {"text": REPLY}, CONVERSATIONS),
        ]
        rows = []
        for name, spath, bpath, body, nconv in cases:
            results: dict[str, list[dict[str, float]]] = {"service": [], "bare": [], "floor": []}
            for rnd in range(args.rounds):
                order = [("service", surl, spath, service.pid), ("bare", burl, bpath, bare.pid),
                         ("floor", furl, bpath, floor.pid)]
                for who, base, path, pid in order[rnd % 3:] + order[:rnd % 3]:
                    lua = tmp / f"{who}.lua"
                    lua.write_text(_LUA.format(token=token, body=json.dumps(body, ensure_ascii=False),
                                               nconv=nconv, path=path or ""), encoding="utf-8")
                    results[who].append(_wrk(base, lua, args.duration, pid))
            med = {who: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
                   for who, rs in results.items()}
            errors = sum(r["errors"] for r in results["service"])
            rows.append((name, med, errors))

        rate_rows = []
        send_paths = [f"/v1/conversations/bench{i}/replies" for i in range(CONVERSATIONS)]
        for name, paths, body in [("POST /v1/check (clean)", ["/v1/check"], {"text": CHECK_CLEAN}),
                                  ("POST …/replies (send path)", send_paths, {"text": REPLY})]:
            s = asyncio.run(_fixed_rate([surl + p for p in paths], token, body, rate=args.rate,
                                        seconds=args.rate_seconds))
            b = asyncio.run(_fixed_rate([burl + p for p in paths], token, body, rate=args.rate,
                                        seconds=args.rate_seconds))
            rate_rows.append((name, s, b))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nConcurrency {CONCURRENCY} (wrk -t2 -c{CONCURRENCY}), {args.rounds} alternating rounds of "
          f"{args.duration} s, medians; {os.cpu_count()} cores shared by server and load generator; "
          f"load average at the end {load}.\n")
    print("| endpoint | service req/s | bare req/s | ratio | bare + guard req/s (ratio) "
          "| service / bare / bare + guard CPU us per req | CPU ratio "
          "| service p50 / p99 ms | bare p50 / p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, med, errors in rows:
        s, b, f = med["service"], med["bare"], med["floor"]
        print(f"| {name} | {s['rps']:.0f} | {b['rps']:.0f} | {s['rps'] / b['rps']:.0%} | "
              f"{f['rps']:.0f} ({f['rps'] / b['rps']:.0%}) | "
              f"{s['cpu_us']:.0f} / {b['cpu_us']:.0f} / {f['cpu_us']:.0f} | {b['cpu_us'] / s['cpu_us']:.0%} | "
              f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | {errors} |")
    print(f"\nFixed rate {args.rate:.0f} req/s for {args.rate_seconds:.0f} s (asyncio client, latency from the "
          "scheduled send time):\n")
    print("| endpoint | service p50 / p99 ms | bare p50 / p99 ms | errors |")
    print("|---|---:|---:|---:|")
    for name, s, b in rate_rows:
        print(f"| {name} | {s['p50_ms']:.2f} / {s['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | "
              f"{s['errors']:.0f} |")


if __name__ == "__main__":
    main()
