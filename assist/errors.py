"""One exception tree for the service; each error knows its HTTP status and snake_case code.

The app's error middleware (assist/app.py) renders every one of them as
`{"error": {"code", "message", "details"}}`; the CLI turns them into click errors at its edge.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AssistError",
    "BadRequest",
    "Conflict",
    "ConversationNotFound",
    "Forbidden",
    "InvalidPayload",
    "MalformedJSON",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RouteNotFound",
    "SignatureInvalid",
    "TenantNotFound",
    "TokenExpired",
    "Unauthorized",
    "error_body",
]


class AssistError(Exception):
    """Base of every error the service reports to a client."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else []
        if code is not None:
            self.code = code
        # Set when the handler already wrote the decision to the audit (a blocked reply), so the
        # middleware does not add a second "refused" record for the same thing.
        self.audited = False

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error shape every endpoint answers with."""
    return {"error": {"code": code, "message": message, "details": details if details is not None else []}}


class BadRequest(AssistError):
    """The request is not something the service can read."""

    status = 400
    code = "bad_request"


class MalformedJSON(BadRequest):
    """The body is not valid JSON (or not a JSON object)."""

    code = "malformed_json"


class Unauthorized(AssistError):
    """No valid credentials: missing, unknown or revoked token, or a bad webhook signature."""

    status = 401
    code = "unauthorized"


class TokenExpired(Unauthorized):
    """The bearer token was valid but its expiry time has passed."""

    code = "token_expired"


class SignatureInvalid(Unauthorized):
    """A webhook's signature or timestamp does not verify."""

    code = "signature_invalid"


class Forbidden(AssistError):
    """The token is valid but its role may not do this."""

    status = 403
    code = "forbidden"


class NotFound(AssistError):
    """The thing named in the request does not exist."""

    status = 404
    code = "not_found"


class RouteNotFound(NotFound):
    """No route has this path."""

    code = "route_not_found"


class ConversationNotFound(NotFound):
    """No conversation with this id is known for the caller's tenant."""

    code = "conversation_not_found"


class TenantNotFound(NotFound):
    """The token's tenant is not configured in this service."""

    code = "tenant_not_found"


class MethodNotAllowed(AssistError):
    """The route exists but not with this HTTP method."""

    status = 405
    code = "method_not_allowed"


class Conflict(AssistError):
    """The request clashes with the current state (for example an idempotency key reused for other text)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(AssistError):
    """The body is larger than max_body_bytes."""

    status = 413
    code = "payload_too_large"


class InvalidPayload(AssistError):
    """The JSON is readable but its fields are missing, of the wrong type, or not allowed."""

    status = 422
    code = "invalid_payload"
