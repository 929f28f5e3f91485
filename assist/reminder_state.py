"""A conversation as the clock keeps it, and the audit records the clock decides on.

Both live as plain tuples between events: the garbage collector stops tracking a tuple of plain
values, so 100,000 open conversations and a backlog of audit notes cost its collections nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NamedTuple

__all__ = ["AuditNote", "ConvState", "iso"]


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")


class AuditNote(NamedTuple):
    """An audit record the engine decided on; ClockService formats and writes it off the hot path.

    The outbox holds these as plain tuples (`AuditNote._make(t)` reads one): the garbage collector
    stops tracking a plain tuple of plain values, so a backlog of notes costs its full collections
    nothing, where tracked NamedTuple instances would be walked on every one of them.
    """

    tenant: str
    kind: str  # "reminder" | "threshold_missed"
    actor: str | None
    conversation_id: str
    action: str  # the rule
    typ: str  # "reminder" | "suggestion"
    due: float
    late: bool
    template_id: str | None
    lateness_s: float
    at: float

    def details(self) -> dict[str, Any]:
        return {"type": self.typ, "rule": self.action, "deadline": iso(self.due),
                "seconds_left": round(self.due - self.at, 1), "late": self.late, "template_id": self.template_id,
                "agent_id": self.actor.split(":", 1)[1] if self.actor else None,
                "lateness_ms": round(self.lateness_s * 1000, 1)}


class ConvState:
    """One conversation as the clock sees it, unpacked for the duration of one event or timer.

    Between events a conversation is stored packed (`pack()`): a plain tuple of plain values and
    tuples, which the garbage collector stops tracking. 100,000 tracked objects would make every
    full collection walk them all, a pause of tens of milliseconds for every reminder due then.
    """

    __slots__ = ("key", "tenant", "cid", "agent", "open", "flags", "question_at", "response_due",
                 "rate_due", "wait_due", "timers", "armed", "pending")

    def __init__(self, tenant: str, cid: str, agent: str | None = None) -> None:
        self.key = (tenant, cid)  # the scheduler's target: one shared tuple per conversation
        self.tenant, self.cid, self.agent = tenant, cid, agent
        self.open = True
        self.flags = 0
        self.question_at: float | None = None
        self.response_due: float | None = None
        self.rate_due: float | None = None
        self.wait_due: float | None = None
        self.timers: tuple[int, ...] = ()  # scheduler handles of the live timers
        self.armed = 0  # which rules those are (RULE_BITS); fire times follow from the due times
        # (rule, type, due, late, template_id) fired and not yet answered. A tuple of tuples of
        # plain values, replaced on change: the garbage collector stops tracking it, where a dict
        # living for seconds would be promoted and bring the next full collection closer.
        self.pending: tuple[tuple[str, str, float, bool, str | None], ...] = ()

    def pack(self) -> tuple[Any, ...]:
        return (self.key, self.agent, self.open, self.flags, self.question_at, self.response_due, self.rate_due,
                self.wait_due, self.timers, self.armed, self.pending)

    @classmethod
    def unpack(cls, packed: tuple[Any, ...]) -> ConvState:
        st = cls.__new__(cls)
        (st.key, st.agent, st.open, st.flags, st.question_at, st.response_due, st.rate_due, st.wait_due,
         st.timers, st.armed, st.pending) = packed
        st.tenant, st.cid = st.key
        return st

    def pending_rule(self, rule: str) -> tuple[str, str, float, bool, str | None] | None:
        return next((p for p in self.pending if p[0] == rule), None)

    def drop_pending(self, rule: str) -> None:
        self.pending = tuple(p for p in self.pending if p[0] != rule)
