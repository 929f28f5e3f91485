"""The time rules of spec section 3: which deadlines each conversation event sets or clears.

`ReminderEngine.apply(event)` updates a conversation's state and its timers in the shared
`Scheduler`; when a timer fires, the engine builds a reminder for the assigned agent, keeps it
pending until the agent answers, and queues audit records. Thresholds come from the tenant's
phrase library (`TenantRules`), never from constants here. The engine does no I/O itself: it calls
`deliver(tenant, agent_id, event)` and leaves audit records in `audit_outbox` and changed
conversations in `dirty` for `ClockService` (assist/console.py) to write.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time as dtime, timezone
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from phrases import Library, Thresholds

from .clock import Clock
from .events import ConversationEvent
from .timers import Scheduler

__all__ = ["AuditNote", "ConvState", "Cues", "ReminderEngine", "TenantRules", "load_cues"]

# A timer that fires more than this after its time counts as late, besides any deadline that
# passed while the service was down; a second is far above normal scheduler jitter (bench/clock.py).
LATE_TOLERANCE_S = 1.0
THANKS_DONE, CLOSING_DONE = 1, 2
OVERDUE = ("response.overdue", "reply_rate.overdue", "wait.overdue")
# Which due-time each timer warns about, and the suggestion it carries. An overdue question or an
# overrun wait calls for an apology; a wait about to end calls for thanks on return (002).
_DUE = {"response": "response_due", "reply_rate": "rate_due", "wait": "wait_due"}
_TIMER_TEMPLATE = {
    "response.overdue": "wait-apology",
    "reply_rate.overdue": "wait-apology",
    "wait.pre_warn": "wait-thanks",
    "wait.overdue": "wait-apology",
}


@dataclass(frozen=True)
class Cues:
    """Customer words per situation; see assist/reminder_cues.json for the why."""

    groups: dict[str, dict[str, Any]]

    def match(self, name: str, text: str) -> bool:
        g = self.groups[name]
        norm = "".join(unicodedata.normalize("NFKC", text).lower().split())
        if any(x in norm for x in g.get("exclude", ())):
            return False
        bare = "".join(c for c in norm if not unicodedata.category(c).startswith(("P", "S")))
        return any(x in norm for x in g.get("contains", ())) or bare in g.get("exact", ()) or (
            not bare and norm in g.get("exact", ())
        )

    def template(self, name: str) -> str:
        return str(self.groups[name]["template_id"])


def load_cues() -> Cues:
    """The packaged cue lists (assist/reminder_cues.json)."""
    raw = json.loads((resources.files("assist") / "reminder_cues.json").read_text(encoding="utf-8"))
    return Cues({k: v for k, v in raw.items() if not k.startswith("_")})


@dataclass(frozen=True)
class TenantRules:
    """What the clock needs of one tenant: thresholds, time zone, suggestion texts."""

    thresholds: Thresholds
    tz: ZoneInfo
    templates: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_library(cls, library: Library, timezone_name: str) -> TenantRules:
        return cls(library.thresholds, ZoneInfo(timezone_name), {t.id: t.text for t in library.templates})

    def in_reply_rate_hours(self, at: float) -> bool:
        """True when `at` (epoch s) falls in the platform's reply-rate window, tenant time."""
        start, end = (dtime.fromisoformat(h) for h in self.thresholds.reply_rate_hours)
        local = datetime.fromtimestamp(at, self.tz).time()
        return start <= local < end if start <= end else (local >= start or local < end)


@dataclass(frozen=True)
class AuditNote:
    """An audit record the engine decided on; ClockService turns it into an AuditEvent."""

    tenant: str
    kind: str
    actor: str | None
    conversation_id: str
    action: str
    details: dict[str, Any]
    at: float


class ConvState:
    """One conversation as the clock sees it; slots keep 100,000 of them small."""

    __slots__ = ("tenant", "cid", "agent", "open", "flags", "question_at", "response_due",
                 "rate_due", "wait_due", "timers", "pending")

    def __init__(self, tenant: str, cid: str, agent: str | None = None) -> None:
        self.tenant, self.cid, self.agent = tenant, cid, agent
        self.open = True
        self.flags = 0
        self.question_at: float | None = None
        self.response_due: float | None = None
        self.rate_due: float | None = None
        self.wait_due: float | None = None
        self.timers: list[list[Any]] = []  # live scheduler entries [fire_at, seq, self, rule]
        self.pending: dict[str, dict[str, Any]] | None = None


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds")


class ReminderEngine:
    """Applies conversation events to per-conversation timers and fires reminders from them."""

    def __init__(self, *, clock: Clock, rules_for: Callable[[str], TenantRules],
                 find_wait: Callable[[str], Any], deliver: Callable[[str, str | None, dict[str, Any]], None],
                 cues: Cues | None = None) -> None:
        self.clock = clock
        self.scheduler = Scheduler(clock, self._fire)
        self._rules_for = rules_for
        self._find_wait = find_wait
        self._deliver = deliver
        self._cues = cues or load_cues()
        self.convs: dict[str, dict[str, ConvState]] = {}
        self.dirty: set[ConvState] = set()
        self.audit_outbox: list[AuditNote] = []
        self.restored_at = float("-inf")  # deadlines before this passed while the service was down
        self.on_change: Callable[[], None] = lambda: None  # ClockService: "something to persist"

    # ---- state lookup -------------------------------------------------------------------------
    def get(self, tenant: str, cid: str) -> ConvState | None:
        return self.convs.get(tenant, {}).get(cid)

    def _state(self, tenant: str, cid: str) -> ConvState:
        per = self.convs.setdefault(tenant, {})
        st = per.get(cid)
        if st is None:
            st = per[cid] = ConvState(tenant, cid)
        return st

    def pending_for(self, tenant: str, agent_id: str) -> list[dict[str, Any]]:
        """Pending reminders of the agent's conversations, soonest first, seconds_left as of now."""
        now = self.clock.now()
        out = []
        for st in self.convs.get(tenant, {}).values():
            if st.pending and st.agent == agent_id:
                for ev in st.pending.values():
                    out.append({**ev, "seconds_left": round(ev["_due"] - now, 1)})
        out.sort(key=lambda e: (e["_due"], e["type"] != "reminder", e["rule"]))
        return [{k: v for k, v in e.items() if k != "_due"} for e in out]

    # ---- events -------------------------------------------------------------------------------
    def apply(self, ev: ConversationEvent) -> None:
        """Update the conversation's clock for one event (synchronous; no I/O)."""
        st = self._state(ev.tenant, ev.conversation_id)
        self.dirty.add(st)
        kind = ev.kind
        if ev.agent_id and ev.agent_id != st.agent and kind != "transferred":
            st.agent = ev.agent_id
            for pend in (st.pending or {}).values():  # the new agent inherits what is pending
                self._deliver(st.tenant, st.agent, self._public(pend, ev.at))
        if kind == "customer_message":
            self._customer(st, ev)
        elif kind == "agent_message":
            self._agent(st, ev)
        elif kind in ("opened", "assigned"):
            st.open = True
        elif kind in ("closed", "transferred"):
            self._clear(st, ("response", "reply_rate", "wait", "suggest"), ev.at)
            if kind == "closed":
                st.open = False
            elif ev.agent_id:
                st.agent = ev.agent_id
        self.on_change()

    def _customer(self, st: ConvState, ev: ConversationEvent) -> None:
        rules = self._rules_for(st.tenant)
        th, at = rules.thresholds, ev.at
        st.open = True  # a customer message after a close reopens the clock
        if st.response_due is None:  # the clock runs from the oldest unanswered message
            lead = th.response_s - th.pre_warn_s
            st.question_at = at
            st.response_due = at + th.response_s
            self._arm(st, "response.pre_warn", at + th.pre_warn_s)
            self._arm(st, "response.overdue", st.response_due)
            if rules.in_reply_rate_hours(at):
                # The 30 s profile has no pre-warning threshold of its own: warn with the same
                # lead as the response pre-warning, when that still leaves time after the message.
                st.rate_due = at + th.reply_rate_s
                if th.reply_rate_s - lead > 0:
                    self._arm(st, "reply_rate.pre_warn", st.rate_due - lead)
                self._arm(st, "reply_rate.overdue", st.rate_due)
        text = ev.text or ""
        if self._cues.match("end", text):
            if not st.flags & CLOSING_DONE:
                st.flags |= CLOSING_DONE
                self._suggest(st, "closing", self._cues.template("end"), at)
        elif self._cues.match("thanks", text) and not st.flags & THANKS_DONE:
            st.flags |= THANKS_DONE
            self._suggest(st, "thanks.reply", self._cues.template("thanks"), at)
        if self._cues.match("wait_complaint", text):
            self._suggest(st, "wait.apology", self._cues.template("wait_complaint"), at)

    def _agent(self, st: ConvState, ev: ConversationEvent) -> None:
        # A reply answers the open question, any suggestion, and ends a wait (the agent is back).
        self._clear(st, ("response", "reply_rate", "wait", "suggest"), ev.at)
        promise = self._find_wait(ev.text or "") if ev.text else None
        if promise is None:
            return
        th = self._rules_for(st.tenant).thresholds
        seconds = promise.seconds if promise.seconds is not None else th.wait_default_s
        # A promise over wait_max_s is warned on the draft by the guard; the clock keeps the promise.
        st.wait_due = ev.at + seconds
        lead = th.response_s - th.pre_warn_s
        if seconds > lead:
            self._arm(st, "wait.pre_warn", st.wait_due - lead)
        self._arm(st, "wait.overdue", st.wait_due)

    # ---- timers -------------------------------------------------------------------------------
    def _arm(self, st: ConvState, rule: str, fire_at: float) -> None:
        st.timers.append(self.scheduler.schedule(fire_at, st, rule))

    def _clear(self, st: ConvState, families: tuple[str, ...], at: float) -> None:
        keep = []
        for entry in st.timers:
            if entry[3].split(".")[0] in families:
                self.scheduler.cancel(entry)
            elif Scheduler.is_live(entry):
                keep.append(entry)
        st.timers = keep
        for fam in families:
            if fam in _DUE:
                setattr(st, _DUE[fam], None)
        if "response" in families:
            st.question_at = None
        if st.pending:
            gone = [r for r, p in st.pending.items() if r.split(".")[0] in families or p["type"] == "suggestion"
                    and "suggest" in families]
            for r in gone:
                del st.pending[r]
            if not st.pending:
                st.pending = None
            if gone:
                self._deliver(st.tenant, st.agent, {"type": "cleared", "conversation_id": st.cid,
                                                    "rules": sorted(gone), "at": iso(at)})

    def _fire(self, st: ConvState, rule: str, fire_at: float) -> None:
        now = self.clock.now()
        st.timers = [e for e in st.timers if Scheduler.is_live(e)]
        self.dirty.add(st)
        self.on_change()
        due = getattr(st, _DUE[rule.split(".")[0]])
        if due is None:  # its clock was cleared after the entry was restored; nothing is owed
            return
        late = fire_at < self.restored_at or now - fire_at > LATE_TOLERANCE_S
        event = self._event(st, "reminder", rule, due, now, _TIMER_TEMPLATE.get(rule), late=late)
        if rule.endswith(".overdue"):  # the alert supersedes its own pre-warning
            (st.pending or {}).pop(rule.replace(".overdue", ".pre_warn"), None)
        self._keep(st, rule, event, now, lateness=now - fire_at)
        if rule in OVERDUE:
            details = {"rule": rule, "deadline": event["deadline"], "late": late, "agent_id": st.agent,
                       "since": iso(st.question_at) if rule != "wait.overdue" and st.question_at else None}
            self.audit_outbox.append(AuditNote(st.tenant, "threshold_missed", _actor(st), st.cid, rule,
                                                 details, now))

    def _suggest(self, st: ConvState, rule: str, template_id: str, at: float) -> None:
        due = st.response_due if st.response_due is not None else at
        self._keep(st, rule, self._event(st, "suggestion", rule, due, at, template_id), at)

    def _event(self, st: ConvState, typ: str, rule: str, due: float, now: float, template_id: str | None,
               *, late: bool = False) -> dict[str, Any]:
        text = self._rules_for(st.tenant).templates.get(template_id) if template_id else None
        return {"type": typ, "conversation_id": st.cid, "tenant": st.tenant, "rule": rule,
                "deadline": iso(due), "seconds_left": round(due - now, 1), "late": late,
                "suggestion": {"template_id": template_id, "text": text} if text else None,
                "_due": due}

    def _keep(self, st: ConvState, rule: str, event: dict[str, Any], now: float, *, lateness: float = 0.0) -> None:
        if st.pending is None:
            st.pending = {}
        st.pending[rule] = event
        self.dirty.add(st)
        self._deliver(st.tenant, st.agent, self._public(event, now))
        details = {"type": event["type"], "rule": rule, "deadline": event["deadline"],
                   "seconds_left": event["seconds_left"], "late": event["late"], "agent_id": st.agent,
                   "template_id": (event["suggestion"] or {}).get("template_id"),
                   "lateness_ms": round(lateness * 1000, 1)}
        self.audit_outbox.append(AuditNote(st.tenant, "reminder", _actor(st), st.cid, rule, details, now))

    @staticmethod
    def _public(event: dict[str, Any], now: float) -> dict[str, Any]:
        out = {k: v for k, v in event.items() if k != "_due"}
        out["seconds_left"] = round(event["_due"] - now, 1)
        return out


def _actor(st: ConvState) -> str | None:
    """The agent the audit counts a reminder or a missed threshold against (as Principal.actor)."""
    return f"agent:{st.agent}" if st.agent else None
