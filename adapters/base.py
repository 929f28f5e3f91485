"""What every platform adapter shares: platform events, outbound messages, delivery errors, signatures.

Adapters translate and deliver; they import nothing from assist (the service imports them). A
platform's webhook body becomes `PlatformEvent`s (assist adds the tenant and stores them); an
accepted reply reaches the platform through an adapter's `deliver`, and after an uncertain try
(timeout, 5xx, crash mid-request) `find_delivered` asks the platform whether it already has it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp

__all__ = [
    "Adapter", "DeliveryError", "DeliveryReceipt", "OutboundMessage", "PayloadError", "PlatformEvent",
    "SignatureError", "classify_status", "sign", "transport_error", "verify_signature",
]

EventKind = Literal["customer_message", "agent_message", "opened", "assigned", "closed", "transferred"]


@dataclass(frozen=True)
class PlatformEvent:
    """One thing a platform told us, in our terms (no tenant: the service knows whose webhook it was)."""

    kind: EventKind
    conversation_id: str
    agent_id: str | None = None
    text: str | None = None
    at: float | None = None
    message_id: str | None = None
    platform_ref: dict[str, Any] = field(default_factory=dict)
    # An agent message typed on the platform itself: already sent, so it can only be checked.
    post_hoc: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    """One message to put on the platform; `id` (the outbox row) doubles as the idempotency key."""

    id: int
    tenant: str
    conversation_id: str
    kind: str
    text: str
    platform_ref: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0

    @property
    def idempotency_key(self) -> str:
        return f"assist-outbox-{self.id}"


@dataclass(frozen=True)
class DeliveryReceipt:
    """What the platform answered for a delivered message."""

    platform_message_id: str | None = None


class DeliveryError(Exception):
    """A failed delivery; `retryable` for timeouts, 5xx, 429; `reached` if the platform may have it."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None,
        reached: bool = False, retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.reached = reached
        self.retry_after_s = retry_after_s


class PayloadError(ValueError):
    """A platform payload that cannot be read as an event; `loc` names the field."""

    def __init__(self, message: str, *, loc: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.loc = loc
        self.details = details or [{"loc": loc, "message": message}]


class SignatureError(ValueError):
    """A webhook signature that does not verify; `code` says why (missing, expired, invalid)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class Adapter(Protocol):
    """The delivery half of a platform."""

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
    """Raise SignatureError unless the signature verifies and the timestamp is within the window."""
    if not timestamp or not signature:
        raise SignatureError("missing signature or timestamp header", code="signature_missing")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("the timestamp header is not Unix seconds", code="signature_invalid") from None
    if abs(now - ts) > window_s:
        raise SignatureError(f"the timestamp is more than {window_s} s from now (replay or clock skew)",
                             code="signature_expired")
    try:
        expected = sign(secret, timestamp, body)
    except UnicodeEncodeError:
        raise SignatureError("the timestamp header is not ASCII", code="signature_invalid") from None
    if not hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace")):
        raise SignatureError("the signature does not match the body", code="signature_invalid")


def classify_status(status: int, *, retry_after: str | None, text: str) -> DeliveryError:
    """A platform's non-2xx answer as a DeliveryError: 429/5xx retry, other 4xx are final."""
    if status == 429:
        delay = float(retry_after.strip()) if retry_after and retry_after.strip().isdigit() else None
        return DeliveryError(f"platform throttled (429): {text[:200]}", retryable=True, status=status,
                             retry_after_s=delay)
    if status >= 500:
        # The platform may have stored the message before failing: check before re-posting.
        return DeliveryError(f"platform error {status}: {text[:200]}", retryable=True, status=status, reached=True)
    return DeliveryError(f"platform refused ({status}): {text[:200]}", retryable=False, status=status)


def transport_error(err: BaseException) -> DeliveryError:
    """A timeout or connection failure as a retryable DeliveryError."""
    if isinstance(err, aiohttp.ClientConnectorError):
        # Never connected: the platform cannot have the message.
        return DeliveryError(f"cannot connect: {err}", retryable=True, reached=False)
    return DeliveryError(f"{type(err).__name__}: {err}", retryable=True, reached=True)
