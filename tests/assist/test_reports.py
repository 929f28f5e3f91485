"""QA reports on a synthetic audit log whose expected numbers are worked out by hand below."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

import phrases
from assist.audit import AuditEvent, AuditStore
from assist.report_scores import qa_score
from assist.reports import ReportError, agent_reports, period_window

TZ = "Asia/Shanghai"
LIB = phrases.Library(
    rules=[
        phrases.Rule(id="fatal-rule", category="contempt", severity="fatal", action="block", source="spec 1",
                     phrases=["看不懂"], suggest=["polite"]),
        phrases.Rule(id="nf-rule", category="punctuation", severity="non_fatal", action="warn", source="spec 1",
                     detector="punctuation"),
    ],
    templates=[phrases.Template(id="polite", situation="any", text="这个问题我马上帮您确认一下")],
)


def L(day: int, h: int, m: int = 0, s: int = 0) -> float:
    """Epoch seconds of 2026-01-<day> h:m:s in the tenant's zone."""
    return datetime(2026, 1, day, h, m, s, tzinfo=ZoneInfo(TZ)).timestamp()


def ev(kind: str, at: float, conv: str, agent: str | None = None, **kw) -> AuditEvent:
    return AuditEvent(tenant="t", kind=kind, at=at, conversation_id=conv,
                      actor=f"agent:{agent}" if agent else "platform:demo", **kw)


SYNTHETIC = [
    # Yesterday: outside the window, must not count.
    ev("customer_message", L(4, 10), "c0", original_text="昨天的问题"),
    ev("send", L(4, 10, 0, 5), "c0", "a1", final_text="昨天的回答"),
    # c1 (a1): greets in its text, answers in 20 s, then a two-message turn answered 60 s after its start.
    ev("customer_message", L(5, 10), "c1", original_text="你好,在吗"),
    ev("send", L(5, 10, 0, 20), "c1", "a1", action="pass", final_text="您好,很高兴为您服务"),
    ev("customer_message", L(5, 10, 1, 0), "c1", original_text="我的订单什么时候发货"),
    ev("customer_message", L(5, 10, 1, 10), "c1", original_text="急"),
    ev("rewrite", L(5, 10, 1, 50), "c1", "a1", final_text="提议", details={"confirmation_required": True}),
    ev("send", L(5, 10, 2, 0), "c1", "a1", action="pass", final_text="已经发货了"),
    ev("closing", L(5, 10, 3, 0), "c1", "a1", final_text="请问是否还有其他问题可以为您服务?"),
    # c2 (a1): one question at 22:59 (service hours), one at 23:05 (outside), answered after 370 s
    # with a non-fatal violation sent; no greeting, no closing.
    ev("customer_message", L(5, 22, 59, 0), "c2", original_text="在吗"),
    ev("customer_message", L(5, 23, 5, 0), "c2", original_text="人呢"),
    ev("send", L(5, 23, 5, 10), "c2", "a1", action="warn", rule_ids=("nf-rule",), categories=("punctuation",),
       final_text="抱歉久等!!!"),
    # c3 (assigned to a1): never answered; the 60 s threshold was missed; one reminder.
    ev("conversation_event", L(5, 11, 59), "c3", action="assigned", details={"agent_id": "a1"}),
    ev("customer_message", L(5, 12), "c3", original_text="有人吗"),
    ev("reminder", L(5, 12, 0, 45), "c3", "a1", action="response_s"),
    ev("threshold_missed", L(5, 12, 1), "c3", "a1", action="response_s"),
    # c4 (a2): blocked fatal draft, then sent anyway with an override 40 s after the question; a
    # separate greeting record; an inline check while typing (must not count as a violation).
    ev("customer_message", L(5, 9), "c4", original_text="我要退货"),
    ev("check", L(5, 9, 0, 3), "c4", "a2", action="block", rule_ids=("fatal-rule",), categories=("contempt",)),
    ev("block", L(5, 9, 0, 5), "c4", "a2", action="block", rule_ids=("fatal-rule",), categories=("contempt",)),
    ev("override", L(5, 9, 0, 40), "c4", "a2", action="block", rule_ids=("fatal-rule",), categories=("contempt",),
       final_text="好的给您退", reason="客户坚持", details={"override_reason": "客户坚持"}),
    ev("greeting", L(5, 9, 0, 50), "c4", "a2", final_text="您好,这里是在线客服专线"),
]


@pytest.fixture
def store(tmp_path):
    s = AuditStore(tmp_path / "audit.db", hmac_key=b"k")
    s.append_many(SYNTHETIC)
    yield s
    s.close()


def test_report_numbers_match_hand_computation(store):
    report = agent_reports(store, tenant="t", window=period_window("day", "2026-01-05", tz=TZ, now=0), library=LIB)
    by = {a.agent: a for a in report.agents}
    assert sorted(by) == ["a1", "a2"]
    a1 = by["a1"].metrics
    assert a1 == {
        "conversations": 3,                 # c1, c2, c3
        "customer_messages": 6,             # 3 + 2 + 1
        "agent_messages": 3,                # two sends in c1, one in c2 (proposed rewrite not sent)
        "first_response_s": 195.0,          # mean(20, 370)
        "avg_response_s": 150.0,            # turns: 20, 60, 370
        "reply_rate_30s": 0.2,              # 5 messages in service hours (not 23:05), only 10:00 answered <= 30 s
        "reply_rate": 0.6667,               # c1, c2 answered of 3
        "slow_share": 0.3333,               # c2 (370 s > 200 s)
        "answer_question_ratio": 0.5,       # 3 / 6
        "violations": 1,
        "overrides": 0,
        "reminders": 1,
        "reminders_missed": 1,
        "greeting_share": 0.3333,           # c1 only
        "closing_share": 0.3333,            # c1 only
        "qa_score_avg": 80.0,               # c1 100; c2 100-10-10-5 = 75; c3 100-10-15-10 = 65
    }
    assert by["a1"].violations == {"punctuation": 1}
    scores = {c["conversation_id"]: c["qa_score"] for c in by["a1"].conversations}
    assert scores == {"c1": 100, "c2": 75, "c3": 65}

    a2 = by["a2"]
    assert a2.metrics["agent_messages"] == 1 and a2.metrics["overrides"] == 1
    assert a2.metrics["first_response_s"] == 40.0 and a2.metrics["reply_rate_30s"] == 0.0
    assert a2.metrics["reply_rate"] == 1.0 and a2.metrics["slow_share"] == 0.0
    assert a2.violations == {"contempt": 2}  # block + override; the inline check does not count
    assert a2.conversations[0]["qa_score"] == 0 and a2.conversations[0]["fatal"] is True
    assert a2.metrics["greeting_share"] == 1.0 and a2.metrics["closing_share"] == 0.0


def test_early_warnings_name_their_metrics(store):
    report = agent_reports(store, tenant="t", window=period_window("day", "2026-01-05", tz=TZ, now=0), library=LIB)
    a1 = next(a for a in report.agents if a.agent == "a1")
    # efficiency: first 195 s -> 5*(1-135/140)=0.18; avg 150 s -> 1.79; 30 s rate 1.0; reply 3.33;
    # slow 3.33; mean 1.93.
    assert a1.dimensions["efficiency"] == pytest.approx(1.93, abs=0.01)
    assert a1.dimensions["attitude"] == 5.0
    assert a1.dimensions["standards"] == pytest.approx(2.44, abs=0.01)  # (1.67 + 1.67 + 4.0) / 3
    assert a1.dimensions["compliance"] == pytest.approx(1.67, abs=0.01)  # (0 + 5 + 0) / 3
    warned = {w["dimension"]: w["metrics"] for w in a1.warnings}
    assert set(warned) == {"efficiency", "standards", "compliance"}
    assert warned["efficiency"] == ["first_response_s", "avg_response_s", "reply_rate_30s", "reply_rate", "slow_share"]
    assert warned["standards"] == ["greeting_share", "closing_share"]
    assert warned["compliance"] == ["compliance_violations_per_message", "reminders_missed_per_conversation"]
    a2 = next(a for a in report.agents if a.agent == "a2")
    assert a2.dimensions["attitude"] == 0.0 and "attitude" in {w["dimension"] for w in a2.warnings}


def test_week_and_month_windows_and_agent_filter(store):
    week = period_window("week", "2026-01-07", tz=TZ, now=0)
    assert (week.first_day, week.end - week.start) == ("2026-01-05", 7 * 86400)
    month = period_window("month", "2026-01-20", tz=TZ, now=0)
    assert month.first_day == "2026-01-01" and month.start == L(1, 0)
    report = agent_reports(store, tenant="t", window=month, library=LIB, agent="a1")
    [a1] = report.agents
    assert a1.metrics["conversations"] == 4  # c0 from the 4th joins c1-c3 in the month


@pytest.mark.parametrize(
    ("period", "day", "field"),
    [("year", "2026-01-05", "period"), ("day", "05/01/2026", "date")],
    ids=["bad-period", "bad-date"],
)
def test_bad_windows_are_refused(period, day, field):
    with pytest.raises(ReportError) as err:
        period_window(period, day, tz=TZ, now=0)
    assert err.value.field == field


def test_qa_score_weights_add_to_100_and_fatal_zeroes():
    assert qa_score(greeting=True, closing=True, replied=True, severities=())[0] == 100
    assert qa_score(greeting=True, closing=True, replied=True, severities=("non_fatal",))[0] == 95
    assert qa_score(greeting=True, closing=True, replied=True, severities=("fatal",))[0] == 0
