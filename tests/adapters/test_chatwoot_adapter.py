"""Chatwoot adapter: recorded webhook payloads to events, and the REST deliverer against a fake Chatwoot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fake_chatwoot import FakeChatwoot

from adapters.base import DeliveryError, OutboundMessage, PayloadError
from adapters.chatwoot import ChatwootDeliverer, delivery_key, parse_webhook

PAYLOADS = Path(__file__).resolve().parent / "payloads"
NOW = 1_777_700_000.0


def load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("name", "expected"), [
    ("message_created_incoming", ("customer_message", "152", "7", "在吗?我的快递到哪了", False)),
    ("message_created_outgoing_agent", ("agent_message", "152", "7", "你自己不会看呀", True)),
    ("conversation_created", ("opened", "153", None, None, False)),
    ("conversation_status_changed_resolved", ("closed", "152", "7", None, False)),
    ("conversation_updated_assignee", ("assigned", "152", "12", None, False)),
    ("conversation_updated_team", ("transferred", "152", "12", None, False)),
], ids=lambda v: v if isinstance(v, str) else None)
def test_payload_becomes_one_event(name: str, expected: tuple) -> None:
    events, ignored = parse_webhook(load(name), now=NOW)
    assert ignored is None and len(events) == 1
    e = events[0]
    assert (e.kind, e.conversation_id, e.agent_id, e.text, e.post_hoc) == expected


@pytest.mark.parametrize(("name", "reason"), [
    ("message_created_private_note", "private note"),
    ("message_created_echo", "our own reply (echo)"),
    ("message_created_bot", "outgoing message from 'agent_bot', not an agent"),
    ("conversation_typing_on", "event 'conversation_typing_on' is not used"),
    ("conversation_status_changed_pending", "status 'pending' is neither open nor resolved"),
], ids=["private-note", "echo", "bot", "typing", "pending"])
def test_payload_is_ignored_with_a_reason(name: str, reason: str) -> None:
    assert parse_webhook(load(name), now=NOW) == ([], reason)


def test_timestamps_in_both_documented_formats_and_account_reference() -> None:
    incoming = parse_webhook(load("message_created_incoming"), now=NOW)[0][0]
    assert incoming.at == 1777626843.0  # "2026-05-01T09:14:03.000Z"
    assert incoming.platform_ref == {"account_id": 1, "inbox_id": 3} and incoming.message_id == "4711"
    outgoing = parse_webhook(load("message_created_outgoing_agent"), now=NOW)[0][0]
    assert outgoing.at == 1583240757.0  # "2020-03-03 13:05:57 UTC"


@pytest.mark.parametrize("created_at", [float("nan"), float("inf"), -1, "not a date", None, True],
                         ids=["nan", "inf", "negative", "garbage", "null", "bool"])
def test_unusable_timestamps_fall_back_to_now(created_at: object) -> None:
    body = load("message_created_incoming") | {"created_at": created_at}
    assert parse_webhook(body, now=NOW)[0][0].at == NOW


def test_integer_message_type_and_missing_timestamp() -> None:
    body = load("message_created_incoming") | {"message_type": 0}
    del body["created_at"]
    event = parse_webhook(body, now=NOW)[0][0]
    assert event.kind == "customer_message" and event.at == NOW


@pytest.mark.parametrize("body", [{}, {"event": 5}, {"event": "message_created"},
                                  {"event": "message_created", "conversation": {"id": None}},
                                  {"event": "conversation_created", "id": [1]}],
                         ids=["no-event", "event-not-string", "no-conversation", "null-id", "list-id"])
def test_unreadable_payloads_raise_payload_error(body: dict) -> None:
    with pytest.raises(PayloadError):
        parse_webhook(body, now=NOW)


def test_delivery_key_prefers_the_delivery_header() -> None:
    body = load("message_created_incoming")
    assert delivery_key("abc", body, b"x") == "abc"
    assert delivery_key(None, body, b"x") == delivery_key(None, body, b"x") != delivery_key(None, body, b"y")


@pytest.fixture
async def fake() -> Any:
    server = await FakeChatwoot(slow_s=1.0).start()
    yield server
    await server.stop()


def message(mid: int = 1, cid: str = "152") -> OutboundMessage:
    return OutboundMessage(mid, "default", cid, "reply", "您好", {"account_id": 1})


async def test_deliver_posts_the_documented_shape_and_returns_the_message_id(fake: FakeChatwoot) -> None:
    async with aiohttp.ClientSession() as s:
        d = ChatwootDeliverer(s, base_url=fake.base_url + "/", account_id=9, token=fake.token)
        receipt = await d.deliver(message())
    assert receipt.platform_message_id == str(fake.messages[0]["id"])
    assert fake.requests[0]["path"] == "/api/v1/accounts/1/conversations/152/messages"
    assert fake.requests[0]["json"]["content_attributes"] == {"assist_outbox_id": 1}


@pytest.mark.parametrize(("behaviour", "retryable", "reached", "status"), [
    ("500", True, True, 500), ("429", True, False, 429), ("404", False, False, 404)])
async def test_status_classification(fake: FakeChatwoot, behaviour: str, retryable: bool, reached: bool,
                                     status: int) -> None:
    fake.fail_next(behaviour)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(DeliveryError) as info:
            await ChatwootDeliverer(s, base_url=fake.base_url, account_id=1, token=fake.token).deliver(message())
    assert (info.value.retryable, info.value.reached, info.value.status) == (retryable, reached, status)


async def test_bad_token_is_a_final_failure(fake: FakeChatwoot) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(DeliveryError) as info:
            await ChatwootDeliverer(s, base_url=fake.base_url, account_id=1, token="wrong").deliver(message())
    assert info.value.status == 401 and not info.value.retryable


async def test_timeout_is_retryable_and_may_have_reached(fake: FakeChatwoot) -> None:
    fake.fail_next("slow")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as s:
        d = ChatwootDeliverer(s, base_url=fake.base_url, account_id=1, token=fake.token)
        with pytest.raises(DeliveryError) as info:
            await d.deliver(message(7))
        assert info.value.retryable and info.value.reached
        found = await d.find_delivered(message(7))
        assert found is not None and found.platform_message_id == str(fake.messages[0]["id"])
        assert await d.find_delivered(message(8)) is None


async def test_platform_down_has_not_reached() -> None:
    async with aiohttp.ClientSession() as s:
        d = ChatwootDeliverer(s, base_url="http://127.0.0.1:9", account_id=1, token="t")
        with pytest.raises(DeliveryError) as info:
            await d.deliver(message())
    assert info.value.retryable and not info.value.reached
