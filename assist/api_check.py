"""The guard as the service uses it: one Guard per tenant, POST /v1/check, post-hoc checks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr

import guards

from .api import json_response, note, read_json, tenant_policy
from .api_keys import CONVERSATIONS, GUARDS, METRICS
from .audit import AUDIT_WRITER, AuditEvent, AuditWriter
from .auth import require_role
from .config import Settings
from .conversations import InboundEvent
from .metrics import Metrics

__all__ = ["CheckRequest", "GuardCache", "check", "verdict_json"]

log = structlog.get_logger("assist.check")

# A chat message is short; 4000 characters is ten screens of it.
MAX_TEXT = 4000


class CheckRequest(BaseModel):
    """Body of POST /v1/check."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(min_length=1, max_length=MAX_TEXT)
    conversation_id: StrictStr | None = Field(None, min_length=1, max_length=128)


# A verdict with nothing in it depends only on its action, and most drafts are clean:
# serialise those once (model_dump is the costly part of answering a clean check).
_EMPTY_VERDICTS: dict[str, dict[str, Any]] = {}


def verdict_json(v: guards.Verdict) -> dict[str, Any]:
    """The verdict as the API returns it, with rule ids and categories spelled out."""
    if not v.violations and not v.suggestions and v.rewritten is None:
        cached = _EMPTY_VERDICTS.get(v.action)
        if cached is None:
            cached = _EMPTY_VERDICTS[v.action] = _verdict_json(v)
        return {**cached, "violations": [], "suggestions": [], "rule_ids": [], "categories": []}
    return _verdict_json(v)


def _verdict_json(v: guards.Verdict) -> dict[str, Any]:
    return {**v.model_dump(mode="json"), "rule_ids": list(v.rule_ids), "categories": list(v.categories)}


class GuardCache:
    """One Guard per tenant, built at start-up (a bad tenant library stops the service there)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._guards: dict[str, guards.Guard] = {}
        self._libraries: dict[str, Any] = {}

    def build(self) -> None:
        # Tenants sharing the default library share one Guard: building one is the slow part.
        shared: dict[Any, tuple[Any, guards.Guard]] = {}
        for tenant, policy in self._settings.tenants.items():
            key = policy.library_path
            if key not in shared:
                lib = self._settings.library_for(tenant)
                shared[key] = (lib, guards.Guard(lib))
            self._libraries[tenant], self._guards[tenant] = shared[key]

    def library(self, tenant: str) -> Any:
        return self._libraries[tenant]

    def check(self, tenant: str, text: str, history: Sequence[guards.Message | dict[str, str]]) -> guards.Verdict:
        started = time.perf_counter()
        verdict = self._guards[tenant].check(text, history=history)
        self._metrics.guard_latency.observe(time.perf_counter() - started)
        return verdict


async def check(request: web.Request) -> web.Response:
    """POST /v1/check: the verdict on a draft; nothing sent, only violations audited."""
    principal = require_role(request, "agent")
    tenant_policy(request, principal.tenant)
    body = await read_json(request, CheckRequest)
    app = request.app
    history: tuple[guards.Message, ...] = ()
    if body.conversation_id is not None:
        _, history = await app[CONVERSATIONS].with_messages(principal.tenant, body.conversation_id)
    verdict = app[GUARDS].check(principal.tenant, body.text, history)
    app[METRICS].record_verdict("check", verdict.action, [(v.category, v.action) for v in verdict.violations])
    audit_id = None
    if verdict.violations:
        audit_id = await app[AUDIT_WRITER].append(AuditEvent(
            tenant=principal.tenant, kind="check", actor=principal.actor, conversation_id=body.conversation_id,
            action=verdict.action, rule_ids=tuple(verdict.rule_ids), categories=tuple(verdict.categories),
            original_text=body.text, final_text=verdict.rewritten,
            details={"suggestions": [s.template_id for s in verdict.suggestions]}))
    note(request, "draft.checked", action=verdict.action, rules=list(verdict.rule_ids), text_len=len(body.text),
         audit_id=audit_id)
    return json_response({**verdict_json(verdict), "audit_id": audit_id})


def post_hoc_checker(guards_: GuardCache, writer: AuditWriter, conversations: Any, metrics: Metrics) -> Any:
    """Check agent messages typed on the platform itself: they already went out, so audit only."""

    async def run(inbound: InboundEvent) -> None:
        ev = inbound.event
        history = await conversations.history(ev.tenant, ev.conversation_id)
        verdict = guards_.check(ev.tenant, ev.text or "", history)
        metrics.record_verdict("post_hoc", verdict.action, [(v.category, v.action) for v in verdict.violations])
        log.info("draft.checked", action=verdict.action, rules=list(verdict.rule_ids), post_hoc=True,
                 conversation_id=ev.conversation_id)
        if verdict.violations:
            await writer.append(AuditEvent(
                tenant=ev.tenant, kind="check", actor=f"agent:{ev.agent_id}" if ev.agent_id else None,
                conversation_id=ev.conversation_id, action=verdict.action, rule_ids=tuple(verdict.rule_ids),
                categories=tuple(verdict.categories), original_text=ev.text, final_text=ev.text,
                details={"post_hoc": True, "source": inbound.source, "message_id": ev.message_id,
                         "would_have_been": verdict.action}, at=ev.at))

    return run
