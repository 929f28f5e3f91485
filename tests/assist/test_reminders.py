"""Time rules of spec section 3 on a manual clock: question, reply rate, waits, clearing, reopening."""

from __future__ import annotations

import pytest

from assist.clock import ManualClock

from clock_support import NIGHT, T0, Harness, rules


@pytest.fixture
async def night():
    """Outside the reply-rate hours, so only the 60 s response rule runs."""
    h = Harness(ManualClock(NIGHT))
    await h.engine.scheduler.start()
    yield h
    await h.engine.scheduler.stop()


@pytest.fixture
async def day():
    h = Harness(ManualClock(T0))
    await h.engine.scheduler.start()
    yield h
    await h.engine.scheduler.stop()


async def test_question_prewarns_at_45s_and_alerts_at_60s(night) -> None:
    h = night
    h.send("customer_message", "请问我的订单什么时候发货")
    await h.clock.advance(44.9)
    assert h.events() == []
    await h.clock.advance(0.1)
    (warn,) = h.events()
    assert warn["rule"] == "response.pre_warn" and warn["type"] == "reminder"
    assert warn["seconds_left"] == 15.0 and warn["late"] is False
    assert warn["deadline"] == "2026-01-01T16:01:00.000+00:00"
    assert warn["suggestion"] is None
    await h.clock.advance(15)
    overdue = h.events()[-1]
    assert overdue["rule"] == "response.overdue" and overdue["seconds_left"] == 0.0
    assert overdue["suggestion"] == {"template_id": "wait-apology", "text": "很抱歉让您久等了"}
    # The alert supersedes the warning in the pending list; the threshold is audited as missed.
    assert [p["rule"] for p in h.engine.pending_for("t1", "a1")] == ["response.overdue"]
    (missed,) = h.audit("threshold_missed")
    assert missed.action == "response.overdue" and missed.actor == "agent:a1"
    assert [n.action for n in h.audit("reminder")] == ["response.pre_warn", "response.overdue"]


async def test_thresholds_come_from_the_tenant_library() -> None:
    h = Harness(ManualClock(NIGHT), rules(response_s=120, pre_warn_s=100))
    await h.engine.scheduler.start()
    h.send("customer_message", "在线等")
    await h.clock.advance(99)
    assert h.events() == []
    await h.clock.advance(21)
    assert h.rules_fired() == ["response.pre_warn", "response.overdue"]
    await h.engine.scheduler.stop()


async def test_reply_rate_profile_inside_service_hours(day) -> None:
    h = day
    h.send("customer_message", "你好")
    await h.clock.advance(30)
    # Same 15 s lead as the response pre-warning: warned at 15 s, overdue at 30 s.
    assert h.rules_fired() == ["reply_rate.pre_warn", "reply_rate.overdue"]
    await h.clock.advance(30)
    assert h.rules_fired()[-2:] == ["response.pre_warn", "response.overdue"]
    assert {n.action for n in h.audit("threshold_missed")} == {"reply_rate.overdue", "response.overdue"}


@pytest.mark.parametrize(
    ("tz", "utc_offset_h", "counted"),
    [
        pytest.param("Asia/Shanghai", 14 + 59 / 60, True, id="22:59-shanghai-inside"),
        pytest.param("Asia/Shanghai", 15, False, id="23:00-shanghai-outside"),
        pytest.param("Asia/Shanghai", -0.01, False, id="07:59-shanghai-outside"),
        pytest.param("UTC", 15, True, id="same-instant-15:00-utc-inside"),
        pytest.param("UTC", 7.5, False, id="07:30-utc-outside"),
    ],
)
async def test_reply_rate_hours_use_the_tenant_time_zone(tz: str, utc_offset_h: float, counted: bool) -> None:
    h = Harness(ManualClock(T0 + utc_offset_h * 3600), rules(tz))
    await h.engine.scheduler.start()
    h.send("customer_message", "你好")
    await h.clock.advance(60)
    await h.engine.scheduler.stop()
    assert ("reply_rate.overdue" in h.rules_fired()) is counted


async def test_agent_reply_clears_what_it_answers(night) -> None:
    h = night
    h.send("customer_message", "怎么退货")
    await h.clock.advance(50)
    h.send("agent_message", "您好,退货请在订单页点击申请退货。")
    await h.clock.advance(600)
    assert h.rules_fired("reminder") == ["response.pre_warn"]
    cleared = h.events("cleared")[-1]
    assert cleared["rules"] == ["response.pre_warn"] and cleared["conversation_id"] == "c1"
    assert h.engine.pending_for("t1", "a1") == []
    assert h.audit("threshold_missed") == []


async def test_the_clock_runs_from_the_oldest_unanswered_message(night) -> None:
    h = night
    h.send("customer_message", "你好")
    await h.clock.advance(40)
    h.send("customer_message", "我想问一下发票")
    await h.clock.advance(20)
    assert h.rules_fired() == ["response.pre_warn", "response.overdue"]


async def test_plain_wait_means_back_within_wait_default(night) -> None:
    h = night
    h.send("customer_message", "帮我查下物流")
    await h.clock.advance(10)
    h.send("agent_message", "好的,请稍等")
    await h.clock.advance(44.9)
    assert h.rules_fired() == []  # the holding reply answered the question; the wait runs now
    await h.clock.advance(0.1)
    assert h.rules_fired() == ["wait.pre_warn"]
    assert h.events()[-1]["suggestion"]["template_id"] == "wait-thanks"
    await h.clock.advance(15)
    assert h.rules_fired() == ["wait.pre_warn", "wait.overdue"]
    assert h.events()[-1]["deadline"] == "2026-01-01T16:01:10.000+00:00"
    assert [n.action for n in h.audit("threshold_missed")] == ["wait.overdue"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("请您稍等2分钟", 120, id="digits"),
        pytest.param("稍等两分钟", 120, id="chinese-numeral"),
        pytest.param("请您稍等半分钟", 30, id="half-minute"),
        pytest.param("稍等 90 秒", 90, id="seconds-with-spaces"),
        pytest.param("请稍等一分半钟", 90, id="minute-and-a-half"),
        pytest.param("稍等一下", 60, id="no-time-default"),
        pytest.param("请您稍等5分钟", 300, id="over-the-cap-still-kept"),
    ],
)
async def test_named_wait_sets_the_promised_deadline(night, text: str, seconds: int) -> None:
    h = night
    h.send("agent_message", text)
    await h.clock.advance(seconds - 0.001)
    assert "wait.overdue" not in h.rules_fired()
    await h.clock.advance(0.001)
    assert h.rules_fired()[-1] == "wait.overdue"
    assert h.events()[-1]["late"] is False


async def test_agent_back_before_the_wait_ends_clears_it(night) -> None:
    h = night
    h.send("agent_message", "请您稍等2分钟")
    await h.clock.advance(110)
    assert h.rules_fired() == ["wait.pre_warn"]
    h.send("agent_message", "您好,已为您查到,包裹明天送达。")
    await h.clock.advance(600)
    assert h.rules_fired() == ["wait.pre_warn"]
    assert h.engine.pending_for("t1", "a1") == []


@pytest.mark.parametrize(
    "text",
    ["??", "？？", "在吗", "人呢", "怎么不回", "太慢了", "等了好久", "还要等多久啊", "?"],
)
async def test_waiting_complaints_suggest_an_apology(night, text: str) -> None:
    night.send("customer_message", text)
    (sug,) = night.events("suggestion")
    assert sug["rule"] == "wait.apology"
    assert sug["suggestion"] == {"template_id": "wait-apology", "text": "很抱歉让您久等了"}
    assert sug["seconds_left"] == 60.0  # the reply it suggests is due with the question


@pytest.mark.parametrize("text", ["我想问一下订单", "这个多少钱", "好的"])
async def test_ordinary_messages_suggest_nothing(night, text: str) -> None:
    night.send("customer_message", text)
    assert night.events("suggestion") == []


async def test_thanks_reply_is_suggested_once_per_conversation(night) -> None:
    h = night
    for text in ["谢谢", "好的", "thx", "非常感谢"]:
        h.send("customer_message", text)
        h.send("agent_message", "好的")
    sugs = h.events("suggestion")
    assert [s["rule"] for s in sugs] == ["thanks.reply"]
    assert sugs[0]["suggestion"]["text"] == "不客气"


async def test_closing_is_suggested_at_the_end_and_never_twice(night) -> None:
    h = night
    h.send("customer_message", "我的订单没有了")  # not a goodbye: 没有了 inside a sentence
    assert h.events("suggestion") == []
    h.send("customer_message", "没有了")
    h.send("customer_message", "拜拜")
    h.send("customer_message", "好的谢谢就这些")
    assert [s["rule"] for s in h.events("suggestion")] == ["closing"]
    assert h.events("suggestion")[0]["suggestion"]["template_id"] == "closing"


async def test_close_clears_and_a_later_message_reopens(night) -> None:
    h = night
    h.send("customer_message", "在吗")
    await h.clock.advance(50)
    h.send("closed")
    assert h.engine.pending_for("t1", "a1") == []
    assert sorted(h.events("cleared")[-1]["rules"]) == ["response.pre_warn", "wait.apology"]
    await h.clock.advance(600)
    assert h.rules_fired("reminder") == ["response.pre_warn"]
    h.send("customer_message", "还有个问题")
    assert h.engine.get("t1", "c1").open is True
    await h.clock.advance(60)
    assert h.rules_fired("reminder")[-2:] == ["response.pre_warn", "response.overdue"]


async def test_transfer_clears_and_the_new_agent_gets_the_next_reminders(night) -> None:
    h = night
    h.send("customer_message", "你好")
    await h.clock.advance(50)
    h.send("transferred", agent="a2")
    await h.clock.advance(100)
    assert h.rules_fired("reminder") == ["response.pre_warn"]
    h.send("customer_message", "转过来了吗", agent=None)
    await h.clock.advance(60)
    assert [a for _, a, e in h.delivered if e.get("rule") == "response.overdue"] == ["a2"]
    assert h.engine.pending_for("t1", "a1") == []
    assert [p["rule"] for p in h.engine.pending_for("t1", "a2")] == ["response.overdue"]


async def test_assignment_hands_pending_reminders_to_the_new_agent(night) -> None:
    h = night
    h.send("customer_message", "你好", agent=None)
    await h.clock.advance(45)
    assert h.delivered == []  # nobody assigned yet: kept pending, delivered to no one
    assert [n.action for n in h.audit("reminder")] == ["response.pre_warn"]
    h.send("assigned", agent="a7")
    assert h.delivered[-1][1] == "a7" and h.delivered[-1][2]["rule"] == "response.pre_warn"
    assert [p["rule"] for p in h.engine.pending_for("t1", "a7")] == ["response.pre_warn"]


async def test_conversations_are_independent(night) -> None:
    h = night
    h.send("customer_message", "你好", cid="x")
    await h.clock.advance(30)
    h.send("customer_message", "你好", cid="y")
    await h.clock.advance(30)
    assert [(e["conversation_id"], e["rule"]) for e in h.events()] == [
        ("x", "response.pre_warn"), ("x", "response.overdue")]
    await h.clock.advance(30)
    assert [(e["conversation_id"], e["rule"]) for e in h.events()][2:] == [
        ("y", "response.pre_warn"), ("y", "response.overdue")]


async def test_once_only_suggestions_survive_close_and_reopen(night) -> None:
    h = night
    h.send("customer_message", "谢谢")
    h.send("customer_message", "谢谢,没有了")
    h.send("closed")
    assert h.engine.get("t1", "c1") is None  # a closed conversation leaves memory
    h.send("customer_message", "拜拜")
    h.send("customer_message", "谢谢")
    assert [s["rule"] for s in h.events("suggestion")] == ["thanks.reply", "closing"]
    assert h.engine.get("t1", "c1").open is True


async def test_default_library_supplies_thresholds_and_suggestion_texts() -> None:
    import phrases

    from assist.reminder_rules import TenantRules

    lib = phrases.load_library()
    h = Harness(ManualClock(NIGHT), TenantRules.from_library(lib, "Asia/Shanghai"))
    await h.engine.scheduler.start()
    h.send("customer_message", "人呢")
    await h.clock.advance(lib.thresholds.response_s)
    await h.engine.scheduler.stop()
    assert h.rules_fired() == ["wait.apology", "response.pre_warn", "response.overdue"]
    assert h.events()[0]["suggestion"]["text"] == lib.template("wait-apology").text


async def test_thanking_for_the_wait_does_not_start_a_new_wait(night) -> None:
    h = night
    h.send("agent_message", "请稍等")
    await h.clock.advance(30)
    h.send("agent_message", "感谢您的耐心等待,已经为您查询到结果,下面为您详细说明。")
    await h.clock.advance(600)
    assert h.rules_fired() == []


async def test_closed_conversations_are_forgotten_after_the_retention(night) -> None:
    h = night
    h.send("customer_message", "谢谢")
    h.send("closed")
    h.send("customer_message", "谢谢", cid="c2")
    await h.clock.advance(10)
    h.send("closed", cid="c2")
    assert h.engine.prune_closed(h.clock.now() - 5) == 1  # c1 closed 10 s ago, c2 just now
    assert set(h.engine.closed["t1"]) == {"c2"}
    # c1 comes back and starts afresh: 不客气 may be suggested again.
    h.send("customer_message", "谢谢")
    assert [s["rule"] for s in h.events("suggestion")] == ["thanks.reply", "thanks.reply", "thanks.reply"]
