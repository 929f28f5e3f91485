"""Chatwoot end to end: signed webhooks in, replies out to a fake Chatwoot over real HTTP, failures handled."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import Service, assert_error
from fake_chatwoot import FakeChatwoot

from adapters.base import sign
from assist.api_keys import AUDIT_RELAY
from assist.audit import AUDIT_STORE
from assist.audit_query import AuditQuery

PAYLOADS = Path(__file__).resolve().parents[1] / "adapters" / "payloads"
SECRET = "cw-webhook-secret"


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture
async def chatwoot() -> Any:
    fake = await FakeChatwoot(slow_s=1.0).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def cw(start_service: Any, chatwoot: FakeChatwoot) -> Service:
    return await start_service(
        platform="chatwoot", chatwoot_base_url=chatwoot.base_url, chatwoot_account_id=1,
        chatwoot_api_token=chatwoot.token, chatwoot_webhook_secret=SECRET, delivery_timeout_s=0.3)


async def post_webhook(svc: Service, token: str, body: dict[str, Any], *, secret: str = SECRET,
                       ts: int | None = None, delivery: str | None = None, query_token: bool = False) -> tuple:
    raw = json.dumps(body, ensure_ascii=False).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    headers = {"Content-Type": "application/json", "X-Chatwoot-Timestamp": stamp,
               "X-Chatwoot-Signature": sign(secret, stamp, raw), "X-Chatwoot-Delivery": delivery or str(uuid.uuid4())}
    if query_token:  # how a Chatwoot webhook URL carries the token: Chatwoot cannot add headers
        return await svc.call("POST", f"/v1/webhooks/chatwoot?access_token={token}", data=raw, headers=headers)
    return await svc.call("POST", "/v1/webhooks/chatwoot", token=token, data=raw, headers=headers)


async def audit(svc: Service, **where: Any) -> list[Any]:
    await svc.app[AUDIT_RELAY].settle()  # as the audit API does: staged records first
    return list(svc.app[AUDIT_STORE].iter_query(AuditQuery(tenant="default", **where), keep_original=True))


async def wait_for(predicate: Any, what: str) -> None:
    for _ in range(600):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def conversation(svc: Service, token: str, cid: str = "152") -> dict[str, Any]:
    status, body, _ = await svc.call("GET", f"/v1/conversations/{cid}", token=token)
    assert status == 200, body
    return body


async def test_customer_message_webhook_opens_the_conversation_and_reply_goes_to_chatwoot(
        cw: Service, chatwoot: FakeChatwoot) -> None:
    platform, agent = cw.token("platform"), cw.token(agent="7")
    status, body, _ = await post_webhook(cw, platform, payload("message_created_incoming"), query_token=True)
    assert status == 200 and body == {"status": "accepted", "reason": None, "events": ["customer_message"]}
    conv = await conversation(cw, agent)
    assert conv["customer_messages"] == 1 and conv["agent_id"] == "7"
    status, body, _ = await cw.call("POST", "/v1/conversations/152/replies", token=agent,
                                    json_body={"text": "您好,您的快递今天发出。"})
    assert status == 202, body

    async def one_posted() -> bool:
        return len(chatwoot.posted()) == 1
    await wait_for(one_posted, "the reply on Chatwoot")
    req = [r for r in chatwoot.requests if r["method"] == "POST"][0]
    assert req["path"] == "/api/v1/accounts/1/conversations/152/messages"
    assert req["headers"]["api_access_token"] == chatwoot.token
    assert req["json"] == {"content": "您好,您的快递今天发出。", "message_type": "outgoing", "private": False,
                           "content_type": "text", "content_attributes": {"assist_outbox_id": body["outbox_ids"][0]}}
    customer = await audit(cw, kind="customer_message")
    assert customer[0].original_text == "在吗?我的快递到哪了" and customer[0].actor.startswith("platform:")


async def test_signature_modes_and_replay_window(start_service: Any, chatwoot: FakeChatwoot) -> None:
    svc = await start_service(platform="chatwoot", chatwoot_base_url=chatwoot.base_url, chatwoot_account_id=1,
                              chatwoot_api_token=chatwoot.token, chatwoot_webhook_secret=SECRET)
    platform = svc.token("platform")
    body = payload("message_created_incoming")
    status, err, _ = await post_webhook(svc, platform, body, secret="wrong")
    assert_error(status, err, 401, "signature_invalid")
    status, err, _ = await post_webhook(svc, platform, body, ts=int(time.time()) - 301)
    assert_error(status, err, 401, "signature_expired")
    status, err, _ = await svc.call("POST", "/v1/webhooks/chatwoot", token=platform, json_body=body)
    assert_error(status, err, 401, "signature_missing")
    refusals = [r.action for r in svc.app[AUDIT_STORE].iter_query(AuditQuery(tenant="default", kind="refused"))]
    assert {"signature_invalid", "signature_expired", "signature_missing"} <= set(refusals)

    lenient = await start_service(platform="chatwoot", chatwoot_base_url=chatwoot.base_url, chatwoot_account_id=1,
                                  chatwoot_api_token=chatwoot.token, chatwoot_webhook_secret=SECRET,
                                  chatwoot_signature_mode="log_only", data_dir=svc.settings.data_dir.parent / "d2")
    status, ok, _ = await post_webhook(lenient, lenient.token("platform"), body, secret="wrong")
    assert status == 200 and ok["status"] == "accepted"


async def test_redelivery_with_the_same_delivery_id_is_dropped(cw: Service) -> None:
    platform, agent = cw.token("platform"), cw.token(agent="7")
    delivery = str(uuid.uuid4())
    for _ in range(3):
        status, body, _ = await post_webhook(cw, platform, payload("message_created_incoming"), delivery=delivery)
    assert status == 200 and body["status"] == "duplicate"
    assert (await conversation(cw, agent))["customer_messages"] == 1
    assert len(await audit(cw, kind="customer_message")) == 1


@pytest.mark.parametrize(("name", "status_text", "events"), [
    ("message_created_private_note", "ignored", []),
    ("message_created_echo", "ignored", []),
    ("message_created_bot", "ignored", []),
    ("conversation_typing_on", "ignored", []),
    ("conversation_status_changed_pending", "ignored", []),
    ("conversation_created", "accepted", ["opened"]),
    ("conversation_status_changed_resolved", "accepted", ["closed"]),
    ("conversation_updated_assignee", "accepted", ["assigned"]),
    ("conversation_updated_team", "accepted", ["transferred"]),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_each_chatwoot_event_is_classified(cw: Service, name: str, status_text: str, events: list) -> None:
    status, body, _ = await post_webhook(cw, cw.token("platform"), payload(name))
    assert status == 200 and body["status"] == status_text and body["events"] == events


async def test_status_and_assignee_changes_update_conversation_state(cw: Service) -> None:
    platform, agent = cw.token("platform"), cw.token(agent="7")
    await post_webhook(cw, platform, payload("message_created_incoming"))
    await post_webhook(cw, platform, payload("conversation_updated_assignee"))
    assert (await conversation(cw, agent))["agent_id"] == "12"
    await post_webhook(cw, platform, payload("conversation_status_changed_resolved"))
    assert (await conversation(cw, agent))["status"] == "closed"
    events = [r.action for r in await audit(cw, kind="conversation_event")]
    assert events == ["closed", "assigned"]  # newest first


async def test_agent_message_typed_in_chatwoot_is_checked_after_the_fact(cw: Service) -> None:
    platform = cw.token("platform")
    await post_webhook(cw, platform, payload("message_created_incoming"))
    status, body, _ = await post_webhook(cw, platform, payload("message_created_outgoing_agent"))
    assert status == 200 and body["events"] == ["agent_message"]
    check = await audit(cw, kind="check")
    assert len(check) == 1 and list(check[0].rule_ids) == ["t-cant-you-read"]
    assert check[0].details["post_hoc"] is True and check[0].actor == "agent:7"


async def test_500_then_429_are_retried_and_delivered_once(cw: Service, chatwoot: FakeChatwoot) -> None:
    platform, agent = cw.token("platform"), cw.token(agent="7")
    await post_webhook(cw, platform, payload("message_created_incoming"))
    chatwoot.fail_next("500", "429")
    status, body, _ = await cw.call("POST", "/v1/conversations/152/replies", token=agent,
                                    json_body={"text": "您好,马上为您处理"})
    assert status == 202

    async def delivered() -> bool:
        return (await conversation(cw, agent))["deliveries"][0]["status"] == "delivered"
    await wait_for(delivered, "delivery after retries")
    d = (await conversation(cw, agent))["deliveries"][0]
    assert d["attempts"] == 3 and len(chatwoot.posted("152")) == len(chatwoot.posted()) == 1
    # A 500 may have stored the message, so the next try lists the conversation first; a 429 stored
    # nothing, so the try after it posts straight away.
    assert [r["method"] for r in chatwoot.requests] == ["POST", "GET", "POST", "POST"]


async def test_timeout_after_chatwoot_stored_the_message_does_not_duplicate(
        cw: Service, chatwoot: FakeChatwoot) -> None:
    platform, agent = cw.token("platform"), cw.token(agent="7")
    await post_webhook(cw, platform, payload("message_created_incoming"))
    chatwoot.fail_next("slow")  # stored, then answered after our 0.3 s timeout
    await cw.call("POST", "/v1/conversations/152/replies", token=agent, json_body={"text": "您好,马上为您处理"})

    async def delivered() -> bool:
        return (await conversation(cw, agent))["deliveries"][0]["status"] == "delivered"
    await wait_for(delivered, "delivery found on the platform")
    assert len(chatwoot.posted()) == 1
    assert [r["method"] for r in chatwoot.requests] == ["POST", "GET"]
    record = (await audit(cw, kind="delivery"))[0]
    assert record.details["found_on_platform"] is True


async def test_platform_404_is_reported_and_audited_not_retried(cw: Service, chatwoot: FakeChatwoot) -> None:
    platform, agent = cw.token("platform"), cw.token(agent="7")
    await post_webhook(cw, platform, payload("message_created_incoming"))
    chatwoot.missing_conversations.add("152")
    await cw.call("POST", "/v1/conversations/152/replies", token=agent, json_body={"text": "您好,马上为您处理"})

    async def failed() -> bool:
        return (await conversation(cw, agent))["deliveries"][0]["status"] == "failed"
    await wait_for(failed, "the failed delivery")
    d = (await conversation(cw, agent))["deliveries"][0]
    assert d["attempts"] == 1 and "404" in d["last_error"]
    assert len(await audit(cw, kind="delivery_failed")) == 1
    assert len([r for r in chatwoot.requests if r["method"] == "POST"]) == 1
