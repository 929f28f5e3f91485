"""Chatwoot: webhooks in (POST /v1/webhooks/chatwoot), replies out through its REST API.

Shapes follow shared/spec/chatwoot.md: flat payloads with `event` at the top, `message_type` a
string in webhooks and an int inside `conversation.messages[]`, conversation `id` = display id.
Chatwoot has no pre-send hook, so messages agents type in Chatwoot itself can only be checked
after the fact (post_hoc). Replies carry `content_attributes.assist_outbox_id`, which lets a
retry after a timeout ask Chatwoot whether the first try arrived, and lets us drop our own echo.
One Chatwoot account per tenant: the webhook's platform token names the tenant.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timezone
from typing import Any

import aiohttp

from .base import DeliveryError, DeliveryReceipt, OutboundMessage, PayloadError, PlatformEvent
from .base import classify_status, transport_error

__all__ = ["MARKER", "ChatwootDeliverer", "delivery_key", "parse_webhook"]

SOURCE = "chatwoot"
MARKER = "assist_outbox_id"
# message_type is a string in webhook payloads, an int in conversation.messages[] (spec 2.2).
_MESSAGE_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}


def _parse_time(value: Any, fallback: float) -> float:
    """Chatwoot timestamps: ISO-8601 with Z, "YYYY-MM-DD HH:MM:SS UTC", or epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) and 0 <= value < 1e11 else fallback
    if isinstance(value, str) and value:
        text = value.strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return fallback
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    return fallback


def _id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise PayloadError(f"'{where}' must be a conversation id (integer or string)", loc=where)
    return str(value)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _assignee(conv: dict[str, Any]) -> str | None:
    assignee = _obj(_obj(conv.get("meta")).get("assignee"))
    return str(assignee["id"]) if assignee.get("id") is not None else None


def parse_webhook(payload: dict[str, Any], *, now: float) -> tuple[list[PlatformEvent], str | None]:
    """Turn one Chatwoot webhook body into our events; the second value says why it was ignored."""
    name = payload.get("event")
    if not isinstance(name, str) or not name:
        raise PayloadError("the payload has no 'event' name", loc="event")
    if name == "message_created":
        return _message(payload, now=now)
    if name in ("conversation_created", "conversation_status_changed", "conversation_updated",
                "conversation_opened", "conversation_resolved"):
        return _conversation(name, payload, now=now)
    return [], f"event '{name}' is not used"


def _message(p: dict[str, Any], *, now: float) -> tuple[list[PlatformEvent], str | None]:
    conv = p.get("conversation")
    if not isinstance(conv, dict):
        raise PayloadError("message_created needs a 'conversation' object", loc="conversation")
    cid = _id(conv.get("id"), "conversation.id")
    mtype = p.get("message_type")
    mtype = _MESSAGE_TYPES.get(mtype, mtype) if isinstance(mtype, int) else mtype
    content = p.get("content")
    text = content if isinstance(content, str) else ""
    sender = _obj(p.get("sender"))
    ref = {"account_id": _obj(p.get("account")).get("id"), "inbox_id": _obj(p.get("inbox")).get("id")}
    ref = {k: v for k, v in ref.items() if v is not None}
    at = _parse_time(p.get("created_at"), now)
    mid = str(p["id"]) if p.get("id") is not None else None
    if mtype == "incoming" and not p.get("private"):
        return [PlatformEvent("customer_message", cid, _assignee(conv), text, at, mid, ref)], None
    if mtype != "outgoing":
        return [], f"message_type '{mtype}' is not a chat message"
    if p.get("private"):
        return [], "private note"
    if MARKER in _obj(p.get("content_attributes")):
        return [], "our own reply (echo)"
    if sender.get("type") != "user":
        return [], f"outgoing message from '{sender.get('type')}', not an agent"
    agent = str(sender["id"]) if sender.get("id") is not None else None
    return [PlatformEvent("agent_message", cid, agent, text, at, mid, ref, post_hoc=True)], None


def _conversation(name: str, p: dict[str, Any], *, now: float) -> tuple[list[PlatformEvent], str | None]:
    cid = _id(p.get("id"), "id")
    agent = _assignee(p)
    at = _parse_time(p.get("timestamp") or p.get("updated_at"), now)
    changed = p.get("changed_attributes")
    details = {"chatwoot_event": name, "status": p.get("status"), "changed_attributes": changed}
    ref = {"inbox_id": p["inbox_id"]} if p.get("inbox_id") is not None else {}
    kind: str | None = None
    if name in ("conversation_created", "conversation_opened"):
        kind = "opened"
    elif name == "conversation_resolved":
        kind = "closed"
    elif name == "conversation_status_changed":
        kind = {"open": "opened", "resolved": "closed"}.get(str(p.get("status")))
        if kind is None:
            return [], f"status '{p.get('status')}' is neither open nor resolved"
    else:  # conversation_updated: changed_attributes is a list of {attribute: {previous_value, current_value}}
        keys: set[str] = set()
        for item in changed if isinstance(changed, list) else []:
            keys.update(_obj(item).keys())
        if "assignee_id" in keys:
            kind = "assigned"
        elif "team_id" in keys:
            kind = "transferred"
        else:
            return [], "no assignee or team change"
    return [PlatformEvent(kind, cid, agent, None, at, None, ref, details=details)], None  # type: ignore[arg-type]


def delivery_key(delivery_header: str | None, payload: dict[str, Any], raw: bytes) -> str:
    """The dedupe key: X-Chatwoot-Delivery (retries reuse it), else event + id + body hash."""
    if delivery_header:
        return delivery_header
    return f"{payload.get('event')}:{payload.get('id')}:{hashlib.sha256(raw).hexdigest()[:16]}"


class ChatwootDeliverer:
    """Posts replies as outgoing, non-private text messages through Chatwoot's REST API."""

    name = "chatwoot"

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, account_id: int, token: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._account = account_id
        self._headers = {"api_access_token": token}

    def _url(self, message: OutboundMessage) -> str:
        account = message.platform_ref.get("account_id") or self._account
        return f"{self._base}/api/v1/accounts/{account}/conversations/{message.conversation_id}/messages"

    async def deliver(self, message: OutboundMessage) -> DeliveryReceipt:
        body = {"content": message.text, "message_type": "outgoing", "private": False, "content_type": "text",
                "content_attributes": {MARKER: message.id}}
        try:
            async with self._session.post(self._url(message), json=body, headers=self._headers) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise classify_status(resp.status, retry_after=resp.headers.get("Retry-After"), text=text)
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise transport_error(err) from None
        except ValueError:
            return DeliveryReceipt(None)
        return DeliveryReceipt(str(data["id"]) if isinstance(data, dict) and data.get("id") is not None else None)

    async def find_delivered(self, message: OutboundMessage) -> DeliveryReceipt | None:
        """List the conversation's recent messages; the receipt if one carries our outbox id."""
        try:
            async with self._session.get(self._url(message), headers=self._headers) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise classify_status(resp.status, retry_after=resp.headers.get("Retry-After"), text=text)
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            # Cannot tell whether it arrived: wait and ask again rather than risk a duplicate.
            raise DeliveryError(f"cannot list messages to check for a duplicate: {err}", retryable=True,
                                reached=True) from None
        items = data.get("payload", []) if isinstance(data, dict) else data if isinstance(data, list) else []
        for item in items:
            attrs = _obj(_obj(item).get("content_attributes"))
            if str(attrs.get(MARKER)) == str(message.id):
                return DeliveryReceipt(str(item.get("id")) if item.get("id") is not None else None)
        return None
