"""Generic webhook adapter, signatures and the demo platform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.base import OutboundMessage, PayloadError, SignatureError, sign, verify_signature
from adapters.demo import DemoPlatform
from adapters.webhook import WebhookDeliverer, parse_generic


def test_sign_matches_chatwoots_scheme() -> None:
    import hashlib
    import hmac

    expected = "sha256=" + hmac.new(b"k", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", b'{"a":1}') == expected


@pytest.mark.parametrize(("ts", "sig", "now", "code"), [
    (None, "sha256=x", 100, "signature_missing"),
    ("abc", "sha256=x", 100, "signature_invalid"),
    ("100", "sha256=deadbeef", 100, "signature_invalid"),
    ("100", None, 100, "signature_missing"),
    ("100", "GOOD", 401, "signature_expired"),
    ("100", "GOOD", -201, "signature_expired"),
], ids=["no-timestamp", "timestamp-not-number", "wrong-mac", "no-signature", "too-old", "from-the-future"])
def test_verify_signature_refusals(ts: str | None, sig: str | None, now: float, code: str) -> None:
    if sig == "GOOD":
        sig = sign("k", ts or "", b"body")
    with pytest.raises(SignatureError) as info:
        verify_signature(secret="k", timestamp=ts, signature=sig, body=b"body", now=now, window_s=300)
    assert info.value.code == code


def test_verify_signature_accepts_within_window() -> None:
    verify_signature(secret="k", timestamp="100", signature=sign("k", "100", b"body"), body=b"body", now=399,
                     window_s=300)


def test_parse_generic_events() -> None:
    event, delivery = parse_generic({"event": "agent_message", "conversation_id": "g1", "text": "好的",
                                     "agent_id": "a1", "delivery_id": "d1", "platform_ref": {"x": 1}})
    assert event.kind == "agent_message" and event.post_hoc and delivery == "d1" and event.platform_ref == {"x": 1}
    event, delivery = parse_generic({"event": "closed", "conversation_id": "g1"})
    assert event.kind == "closed" and not event.post_hoc and delivery is None


@pytest.mark.parametrize("body", [{"event": "exploded", "conversation_id": "g"}, {"event": "opened"},
                                  {"event": "customer_message", "conversation_id": "g"},
                                  {"event": "customer_message", "conversation_id": "g", "text": "  "},
                                  {"event": "opened", "conversation_id": 5},
                                  {"event": "opened", "conversation_id": "g", "extra": 1},
                                  {"event": "opened", "conversation_id": "g", "at": float("nan")},
                                  {"event": "opened", "conversation_id": "g", "at": -5}],
                         ids=["unknown-event", "no-conversation", "no-text", "blank-text", "int-id", "extra", "nan-time",
                              "negative-time"])
def test_parse_generic_refuses(body: dict) -> None:
    with pytest.raises(PayloadError) as info:
        parse_generic(body)
    assert info.value.details


async def test_webhook_deliverer_posts_signed_json_with_idempotency_key() -> None:
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        received.append({"headers": dict(request.headers), "raw": raw})
        if len(received) == 1:
            return web.Response(status=503)
        return web.json_response({"message_id": "p-1"})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with aiohttp.ClientSession() as s:
            d = WebhookDeliverer(s, url=url, secret="sec")
            msg = OutboundMessage(3, "default", "g1", "reply", "您好", {"x": 1})
            with pytest.raises(Exception) as info:
                await d.deliver(msg)
            assert getattr(info.value, "retryable", False)
            receipt = await d.deliver(msg)
    finally:
        await runner.cleanup()
    assert receipt.platform_message_id == "p-1"
    h = received[1]["headers"]
    assert h["Idempotency-Key"] == "assist-outbox-3" == received[0]["headers"]["Idempotency-Key"]
    verify_signature(secret="sec", timestamp=h["X-Assist-Timestamp"], signature=h["X-Assist-Signature"],
                     body=received[1]["raw"], now=float(h["X-Assist-Timestamp"]), window_s=300)
    assert json.loads(received[1]["raw"]) == {"id": 3, "idempotency_key": "assist-outbox-3", "tenant": "default",
                                              "conversation_id": "g1", "kind": "reply", "text": "您好",
                                              "platform_ref": {"x": 1}}


async def test_demo_platform_delivers_once_and_remembers_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    demo = DemoPlatform(path, clock=lambda: 1.0)
    demo.customer_says("default", "c1", "在吗")
    msg = OutboundMessage(1, "default", "c1", "reply", "在的")
    first = await demo.deliver(msg)
    again = DemoPlatform(path, clock=lambda: 2.0)
    assert (await again.deliver(msg)) == first == (await again.find_delivered(msg))
    assert [e["text"] for e in again.transcript("default", "c1") or []] == ["在吗", "在的"]
    assert again.transcript("default", "nope") is None
