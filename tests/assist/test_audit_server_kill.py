"""Issue 6 durability on the real server: kill -9 in the middle of a stream of sends.

Every send the server acknowledged (HTTP 202) must be in the audit log after the crash, and
the hash chain must still verify. The server runs as `python -m assist serve` in a subprocess on
the demo platform; sixteen clients send concurrently until the process is killed under them.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp
from conftest import wait_healthy
from test_service_process import _env, _start, _token

from assist.audit import AuditStore
from assist.audit_query import AuditQuery
from assist.audit_relay import drain


async def _sender(s: aiohttp.ClientSession, url: str, token: str, cid: str, acked: list[str], stop: asyncio.Event) -> None:
    h = {"Authorization": f"Bearer {token}"}
    async with s.post(url + f"/demo/customer/{cid}", headers=h, json={"text": "在吗?我的订单到哪了"}) as r:
        assert r.status in (200, 201, 202), await r.text()
    n = 0
    while not stop.is_set():
        key = f"{cid}-{n}"
        try:
            async with s.post(url + f"/v1/conversations/{cid}/replies", headers=h,
                              json={"text": f"您好,您的订单第{n}次更新已经为您查到了。", "idempotency_key": key}) as r:
                if r.status == 202:
                    acked.append(key)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return  # the server is gone: what was not acknowledged may be lost
        n += 1


async def test_every_acknowledged_send_survives_kill_9_and_the_chain_verifies(tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc, url = await _start(env)
    agent = _token(env, "--role", "agent", "--agent", "7")
    acked: list[str] = []
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
            await wait_healthy(s, url)
            tasks = [asyncio.create_task(_sender(s, url, agent, f"k{i}", acked, stop)) for i in range(16)]
            while len(acked) < 150:
                await asyncio.sleep(0.01)
            # Kill while requests are in flight, without warning the process.
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert len(acked) >= 150

    data = Path(env["ASSIST_DATA_DIR"])
    store = AuditStore(data / "audit.db", hmac_key=b"k")
    try:
        # Send records commit with their reply in state.db and are relayed to audit.db after it;
        # what the killed process had not relayed yet is appended by the next reader, as the
        # `assist audit` commands and the restarted service do.
        conn = sqlite3.connect(data / "state.db", isolation_level=None)
        try:
            drain(conn, store)
        finally:
            conn.close()
        logged = {
            r.details.get("idempotency_key")
            for kind in ("send", "rewrite")
            for r in store.iter_query(AuditQuery(tenant="default", kind=kind, limit=500))
        }
        missing = [k for k in acked if k not in logged]
        assert not missing, f"{len(missing)} acknowledged sends missing from the audit log: {missing[:5]}"
        report = store.verify()
        assert report.ok, report.first_problem
    finally:
        store.close()

    # The service comes back on the same files and its auditors' route agrees.
    proc, url = await _start(env)
    auditor = _token(env, "--role", "auditor")
    try:
        async with aiohttp.ClientSession() as s:
            await wait_healthy(s, url)
            async with s.get(url + "/v1/audit/verify", headers={"Authorization": f"Bearer {auditor}"}) as r:
                body = await r.json()
                assert r.status == 200 and body["ok"] is True, body
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
