"""The console channel on the real app: WebSocket pushes, polling, auth refusals, audit records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from assist.app import create_app
from assist.api_keys import EVENT_BUS, STATE_DB
from assist.audit import AUDIT_STORE
from assist.audit_query import AuditQuery
from assist.auth import create_token
from assist.clock import ManualClock
from assist.config import Settings, TenantPolicy
from assist.console import CLOCK_SERVICE
from assist.events import ConversationEvent
from clock_support import NIGHT, TEMPLATES


@pytest.fixture
async def env(tmp_path: Path, aiohttp_client: Any):
    lib = tmp_path / "library.json"
    lib.write_text(json.dumps({"templates": TEMPLATES}), encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", audit_hmac_key=SecretStr("test-audit-key-0123456789"),
                        tenants={"default": TenantPolicy(library_path=lib)})
    clock = ManualClock(NIGHT)
    app = create_app(settings, clock=clock)
    client = await aiohttp_client(app)

    def token(role: str, agent_id: str | None) -> dict[str, str]:
        tok, _ = create_token(app[STATE_DB], role=role, tenant="default", agent_id=agent_id, ttl_hours=None,
                              now=clock.now())
        return {"Authorization": f"Bearer {tok}"}

    async def publish(kind: str, cid: str, text: str | None = None, agent: str | None = "a1") -> None:
        await app[EVENT_BUS].publish(ConversationEvent(kind, "default", cid, agent, text, clock.now()))  # type: ignore[arg-type]

    return app, client, clock, token, publish


async def test_websocket_pushes_reminders_to_the_assigned_agent_only(env) -> None:
    app, client, clock, token, publish = env
    ws1 = await client.ws_connect("/v1/console/ws", headers=token("agent", "a1"))
    ws2 = await client.ws_connect("/v1/console/ws", headers=token("agent", "a2"))
    assert await ws1.receive_json(timeout=10) == {"type": "snapshot", "reminders": []}
    assert await ws2.receive_json(timeout=10) == {"type": "snapshot", "reminders": []}
    await publish("customer_message", "conv-1", "请问什么时候发货")
    await clock.advance(45)
    warn = await ws1.receive_json(timeout=10)
    assert (warn["type"], warn["rule"], warn["conversation_id"]) == ("reminder", "response.pre_warn", "conv-1")
    assert warn["seconds_left"] == 15.0 and warn["late"] is False
    await clock.advance(15)
    alert = await ws1.receive_json(timeout=10)
    assert alert["rule"] == "response.overdue"
    assert alert["suggestion"] == {"template_id": "wait-apology", "text": "很抱歉让您久等了"}
    await publish("agent_message", "conv-1", "您好,今天下午发货。")
    cleared = await ws1.receive_json(timeout=10)
    assert cleared["type"] == "cleared" and cleared["rules"] == ["response.overdue"]
    # a2 got nothing: its next message is the answer to this ping, not a reminder.
    await ws2.send_str("ping")
    assert await ws2.receive_json(timeout=10) == {"type": "pong"}
    await ws1.close()
    await ws2.close()


async def test_polling_lists_pending_until_answered(env) -> None:
    app, client, clock, token, publish = env
    headers = token("agent", "a1")
    await publish("customer_message", "conv-2", "在吗")
    resp = await client.get("/v1/agents/me/reminders", headers=headers)
    assert resp.status == 200
    body = await resp.json()
    assert [(r["type"], r["rule"]) for r in body["reminders"]] == [("suggestion", "wait.apology")]
    await clock.advance(50)
    body = await (await client.get("/v1/agents/me/reminders", headers=headers)).json()
    assert [r["rule"] for r in body["reminders"]] == ["response.pre_warn", "wait.apology"]
    assert body["reminders"][0]["seconds_left"] == 10.0  # as of the request, not of the push
    await publish("agent_message", "conv-2", "很抱歉让您久等了,已为您查到。")
    body = await (await client.get("/v1/agents/me/reminders", headers=headers)).json()
    assert body == {"agent_id": "a1", "reminders": []}


async def test_snapshot_on_connect_holds_what_is_pending(env) -> None:
    app, client, clock, token, publish = env
    await publish("agent_message", "conv-3", "请您稍等2分钟")
    await clock.advance(121)
    ws = await client.ws_connect("/v1/console/ws", headers=token("agent", "a1"))
    snap = await ws.receive_json(timeout=10)
    assert snap["type"] == "snapshot"
    # The alert replaced its pre-warning; seconds_left is negative once the promise is broken.
    assert [(r["rule"], r["seconds_left"]) for r in snap["reminders"]] == [("wait.overdue", -1.0)]
    await ws.close()


@pytest.mark.parametrize(
    ("role", "agent", "query", "status", "code"),
    [
        pytest.param(None, None, "", 401, "missing_token", id="no-token"),
        pytest.param("auditor", None, "", 403, "forbidden", id="auditor-refused"),
        pytest.param("admin", None, "", 400, "agent_id_required", id="admin-must-name-agent"),
    ],
)
async def test_refusals_are_precise_json(env, role: str | None, agent: str | None, query: str, status: int,
                                         code: str) -> None:
    app, client, clock, token, publish = env
    headers = token(role, agent) if role else {}
    for path in ("/v1/agents/me/reminders", "/v1/console/ws"):
        resp = await client.get(path + query, headers=headers)
        assert resp.status == status, path
        assert (await resp.json())["error"]["code"] == code


async def test_admin_may_read_an_agents_reminders(env) -> None:
    app, client, clock, token, publish = env
    await publish("customer_message", "conv-4", "谢谢")
    resp = await client.get("/v1/agents/me/reminders?agent_id=a1", headers=token("admin", None))
    assert resp.status == 200
    assert [r["rule"] for r in (await resp.json())["reminders"]] == ["thanks.reply"]


async def test_reminders_and_missed_thresholds_reach_the_audit_trail(env) -> None:
    app, client, clock, token, publish = env
    await publish("customer_message", "conv-5", "你好")
    await clock.advance(60)
    await app[CLOCK_SERVICE].commit()
    store = app[AUDIT_STORE]
    missed = store.query(AuditQuery(kind="threshold_missed", conversation_id="conv-5"), keep_original=True)
    reminders = store.query(AuditQuery(kind="reminder", conversation_id="conv-5"), keep_original=True)
    assert [r.action for r in missed.records] == ["response.overdue"]
    assert missed.records[0].actor == "agent:a1" and missed.records[0].details["late"] is False
    assert sorted(r.action for r in reminders.records) == ["response.overdue", "response.pre_warn"]


async def test_browser_consoles_may_pass_the_token_in_the_query(env) -> None:
    # A browser cannot set an Authorization header on a WebSocket handshake.
    app, client, clock, token, publish = env
    tok = token("agent", "a1")["Authorization"].removeprefix("Bearer ")
    ws = await client.ws_connect(f"/v1/console/ws?access_token={tok}")
    await ws.close()
    resp = await client.get(f"/v1/agents/me/reminders?access_token={tok}")
    assert resp.status == 401  # only the WebSocket handshake takes a query token
