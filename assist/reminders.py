"""The time rules of spec section 3: which deadlines each conversation event sets or clears.

`ReminderEngine.apply(event)` updates a conversation's state and its timers in the shared
`Scheduler`; when a timer fires, the engine builds a reminder for the assigned agent, keeps it
pending until the agent answers, and queues audit records. Thresholds come from the tenant's
phrase library (`TenantRules`), never from constants here. The engine does no I/O itself: it calls
`deliver(tenant, agent_id, event)` and leaves audit records in `audit_outbox` and changed
conversations in `dirty` for `ClockService` (assist/console.py) to write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .clock import Clock
from .events import ConversationEvent
from .reminder_rules import Cues, TenantRules, load_cues
from .reminder_state import ConvState, iso
from .timers import Scheduler

__all__ = ["ReminderEngine"]

# A timer that fires more than this after its time counts as late, besides any deadline that
# passed while the service was down; a second is far above normal scheduler jitter (bench/clock.py).
LATE_TOLERANCE_S = 1.0
THANKS_DONE, CLOSING_DONE = 1, 2
OVERDUE = ("response.overdue", "reply_rate.overdue", "wait.overdue")
RULE_BITS = {"response.pre_warn": 1, "response.overdue": 2, "reply_rate.pre_warn": 4, "reply_rate.overdue": 8,
             "wait.pre_warn": 16, "wait.overdue": 32}
# Which due-time each timer warns about, and the suggestion it carries. An overdue question or an
# overrun wait calls for an apology; a wait about to end calls for thanks on return (002).
_DUE = {"response": "response_due", "reply_rate": "rate_due", "wait": "wait_due"}
_TIMER_TEMPLATE = {
    "response.overdue": "wait-apology",
    "reply_rate.overdue": "wait-apology",
    "wait.pre_warn": "wait-thanks",
    "wait.overdue": "wait-apology",
}


class ReminderEngine:
    """Applies conversation events to per-conversation timers and fires reminders from them."""

    def __init__(self, *, clock: Clock, rules_for: Callable[[str], TenantRules],
                 find_wait: Callable[[str], Any], deliver: Callable[[str, str | None, dict[str, Any]], None],
                 listening: Callable[[str, str | None], bool] | None = None, cues: Cues | None = None) -> None:
        self.clock = clock
        self.scheduler = Scheduler(clock, self._fire)
        self._rules_for = rules_for
        self._find_wait = find_wait
        self._deliver = deliver
        # Push events are built only for agents with a console open; the rest poll the pending list.
        self._listening = listening or (lambda tenant, agent: agent is not None)
        self._cues = cues or load_cues()
        self.convs: dict[str, dict[str, tuple[Any, ...]]] = {}  # tenant -> id -> packed ConvState
        # Closed conversations leave memory; a reopen finds its flags here: id -> (flags, closed
        # at), plain values the garbage collector does not track, pruned after a retention period.
        self.closed: dict[str, dict[str, tuple[int, float]]] = {}
        self.with_pending: set[tuple[str, str]] = set()  # keys of conversations with pending reminders
        self.dirty: dict[tuple[str, str], tuple[Any, ...]] = {}  # changed since the last flush: packed state
        self.audit_outbox: list[tuple[Any, ...]] = []  # plain-tuple AuditNotes
        self.restored_at = float("-inf")  # deadlines before this passed while the service was down
        self.on_change: Callable[[], None] = lambda: None  # ClockService: "something to persist"

    # ---- state lookup -------------------------------------------------------------------------
    def get(self, tenant: str, cid: str) -> ConvState | None:
        """The conversation's current state (a copy: changes go back through `put`)."""
        packed = self.convs.get(tenant, {}).get(cid)
        return ConvState.unpack(packed) if packed is not None else None

    def put(self, st: ConvState) -> tuple[Any, ...]:
        """Store a conversation's state (packed) without marking it changed."""
        packed = self.convs.setdefault(st.tenant, {})[st.cid] = st.pack()
        if st.pending:
            self.with_pending.add(st.key)
        else:
            self.with_pending.discard(st.key)
        return packed

    def _save(self, st: ConvState) -> None:
        self.dirty[st.key] = self.put(st)
        self.on_change()

    def _state(self, tenant: str, cid: str) -> ConvState:
        st = self.get(tenant, cid)
        if st is None:
            st = ConvState(tenant, cid)
            closed = self.closed.get(tenant, {}).pop(cid, None)
            if closed is not None:  # reopened: the once-only suggestions stay used
                st.flags, st.open = closed[0], False
        return st

    def _evict(self, st: ConvState) -> None:
        """Drop a closed conversation from memory, keeping only its once-only flags."""
        self.convs.get(st.tenant, {}).pop(st.cid, None)
        self.with_pending.discard(st.key)
        self.closed.setdefault(st.tenant, {})[st.cid] = (st.flags, self.clock.now())
        self.dirty[st.key] = st.pack()  # its closed row is still written
        self.on_change()

    def prune_closed(self, before: float) -> int:
        """Forget closed conversations closed before `before`; returns how many.

        A customer who comes back later starts afresh: 不客气 and the closing may be suggested
        once more. Without this, every conversation ever closed would stay in memory.
        """
        removed = 0
        for tenant, ids in list(self.closed.items()):
            old = [cid for cid, (_, at) in ids.items() if at < before]
            for cid in old:
                del ids[cid]
            removed += len(old)
            if not ids:
                del self.closed[tenant]
        return removed

    def pending_for(self, tenant: str, agent_id: str) -> list[dict[str, Any]]:
        """Pending reminders of the agent's conversations, soonest first, seconds_left as of now."""
        now = self.clock.now()
        states = [st for st in map(lambda k: self.get(*k), self.with_pending)
                  if st is not None and st.tenant == tenant and st.agent == agent_id]
        found = [(p[2], p[1] != "reminder", p[0], st) for st in states for p in st.pending]
        found.sort(key=lambda f: (f[0], f[1], f[3].cid, f[2]))
        return [self.public(st, rule, now) for _, _, rule, st in found]

    def public(self, st: ConvState, rule: str, now: float) -> dict[str, Any]:
        """A pending reminder as the console receives it."""
        _, typ, due, late, template_id = st.pending_rule(rule) or ("", "", 0.0, False, None)
        text = self._rules_for(st.tenant).templates.get(template_id) if template_id else None
        return {"type": typ, "conversation_id": st.cid, "rule": rule, "deadline": iso(due),
                "seconds_left": round(due - now, 1), "late": late,
                "suggestion": {"template_id": template_id, "text": text} if text else None}

    def _push(self, st: ConvState, rule: str, now: float) -> None:
        if self._listening(st.tenant, st.agent):
            self._deliver(st.tenant, st.agent, self.public(st, rule, now))

    # ---- events -------------------------------------------------------------------------------
    def apply(self, ev: ConversationEvent) -> None:
        """Update the conversation's clock for one event (synchronous; no I/O)."""
        st = self._state(ev.tenant, ev.conversation_id)
        kind = ev.kind
        if ev.agent_id and ev.agent_id != st.agent and kind != "transferred":
            st.agent = ev.agent_id
            for p in st.pending:  # the new agent inherits what is pending
                self._push(st, p[0], ev.at)
        if kind == "customer_message":
            self._customer(st, ev)
        elif kind == "agent_message":
            self._agent(st, ev)
        elif kind in ("opened", "assigned"):
            st.open = True
        elif kind in ("closed", "transferred"):
            self._clear(st, ev.at)
            if kind == "closed":
                st.open = False
                self._evict(st)
                return
            if ev.agent_id:
                st.agent = ev.agent_id
        self._save(st)

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
        cues = self._cues
        text = cues.prepare(ev.text or "")
        if cues.match("end", text):
            if not st.flags & CLOSING_DONE:
                st.flags |= CLOSING_DONE
                self._suggest(st, "closing", cues.template("end"), at)
        elif cues.match("thanks", text) and not st.flags & THANKS_DONE:
            st.flags |= THANKS_DONE
            self._suggest(st, "thanks.reply", cues.template("thanks"), at)
        if cues.match("wait_complaint", text):
            self._suggest(st, "wait.apology", cues.template("wait_complaint"), at)

    def _agent(self, st: ConvState, ev: ConversationEvent) -> None:
        # A reply answers the open question, any suggestion, and ends a wait (the agent is back).
        self._clear(st, ev.at)
        promise = self._find_wait(ev.text) if ev.text else None
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
        st.timers += (self.scheduler.schedule(fire_at, st.key, rule),)
        st.armed |= RULE_BITS[rule]

    def rearm(self, st: ConvState, rule: str, fire_at: float) -> None:
        """Re-arm a persisted timer (restore after a restart)."""
        self._arm(st, rule, fire_at)

    def timer_specs(self, st: ConvState) -> list[tuple[float, str]]:
        """(fire_at, rule) of the conversation's live timers, for persisting them."""
        if not st.armed:
            return []
        th = self._rules_for(st.tenant).thresholds
        lead = th.response_s - th.pre_warn_s
        at = {"response.pre_warn": (st.question_at or 0.0) + th.pre_warn_s, "response.overdue": st.response_due,
              "reply_rate.pre_warn": (st.rate_due or 0.0) - lead, "reply_rate.overdue": st.rate_due,
              "wait.pre_warn": (st.wait_due or 0.0) - lead, "wait.overdue": st.wait_due}
        return [(at[rule], rule) for rule, bit in RULE_BITS.items() if st.armed & bit and at[rule] is not None]

    def _clear(self, st: ConvState, at: float) -> None:
        """Cancel every timer and drop every pending reminder of the conversation."""
        for handle in st.timers:
            self.scheduler.cancel(handle)
        st.timers, st.armed = (), 0
        st.question_at = st.response_due = st.rate_due = st.wait_due = None
        if st.pending:
            gone = sorted(p[0] for p in st.pending)
            if self._listening(st.tenant, st.agent):
                self._deliver(st.tenant, st.agent, {"type": "cleared", "conversation_id": st.cid,
                                                    "rules": gone, "at": iso(at)})
        st.pending = ()

    def _fire(self, key: tuple[str, str], rule: str, fire_at: float) -> None:
        st = self.get(*key)
        if st is None:  # closed and evicted; its timers were cancelled, so this is only defensive
            return
        try:
            self._fire_state(st, rule, fire_at)
        finally:
            self._save(st)

    def _fire_state(self, st: ConvState, rule: str, fire_at: float) -> None:
        now = self.clock.now()
        live = self.scheduler.is_live
        st.timers = tuple(h for h in st.timers if live(h))
        st.armed &= ~RULE_BITS[rule]
        due = getattr(st, _DUE[rule.split(".", 1)[0]])
        if due is None:  # its clock was cleared after the entry was restored; nothing is owed
            return
        late = fire_at < self.restored_at or now - fire_at > LATE_TOLERANCE_S
        overdue = rule in OVERDUE
        if overdue and st.pending:  # the alert supersedes its own pre-warning
            st.drop_pending(rule.replace(".overdue", ".pre_warn"))
        self._keep(st, rule, "reminder", due, late, _TIMER_TEMPLATE.get(rule), now, now - fire_at)
        if overdue:
            self.audit_outbox.append((st.tenant, "threshold_missed", _actor(st), st.cid, rule, "reminder",
                                      due, late, None, now - fire_at, now))

    def _suggest(self, st: ConvState, rule: str, template_id: str, at: float) -> None:
        due = st.response_due if st.response_due is not None else at
        self._keep(st, rule, "suggestion", due, False, template_id, at, 0.0)

    def _keep(self, st: ConvState, rule: str, typ: str, due: float, late: bool, template_id: str | None,
              now: float, lateness: float) -> None:
        st.pending = tuple(p for p in st.pending if p[0] != rule) + ((rule, typ, due, late, template_id),)
        self._push(st, rule, now)
        self.audit_outbox.append((st.tenant, "reminder", _actor(st), st.cid, rule, typ, due, late,
                                  template_id, lateness, now))


def _actor(st: ConvState) -> str | None:
    """The agent the audit counts a reminder or a missed threshold against (as Principal.actor)."""
    return f"agent:{st.agent}" if st.agent else None
