"""Routes of the built-in demo platform: play the customer, read what the customer received.

POST /demo/customer/{conversation_id} {"text"} is a customer message arriving from the platform;
answer it with POST /v1/conversations/{id}/replies; GET /demo/conversations/{id} shows the
transcript as the customer saw it, plus anything still waiting in the outbox.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from adapters.demo import DemoPlatform

from .api import json_response, read_json, tenant_policy
from .api_keys import CONVERSATIONS, METRICS
from .auth import require_role
from .conversations import InboundEvent
from .errors import ConversationNotFound
from .events import ConversationEvent

__all__ = ["DEMO", "setup_demo_routes"]

DEMO = web.AppKey("demo_platform", DemoPlatform)


class CustomerMessage(BaseModel):
    """Body of POST /demo/customer/{conversation_id}."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(min_length=1, max_length=4000)


async def customer_message(request: web.Request) -> web.Response:
    """Play the customer (the conversation opens on its first message)."""
    principal = require_role(request, "agent")
    tenant_policy(request, principal.tenant)
    body = await read_json(request, CustomerMessage)
    cid = request.match_info["conversation_id"]
    platform = request.app[DEMO]
    is_new = platform.transcript(principal.tenant, cid) is None
    entry = platform.customer_says(principal.tenant, cid, body.text)
    events = []
    if is_new:
        events.append(ConversationEvent("opened", principal.tenant, cid, principal.agent_id, None, entry["at"]))
    events.append(ConversationEvent("customer_message", principal.tenant, cid, principal.agent_id, body.text,
                                    entry["at"], entry["message_id"]))
    for event in events:
        request.app[METRICS].inbound.labels("demo", event.kind).inc()
        await request.app[CONVERSATIONS].ingest(InboundEvent(event, "demo"), actor="customer:demo")
    return json_response({
        "status": "received", "conversation_id": cid, "message_id": entry["message_id"],
        "next": {"reply": f"POST /v1/conversations/{cid}/replies {{\"text\": \"...\"}}",
                 "see": f"GET /demo/conversations/{cid}"}}, status=201)


async def show_conversation(request: web.Request) -> web.Response:
    """What the customer saw, and what is still waiting for delivery."""
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


def setup_demo_routes(app: web.Application) -> None:
    app.router.add_post("/demo/customer/{conversation_id}", customer_message)
    app.router.add_get("/demo/conversations/{conversation_id}", show_conversation)
