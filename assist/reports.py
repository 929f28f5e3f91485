"""Per-agent QA reports for a day, week or month in the tenant's time zone, computed from the audit log.

Inputs (audit kinds): `customer_message` (inbound), accepted agent replies `send`, `rewrite`
(unless it only proposed a rewrite for confirmation), `override`, and platform-typed agent messages
(`conversation_event` with action `agent_message`); `greeting`, `closing`, `block`, post-hoc
`check`, `reminder`, `threshold_missed`. Thresholds come from the tenant's phrase library.

Metrics (spec 4), per agent:
- first_response_s: mean over conversations of first agent reply minus first customer message;
- avg_response_s: mean over customer turns (messages since the last reply) of reply minus first
  message of the turn; unanswered turns count in reply_rate, not here;
- reply_rate_30s: customer messages sent inside service hours (reply_rate_hours, local time)
  answered within reply_rate_s / those messages;
- reply_rate: conversations with an answered customer message / conversations with customer messages;
- slow_share: conversations with a turn answered after more than slow_gap_s / conversations;
- answer_question_ratio (答问比): agent messages / customer messages;
- violations by category, overrides, reminders, reminders_missed, greeting/closing share.
A conversation (and its customer messages) belongs to its first replying agent, else its assigned
agent; agent messages, violations, overrides and reminders belong to their own actor.

QA score per conversation (spec 4 weights, 100 in all): 礼貌开始 10 (greeting present), 确认需求 15,
确认信息 15, 方案提供 15 (at least one agent reply), 礼貌结束 10 (closing present), 单据 15,
沟通能力 15 (no fatal violation sent) + 5 (no non-fatal violation sent). The log cannot observe
确认需求, 确认信息 or 单据: they are assumed met. A fatal violation in a message the customer saw
(send, override, post-hoc check) zeroes the score; blocked drafts and fixed rewrites do not count.
The early-warning dimensions and their 0-5 scales are documented in assist/report_scores.py.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date as Date, datetime, time as Time, timedelta
from statistics import mean
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .report_scores import QA_ITEMS, dimensions, qa_score

__all__ = ["AgentReport", "Report", "ReportError", "Window", "agent_reports", "period_window"]

KINDS = ("customer_message", "send", "rewrite", "override", "conversation_event", "greeting", "closing",
         "block", "check", "reminder", "threshold_missed")
_SENT = ("send", "override")  # the customer saw the agent's own words
_LOOKAHEAD_S = 3600  # replies just after the period still answer questions asked inside it


class ReportError(ValueError):
    def __init__(self, field_: str, message: str) -> None:
        super().__init__(f"{field_}: {message}")
        self.field, self.message = field_, message


@dataclass(frozen=True)
class Window:
    period: str
    first_day: str
    start: float
    end: float
    timezone: str


def period_window(period: str, day: str | None, *, tz: str, now: float) -> Window:
    """The [start, end) of the day, ISO week (Monday first) or month containing `day` (default today)."""
    if period not in ("day", "week", "month"):
        raise ReportError("period", "must be day, week or month")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError("timezone", f"unknown time zone '{tz}'") from None
    try:
        d = Date.fromisoformat(day) if day else datetime.fromtimestamp(now, zone).date()
    except ValueError:
        raise ReportError("date", f"'{day}' is not a YYYY-MM-DD date") from None
    if period == "week":
        d -= timedelta(days=d.weekday())
        nxt = d + timedelta(days=7)
    elif period == "month":
        d = d.replace(day=1)
        nxt = (d + timedelta(days=32)).replace(day=1)
    else:
        nxt = d + timedelta(days=1)
    start = datetime.combine(d, Time(0), zone).timestamp()
    return Window(period, d.isoformat(), start, datetime.combine(nxt, Time(0), zone).timestamp(), tz)


def _agent(actor: str | None) -> str | None:
    return actor.split(":", 1)[1] if actor and actor.startswith("agent:") else actor


@dataclass
class _Conv:
    msgs: list[tuple[float, str | None]] = field(default_factory=list)  # (at, None=customer | agent id)
    assigned: str | None = None
    greeting: bool = False
    closing: bool = False
    sent_severities: set[str] = field(default_factory=set)

    @property
    def owner(self) -> str:
        return next((a for _, a in self.msgs if a is not None), None) or self.assigned or "unassigned"


@dataclass
class AgentReport:
    agent: str
    metrics: dict[str, Any]
    violations: dict[str, int]
    conversations: list[dict[str, Any]]
    dimensions: dict[str, float | None]
    warnings: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    tenant: str
    window: Window
    agents: list[AgentReport]

    def to_dict(self) -> dict[str, Any]:
        w = self.window
        return {"tenant": self.tenant, "period": w.period, "date": w.first_day, "timezone": w.timezone,
                "start": w.start, "end": w.end, "qa_items": QA_ITEMS, "agents": [a.to_dict() for a in self.agents]}


def _in_hours(at: float, zone: ZoneInfo, hours: tuple[str, str]) -> bool:
    hhmm = datetime.fromtimestamp(at, zone).strftime("%H:%M")
    return hours[0] <= hhmm < hours[1]


def agent_reports(store: Any, *, tenant: str, window: Window, library: Any, agent: str | None = None) -> Report:
    """Compute every agent's report for `window` from the tenant's audit records."""
    th = library.thresholds
    zone = ZoneInfo(window.timezone)
    severity = {r.id: r.severity for r in library.rules}
    greet_marks, close_marks = tuple(library.greetings.markers), tuple(library.closings.markers)
    convs: dict[str, _Conv] = defaultdict(_Conv)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    violations: dict[str, Counter[str]] = defaultdict(Counter)
    for r in store.between(tenant, window.start, window.end + _LOOKAHEAD_S, KINDS):
        inside = r.at < window.end
        conv = convs[r.conversation_id or ""]
        who = _agent(r.actor)
        if r.kind == "conversation_event":
            who = r.details.get("agent_id") or who
            if r.action in ("assigned", "opened") and r.details.get("agent_id"):
                conv.assigned = r.details["agent_id"]
            if r.action != "agent_message":
                continue
        if r.kind == "customer_message":
            if inside:
                conv.msgs.append((r.at, None))
            continue
        if r.kind in ("send", "rewrite", "override", "conversation_event"):
            if r.kind == "rewrite" and r.details.get("confirmation_required"):
                pass  # only proposed; the accepted version comes as its own record
            else:
                conv.msgs.append((r.at, who or "unknown"))
                if inside:
                    counts[who or "unknown"]["agent_messages"] += 1
                    text = r.final_text or ""
                    if not any(a for _, a in conv.msgs[:-1] if a is not None) and any(m in text for m in greet_marks):
                        conv.greeting = True
                    if any(m in text for m in close_marks):
                        conv.closing = True
        if not inside:
            continue
        if r.kind == "greeting":
            conv.greeting = True
        elif r.kind == "closing":
            conv.closing = True
        elif r.kind in ("reminder", "threshold_missed", "override"):
            counts[who or "unassigned"][r.kind] += 1
        if r.categories and r.kind in ("send", "rewrite", "override", "block", "check"):
            if r.kind != "check" or r.details.get("post_hoc"):
                violations[who or "unknown"].update(r.categories)
            if r.kind in _SENT or (r.kind == "check" and r.details.get("post_hoc")):
                conv.sent_severities.update(severity.get(rid, "non_fatal") for rid in r.rule_ids)
    per_agent: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "convs": [], "first": [], "turns": [], "in_hours": 0, "in_30": 0, "cust": 0, "answered_convs": 0,
        "slow_convs": 0, "cust_convs": 0})
    for cid, conv in convs.items():
        if not conv.msgs or all(at >= window.end for at, _ in conv.msgs):
            continue
        conv.msgs.sort(key=lambda m: m[0])
        acc = per_agent[conv.owner]
        _conversation_metrics(cid, conv, acc, th, zone, window.end)
    agents = sorted(set(per_agent) | set(counts) | set(violations))
    if agent is not None:
        agents = [a for a in agents if a == agent]
    return Report(tenant, window, [_report(a, per_agent.get(a), counts[a], violations[a], th) for a in agents])


def _conversation_metrics(cid: str, conv: _Conv, acc: dict[str, Any], th: Any, zone: ZoneInfo, end: float) -> None:
    pending: list[float] = []  # customer messages not yet answered
    first_customer = first_reply = None
    answered = slow = False
    customers = 0
    for at, who in conv.msgs:
        if who is None:
            customers += 1
            first_customer = at if first_customer is None else first_customer
            pending.append(at)
            continue
        if first_reply is None and first_customer is not None:
            first_reply = at
        if pending:
            answered = True
            acc["turns"].append(at - pending[0])
            slow = slow or at - pending[0] > th.slow_gap_s
            for q in pending:
                if _in_hours(q, zone, th.reply_rate_hours):
                    acc["in_30"] += at - q <= th.reply_rate_s
            pending = []
    for at, who in conv.msgs:
        if who is None and _in_hours(at, zone, th.reply_rate_hours):
            acc["in_hours"] += 1
    acc["cust"] += customers
    if customers:
        acc["cust_convs"] += 1
        acc["answered_convs"] += answered
        acc["slow_convs"] += slow
    if first_reply is not None and first_customer is not None:
        acc["first"].append(first_reply - first_customer)
    replied = any(w is not None and at < end for at, w in conv.msgs)
    score, items = qa_score(greeting=conv.greeting, closing=conv.closing, replied=replied,
                            severities=conv.sent_severities)
    acc["convs"].append({"conversation_id": cid, "qa_score": score, "items": items,
                         "fatal": "fatal" in conv.sent_severities, "greeting": conv.greeting, "closing": conv.closing})


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _report(agent: str, acc: dict[str, Any] | None, counts: Counter[str], viol: Counter[str], th: Any) -> AgentReport:
    acc = acc or {"convs": [], "first": [], "turns": [], "in_hours": 0, "in_30": 0, "cust": 0,
                  "answered_convs": 0, "slow_convs": 0, "cust_convs": 0}
    convs = acc["convs"]
    agent_msgs = counts["agent_messages"]
    metrics = {
        "conversations": len(convs),
        "customer_messages": acc["cust"],
        "agent_messages": agent_msgs,
        "first_response_s": round(mean(acc["first"]), 2) if acc["first"] else None,
        "avg_response_s": round(mean(acc["turns"]), 2) if acc["turns"] else None,
        "reply_rate_30s": _ratio(acc["in_30"], acc["in_hours"]),
        "reply_rate": _ratio(acc["answered_convs"], acc["cust_convs"]),
        "slow_share": _ratio(acc["slow_convs"], acc["cust_convs"]),
        "answer_question_ratio": _ratio(agent_msgs, acc["cust"]),
        "violations": sum(viol.values()),
        "overrides": counts["override"],
        "reminders": counts["reminder"],
        "reminders_missed": counts["threshold_missed"],
        "greeting_share": _ratio(sum(c["greeting"] for c in convs), len(convs)),
        "closing_share": _ratio(sum(c["closing"] for c in convs), len(convs)),
        "qa_score_avg": round(mean(c["qa_score"] for c in convs), 2) if convs else None,
    }
    dims, warnings = dimensions(metrics, dict(viol), th)
    return AgentReport(agent, metrics, dict(sorted(viol.items())), convs, dims, warnings)
