"""What every platform adapter shares: the delivery protocol, webhook signatures, dedupe, HTTP errors.

An adapter module exposes `setup(app, settings)`: it registers its inbound routes, and in a
cleanup_ctx puts its deliverer (assist.outbox.Deliverer: `deliver`, `find_delivered`) under
app[DELIVERER]. Adapters hold no rules and never import guards.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
import structlog
from aiohttp import web

from assist.api_keys import CLOCK, CONVERSATIONS, METRICS, STATE_DB
from assist.auth import require_role
from assist.conversations import InboundEvent
from assist.errors import SignatureInvalid
from assist.outbox import DeliveryError, DeliveryReceipt, OutboundMessage

__all__ = [
    "Adapter", "classify_status", "client_session_ctx", "ingest", "platform_principal", "seen_before", "sign",
    "verify_signature",
]

log = structlog.get_logger("adapters")


class Adapter(Protocol):
    """A platform: deliver replies to it; its module's setup() wires inbound routes."""

    name: str

    async def deliver(self, message: OutboundMessage) -> DeliveryReceipt: ...

    async def find_delivered(self, message: OutboundMessage) -> DeliveryReceipt | None: ...


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 of "{timestamp}.{raw body}" (Chatwoot's scheme, spec chatwoot.md 3)."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    *, secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float, window_s: int
) -> None:
    """Raise SignatureInvalid unless the signature verifies and the timestamp is within the window."""
    if not timestamp or not signature:
        raise SignatureInvalid("missing signature or timestamp header", code="signature_missing")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureInvalid("the timestamp header is not Unix seconds", code="signature_invalid") from None
    if abs(now - ts) > window_s:
        raise SignatureInvalid(f"the timestamp is more than {window_s} s from now (replay or clock skew)",
                               code="signature_expired", details=[{"timestamp": ts, "window_s": window_s}])
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip()):
        raise SignatureInvalid("the signature does not match the body", code="signature_invalid")


def check_signature(
    request: web.Request, *, mode: str, secret: str, timestamp: str | None, signature: str | None,
    body: bytes, window_s: int, source: str,
) -> bool:
    """Apply enforce / log_only / off; return whether the signature verified."""
    if mode == "off":
        return False
    try:
        verify_signature(secret=secret, timestamp=timestamp, signature=signature, body=body,
                         now=request.app[CLOCK].now(), window_s=window_s)
        return True
    except SignatureInvalid as err:
        if mode == "enforce":
            raise
        log.warning("webhook.signature_failed", source=source, code=err.code, mode=mode)
        return False


def platform_principal(request: web.Request) -> Any:
    """The caller of a webhook route: a platform (or admin) token; its tenant owns the events."""
    return require_role(request, "platform")


async def seen_before(request: web.Request, source: str, delivery_id: str) -> bool:
    """Record an inbound delivery id; True if it was recorded before (a platform retry)."""
    now = request.app[CLOCK].now()

    def mark(conn: Any) -> bool:
        cur = conn.execute("INSERT OR IGNORE INTO inbound_seen (source, delivery_id, at) VALUES (?,?,?)",
                           (source, delivery_id, now))
        return cur.rowcount == 0

    return await request.app[STATE_DB].run(mark)


async def ingest(request: web.Request, events: list[InboundEvent], *, actor: str) -> None:
    """Hand parsed events to the conversation service, in order."""
    service = request.app[CONVERSATIONS]
    for inbound in events:
        request.app[METRICS].inbound.labels(inbound.source, inbound.event.kind).inc()
        await service.ingest(inbound, actor=actor)


def classify_status(status: int, *, retry_after: str | None, text: str) -> DeliveryError:
    """A platform's non-2xx answer as a DeliveryError: 429/5xx retry, other 4xx are final."""
    if status == 429:
        delay = None
        if retry_after and retry_after.strip().isdigit():
            delay = float(retry_after.strip())
        return DeliveryError(f"platform throttled (429): {text[:200]}", retryable=True, status=status,
                             retry_after_s=delay)
    if status >= 500:
        # The platform may have stored the message before failing: check before re-posting.
        return DeliveryError(f"platform error {status}: {text[:200]}", retryable=True, status=status, reached=True)
    return DeliveryError(f"platform refused ({status}): {text[:200]}", retryable=False, status=status)


def transport_error(err: Exception) -> DeliveryError:
    """A timeout or connection failure as a retryable DeliveryError."""
    if isinstance(err, aiohttp.ClientConnectorError):
        # Never connected: the platform cannot have the message.
        return DeliveryError(f"cannot connect: {err}", retryable=True, reached=False)
    return DeliveryError(f"{type(err).__name__}: {err}", retryable=True, reached=True)


async def client_session_ctx(app: web.Application, timeout_s: float) -> AsyncIterator[aiohttp.ClientSession]:
    """One ClientSession for an adapter's lifetime."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
    try:
        yield session
    finally:
        await session.close()
