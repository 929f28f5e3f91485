"""The generic platform end to end: events in as our JSON, replies out as signed JSON with an idempotency key."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp import web
from conftest import Service, assert_error

from adapters.base import sign, verify_signature
from assist.app import EVENT_BUS


@pytest.fixture
async def receiver() -> Any:
    """A platform endpoint that fails its first call with 503, then records what it accepts."""
    got: list[dict[str, Any]] = []
    seen_keys: set[str] = set()

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        got.append({"headers": dict(request.headers), "raw": raw})
        if len(got) == 1:
            return web.Response(status=503, text="busy")
        key = request.headers["Idempotency-Key"]
        duplicate = key in seen_keys
        seen_keys.add(key)
        return web.json_response({"message_id": f"p-{len(seen_keys)}", "duplicate": duplicate})

    app = web.Application()
    app.router.add_post("/replies", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/replies", got
    await runner.cleanup()


async def post_event(svc: Service, token: str, event: dict[str, Any], secret: str = "hook-secret") -> tuple:
    raw = json.dumps(event, ensure_ascii=False).encode()
    ts = str(int(time.time()))
    return await svc.call("POST", "/v1/webhooks/generic", token=token, data=raw,
                          headers={"Content-Type": "application/json", "X-Assist-Timestamp": ts,
                                   "X-Assist-Signature": sign(secret, ts, raw)})


async def test_reply_reaches_the_generic_platform_once_after_a_503(start_service: Any, receiver: Any) -> None:
    url, got = receiver
    svc = await start_service(platform="webhook", webhook_url=url, webhook_secret="hook-secret")
    platform, agent = svc.token("platform"), svc.token()
    status, body, _ = await post_event(svc, platform, {"event": "customer_message", "conversation_id": "g1",
                                                       "text": "在吗", "platform_ref": {"room": "r-9"}})
    assert status == 200 and body["status"] == "accepted"
    status, body, _ = await svc.call("POST", "/v1/conversations/g1/replies", token=agent,
                                     json_body={"text": "您好,在的"})
    assert status == 202
    for _ in range(500):
        _, conv, _ = await svc.call("GET", "/v1/conversations/g1", token=agent)
        if conv["deliveries"][0]["status"] == "delivered":
            break
        await asyncio.sleep(0.01)
    d = conv["deliveries"][0]
    assert d["status"] == "delivered" and d["attempts"] == 2 and d["platform_message_id"] == "p-1"
    assert len(got) == 2 and got[0]["headers"]["Idempotency-Key"] == got[1]["headers"]["Idempotency-Key"]
    h = got[1]["headers"]
    verify_signature(secret="hook-secret", timestamp=h["X-Assist-Timestamp"], signature=h["X-Assist-Signature"],
                     body=got[1]["raw"], now=time.time(), window_s=300)
    sent = json.loads(got[1]["raw"])
    assert sent["conversation_id"] == "g1" and sent["platform_ref"] == {"room": "r-9"}
    assert sent["text"] == body["text"] and sent["kind"] == "reply"


async def test_generic_events_update_state_and_reach_the_bus(start_service: Any, receiver: Any) -> None:
    url, _ = receiver
    svc = await start_service(platform="webhook", webhook_url=url, webhook_secret="hook-secret")
    seen: list[tuple[str, str | None]] = []
    svc.app[EVENT_BUS].subscribe(lambda ev: seen.append((ev.kind, ev.agent_id)))
    platform, agent = svc.token("platform"), svc.token()
    for event in [{"event": "opened", "conversation_id": "g2"},
                  {"event": "assigned", "conversation_id": "g2", "agent_id": "a-5"},
                  {"event": "transferred", "conversation_id": "g2", "agent_id": "a-6"},
                  {"event": "closed", "conversation_id": "g2"}]:
        status, body, _ = await post_event(svc, platform, event)
        assert status == 200, body
    _, conv, _ = await svc.call("GET", "/v1/conversations/g2", token=agent)
    assert conv["status"] == "closed" and conv["agent_id"] == "a-6"
    assert seen == [("opened", None), ("assigned", "a-5"), ("transferred", "a-6"), ("closed", None)]
    status, body, _ = await post_event(svc, platform, {"event": "opened", "conversation_id": "g2"}, secret="wrong")
    assert_error(status, body, 401, "signature_invalid")


async def test_a_failing_bus_subscriber_does_not_fail_the_request(svc: Service) -> None:
    def broken(_: Any) -> None:
        raise RuntimeError("subscriber bug")

    calls: list[str] = []

    async def fine(ev: Any) -> None:
        calls.append(ev.kind)

    svc.app[EVENT_BUS].subscribe(broken)
    svc.app[EVENT_BUS].subscribe(fine)
    tok = svc.token()
    status, _, _ = await svc.call("POST", "/demo/customer/c1", token=tok, json_body={"text": "在吗"})
    assert status == 201 and calls == ["opened", "customer_message"]
