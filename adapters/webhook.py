"""The generic platform: our own JSON in (POST /v1/webhooks/generic), our own JSON out (POST webhook_url).

Inbound body (one event per request):
    {"event": "customer_message" | "agent_message" | "opened" | "assigned" | "closed" | "transferred",
     "conversation_id": "c-1", "text": "...", "agent_id": "a-7", "message_id": "m-1",
     "at": 1777626843.0, "delivery_id": "uuid", "platform_ref": {...}}
An `agent_message` here was typed on the platform itself: it is checked and audited after the fact.
Signed like Chatwoot: X-Assist-Timestamp and X-Assist-Signature = sha256=HMAC(secret, "{ts}.{body}").

Outbound: POST webhook_url with {"id", "idempotency_key", "tenant", "conversation_id", "kind", "text",
"platform_ref"} and an `Idempotency-Key` header. The receiver must treat a repeated key as the same
message: that is how a retry after a timeout stays exactly-once.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from assist.api import json_response, parse_json_object, read_body, tenant_policy, validation_details
from assist.api_keys import CLOCK, DELIVERER, SETTINGS
from assist.config import Settings
from assist.conversations import InboundEvent
from assist.errors import InvalidPayload
from assist.events import ConversationEvent
from assist.outbox import DeliveryReceipt, OutboundMessage

from .base import check_signature, classify_status, client_session_ctx, ingest, platform_principal, seen_before, sign
from .base import transport_error

__all__ = ["GenericEvent", "WebhookDeliverer", "setup", "setup_inbound"]

SOURCE = "generic"


class GenericEvent(BaseModel):
    """One event in our own inbound JSON."""

    model_config = ConfigDict(extra="forbid")
    event: Literal["customer_message", "agent_message", "opened", "assigned", "closed", "transferred"]
    conversation_id: StrictStr = Field(min_length=1, max_length=128)
    text: StrictStr | None = Field(None, max_length=20_000)
    agent_id: StrictStr | None = Field(None, max_length=128)
    message_id: StrictStr | None = Field(None, max_length=128)
    at: float | None = None
    delivery_id: StrictStr | None = Field(None, min_length=1, max_length=128)
    platform_ref: dict[str, Any] = {}


async def generic_webhook(request: web.Request) -> web.Response:
    """POST /v1/webhooks/generic: verify, dedupe, store, audit and publish one event."""
    principal = platform_principal(request)
    tenant_policy(request, principal.tenant)
    settings = request.app[SETTINGS]
    raw = await read_body(request)
    verified = check_signature(
        request, mode=settings.webhook_signature_mode, secret=settings.webhook_secret.get_secret_value(),
        timestamp=request.headers.get("X-Assist-Timestamp"), signature=request.headers.get("X-Assist-Signature"),
        body=raw, window_s=settings.signature_window_s, source=SOURCE)
    data = parse_json_object(raw)
    try:
        body = GenericEvent.model_validate(data)
    except ValidationError as err:
        raise InvalidPayload("the event does not match the generic webhook schema",
                             details=validation_details(err)) from None
    if body.event in ("customer_message", "agent_message") and not body.text:
        raise InvalidPayload(f"'{body.event}' needs a non-empty 'text'", details=[{"loc": "text"}])
    delivery = body.delivery_id or request.headers.get("X-Assist-Delivery")
    if delivery and await seen_before(request, SOURCE, f"{principal.tenant}:{delivery}"):
        return json_response({"status": "duplicate", "delivery_id": delivery})
    event = ConversationEvent(body.event, principal.tenant, body.conversation_id, body.agent_id, body.text,
                              body.at if body.at is not None else request.app[CLOCK].now(), body.message_id)
    inbound = InboundEvent(event, SOURCE, body.platform_ref, post_hoc=body.event == "agent_message",
                           details={"signature_verified": verified})
    await ingest(request, [inbound], actor=principal.actor)
    return json_response({"status": "accepted", "event": body.event, "conversation_id": body.conversation_id})


class WebhookDeliverer:
    """Delivers replies by POSTing our JSON to the configured URL."""

    name = "webhook"

    def __init__(self, session: aiohttp.ClientSession, *, url: str, secret: str) -> None:
        self._session = session
        self._url = url
        self._secret = secret

    async def deliver(self, message: OutboundMessage) -> DeliveryReceipt:
        body = json.dumps({
            "id": message.id, "idempotency_key": message.idempotency_key, "tenant": message.tenant,
            "conversation_id": message.conversation_id, "kind": message.kind, "text": message.text,
            "platform_ref": message.platform_ref}, ensure_ascii=False).encode("utf-8")
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key,
                   "X-Assist-Timestamp": ts, "X-Assist-Signature": sign(self._secret, ts, body)}
        try:
            async with self._session.post(self._url, data=body, headers=headers) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise classify_status(resp.status, retry_after=resp.headers.get("Retry-After"), text=text)
        except aiohttp.ClientError as err:
            raise transport_error(err) from None
        except TimeoutError as err:
            raise transport_error(err) from None
        message_id = None
        try:
            message_id = json.loads(text).get("message_id") if text else None
        except (ValueError, AttributeError):
            pass
        return DeliveryReceipt(str(message_id) if message_id is not None else None)

    async def find_delivered(self, message: OutboundMessage) -> DeliveryReceipt | None:
        # The receiver dedupes by Idempotency-Key, so re-posting is the check.
        return None


def setup_inbound(app: web.Application) -> None:
    """Register POST /v1/webhooks/generic (on for every platform: any system can push events)."""
    app.router.add_post("/v1/webhooks/generic", generic_webhook)


def setup(app: web.Application, settings: Settings) -> None:
    """Deliver replies to settings.webhook_url."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async for session in client_session_ctx(app, settings.delivery_timeout_s):
            app[DELIVERER] = WebhookDeliverer(session, url=str(settings.webhook_url),
                                              secret=settings.webhook_secret.get_secret_value())
            yield

    app.cleanup_ctx.append(ctx)
