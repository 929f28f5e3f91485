"""Inbound platform webhooks: POST /v1/webhooks/chatwoot and POST /v1/webhooks/generic.

A webhook is authenticated twice: a `platform` token (header, or `access_token` query parameter
because Chatwoot cannot set headers) names the tenant, and the body's HMAC signature proves the
platform sent it (mode enforce | log_only | off). Retries are dropped by delivery id. The adapters
translate the payload; this module stores, audits and publishes what they return.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from adapters import chatwoot, webhook
from adapters.base import PayloadError, PlatformEvent, SignatureError, verify_signature

from .api import json_response, parse_json_object, read_body, tenant_policy
from .api_keys import CLOCK, CONVERSATIONS, METRICS, SETTINGS, STATE_DB
from .auth import Principal, require_role
from .conversations import InboundEvent
from .errors import InvalidPayload, SignatureInvalid
from .events import ConversationEvent

__all__ = ["setup_webhook_routes"]

log = structlog.get_logger("assist.webhooks")


def _check_signature(request: web.Request, *, mode: str, secret: str, timestamp: str | None,
                     signature: str | None, body: bytes, source: str) -> bool:
    """Apply enforce / log_only / off; return whether the signature verified."""
    if mode == "off":
        return False
    try:
        verify_signature(secret=secret, timestamp=timestamp, signature=signature, body=body,
                         now=request.app[CLOCK].now(), window_s=request.app[SETTINGS].signature_window_s)
        return True
    except SignatureError as err:
        if mode == "enforce":
            raise SignatureInvalid(str(err), code=err.code) from None
        log.warning("webhook.signature_failed", source=source, code=err.code, mode=mode)
        return False


async def _receive(request: web.Request, *, source: str, header_prefix: str, mode: str,
                   secret: str) -> tuple[Principal, bytes, bool]:
    """The platform token, its tenant, the raw body and whether its signature verified."""
    principal = require_role(request, "platform")
    tenant_policy(request, principal.tenant)
    raw = await read_body(request)
    verified = _check_signature(
        request, mode=mode, secret=secret, timestamp=request.headers.get(f"{header_prefix}Timestamp"),
        signature=request.headers.get(f"{header_prefix}Signature"), body=raw, source=source)
    return principal, raw, verified


async def _seen_before(request: web.Request, source: str, delivery_id: str) -> bool:
    """Record an inbound delivery id; True if it was recorded before (a platform retry)."""
    now = request.app[CLOCK].now()

    def mark(conn: Any) -> bool:
        cur = conn.execute("INSERT OR IGNORE INTO inbound_seen (source, delivery_id, at) VALUES (?,?,?)",
                           (source, delivery_id, now))
        return cur.rowcount == 0

    return await request.app[STATE_DB].run(mark)


async def _ingest(request: web.Request, tenant: str, source: str, events: list[PlatformEvent],
                  *, actor: str, verified: bool) -> None:
    now = request.app[CLOCK].now()
    service = request.app[CONVERSATIONS]
    for pe in events:
        event = ConversationEvent(pe.kind, tenant, pe.conversation_id, pe.agent_id, pe.text,
                                  pe.at if pe.at is not None else now, pe.message_id)
        request.app[METRICS].inbound.labels(source, pe.kind).inc()
        await service.ingest(InboundEvent(event, source, pe.platform_ref, post_hoc=pe.post_hoc,
                                          details={**pe.details, "signature_verified": verified}), actor=actor)


async def chatwoot_webhook(request: web.Request) -> web.Response:
    """Verify the signature, dedupe by X-Chatwoot-Delivery, then ingest the events."""
    settings = request.app[SETTINGS]
    principal, raw, verified = await _receive(request, source="chatwoot", header_prefix="X-Chatwoot-",
                                               mode=settings.chatwoot_signature_mode,
                                               secret=settings.chatwoot_webhook_secret.get_secret_value())
    payload = parse_json_object(raw)
    key = chatwoot.delivery_key(request.headers.get("X-Chatwoot-Delivery"), payload, raw)
    if await _seen_before(request, "chatwoot", f"{principal.tenant}:{key}"):
        return json_response({"status": "duplicate", "delivery": key})
    try:
        events, ignored = chatwoot.parse_webhook(payload, now=request.app[CLOCK].now())
    except PayloadError as err:
        raise InvalidPayload(str(err), details=err.details) from None
    await _ingest(request, principal.tenant, "chatwoot", events, actor=principal.actor, verified=verified)
    if ignored:
        log.info("webhook.ignored", source="chatwoot", chatwoot_event=payload.get("event"), reason=ignored)
    return json_response({"status": "ignored" if ignored else "accepted", "reason": ignored,
                          "events": [e.kind for e in events]})


async def generic_webhook(request: web.Request) -> web.Response:
    """Our own JSON event (adapters/webhook.py documents it): verify, dedupe, ingest."""
    settings = request.app[SETTINGS]
    principal, raw, verified = await _receive(request, source="generic", header_prefix="X-Assist-",
                                              mode=settings.webhook_signature_mode,
                                              secret=settings.webhook_secret.get_secret_value())
    try:
        event, delivery = webhook.parse_generic(parse_json_object(raw))
    except PayloadError as err:
        raise InvalidPayload(str(err), details=err.details) from None
    delivery = delivery or request.headers.get("X-Assist-Delivery")
    if delivery and await _seen_before(request, "generic", f"{principal.tenant}:{delivery}"):
        return json_response({"status": "duplicate", "delivery": delivery})
    await _ingest(request, principal.tenant, "generic", [event], actor=principal.actor, verified=verified)
    return json_response({"status": "accepted", "events": [event.kind]})


def setup_webhook_routes(app: web.Application, *, chatwoot_enabled: bool) -> None:
    """The generic webhook is always on (any system may push events); Chatwoot's when configured."""
    app.router.add_post("/v1/webhooks/generic", generic_webhook)
    if chatwoot_enabled:
        app.router.add_post("/v1/webhooks/chatwoot", chatwoot_webhook)
