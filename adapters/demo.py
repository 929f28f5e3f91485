"""A built-in demo platform, so a fresh `assist serve` shows the whole flow with nothing else running.

Play the customer with POST /demo/customer/{conversation_id} {"text": ...}; answer as the agent with
POST /v1/conversations/{id}/replies; read what the "customer" received with
GET /demo/conversations/{id}. Delivered messages are kept in <data_dir>/demo-platform.jsonl, so
the transcript survives a restart and delivery stays exactly-once (keyed by outbox id).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from assist.api import json_response, read_json, tenant_policy
from assist.api_keys import CLOCK, CONVERSATIONS, DELIVERER, SETTINGS
from assist.auth import require_role
from assist.config import Settings
from assist.conversations import InboundEvent
from assist.errors import ConversationNotFound
from assist.events import ConversationEvent
from assist.outbox import DeliveryReceipt, OutboundMessage

from .base import ingest

__all__ = ["DemoPlatform", "setup"]

SOURCE = "demo"
DEMO: web.AppKey["DemoPlatform"] = web.AppKey("demo_platform")


class CustomerMessage(BaseModel):
    """Body of POST /demo/customer/{conversation_id}."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(min_length=1, max_length=4000)


class DemoPlatform:
    """An in-process chat platform: transcripts per (tenant, conversation), persisted as JSON lines."""

    name = "demo"

    def __init__(self, path: Path, *, clock: Any) -> None:
        self._path = path
        self._clock = clock
        self._transcripts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._delivered: dict[int, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self._remember(json.loads(line))

    def _remember(self, entry: dict[str, Any]) -> None:
        self._transcripts.setdefault((entry["tenant"], entry["conversation_id"]), []).append(entry)
        if entry.get("outbox_id") is not None:
            self._delivered[int(entry["outbox_id"])] = entry["message_id"]

    def _append(self, entry: dict[str, Any]) -> None:
        with self._path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._remember(entry)

    def transcript(self, tenant: str, cid: str) -> list[dict[str, Any]] | None:
        return self._transcripts.get((tenant, cid))

    def customer_says(self, tenant: str, cid: str, text: str) -> dict[str, Any]:
        n = sum(len(t) for t in self._transcripts.values()) + 1
        entry = {"tenant": tenant, "conversation_id": cid, "from": "customer", "text": text,
                 "at": self._clock.now(), "message_id": f"demo-{n}", "outbox_id": None}
        self._append(entry)
        return entry

    async def deliver(self, message: OutboundMessage) -> DeliveryReceipt:
        if message.id in self._delivered:  # exactly once, even if asked twice
            return DeliveryReceipt(self._delivered[message.id])
        n = sum(len(t) for t in self._transcripts.values()) + 1
        self._append({"tenant": message.tenant, "conversation_id": message.conversation_id, "from": "agent",
                      "kind": message.kind, "text": message.text, "at": self._clock.now(),
                      "message_id": f"demo-{n}", "outbox_id": message.id})
        return DeliveryReceipt(f"demo-{n}")

    async def find_delivered(self, message: OutboundMessage) -> DeliveryReceipt | None:
        mid = self._delivered.get(message.id)
        return DeliveryReceipt(mid) if mid else None


async def customer_message(request: web.Request) -> web.Response:
    """POST /demo/customer/{conversation_id}: play the customer (opens the conversation if new)."""
    principal = require_role(request, "agent")
    tenant_policy(request, principal.tenant)
    body = await read_json(request, CustomerMessage)
    cid = request.match_info["conversation_id"]
    platform = request.app[DEMO]
    is_new = platform.transcript(principal.tenant, cid) is None
    entry = platform.customer_says(principal.tenant, cid, body.text)
    events = []
    if is_new:
        events.append(InboundEvent(ConversationEvent("opened", principal.tenant, cid, principal.agent_id, None,
                                                     entry["at"]), SOURCE))
    events.append(InboundEvent(ConversationEvent("customer_message", principal.tenant, cid, principal.agent_id,
                                                 body.text, entry["at"], entry["message_id"]), SOURCE))
    await ingest(request, events, actor="customer:demo")
    return json_response({
        "status": "received", "conversation_id": cid, "message_id": entry["message_id"],
        "next": {"reply": f"POST /v1/conversations/{cid}/replies {{\"text\": \"...\"}}",
                 "see": f"GET /demo/conversations/{cid}"}}, status=201)


async def show_conversation(request: web.Request) -> web.Response:
    """GET /demo/conversations/{conversation_id}: what the customer saw, and delivery status."""
    principal = require_role(request, "agent", "auditor")
    tenant_policy(request, principal.tenant)
    cid = request.match_info["conversation_id"]
    transcript = request.app[DEMO].transcript(principal.tenant, cid)
    if transcript is None:
        raise ConversationNotFound(f"the demo platform has no conversation '{cid}'",
                                   details=[{"conversation_id": cid}])
    deliveries = await request.app[CONVERSATIONS].deliveries(principal.tenant, cid)
    return json_response({
        "conversation_id": cid,
        "transcript": [{k: e[k] for k in ("from", "text", "at", "message_id")} for e in transcript],
        "pending": [d for d in deliveries if d["status"] != "delivered"]})


def setup(app: web.Application, settings: Settings) -> None:
    """Register the demo routes and the in-process deliverer."""
    app.router.add_post("/demo/customer/{conversation_id}", customer_message)
    app.router.add_get("/demo/conversations/{conversation_id}", show_conversation)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        platform = DemoPlatform(app[SETTINGS].data_dir / "demo-platform.jsonl", clock=app[CLOCK])
        app[DEMO] = platform
        app[DELIVERER] = platform
        yield

    app.cleanup_ctx.append(ctx)
