"""The generic platform: our own JSON in (POST /v1/webhooks/generic), our own JSON out (POST webhook_url).

Inbound body (one event per request):
    {"event": "customer_message" | "agent_message" | "opened" | "assigned" | "closed" | "transferred",
     "conversation_id": "c-1", "text": "...", "agent_id": "a-7", "message_id": "m-1",
     "at": 1777626843.0, "delivery_id": "uuid", "platform_ref": {...}}
An `agent_message` here was typed on the platform itself: it is checked and audited after the fact.
Signed like Chatwoot: X-Assist-Timestamp and X-Assist-Signature = sha256=HMAC(secret, "{ts}.{body}").

Outbound: POST webhook_url with {"id", "idempotency_key", "tenant", "conversation_id", "kind", "text",
"platform_ref"}, signed the same way, with an `Idempotency-Key` header. The receiver must treat a
repeated key as the same message: that is how a retry after a timeout stays exactly-once.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from .base import DeliveryReceipt, OutboundMessage, PayloadError, PlatformEvent, classify_status, sign
from .base import transport_error

__all__ = ["GenericEvent", "WebhookDeliverer", "parse_generic"]


class GenericEvent(BaseModel):
    """One event in our own inbound JSON."""

    model_config = ConfigDict(extra="forbid")
    event: Literal["customer_message", "agent_message", "opened", "assigned", "closed", "transferred"]
    conversation_id: StrictStr = Field(min_length=1, max_length=128)
    text: StrictStr | None = Field(None, max_length=20_000)
    agent_id: StrictStr | None = Field(None, max_length=128)
    message_id: StrictStr | None = Field(None, max_length=128)
    at: float | None = Field(None, ge=0, le=1e11, allow_inf_nan=False)  # epoch seconds
    delivery_id: StrictStr | None = Field(None, min_length=1, max_length=128)
    platform_ref: dict[str, Any] = {}


def parse_generic(data: dict[str, Any]) -> tuple[PlatformEvent, str | None]:
    """Validate one generic event; return it with its delivery id (for dedupe)."""
    try:
        body = GenericEvent.model_validate(data)
    except ValidationError as err:
        details = [{"loc": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"], "type": e["type"]}
                   for e in err.errors()]
        raise PayloadError("the event does not match the generic webhook schema", loc="body",
                           details=details) from None
    if body.event in ("customer_message", "agent_message") and not (body.text and body.text.strip()):
        raise PayloadError(f"'{body.event}' needs a non-empty 'text'", loc="text")
    event = PlatformEvent(body.event, body.conversation_id, body.agent_id, body.text, body.at, body.message_id,
                          body.platform_ref, post_hoc=body.event == "agent_message")
    return event, body.delivery_id


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
        except (aiohttp.ClientError, TimeoutError) as err:
            raise transport_error(err) from None
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        message_id = data.get("message_id") if isinstance(data, dict) else None
        return DeliveryReceipt(str(message_id) if message_id is not None else None)

    async def find_delivered(self, message: OutboundMessage) -> DeliveryReceipt | None:
        # The receiver dedupes by Idempotency-Key, so re-posting is the check.
        return None
