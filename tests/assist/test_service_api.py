"""The send path, check, close and conversation view over real HTTP against create_app on a free port."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import GREETING, Service, assert_error

from assist.app import EVENT_BUS, OUTBOX
from assist.api_keys import AUDIT_RELAY
from assist.audit import AUDIT_STORE
from assist.audit_query import AuditQuery

GREET_1001 = GREETING.format(line="在线客服", agent_no="1001")


async def audit_rows(svc: Service, tenant: str = "default", **where: Any) -> list[Any]:
    await svc.app[AUDIT_RELAY].settle()  # as the audit API does: staged records first
    return list(svc.app[AUDIT_STORE].iter_query(AuditQuery(tenant=tenant, **where), keep_original=True))


async def delivered(svc: Service, token: str, cid: str, count: int) -> list[dict[str, Any]]:
    """Wait until `count` messages of the conversation are delivered (the worker is asynchronous)."""
    for _ in range(400):
        status, body, _ = await svc.call("GET", f"/v1/conversations/{cid}", token=token)
        assert status == 200, body
        done = [d for d in body["deliveries"] if d["status"] == "delivered"]
        if len(done) >= count:
            return body["deliveries"]
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {body['deliveries']} after waiting")


async def open_conversation(svc: Service, token: str, cid: str = "c1", text: str = "在吗?我的快递到哪了") -> None:
    status, body, _ = await svc.call("POST", f"/demo/customer/{cid}", token=token, json_body={"text": text})
    assert status == 201, body


async def test_first_reply_gets_greeting_once_and_reaches_the_customer(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "请您稍等2分钟,我帮您查询。"})
    assert status == 202, body
    assert body["outcome"] == "send" and body["greeting"] == GREET_1001
    assert body["text"] == GREET_1001 + "请您稍等2分钟,我帮您查询。"
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "您的快递明天到。"})
    assert status == 202 and body["greeting"] is None and body["text"] == "您的快递明天到。"
    await delivered(svc, tok, "c1", 2)
    status, demo, _ = await svc.call("GET", "/demo/conversations/c1", token=tok)
    assert [(m["from"], m["text"]) for m in demo["transcript"]] == [
        ("customer", "在吗?我的快递到哪了"), ("agent", GREET_1001 + "请您稍等2分钟,我帮您查询。"),
        ("agent", "您的快递明天到。")]
    assert [r.kind for r in await audit_rows(svc, kind="greeting")] == ["greeting"]
    sends = await audit_rows(svc, kind="send")
    assert len(sends) == 2 and {r.actor for r in sends} == {"agent:1001"}
    assert len(await audit_rows(svc, kind="delivery")) == 2


async def test_draft_that_already_greets_gets_no_second_greeting(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "您好,请问有什么可以帮您?"})
    assert status == 202 and body["greeting"] is None and body["text"] == "您好,请问有什么可以帮您?"
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok, json_body={"text": "好的"})
    assert body["greeting"] is None
    assert await audit_rows(svc, kind="greeting") == []


async def test_separate_greeting_policy_sends_it_as_its_own_message(svc: Service) -> None:
    tok = svc.token(tenant="acme", agent="7")
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok, json_body={"text": "在的"})
    assert status == 202 and len(body["outbox_ids"]) == 2 and body["text"] == "在的"
    await delivered(svc, tok, "c1", 2)
    _, demo, _ = await svc.call("GET", "/demo/conversations/c1", token=tok)
    assert [m["text"] for m in demo["transcript"][1:]] == [GREETING.format(line="售后", agent_no="A7"), "在的"]


async def test_rewrite_is_forwarded_or_returned_for_confirmation_by_policy(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "您好,这个我不知道"})
    assert status == 202 and body["outcome"] == "rewrite" and body["text"] == "您好,这个我我帮您确认一下"
    rewrite = (await audit_rows(svc, kind="rewrite"))[0]
    assert rewrite.original_text == "您好,这个我不知道" and list(rewrite.rule_ids) == ["t-dont-know"]

    acme = svc.token(tenant="acme", agent="7")
    await open_conversation(svc, acme, "c9")
    status, body, _ = await svc.call("POST", "/v1/conversations/c9/replies", token=acme, json_body={"text": "不知道"})
    assert status == 200 and body["status"] == "needs_confirmation" and body["rewritten"] == "我帮您确认一下"
    _, conv, _ = await svc.call("GET", "/v1/conversations/c9", token=acme)
    assert conv["deliveries"] == []


async def test_block_is_422_with_suggestions_and_nothing_is_sent(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "你自己不会看呀"})
    assert_error(status, body, 422, "reply_blocked")
    details = body["error"]["details"]
    assert [v["rule_id"] for v in details["violations"]] == ["t-cant-you-read"]
    assert details["suggestions"][0]["template_id"] == "t-explain" and details["override_allowed"] is False
    _, conv, _ = await svc.call("GET", "/v1/conversations/c1", token=tok)
    assert conv["deliveries"] == [] and conv["greeted"] is False
    block = await audit_rows(svc, kind="block")
    assert len(block) == 1 and block[0].original_text == "你自己不会看呀"
    assert await audit_rows(svc, kind="refused") == []  # the block record is the decision; no second record


async def test_override_only_where_policy_allows_the_severity(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "你自己不会看呀", "override_reason": "customer asked twice"})
    assert_error(status, body, 403, "override_not_allowed")
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "只能这样了", "override_reason": "policy really is final"})
    assert status == 202 and body["outcome"] == "override" and body["text"].endswith("只能这样了")
    override = await audit_rows(svc, kind="override")
    assert len(override) == 1 and override[0].reason == "policy really is final" and override[0].overridden
    acme = svc.token(tenant="acme", agent="7")
    await open_conversation(svc, acme, "c2")
    status, body, _ = await svc.call("POST", "/v1/conversations/c2/replies", token=acme,
                                     json_body={"text": "你自己不会看呀", "override_reason": "quoting the customer"})
    assert status == 202 and body["outcome"] == "override"


async def test_warn_is_sent_as_written(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "您好,这个确实没办法退"})
    assert status == 202 and body["outcome"] == "send" and body["verdict"]["action"] == "warn"
    assert list((await audit_rows(svc, kind="send"))[0].rule_ids) == ["t-no-way"]


async def test_idempotency_key_returns_first_result_and_sends_once(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    req = {"text": "您好,马上为您处理", "idempotency_key": "draft-42"}
    results = await asyncio.gather(*[svc.call("POST", "/v1/conversations/c1/replies", token=tok, json_body=req)
                                     for _ in range(8)])
    assert {r[0] for r in results} == {202}
    assert len({tuple(r[1]["outbox_ids"]) for r in results}) == 1
    assert sum(1 for r in results if r[2].get("Idempotent-Replay") == "true") == 7
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                                     json_body={"text": "别的话", "idempotency_key": "draft-42"})
    assert_error(status, body, 409, "conflict")
    deliveries = await delivered(svc, tok, "c1", 1)
    assert len(deliveries) == 1
    assert len(await audit_rows(svc, kind="send")) == 1


async def test_close_sends_closing_once(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/close", token=tok)
    assert status == 202 and body["status"] == "sent" and "祝您生活愉快" in body["text"]
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/close", token=tok, json_body={})
    assert status == 200 and body["status"] == "already_sent"
    assert len(await audit_rows(svc, kind="closing")) == 1
    await delivered(svc, tok, "c1", 1)


async def test_close_after_the_agent_already_closed_sends_nothing(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    await svc.call("POST", "/v1/conversations/c1/replies", token=tok,
                   json_body={"text": "您好,请问还有其他问题吗?感谢您的支持,祝您生活愉快"})
    status, body, _ = await svc.call("POST", "/v1/conversations/c1/close", token=tok)
    assert status == 200 and body["status"] == "already_sent"


async def test_check_has_no_side_effect_but_the_audit_of_violations(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    status, body, _ = await svc.call("POST", "/v1/check", token=tok, json_body={"text": "您好,马上为您处理"})
    assert status == 200 and body["action"] == "pass" and body["audit_id"] is None
    status, body, _ = await svc.call("POST", "/v1/check", token=tok,
                                     json_body={"text": "不知道", "conversation_id": "c1"})
    assert status == 200 and body["action"] == "rewrite" and body["rewritten"] == "我帮您确认一下"
    checks = await audit_rows(svc, kind="check")
    assert len(checks) == 1 and checks[0].id == body["audit_id"] and checks[0].conversation_id == "c1"
    _, conv, _ = await svc.call("GET", "/v1/conversations/c1", token=tok)
    assert conv["deliveries"] == [] and conv["agent_messages"] == 0


async def test_event_bus_sees_customer_and_accepted_agent_messages(svc: Service) -> None:
    seen: list[tuple[str, str | None]] = []
    svc.app[EVENT_BUS].subscribe(lambda ev: seen.append((ev.kind, ev.text)))
    tok = svc.token()
    await open_conversation(svc, tok)
    await svc.call("POST", "/v1/conversations/c1/replies", token=tok, json_body={"text": "您好,在的"})
    await svc.call("POST", "/v1/conversations/c1/replies", token=tok, json_body={"text": "你自己不会看呀"})
    assert seen == [("opened", None), ("customer_message", "在吗?我的快递到哪了"), ("agent_message", "您好,在的")]


async def test_history_from_conversation_state_reaches_the_guard(svc: Service) -> None:
    tok = svc.token()
    await open_conversation(svc, tok)
    await svc.call("POST", "/v1/conversations/c1/replies", token=tok, json_body={"text": "您好,在的"})
    history = await svc.app[OUTBOX]._db.run(lambda c: c.execute(
        "SELECT role, text FROM messages ORDER BY seq").fetchall())
    assert [(r["role"], r["text"]) for r in history] == [("customer", "在吗?我的快递到哪了"),
                                                        ("agent", "您好,在的")]


async def test_auditor_reads_the_audit_trail_through_the_same_auth(svc: Service) -> None:
    tok = svc.token()
    await svc.call("POST", "/v1/check", token=tok, json_body={"text": "不知道"})
    status, body, _ = await svc.call("GET", "/v1/audit", token=svc.token("auditor"))
    assert status == 200, body
    status, body, _ = await svc.call("GET", "/v1/audit", token=tok)
    assert status == 403


async def test_old_idempotency_keys_are_pruned_after_the_retention(svc: Service) -> None:
    from assist.app import STATE_DB
    from assist.state_sql import prune

    tok = svc.token()
    await open_conversation(svc, tok)
    await svc.call("POST", "/v1/conversations/c1/replies", token=tok, json_body={"text": "您好", "idempotency_key": "k"})
    db = svc.app[STATE_DB]
    assert await db.run(prune, svc.clock.now() - 3600) == 0
    assert await db.run(prune, svc.clock.now() + 1) == 1  # the idempotency key


async def test_cached_conversation_state_matches_the_database_after_every_kind_of_write(svc: Service) -> None:
    from assist.app import CONVERSATIONS, STATE_DB
    from assist.conversations import Conversation

    tok = svc.token()
    await open_conversation(svc, tok)
    service = svc.app[CONVERSATIONS]

    async def same() -> None:
        cached, history = await service.with_history("default", "c1")
        row = svc.app[STATE_DB].read(lambda c: c.execute("SELECT * FROM conversations WHERE id = 'c1'").fetchone())
        rows = svc.app[STATE_DB].read(lambda c: c.execute(
            "SELECT role, text FROM messages WHERE conversation_id = 'c1' ORDER BY seq").fetchall())
        assert cached == Conversation.from_row(row)
        assert history == [{"role": r["role"], "text": r["text"]} for r in rows][-svc.settings.history_messages:]

    await same()
    for text in ["您好,在的", "请稍等", "好的"]:
        await svc.call("POST", "/v1/conversations/c1/replies", token=tok, json_body={"text": text})
        await same()
    await svc.call("POST", "/demo/customer/c1", token=tok, json_body={"text": "谢谢"})
    await same()
    await svc.call("POST", "/v1/conversations/c1/close", token=tok)
    await same()
