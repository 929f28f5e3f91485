"""Auditor routes: list, export and verify the audit log, and per-agent QA reports (read-only).

Every route is scoped to the caller's tenant (a token belongs to one tenant). Texts are masked
unless the caller asks for `keep_original=true` and the tenant's policy keeps originals. Store
calls run in a worker thread so a long query never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web

from . import reports
from .api import json_response, tenant_policy
from .api_keys import AUDIT_RELAY, SETTINGS
from .audit import AUDIT_STORE, AUDIT_WRITER, AuditEvent, AuditQuery
from .audit_export import FORMATS, content_type, csv_header, render
from .audit_mask import mask_text
from .audit_query import QueryError
from .auth import Principal, require_role
from .errors import BadRequest, Forbidden

__all__ = ["setup_audit_routes"]

T = TypeVar("T")
EXPORT_PAGE = 1000


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


def _bad_query(err: QueryError) -> BadRequest:
    return BadRequest(f"query parameter {err}", code="invalid_query",
                      details=[{"loc": err.field, "message": err.message}])


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "1", "false", "0"):
        raise BadRequest(f"query parameter {name}: must be true or false", code="invalid_query",
                         details=[{"loc": name, "message": "must be true or false"}])
    return raw in ("true", "1")


def _query(request: web.Request, *, export: bool = False) -> tuple[Principal, AuditQuery, bool, ZoneInfo]:
    """The caller, their tenant-scoped query, whether originals are shown, and the tenant's zone."""
    principal = require_role(request, "auditor")
    policy = tenant_policy(request, principal.tenant)
    params = {k: v for k, v in request.query.items()}
    if params.get("tenant", principal.tenant) != principal.tenant:
        raise Forbidden("an auditor token reads its own tenant only",
                        details=[{"tenant": params["tenant"], "token_tenant": principal.tenant}])
    params["tenant"] = principal.tenant
    keep = _flag(request, "keep_original")
    if keep and not policy.keep_original_text:
        raise Forbidden("tenant policy masks customer data; originals are not available",
                        code="originals_not_allowed", details=[{"policy": "keep_original_text", "value": False}])
    if export:
        params.pop("limit", None)
        if params.get("format", "csv") not in FORMATS:
            raise BadRequest(f"query parameter format: must be one of {', '.join(FORMATS)}", code="invalid_query",
                             details=[{"loc": "format", "message": f"one of {', '.join(FORMATS)}"}])
    try:
        q = AuditQuery.from_params(params, tz=policy.timezone)
    except QueryError as err:
        raise _bad_query(err) from None
    if q.text and not keep and mask_text(q.text) != q.text:
        # Search runs over the stored originals: looking up a full phone or card number would
        # reveal who sent it even though every result shows it masked.
        raise Forbidden("query parameter text: holds customer data this tenant masks (phone, ID, card or address)",
                        code="masked_search", details=[{"loc": "text", "message": "masked customer data"}])
    return principal, q, keep, ZoneInfo(policy.timezone)


async def list_records(request: web.Request) -> web.Response:
    """GET /v1/audit: one page of records, newest first; pass `cursor` back for the next page."""
    await request.app[AUDIT_RELAY].settle()  # decisions already answered for are in the store
    _, q, keep, _ = _query(request)
    page = await _in_thread(request.app[AUDIT_STORE].query, q, keep_original=keep)
    return json_response({"records": [r.to_dict() for r in page.records], "next_cursor": page.next_cursor,
                          "count": len(page.records)})


async def export_records(request: web.Request) -> web.StreamResponse:
    """GET /v1/audit/export?format=csv|jsonl: every matching record, streamed page by page."""
    await request.app[AUDIT_RELAY].settle()  # decisions already answered for are in the store
    principal, q, keep, tz = _query(request, export=True)
    fmt = request.query.get("format", "csv")
    store = request.app[AUDIT_STORE]
    # Who exported what is itself an audit fact: exports carry customer texts out of the system.
    await request.app[AUDIT_WRITER].append(AuditEvent(
        tenant=principal.tenant, kind="audit_export", actor=principal.actor, action=fmt,
        details={"filters": q.filters(), "keep_original": keep}))
    resp = web.StreamResponse(headers={
        "Content-Type": content_type(fmt),
        "Content-Disposition": f'attachment; filename="audit-{principal.tenant}.{fmt}"',
    })
    await resp.prepare(request)
    if fmt == "csv":
        await resp.write(csv_header().encode("utf-8"))
    q = q.replace(limit=EXPORT_PAGE)
    while True:
        page = await _in_thread(store.query, q, keep_original=keep)
        await resp.write(render(fmt, page.records, tz).encode("utf-8"))
        if page.next_cursor is None:
            break
        q = q.replace(cursor=page.next_cursor)
    await resp.write_eof()
    return resp


async def verify_chain(request: web.Request) -> web.Response:
    """GET /v1/audit/verify: walk the tenant's chain; `ok` false names the first bad record."""
    await request.app[AUDIT_RELAY].settle()  # decisions already answered for are in the store
    principal = require_role(request, "auditor")
    tenant_policy(request, principal.tenant)
    report = await _in_thread(request.app[AUDIT_STORE].verify, principal.tenant)
    await request.app[AUDIT_WRITER].append(AuditEvent(
        tenant=principal.tenant, kind="audit_verify", actor=principal.actor, action="ok" if report.ok else "failed",
        details={"records": report.records, "problem": report.to_dict()["tenants"][0]["problem"]}))
    return json_response(report.to_dict())


async def agent_reports(request: web.Request) -> web.Response:
    """GET /v1/reports/agents?period=day|week|month&date=YYYY-MM-DD[&agent=ID]: QA metrics per agent."""
    await request.app[AUDIT_RELAY].settle()  # decisions already answered for are in the store
    principal = require_role(request, "auditor")
    policy = tenant_policy(request, principal.tenant)
    unknown = sorted(set(request.query) - {"period", "date", "agent"})
    if unknown:
        raise BadRequest(f"query parameter {unknown[0]}: unknown; use period, date, agent", code="invalid_query",
                         details=[{"loc": unknown[0], "message": "unknown parameter"}])
    try:
        window = reports.period_window(request.query.get("period", "day"), request.query.get("date"),
                                       tz=policy.timezone, now=_now(request))
    except reports.ReportError as err:
        raise BadRequest(f"query parameter {err}", code="invalid_query",
                         details=[{"loc": err.field, "message": err.message}]) from None
    library = _library(request, principal.tenant)
    result = await _in_thread(reports.agent_reports, request.app[AUDIT_STORE], tenant=principal.tenant,
                              window=window, library=library, agent=request.query.get("agent"))
    return json_response(result.to_dict())


def _now(request: web.Request) -> float:
    from .api_keys import CLOCK

    return request.app[CLOCK].now()


def _library(request: web.Request, tenant: str) -> Any:
    from .api_keys import GUARDS

    cache = request.app.get(GUARDS)
    return cache.library(tenant) if cache is not None else request.app[SETTINGS].library_for(tenant)


def setup_audit_routes(app: web.Application) -> None:
    """Register the auditor routes on `app` (the store and writer come from the app's audit context)."""
    app.router.add_get("/v1/audit", list_records)
    app.router.add_get("/v1/audit/export", export_records)
    app.router.add_get("/v1/audit/verify", verify_chain)
    app.router.add_get("/v1/reports/agents", agent_reports)
