"""The send path: POST /v1/conversations/{id}/replies and /close.

guard -> decide (pass, rewrite by tenant policy, block, override where allowed) -> greeting on the
first reply -> one state.db transaction (outbox row, history, idempotency record) -> audit ->
202. The transaction re-checks the idempotency key and the greeted/closing flags, so two
concurrent requests can never both send.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from .api import json_response, note, read_json, tenant_policy
from .api_check import MAX_TEXT, verdict_json
from .api_keys import CLOCK, CONVERSATIONS, EVENT_BUS, GUARDS, METRICS, OUTBOX
from .audit import AUDIT_WRITER, AuditEvent
from .auth import Principal, require_role
from .config import TenantPolicy
from .conversations import Conversation
from .errors import AssistError, Forbidden
from .events import ConversationEvent
from .outbox import enqueue

__all__ = ["CloseRequest", "ReplyRequest", "close_conversation", "post_reply"]

log = structlog.get_logger("assist.send")


class ReplyRequest(BaseModel):
    """Body of POST /v1/conversations/{id}/replies."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(min_length=1, max_length=MAX_TEXT)
    idempotency_key: StrictStr | None = Field(None, min_length=1, max_length=128)
    override_reason: StrictStr | None = Field(None, min_length=1, max_length=500)

    @field_validator("text", "override_reason")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v


class CloseRequest(BaseModel):
    """Body of POST /v1/conversations/{id}/close (may be empty)."""

    model_config = ConfigDict(extra="forbid")
    idempotency_key: StrictStr | None = Field(None, min_length=1, max_length=128)


class ReplyBlocked(AssistError):
    """The guard blocked the draft; nothing was sent (details hold violations and suggestions)."""

    status = 422
    code = "reply_blocked"


def _request_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def _has_marker(text: str, markers: list[str]) -> bool:
    return any(m and m in text for m in markers)


def _stored(conn: sqlite3.Connection, tenant: str, key: str | None) -> sqlite3.Row | None:
    if key is None:
        return None
    return conn.execute("SELECT * FROM idempotency WHERE tenant = ? AND key = ?", (tenant, key)).fetchone()


def _replay(row: sqlite3.Row, request_hash: str) -> web.Response:
    if row["request_hash"] != request_hash:
        from .errors import Conflict

        raise Conflict("this idempotency_key was already used for a different request",
                       details=[{"idempotency_key": row["key"], "conversation_id": row["conversation_id"]}])
    return json_response(json.loads(row["response"]), status=row["status"], headers={"Idempotent-Replay": "true"})


def _accept(
    conn: sqlite3.Connection, *, conv: Conversation, principal: Principal, text: str, greeting: str | None,
    greeting_policy: str, closing_markers: list[str], key: str | None, request_hash: str,
    response: dict[str, Any], now: float,
) -> tuple[str, Any]:
    """One transaction: idempotency re-check, greeting decision, outbox rows, history, state."""
    stored = _stored(conn, conv.tenant, key)
    if stored is not None:
        return "replay", stored
    row = conn.execute("SELECT greeted, closing_sent FROM conversations WHERE tenant = ? AND id = ?",
                       (conv.tenant, conv.id)).fetchone()
    messages: list[tuple[str, str]] = []
    greeted_now = None
    if not row["greeted"] and greeting is not None:
        greeted_now = greeting
        if greeting_policy == "separate":
            messages.append(("greeting", greeting))
        else:
            text = greeting + text
    messages.append(("reply", text))
    ids = [enqueue(conn, tenant=conv.tenant, conversation_id=conv.id, kind=kind, text=body,
                   platform_ref=conv.platform_ref, now=now) for kind, body in messages]
    for _, body in messages:
        conn.execute("INSERT INTO messages (tenant, conversation_id, role, text, at) VALUES (?,?,?,?,?)",
                     (conv.tenant, conv.id, "agent", body, now))
    closing = 1 if _has_marker(text, closing_markers) else row["closing_sent"]
    conn.execute("UPDATE conversations SET greeted = 1, closing_sent = ?, agent_messages = agent_messages + ?,"
                 " last_agent_at = ?, agent_id = COALESCE(agent_id, ?), updated_at = ? WHERE tenant = ? AND id = ?",
                 (closing, len(messages), now, principal.agent_id, now, conv.tenant, conv.id))
    response = {**response, "text": text, "greeting": greeted_now, "outbox_ids": ids}
    if key is not None:
        conn.execute("INSERT INTO idempotency VALUES (?,?,?,?,?,?,?)",
                     (conv.tenant, key, conv.id, request_hash, 202, json.dumps(response, ensure_ascii=False), now))
    fresh = conn.execute("SELECT * FROM conversations WHERE tenant = ? AND id = ?", (conv.tenant, conv.id)).fetchone()
    return "accepted", (response, fresh, [{"role": "agent", "text": body} for _, body in messages])


def _greeting(policy: TenantPolicy, lib: Any, principal: Principal, conv: Conversation, text: str) -> str | None:
    """The tenant greeting for a first reply, unless policy is off or the draft already greets."""
    if policy.greeting_policy == "off" or conv.greeted or _has_marker(text, lib.greetings.markers):
        return None
    agent = principal.agent_id or conv.agent_id
    return lib.greetings.text.replace("{line}", policy.line).replace("{agent_no}", policy.agent_no(agent))


def _override_blockers(verdict: Any) -> list[Any]:
    return [v for v in verdict.violations if v.action in ("block", "rewrite")]


async def post_reply(request: web.Request) -> web.Response:
    """Guard a reply and, if it may go out, queue it for delivery (202) — see module docstring."""
    principal = require_role(request, "agent")
    policy = tenant_policy(request, principal.tenant)
    body = await read_json(request, ReplyRequest)
    app = request.app
    cid = request.match_info["conversation_id"]
    convs = app[CONVERSATIONS]
    # Only an idempotency key is ever compared with the hash: without one, skip it.
    rhash = "" if body.idempotency_key is None else _request_hash(cid, body.text, body.override_reason)
    if body.idempotency_key is not None:
        stored = convs.db.read(_stored, principal.tenant, body.idempotency_key)
        if stored is not None:
            return _replay(stored, rhash)
    conv, history = await convs.with_messages(principal.tenant, cid)
    verdict = app[GUARDS].check(principal.tenant, body.text, history)
    app[METRICS].record_verdict("send", verdict.action, [(v.category, v.action) for v in verdict.violations])
    lib = app[GUARDS].library(principal.tenant)
    writer = app[AUDIT_WRITER]
    base = dict(tenant=principal.tenant, actor=principal.actor, conversation_id=cid, action=verdict.action,
                rule_ids=tuple(verdict.rule_ids), categories=tuple(verdict.categories), original_text=body.text)
    now = app[CLOCK].now()

    final, kind, reason = body.text, "send", None
    if verdict.action in ("block", "rewrite") and body.override_reason:
        severities = sorted({v.severity for v in _override_blockers(verdict)})
        refused = [s for s in severities if s not in policy.override_allowed]
        if refused:
            await writer.append(AuditEvent(**base, kind="block", reason=body.override_reason,
                                           details={"override_refused": refused}))
            err = Forbidden(f"tenant policy does not allow overriding {', '.join(refused)} violations",
                            code="override_not_allowed",
                            details=[{"severity": s, "allowed": list(policy.override_allowed)} for s in refused])
            err.audited = True
            note(request, "reply.override_refused", action=verdict.action, rules=list(verdict.rule_ids))
            raise err
        kind, reason = "override", body.override_reason
    elif verdict.action == "block":
        await writer.append(AuditEvent(**base, kind="block", details={
            "suggestions": [s.template_id for s in verdict.suggestions]}))
        note(request, "reply.blocked", action=verdict.action, rules=list(verdict.rule_ids))
        err = ReplyBlocked("the guard blocked this reply; nothing was sent", details={
            "violations": [v.model_dump(mode="json") for v in verdict.violations],
            "suggestions": [s.model_dump(mode="json") for s in verdict.suggestions],
            "override_allowed": all(v.severity in policy.override_allowed for v in _override_blockers(verdict))})
        err.audited = True
        raise err
    elif verdict.action == "rewrite":
        if policy.rewrite_policy == "confirm":
            await writer.append(AuditEvent(**base, kind="rewrite", final_text=verdict.rewritten,
                                           details={"confirmation_required": True}))
            note(request, "reply.rewrite_proposed", action=verdict.action, rules=list(verdict.rule_ids))
            return json_response({"status": "needs_confirmation", "conversation_id": cid,
                                  "rewritten": verdict.rewritten, "verdict": verdict_json(verdict)})
        final, kind = verdict.rewritten or body.text, "rewrite"

    greeting = _greeting(policy, lib, principal, conv, final)
    response = {"status": "accepted", "conversation_id": cid, "outcome": kind, "original": body.text,
                "verdict": verdict_json(verdict)}
    # The reply, its audit records and the clock's new deadlines commit together (one fsync).
    sent = greeting + final if greeting and policy.greeting_policy != "separate" else final
    event = ConversationEvent("agent_message", principal.tenant, cid, principal.agent_id or conv.agent_id, sent, now)

    def accept(c: sqlite3.Connection) -> tuple[tuple[str, Any], list[AuditEvent] | None]:
        outcome, result = _accept(
            c, conv=conv, principal=principal, text=final, greeting=greeting, greeting_policy=policy.greeting_policy,
            closing_markers=lib.closings.markers, key=body.idempotency_key, request_hash=rhash,
            response=response, now=now)
        if outcome != "accepted":
            return (outcome, result), None
        accepted = result[0]
        records = [AuditEvent(**base, kind=kind, final_text=accepted["text"], reason=reason, at=now,
                              details={"outbox_ids": accepted["outbox_ids"], "idempotency_key": body.idempotency_key})]
        if accepted["greeting"]:
            records.append(AuditEvent(tenant=principal.tenant, kind="greeting", actor=principal.actor,
                                      conversation_id=cid, final_text=accepted["greeting"], at=now,
                                      details={"mode": policy.greeting_policy}))
        return (outcome, result), records

    outcome, result = await convs.commit_event(event, accept)
    if outcome == "replay":
        return _replay(result, rhash)
    result, fresh, added = result
    convs.remember(fresh, added)
    app[OUTBOX].wake()
    note(request, "reply.accepted", outcome=kind, action=verdict.action, rules=list(verdict.rule_ids),
         greeting=bool(result["greeting"]), outbox_ids=result["outbox_ids"])
    return json_response(result, status=202)


def _close(conn: sqlite3.Connection, conv: Conversation, text: str, markers: tuple[list[str], list[str]],
           now: float) -> tuple[str, int | None]:
    row = conn.execute("SELECT closing_sent FROM conversations WHERE tenant = ? AND id = ?",
                       (conv.tenant, conv.id)).fetchone()
    if row["closing_sent"]:
        return "already_sent", None
    recent = [r["text"] for r in conn.execute(
        "SELECT text FROM messages WHERE tenant = ? AND conversation_id = ? AND role = 'agent'"
        " ORDER BY seq DESC LIMIT 3", (conv.tenant, conv.id))]
    if any(_has_marker(t, markers[0]) for t in recent) and any(_has_marker(t, markers[1]) for t in recent):
        conn.execute("UPDATE conversations SET closing_sent = 1 WHERE tenant = ? AND id = ?", (conv.tenant, conv.id))
        return "already_sent_by_agent", None
    oid = enqueue(conn, tenant=conv.tenant, conversation_id=conv.id, kind="closing", text=text,
                  platform_ref=conv.platform_ref, now=now)
    conn.execute("INSERT INTO messages (tenant, conversation_id, role, text, at) VALUES (?,?,?,?,?)",
                 (conv.tenant, conv.id, "agent", text, now))
    conn.execute("UPDATE conversations SET closing_sent = 1, agent_messages = agent_messages + 1, last_agent_at = ?,"
                 " updated_at = ? WHERE tenant = ? AND id = ?", (now, now, conv.tenant, conv.id))
    return "sent", oid


async def close_conversation(request: web.Request) -> web.Response:
    """Send the closing question and closing once (202), or say it already went out (200)."""
    principal = require_role(request, "agent")
    tenant_policy(request, principal.tenant)
    await read_json(request, CloseRequest, allow_empty=True)
    app = request.app
    cid = request.match_info["conversation_id"]
    conv = await app[CONVERSATIONS].get(principal.tenant, cid)
    lib = app[GUARDS].library(principal.tenant)
    try:
        text = lib.template("closing").text
    except KeyError:
        text = lib.closings.question + lib.closings.text
    question_markers = [lib.closings.question, "还有其他问题", "其他问题"]
    now = app[CLOCK].now()
    try:
        status, oid = await app[CONVERSATIONS].db.run(
            _close, conv, text, (question_markers, lib.closings.markers), now)
    finally:
        app[CONVERSATIONS].forget(principal.tenant, cid)  # closing is rare: re-read next time
    if status == "sent":
        await app[AUDIT_WRITER].append(AuditEvent(tenant=principal.tenant, kind="closing", actor=principal.actor,
                                                  conversation_id=cid, action="sent", final_text=text,
                                                  details={"outbox_id": oid}))
        app[OUTBOX].wake()
        await app[EVENT_BUS].publish(ConversationEvent("agent_message", principal.tenant, cid,
                                                       principal.agent_id or conv.agent_id, text, now))
    note(request, "closing.decided", closing=status, outbox_id=oid)
    body = {"status": status, "conversation_id": cid, "text": text if status == "sent" else None, "outbox_id": oid}
    return json_response(body, status=202 if status == "sent" else 200)
