"""Shared helpers of the clock tests: a library with the suggestion templates, and an engine harness."""

from __future__ import annotations

from typing import Any

from guards.waits import find_wait
from phrases import library_from_data

from assist.clock import ManualClock
from assist.events import ConversationEvent
from assist.reminder_rules import TenantRules
from assist.reminder_state import AuditNote
from assist.reminders import ReminderEngine

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z = 08:00 in Asia/Shanghai, inside the reply-rate hours
NIGHT = T0 + 16 * 3600  # 2026-01-02 00:00 in Asia/Shanghai, outside 08:00-23:00

TEMPLATES = [
    {"id": "wait-thanks", "situation": "back after a wait", "text": "感谢您的耐心等待"},
    {"id": "wait-apology", "situation": "customer waited", "text": "很抱歉让您久等了"},
    {"id": "thanks-reply", "situation": "customer thanks", "text": "不客气"},
    {"id": "closing", "situation": "end", "text": "请问是否还有其他问题可以为您服务?感谢您的支持,祝您生活愉快!"},
]


def library(**thresholds: Any):
    return library_from_data({"templates": TEMPLATES, "thresholds": thresholds})


def rules(tz: str = "Asia/Shanghai", **thresholds: Any) -> TenantRules:
    return TenantRules.from_library(library(**thresholds), tz)


class Harness:
    """A ReminderEngine on a manual clock that records what it delivers."""

    def __init__(self, clock: ManualClock, tenant_rules: TenantRules | None = None) -> None:
        self.clock = clock
        self.tenant_rules = tenant_rules or rules()
        self.delivered: list[tuple[str, str | None, dict[str, Any]]] = []
        self.engine = ReminderEngine(clock=clock, rules_for=lambda t: self.tenant_rules, find_wait=find_wait,
                                     deliver=lambda t, a, e: self.delivered.append((t, a, e)))

    def send(self, kind: str, text: str | None = None, *, cid: str = "c1", agent: str | None = "a1",
             tenant: str = "t1") -> None:
        self.engine.apply(ConversationEvent(kind, tenant, cid, agent, text, self.clock.now()))  # type: ignore[arg-type]

    def events(self, typ: str | None = None) -> list[dict[str, Any]]:
        return [e for _, _, e in self.delivered if typ is None or e["type"] == typ]

    def rules_fired(self, typ: str | None = None) -> list[str]:
        return [e["rule"] for e in self.events(typ) if "rule" in e]

    def audit(self, kind: str) -> list[Any]:
        return [n for n in map(AuditNote._make, self.engine.audit_outbox) if n.kind == kind]
