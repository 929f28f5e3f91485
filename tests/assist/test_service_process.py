"""The CLI as a newcomer runs it: `assist serve` in a subprocess, and the outbox across kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from conftest import TEST_LIBRARY, wait_healthy
from fake_chatwoot import FakeChatwoot

from adapters.base import sign

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    lib = tmp_path / "lib.json"
    lib.write_text(json.dumps(TEST_LIBRARY, ensure_ascii=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSIST_")}
    env.update({"ASSIST_DATA_DIR": str(tmp_path / "data"), "ASSIST_AUDIT_HMAC_KEY": "k",
                "ASSIST_TENANTS": json.dumps({"default": {"library_path": str(lib)}}), "ASSIST_LOG_FORMAT": "json"})
    env.update(extra)
    return env


async def _start(env: dict[str, str], stdout: Any = asyncio.subprocess.DEVNULL) -> tuple[asyncio.subprocess.Process, str]:
    """Start `python -m assist serve --port 0` and read its URL from the start-up banner."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "assist", "serve", "--port", "0", env=env,
        stdout=stdout, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        if not line:
            raise AssertionError("assist serve exited: " + "".join(seen))
        seen.append(line)
        if m := _LISTENING.search(line):
            # Drain the rest of stderr so the child never blocks on a full pipe.
            asyncio.get_running_loop().create_task(_drain(proc.stderr))
            return proc, m.group(1)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


def _token(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "assist", "token", "create", *args], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


async def test_serve_subprocess_answers_and_prints_how_to_start(tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc, url = await _start(env)
    try:
        async with aiohttp.ClientSession() as s:
            await wait_healthy(s, url)
            tok = _token(env, "--role", "agent", "--agent", "1001")
            assert tok.startswith("ast_")
            h = {"Authorization": f"Bearer {tok}"}
            async with s.post(url + "/demo/customer/c1", json={"text": "在吗"}, headers=h) as r:
                assert r.status == 201
            async with s.post(url + "/v1/conversations/c1/replies", json={"text": "在的"}, headers=h) as r:
                assert r.status == 202
            async with s.post(url + "/v1/check", json={"text": "不知道"}, headers=h) as r:
                assert (await r.json())["action"] == "rewrite"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    stored = (tmp_path / "data" / "state.db").read_bytes()
    assert tok.encode() not in stored  # only the hash is kept


async def test_serve_logs_a_json_line_per_request_soon_and_all_of_them_at_exit(tmp_path: Path) -> None:
    """Log lines are buffered, not flushed one by one: they reach stdout within the flush
    interval while the service runs, and every one of them by the time it exits."""
    env = _env(tmp_path)
    log_path = tmp_path / "stdout.log"
    with log_path.open("wb") as out:
        proc, url = await _start(env, stdout=out)
        try:
            tok = _token(env, "--role", "agent", "--agent", "1001")
            async with aiohttp.ClientSession() as s:
                await wait_healthy(s, url)
                h = {"Authorization": f"Bearer {tok}", "X-Request-ID": "first"}
                async with s.post(url + "/v1/check", json={"text": "您好"}, headers=h) as r:
                    assert r.status == 200
                for _ in range(50):
                    if b'"first"' in log_path.read_bytes():
                        break
                    await asyncio.sleep(0.05)
                assert b'"first"' in log_path.read_bytes()  # flushed while still running
                for i in range(20):
                    async with s.post(url + "/v1/check", json={"text": "您好"},
                                      headers={**h, "X-Request-ID": f"r{i}"}) as r:
                        assert r.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    lines = [json.loads(x) for x in log_path.read_text(encoding="utf-8").splitlines()]
    ids = [x.get("request_id") for x in lines if x.get("event") == "draft.checked"]
    assert ids == ["first", *[f"r{i}" for i in range(20)]]
    assert tok not in log_path.read_text(encoding="utf-8")


def test_token_create_refuses_unknown_tenant_and_agent_without_id(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for args, message in [(["--role", "agent", "--agent", "1", "--tenant", "ghost"], "not configured"),
                          (["--role", "agent"], "--agent is required")]:
        out = subprocess.run([sys.executable, "-m", "assist", "token", "create", *args], env=env,
                             capture_output=True, text=True)
        assert out.returncode != 0 and message in out.stderr and out.stdout == ""


def test_serve_refuses_unsafe_prod_config(tmp_path: Path) -> None:
    env = _env(tmp_path, ASSIST_ENV="prod", ASSIST_PLATFORM="chatwoot", ASSIST_CHATWOOT_BASE_URL="http://x",
               ASSIST_CHATWOOT_ACCOUNT_ID="1", ASSIST_CHATWOOT_API_TOKEN="t")
    out = subprocess.run([sys.executable, "-m", "assist", "serve", "--port", "0"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "chatwoot signature secret is still the placeholder" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _post_incoming(s: aiohttp.ClientSession, url: str, platform: str, cid: int) -> None:
    body = {"event": "message_created", "id": 5000 + cid, "content": "在吗", "message_type": "incoming",
            "private": False, "sender": {"id": 88, "type": "contact"}, "conversation": {"id": cid},
            "account": {"id": 1}}
    async with s.post(url + f"/v1/webhooks/chatwoot?access_token={platform}", json=body) as r:
        assert r.status == 200, await r.text()


async def test_outbox_survives_kill_9_and_delivers_every_reply_exactly_once(tmp_path: Path) -> None:
    port = _free_port()  # Chatwoot will live here, but is down for now
    env = _env(tmp_path, ASSIST_PLATFORM="chatwoot", ASSIST_CHATWOOT_BASE_URL=f"http://127.0.0.1:{port}",
               ASSIST_CHATWOOT_ACCOUNT_ID="1", ASSIST_CHATWOOT_API_TOKEN="cw-test-token",
               ASSIST_CHATWOOT_SIGNATURE_MODE="off", ASSIST_DELIVERY_BACKOFF_BASE_S="0.05",
               ASSIST_DELIVERY_BACKOFF_MAX_S="0.2", ASSIST_DELIVERY_TIMEOUT_S="1")
    proc, url = await _start(env)
    agent, platform = _token(env, "--role", "agent", "--agent", "7"), _token(env, "--role", "platform")
    accepted: dict[int, tuple[str, str]] = {}
    try:
        async with aiohttp.ClientSession() as s:
            await wait_healthy(s, url)
            h = {"Authorization": f"Bearer {agent}"}
            for cid in range(1, 6):
                await _post_incoming(s, url, platform, cid)
                for n in range(3):
                    async with s.post(url + f"/v1/conversations/{cid}/replies", headers=h,
                                      json={"text": f"您好,第{n}条回复", "idempotency_key": f"{cid}-{n}"}) as r:
                        body = await r.json()
                        assert r.status == 202, body
                        accepted[body["outbox_ids"][-1]] = (str(cid), body["text"])
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert len(accepted) == 15

    chatwoot = await FakeChatwoot(port=port).start()
    proc, url = await _start(env)
    try:
        async with aiohttp.ClientSession() as s:
            h = {"Authorization": f"Bearer {agent}"}
            for _ in range(1000):
                statuses: list[Any] = []
                for cid in range(1, 6):
                    async with s.get(url + f"/v1/conversations/{cid}", headers=h) as r:
                        statuses += [d["status"] for d in (await r.json())["deliveries"]]
                if statuses == ["delivered"] * 15:
                    break
                await asyncio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        await chatwoot.stop()
    got = sorted(m["content_attributes"]["assist_outbox_id"] for m in chatwoot.messages)
    assert got == sorted(accepted), "every accepted reply exactly once"
    for m in chatwoot.messages:
        assert (str(m["conversation_id"]), m["content"]) == accepted[m["content_attributes"]["assist_outbox_id"]]
    assert statuses == ["delivered"] * 15
    # Order within a conversation is kept.
    for cid in range(1, 6):
        ids = [m["content_attributes"]["assist_outbox_id"] for m in chatwoot.messages if m["conversation_id"] == cid]
        assert ids == sorted(ids)


async def test_generic_webhook_signed_events_flow_in(tmp_path: Path) -> None:
    env = _env(tmp_path, ASSIST_WEBHOOK_SECRET="s3cret")
    proc, url = await _start(env)
    try:
        platform, agent = _token(env, "--role", "platform"), _token(env, "--role", "agent", "--agent", "9")
        async with aiohttp.ClientSession() as s:
            raw = json.dumps({"event": "customer_message", "conversation_id": "g1", "text": "在吗",
                              "delivery_id": "d-1"}).encode()
            ts = str(int(__import__("time").time()))
            headers = {"Authorization": f"Bearer {platform}", "Content-Type": "application/json",
                       "X-Assist-Timestamp": ts, "X-Assist-Signature": sign("s3cret", ts, raw)}
            for expected in ("accepted", "duplicate"):
                async with s.post(url + "/v1/webhooks/generic", data=raw, headers=headers) as r:
                    assert r.status == 200 and (await r.json())["status"] == expected
            async with s.get(url + "/v1/conversations/g1", headers={"Authorization": f"Bearer {agent}"}) as r:
                assert (await r.json())["customer_messages"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def test_kill_9_while_a_delivery_is_in_flight_does_not_duplicate_it(tmp_path: Path) -> None:
    chatwoot = await FakeChatwoot(slow_s=30.0).start()
    env = _env(tmp_path, ASSIST_PLATFORM="chatwoot", ASSIST_CHATWOOT_BASE_URL=chatwoot.base_url,
               ASSIST_CHATWOOT_ACCOUNT_ID="1", ASSIST_CHATWOOT_API_TOKEN="cw-test-token",
               ASSIST_CHATWOOT_SIGNATURE_MODE="off", ASSIST_DELIVERY_TIMEOUT_S="60")
    agent, platform = _token(env, "--role", "agent", "--agent", "7"), _token(env, "--role", "platform")
    chatwoot.fail_next("slow")  # Chatwoot stores the message, then hangs before answering
    proc, url = await _start(env)
    try:
        async with aiohttp.ClientSession() as s:
            await _post_incoming(s, url, platform, 1)
            async with s.post(url + "/v1/conversations/1/replies", json={"text": "您好,在的"},
                              headers={"Authorization": f"Bearer {agent}"}) as r:
                assert r.status == 202
            for _ in range(1000):
                if chatwoot.messages:
                    break
                await asyncio.sleep(0.01)
            assert len(chatwoot.messages) == 1
    finally:
        proc.send_signal(signal.SIGKILL)  # dies while its POST is still waiting for an answer
        await proc.wait()
    proc, url = await _start(env)
    try:
        async with aiohttp.ClientSession() as s:
            h = {"Authorization": f"Bearer {agent}"}
            for _ in range(1000):
                async with s.get(url + "/v1/conversations/1", headers=h) as r:
                    deliveries = (await r.json())["deliveries"]
                if deliveries[0]["status"] == "delivered":
                    break
                await asyncio.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        await chatwoot.stop()
    assert deliveries[0]["status"] == "delivered"
    assert len(chatwoot.messages) == 1
    assert [r["method"] for r in chatwoot.requests] == ["POST", "GET"]
