"""HTTP handlers shared by all routes (body parsing, health, metrics, conversation view) and the route table."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .api_keys import CONVERSATIONS, LOG_FIELDS, METRICS, OUTBOX, SETTINGS
from .auth import require_role
from .errors import InvalidPayload, MalformedJSON, PayloadTooLarge, TenantNotFound
from .metrics import CONTENT_TYPE

__all__ = ["json_response", "note", "read_json", "setup_routes", "tenant_policy", "validation_details"]

M = TypeVar("M", bound=BaseModel)


def note(request: web.Request, event: str, **fields: Any) -> None:
    """Name the decision this request made and add its fields to the request's one log line."""
    request[LOG_FIELDS] = {"event": event, **fields}


def _dumps_factory() -> Any:
    """json.dumps(value, ensure_ascii=False) with the C encoder built once, not per call (same text)."""
    slow = json.JSONEncoder(ensure_ascii=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return slow
    default, basestring = json.JSONEncoder().default, json.encoder.encode_basestring

    def dumps(value: Any) -> str:
        if type(value) is not dict:
            return slow(value)
        # A fresh markers dict per call keeps json's "Circular reference detected" check.
        return "".join(make({}, default, basestring, None, ": ", ", ", False, False, True)(value, 0))

    return dumps


_DUMPS = _dumps_factory()


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Chinese kept readable (no \\u escapes)."""
    return web.Response(text=_DUMPS(data), status=status, content_type="application/json", headers=headers)


def validation_details(err: ValidationError) -> list[dict[str, Any]]:
    """Each problem of a pydantic error as {loc, message, type}, without echoing input values."""
    return [{"loc": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"], "type": e["type"]}
            for e in err.errors()]


async def read_body(request: web.Request) -> bytes:
    """The raw body, refusing anything larger than max_body_bytes before reading it all."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}",
                              details=[{"limit_bytes": limit, "content_length": request.content_length}])
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:  # chunked bodies have no Content-Length to check first
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", details=[{"limit_bytes": limit}]) from None


def parse_json_object(raw: bytes, *, allow_empty: bool = False) -> dict[str, Any]:
    """Decode a JSON object body; MalformedJSON if it is not one."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise MalformedJSON("the body is empty; send a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedJSON("the body is not valid JSON", details=[{"error": str(err)}]) from None
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack
        raise MalformedJSON("the body nests too deeply to be a request") from None
    if not isinstance(data, dict):
        raise MalformedJSON(f"the body must be a JSON object, not {type(data).__name__}")
    return data


async def read_json(request: web.Request, model: type[M], *, allow_empty: bool = False) -> M:
    """Read, size-check, decode and validate a JSON body into `model` (400/413/422 on bad input)."""
    raw = await read_body(request)
    if raw[:1] == b"{":
        # Fast path: pydantic parses and validates the bytes in one pass. Any failure falls
        # through to the path below, which alone decides the error, so bad input gets the
        # same 400/422 body either way.
        try:
            return model.model_validate_json(raw)
        except ValueError:
            pass
    data = parse_json_object(raw, allow_empty=allow_empty)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InvalidPayload("the body does not match the expected fields",
                             details=validation_details(err)) from None


def tenant_policy(request: web.Request, tenant: str) -> Any:
    """The tenant's policy, or TenantNotFound (a token minted for a tenant later removed from config)."""
    policy = request.app[SETTINGS].policy(tenant)
    if policy is None:
        raise TenantNotFound(f"tenant '{tenant}' is not configured", details=[{"tenant": tenant}])
    return policy


async def healthz(request: web.Request) -> web.Response:
    """Liveness: no token needed, no database touched."""
    return json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition (admin and auditor tokens)."""
    require_role(request, "auditor")
    m = request.app[METRICS]
    m.outbox_depth.set(await request.app[OUTBOX].depth())
    return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE})


async def get_conversation(request: web.Request) -> web.Response:
    """A conversation's state and the delivery status of every reply in it."""
    principal = require_role(request, "agent", "auditor")
    tenant_policy(request, principal.tenant)
    cid = request.match_info["conversation_id"]
    service = request.app[CONVERSATIONS]
    conv = await service.get(principal.tenant, cid)
    deliveries = await service.deliveries(principal.tenant, cid)
    return json_response({**conv.as_json(), "deliveries": deliveries})


def setup_routes(app: web.Application) -> None:
    """Register the /v1 API, health and metrics routes."""
    from .api_check import check
    from .api_send import close_conversation, post_reply

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/check", check)
    app.router.add_get("/v1/conversations/{conversation_id}", get_conversation)
    app.router.add_post("/v1/conversations/{conversation_id}/replies", post_reply)
    app.router.add_post("/v1/conversations/{conversation_id}/close", close_conversation)
