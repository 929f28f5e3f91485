"""Behaviour of the engine on a small library: evasions with offsets, context, rewrite, detectors."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import guards
import phrases
from guards.context import SENTENCE_ENDS, clause_bounds
from guards.normalize import BOUNDARIES


@pytest.mark.parametrize(
    "text, rule, span",
    [
        pytest.param("我不知道", "fp-dont-know", (0, 4), id="plain"),
        pytest.param("亲,这个不 知 道呢", "fp-dont-know", (4, 9), id="spaces"),
        pytest.param("不*知*道", "fp-dont-know", (0, 5), id="symbols"),
        pytest.param("不-知~道", "fp-dont-know", (0, 5), id="dashes-tildes"),
        pytest.param("我不知知道", "fp-dont-know", (0, 5), id="repeated-char"),
        pytest.param("不\u200b知\u200d道", "fp-dont-know", (0, 5), id="zero-width"),
        pytest.param("不\ufeff知道", "fp-dont-know", (0, 4), id="bom"),
        pytest.param("我不知到", "fp-dont-know", (0, 4), id="homophone-char"),
        pytest.param("不，知，道", "fp-dont-know", (0, 5), id="commas-between-single-chars"),
        pytest.param("請您查看之前的答覆", "imp-said-before", (0, 9), id="traditional-ambiguous-char"),
        pytest.param("bu zhi dao", "fp-dont-know", (0, 10), id="typed-pinyin"),
        pytest.param("ＢＵＺＨＩＤＡＯ", "fp-dont-know", (0, 8), id="full-width-pinyin"),
        pytest.param("布吉岛啊", "fp-dont-know", (0, 3), id="dialect-variant"),
        pytest.param("这个我也不造", "fp-dont-know", (4, 6), id="slang-variant"),
        pytest.param("不關我的事", "fp-not-my-business", (0, 5), id="traditional"),
        pytest.param("这個不関我的事", "fp-not-my-business", (2, 7), id="traditional-mixed"),
        pytest.param("這事跟我真的沒關係", "fp-not-my-business", (2, 9), id="pattern-traditional"),
        pytest.param("此事与我无关", "fp-not-my-business", (2, 6), id="pattern-synonym"),
        pytest.param("什么?", "rq-what", (0, 3), id="anchored-question"),
        pytest.param("哪个？？", "rq-what", (0, 4), id="anchored-fullwidth-repeat"),
        pytest.param("请您查看之前的回复", "imp-said-before", (0, 9), id="fuzzy-one-char"),
        pytest.param("请您查看之前的答复", "imp-said-before", (0, 9), id="exact-long"),
    ],
)
def test_hits_report_original_offsets(mini, text, rule, span):
    v = mini.check(text)
    hits = [x for x in v.violations if x.rule_id == rule]
    assert hits, v
    assert (hits[0].start, hits[0].end) == span
    assert hits[0].matched == text[span[0] : span[1]]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("如果您不知道尺码,可以参考详情页的尺码表。", id="conditional-customer"),
        pytest.param("不知道您方便提供一下订单号吗?", id="polite-question"),
        pytest.param("您说的“不知道”是指哪一步操作呢?", id="quoting-customer"),
        pytest.param("请问您需要什么?", id="question-not-rhetorical"),
        pytest.param("我们会把货物布置到位。", id="homophone-word-not-phrase"),
        pytest.param("您好,很高兴为您服务。", id="clean"),
        pytest.param("我跟您确认一下,这个没关系的,可以换货。", id="pattern-across-clauses"),
        pytest.param("请稍等,我帮您查一下。", id="short-wait"),
        pytest.param("是,不是这个颜色。", id="comma-between-words-stays-boundary"),
        pytest.param("mailbuzhidaox@example.com 是测试地址。", id="pinyin-inside-word"),
    ],
)
def test_context_clears(mini, text):
    assert mini.check(text).action == "pass", mini.check(text)


def test_rewrite_keeps_the_rest_and_is_idempotent(mini):
    v = mini.check("我不知道!!您再看看详情页吧")
    assert v.action == "rewrite"
    assert v.rewritten == "这个问题我帮您确认一下!您再看看详情页吧"
    again = mini.check(v.rewritten)
    assert again.action in ("pass", "warn")


def test_block_carries_suggestions(mini):
    v = mini.check("这个跟我没关系")
    assert v.action == "block" and v.rewritten is None
    assert [s.template_id for s in v.suggestions] == ["check-confirm"]


def test_strictest_action_wins(mini):
    v = mini.check("不关我的事!!")
    assert {x.action for x in v.violations} == {"block", "rewrite"}
    assert v.action == "block"


def test_repeat_action_escalates(mini):
    assert mini.check("这个没有办法").action == "warn"
    history = [{"role": "customer", "text": "能便宜点吗"}, {"role": "agent", "text": "这个真的没有办法哦"}]
    assert mini.check("只能这样了", history=history).action == "block"


def test_repeat_closing_only_while_unanswered(mini):
    closing = "请问是否还有其他问题可以为您服务?"
    hurried = [{"role": "agent", "text": closing}]
    assert "closing-again" in mini.check(closing, history=hurried).rule_ids
    answered = hurried + [{"role": "customer", "text": "还有一个问题,发票怎么开?"}]
    reply = "发票在订单详情页申请即可。" + closing
    assert "closing-again" not in mini.check(reply, history=answered).rule_ids


def test_repetition_against_agent_history(mini):
    history = [{"role": "agent", "text": "您的订单已经发货了,请注意查收。"}]
    assert "rep" in mini.check("您的订单已经发货了 请注意查收", history=history).rule_ids
    assert "rep" not in mini.check("您的订单明天就能送到。", history=history).rule_ids
    customer_said = [{"role": "customer", "text": "您的订单已经发货了,请注意查收。"}]
    assert "rep" not in mini.check("您的订单已经发货了,请注意查收。", history=customer_said).rule_ids


@pytest.mark.parametrize(
    "text, fixed",
    [
        pytest.param("好的!!", "好的!", id="double-bang"),
        pytest.param("已经发货了! !", "已经发货了!", id="bangs-split-by-space"),
        pytest.param("好的。\u200b。\u200b。我再问问。", "好的。我再问问。", id="stops-split-by-zero-width"),
        pytest.param("您确定吗？？", "您确定吗？", id="fullwidth-question-run"),
        pytest.param("好吧。。。", "好吧。", id="speechless-dots"),
        pytest.param("那好吧……", "那好吧。", id="speechless-ellipsis"),
        pytest.param("好的。。。我再帮您问问。", "好的。我再帮您问问。", id="triple-full-stop-mid-sentence"),
        pytest.param("……行吧,那给您退。", "行吧,那给您退。", id="leading-ellipsis-dropped"),
        pytest.param("好的 我看一下 马上处理", "好的，我看一下，马上处理", id="spaces-as-punctuation"),
        pytest.param("您好您的快递已经到了驿站记得去取哦", "您好您的快递已经到了驿站记得去取哦。", id="no-punctuation"),
    ],
)
def test_punctuation_rewrites(mini, text, fixed):
    v = mini.check(text)
    assert v.action == "rewrite" and v.rewritten == fixed
    assert mini.check(fixed).action == "pass"


def test_hesitation_ellipsis_is_fine(mini):
    assert mini.check("这个……我帮您查一下。").action == "pass"
    assert mini.check("哦……那您随意吧").action == "rewrite"
    assert mini.check("破损理赔……您随便吧").action == "rewrite"


def test_wait_cap_warns(mini):
    v = mini.check("请您稍等10分钟,我去仓库确认。")
    assert v.action == "warn" and v.rule_ids == ["wait-cap"]
    assert mini.check("请您稍等2分钟,我去仓库确认。").action == "pass"


def test_contact_number_except_customer_own(mini):
    assert mini.check("有事打我电话13812345678。").action == "block"
    history = [{"role": "customer", "text": "我的手机是13812345678"}]
    assert mini.check("好的,您的手机号13812345678已备注。", history=history).action == "pass"
    assert mini.check("加我微信 abc12345").action == "block"
    assert mini.check("快递员的电话是13812345678,您可以直接联系他取件。").action == "pass"


@pytest.mark.parametrize(
    "text, wait",
    [
        ("请稍等", None), ("请您稍等2分钟", 120), ("稍等两分钟", 120), ("稍等半分钟", 30),
        ("稍等 90 秒", 90), ("请稍等一分半钟", 90), ("请您稍等１０分钟", 600), ("稍等三十秒", 30), ("请您稍等1 0分钟", 600),
        ("给我半个小时,我查完回复您", 1800), ("估计得等二十来分钟", 1200), ("稍等一下,大概需要5分钟", 300),
    ],
)
def test_find_wait(text, wait):
    found = guards.find_wait(text)
    assert found is not None and found.seconds == wait
    assert 0 <= found.start < found.end <= len(text)


@pytest.mark.parametrize("text", ["您的订单已发货。", "感谢您的耐心等待,已经帮您查到了。", "谢谢您的等待。"])
def test_no_wait_promised(text):
    assert guards.find_wait(text) is None


def test_verdict_serialises(mini):
    v = mini.check("我不知道!!", history=[{"role": "customer", "text": "在吗"}])
    data = json.loads(v.model_dump_json())
    assert data["action"] == "rewrite"
    assert data["violations"][0]["start"] == 0 and data["violations"][0]["end"] == 4


def test_pure_and_deterministic(mini):
    a = mini.check("不*知*道!!").model_dump()
    b = mini.check("不*知*道!!").model_dump()
    assert a == b


def test_invalid_library_names_every_problem(tmp_path):
    bad = {
        "rules": [
            {"id": "x1", "category": "nope", "severity": "fatal", "action": "block", "source": "s", "phrases": ["a"], "suggest": ["t"]},
            {"id": "x2", "category": "contempt", "severity": "fatal", "action": "rewrite", "source": "s", "phrases": ["b"]},
            {"id": "x3", "category": "contempt", "severity": "fatal", "action": "block", "source": "s", "phrases": ["c"], "suggest": ["missing"]},
        ],
        "templates": [{"id": "t", "situation": "s", "text": "好的。"}],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(phrases.LibraryError) as err:
        phrases.load_library(path)
    locs = " ".join(p["loc"] + " " + p["msg"] for p in err.value.problems)
    assert "rules.0.category" in locs
    assert "'replacement' is required" in locs and "x2" in locs
    assert len(err.value.problems) >= 2


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"rules": [\n  {"id": }\n]}', encoding="utf-8")
    with pytest.raises(phrases.LibraryError) as err:
        phrases.load_library(path)
    assert err.value.problems[0]["loc"].startswith("bad.json:2:")


def test_word_list_adds_forbidden_phrases(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# our list\n滚蛋\n\n关我屁事  # slang\n滚蛋\n", encoding="utf-8")
    lib = phrases.load_library(path)
    added = [r for r in lib.rules if r.id.startswith("wordlist-")]
    assert sorted(p for r in added for p in r.phrases) == ["关我屁事", "滚蛋"]
    g = guards.Guard(lib)
    assert g.check("你给我滚 蛋").action == "block"


_text = st.text(max_size=120)
_cjkish = st.text(alphabet="不知道清楚关我的事跟没关系什么哪个? !。…*  \u200b请稍等2分钟bzdq微信13800138000“”", max_size=80)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(_text, _cjkish), prior=st.lists(st.tuples(st.sampled_from(["agent", "customer"]), _cjkish), max_size=3))
def test_check_never_raises_and_offsets_stay_inside(mini, text, prior):
    history = [{"role": r, "text": t} for r, t in prior]
    v = mini.check(text, history=history)
    for x in v.violations:
        assert 0 <= x.start <= x.end <= len(text)
        assert x.matched == text[x.start : x.end]
    if v.action == "rewrite":
        assert v.rewritten is not None
        assert mini.check(v.rewritten, history=history).action in ("pass", "warn")


def test_rewrite_gets_its_finishing_punctuation(mini):
    # The replacement makes the draft long enough to need a full stop: rewrite, not block.
    v = mini.check("这款的活动规则我不知道")
    assert v.action == "rewrite"
    assert v.rewritten == "这款的活动规则这个问题我帮您确认一下。"


def test_digits_are_not_collapsed():
    assert guards.normalize("拨打400热线").text == "拨打400热线"
    assert guards.normalize("1100元").text == "1100元"


def test_repeats_collapse_and_map_back_whole():
    n = guards.normalize("我不不不知知道, 谢谢!")
    assert n.text == "我不知道,谢!"
    assert n.span(0, 4) == (0, 7)  # 我不知道 covers every repeated character
    assert n.span(4, 5) == (7, 8)


def test_astral_characters_read_as_holes():
    # The matching view is BMP only (the engine's per-character tables are 16-bit arrays):
    # an emoji or a rare astral ideograph put between characters hides nothing.
    n = guards.normalize("不😀知𠀀道")
    assert n.text == "不知道"
    assert n.span(0, 3) == (0, 5)


def _clause_bounds_by_hand(text, start, end, stops):
    cs, ce = start, end
    while cs > 0 and text[cs - 1] not in stops:
        cs -= 1
    while ce < len(text) and text[ce] not in stops:
        ce += 1
    return cs, ce


@given(st.text(alphabet="我不知道,。!?\n…a;:、 ", max_size=20), st.data())
@settings(max_examples=300, deadline=None)
def test_clause_bounds_walk_to_the_nearest_stops(text, data):
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    for stops in (BOUNDARIES, SENTENCE_ENDS):
        assert clause_bounds(text, start, end, stops=stops) == _clause_bounds_by_hand(text, start, end, stops)


def test_follow_up_in_hours_is_not_a_wait():
    assert guards.find_wait("您的投诉我已经受理,会在24小时内给您回复。") is None


def _one_rule_guard(tmp_path, **rule) -> guards.Guard:
    """A guard over a library of one blocking rule, loaded from a file like an admin's."""
    data = {
        "rules": [{"id": "only", "severity": "fatal", "action": "block", "source": "test", "suggest": ["tpl"], **rule}],
        "templates": [{"id": "tpl", "situation": "s", "text": "好的。"}],
    }
    path = tmp_path / "lib.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return guards.Guard(phrases.load_library(path))


def test_sentence_scope_context(tmp_path):
    g = _one_rule_guard(tmp_path, category="privacy_request", phrases=["联系电话"], allow={"sentence": ["预约上门"]})
    assert g.check("为了给您预约上门安装,麻烦提供一下联系电话。").action == "pass"
    assert g.check("麻烦提供一下联系电话。").action == "block"
    assert g.check("为了给您预约上门安装。麻烦提供一下联系电话。").action == "block"


def test_closing_instead_of_answering_a_new_question(mini):
    history = [{"role": "customer", "text": "退款什么时候到账"}, {"role": "agent", "text": "一般1-3个工作日原路退回。"},
               {"role": "customer", "text": "那运费呢?"}]
    assert "closing-again" in mini.check("感谢您的支持,祝您生活愉快!", history=history).rule_ids
    answered = "运费也会一起退回哦。感谢您的支持,祝您生活愉快!"
    assert "closing-again" not in mini.check(answered, history=history).rule_ids


def test_pattern_with_sentence_scope_crosses_commas(tmp_path):
    pattern = {"groups": [["保证"], ["到账", "退"]], "max_gap": 10, "scope": "sentence"}
    g = _one_rule_guard(tmp_path, category="over_promise", patterns=[pattern])
    assert g.check("我跟您保*证,钱三天内到账。").action == "block"
    assert g.check("我跟您保证。钱三天内到账。").action == "pass"


def test_typed_pinyin_may_run_into_more_pinyin(mini):
    assert "fp-dont-know" in mini.check("buzhidao ne,物流没更新。").rule_ids


def test_detectors_run_only_when_triggered(monkeypatch):
    """A detector with trigger words is asked only about drafts where the lexical pass saw one,
    and still finds what it finds when asked."""
    guard = guards.Guard(phrases.load_library(Path(__file__).parent / "fixtures" / "mini.json"))
    asked: list[str] = []
    for detector in guard._detectors:
        if detector.triggers:
            original = detector.check
            monkeypatch.setattr(detector, "check", lambda d, c, f=original, n=detector.id: asked.append(n) or f(d, c))
    assert guard.check("好的,我帮您查一下订单。").action == "pass"
    assert asked == []
    assert guard.check("您加一下我的微 信 号 abc12345 吧").violations
    assert "contact_number" in asked
    asked.clear()
    assert guard.check("请您稍等五分钟").action == "warn"
    assert asked == ["wait_promise"]


def test_clause_final_phrase_may_carry_particles(tmp_path):
    # ^…$ phrases fill their clause; softening particles after them do not hide them, and the
    # reported span takes the particles in.
    g = _one_rule_guard(tmp_path, category="forbidden_phrase", phrases=["^不行$"])
    for text, span in [("不行", "不行"), ("亲,不行的哦~", "不行的哦"), ("不行呀亲。", "不行呀亲")]:
        (hit,) = g.check(text).violations
        assert hit.matched == span, text
    assert g.check("不行的话可以换货。").action == "pass"
    assert g.check("不行呀这个颜色。").action == "pass"


def test_pattern_that_ends_its_clause(tmp_path):
    pattern = {"groups": [["不可以", "不行"]], "max_gap": 0, "ends_clause": True}
    g = _one_rule_guard(tmp_path, category="forbidden_phrase", patterns=[pattern])
    for text, span in [("退差价不可以的哦~", "不可以的哦"), ("改地址不行呢亲,抱歉", "不行呢亲"), ("不行", "不行")]:
        (hit,) = g.check(text).violations
        assert hit.matched == span, text
    assert g.check("不可以使用优惠券哦。").action == "pass"
    assert g.check("不行的话可以换货。").action == "pass"
    # The window the pattern runs in must not pass for the end of the draft.
    long = "您好," + "这个不行" + "的呀哦呢款式我们再看看。"
    assert g.check(long).action == "pass"


def test_the_same_sentence_twice_in_one_reply(mini):
    twice = "您的问题我们已经记录了。您的问题我们已经记录了。"
    assert "rep" in mini.check(twice).rule_ids
    assert "rep" not in mini.check("您的问题我们已经记录了。稍后会有专人联系您。").rule_ids
    assert "rep" not in mini.check("好的。好的。").rule_ids  # too short to read as a copied script
    assert "rep" not in mini.check("请耐心等待。马上为您处理。请耐心等待。").rule_ids
    assert "rep" in mini.check("请耐心等待。马上为您处理。请耐心等待。请耐心等待。").rule_ids


def test_pattern_words_typed_in_pinyin_are_respelled(tmp_path):
    pattern = {"groups": [["投诉"], ["一定", "肯定"], ["成功", "通过"]], "max_gap": 2}
    g = _one_rule_guard(tmp_path, category="over_promise", patterns=[pattern])
    for text, span in [
        ("您的投诉yi ding成功", "投诉yi ding成功"),  # a whole word in pinyin, spaced
        ("投诉肯定cheng功", "投诉肯定cheng功"),  # one character of a word
        ("投 诉 YIDING 成功!", "投 诉 YIDING 成功"),  # evasions mixed
    ]:
        (hit,) = g.check(text).violations
        assert hit.matched == span, text
    # Short all-Latin runs are ids and words, not pinyin: "yd" is not respelled as 一定.
    assert g.check("投诉yd成功").action == "pass"
    assert g.check("您的投诉已经提交成功,单号ts2024。").action == "pass"


def test_a_clause_pasted_twice_in_a_row(mini):
    assert "rep" in mini.check("亲爱的顾客您好,亲爱的顾客您好,请问有什么可以帮您?").rule_ids
    assert "rep" in mini.check("已为您催件;已为您催件").rule_ids
    assert "rep" not in mini.check("您好,您好,请问有什么可以帮您?").rule_ids


@pytest.mark.parametrize(
    "text, rule",
    [
        pytest.param("唔關我嘅事", "fp-not-my-business", id="cantonese-not-mine"),
        pytest.param("呢件事唔知道", "fp-dont-know", id="cantonese-negation"),
        pytest.param("這個我ㄅ知道", None, id="bopomofo-not-folded-blindly"),
    ],
)
def test_regional_forms_read_as_mandarin(mini, text, rule):
    ids = mini.check(text).rule_ids
    assert (rule in ids) if rule else not ids


def test_regional_folding_keeps_shared_characters():
    from guards.normalize import normalize

    assert normalize("關係").text == "关系"  # 係 is also Mandarin: not read as Cantonese 是
    assert normalize("退款ㄧ定到帳").text == "退款一定到账"
    assert normalize("我哋冇辦法").text == "我们没办法"


def test_regional_words_read_as_mandarin_words_of_the_same_length():
    from guards.normalize import fold, normalize

    assert normalize("莫得法子").text == "没得法子"
    assert normalize("我晓不得").text == "我不知道"
    assert normalize("你讲乜嘢").text == "你讲什么"
    assert normalize("咋个办嘛").text == "怎么办嘛"
    assert normalize("莫得罪人").text == "莫得罪人"  # 莫 + 得罪: don't offend
    for text in ("莫得法子", "乜嘢事", "我晓不得啊"):
        assert len(fold(text)) == len(text)  # offsets into the draft do not move


def test_every_regional_word_is_read():
    import importlib

    normalize = importlib.import_module("guards.normalize")
    # fold() looks for the words' first characters before running the regex: none may be missed.
    for word, mandarin in normalize._REGIONAL_WORDS.items():
        assert normalize.fold(word) == mandarin



def test_a_consistent_same_sound_substitution_counts_once():
    from guards.phonetic import close_enough

    assert close_enough("爱麦不麦", "爱买不买")  # one character swapped, typed twice
    assert not close_enough("布置到", "不知道")


def test_cantonese_hours_are_durations():
    from guards.waits import find_wait

    assert find_wait("你等多半個鐘啦").seconds == 1800
    assert find_wait("请您等两个钟头").seconds == 7200
    assert find_wait("三点钟给您回复") is None


def test_a_phone_number_read_out_in_chinese_digits(default_guard):
    assert "pr-contact-number" in default_guard.check("我手机幺三八 两两四六 九九零一,下单前先打给我。").rule_ids
    assert "pr-contact-number" not in default_guard.check("您的订单号是一三五二二二三四四五六,请核对。").rule_ids
    assert "pr-contact-number" not in default_guard.check("您的订单号是13522234456,请核对。").rule_ids


def test_a_wait_stretched_past_the_cap_in_a_later_sentence(default_guard):
    assert "wt-wait-too-long" in default_guard.check("说好稍等2分钟,再等我5分钟吧,还没查到。").rule_ids
    assert "wt-wait-too-long" not in default_guard.check("请稍等2分钟,我马上回复您。").rule_ids


def test_the_closing_question_twice_in_one_reply(default_guard):
    assert "im-repeat-closing" in default_guard.check("好的,还有别的问题吗?没有就先这样。还有别的问题吗?").rule_ids
    assert "im-repeat-closing" not in default_guard.check("已为您办理好。请问还有其他问题吗?").rule_ids
    assert "im-repeat-closing" in default_guard.check("感谢您的支持,祝您生活愉快。感谢您的支持,祝您生活愉快。").rule_ids
    assert "im-repeat-closing" not in default_guard.check("感谢您的支持,祝您生活愉快!").rule_ids


def test_the_space_after_an_at_mention_is_not_punctuation(mini):
    assert mini.check("@王女士 您好,麻烦您核对一下收货地址。").action == "pass"
    assert "punct" in mini.check("好的 我看一下 马上处理").rule_ids


def test_dictated_fillers_and_particles_do_not_hide_a_pasted_clause(mini):
    assert "rep" in mini.check("非常抱歉给您带来不便,嗯非常抱歉给您带来不便,那个非常抱歉给您带来不便").rule_ids
    assert "rep" in mini.check("好的亲马上处理,好的亲马上处理哈,嗯好的这就给您处理").rule_ids
    assert "rep" not in mini.check("嗯好的,那个我马上帮您处理哈").rule_ids


def test_pinyin_with_homophones_is_read_every_way(tmp_path):
    # bao guo is 包过 and 报过 alike; a library holding both words must still find 申诉包过.
    patterns = [
        {"groups": [["申诉"], ["包过", "稳过"]], "max_gap": 2},
        {"groups": [["邻居"], ["报过"]], "max_gap": 4},
    ]
    g = _one_rule_guard(tmp_path, category="over_promise", patterns=patterns)
    (hit,) = g.check("申诉包guo,我说的。").violations
    assert hit.matched == "申诉包guo"
    assert g.check("您邻居也bao guo案").action == "block"


def test_latin_pattern_words_stand_alone(tmp_path):
    g = _one_rule_guard(tmp_path, category="contempt", patterns=[{"groups": [["sb"], ["问题", "要求"]], "max_gap": 0}])
    assert g.check("这种ＳＢ问题也要问").action == "block"
    assert g.check("USB问题我帮您转技术同事").action == "pass"


def test_quoted_marks_are_the_customers(mini):
    assert mini.check("您发的“？？”我看到了,刚才在核实订单,现在结果出来了。").action == "pass"
    assert mini.check("您问什么??").action == "rewrite"


def test_dots_after_a_colon_stand_for_text_left_out(mini):
    assert mini.check("条款第七条是这样写的:……我把原文截图发给您。").action == "pass"
    assert mini.check("……行吧,我再帮您看看。").action == "rewrite"


def test_dots_before_giving_in_read_as_a_sigh(mini):
    v = mini.check("这个也要退款啊……行吧")
    assert v.action == "rewrite" and v.rewritten == "这个也要退款啊，行吧"
    assert mini.check("这个……我帮您查一下。").action == "pass"


def test_copies_joined_by_tildes(mini):
    assert "rep" in mini.check("亲您放心哦~亲您放心哦~亲这边马上给您看哦~亲您放心哦~").rule_ids
    assert "rep" not in mini.check("亲~您好~请问有什么可以帮您~").rule_ids


def test_an_a_not_a_question_is_no_negation_in_any_context(tmp_path):
    # 能不能私下 asks; a sentence context 不能私下 (the agent refusing) must not clear the request.
    g = _one_rule_guard(tmp_path, category="privacy_request", phrases=["银行卡号报给我"],
                        allow={"sentence": ["不能私下"], "clause": ["不能私下"]})
    assert g.check("您把银行卡号报给我，我看看能不能私下补给您。").action == "block"
    assert g.check("银行卡号报给我是不行的，我们不能私下转账。").action == "pass"


def _glossed_guard(tmp_path, glosses, **rule) -> guards.Guard:
    data = {
        "rules": [{"id": "only", "severity": "fatal", "action": "block", "source": "test", "suggest": ["tpl"], **rule}],
        "templates": [{"id": "tpl", "situation": "s", "text": "好的。"}],
        "glosses": glosses,
    }
    path = tmp_path / "lib.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return guards.Guard(phrases.load_library(path))


def test_english_words_read_through_the_library_glosses(tmp_path):
    g = _glossed_guard(tmp_path, {"promise": "保证", "refund": "退款", "bank account": "银行账户"},
                       category="over_promise", patterns=[{"groups": [["保证"], ["退款", "银行账户"]], "max_gap": 4}])
    (hit,) = g.check("我 promise 一定 refund 给你。").violations
    assert hit.matched == "我 promise 一定 refund"[2:]
    assert g.check("我保证 bank  account 没问题").action == "block"  # any run of spaces inside a phrase
    # Whole words only: refunded is not refund, and nothing happens without a glossed word.
    assert g.check("我 promise 一定 refunded").action == "pass"
    assert g.check("我一定尽快处理 refund 申请").action == "pass"


def test_glosses_are_validated(tmp_path):
    data = {"glosses": {"Refund": "退款", "refund": "refund"}}
    path = tmp_path / "lib.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(phrases.LibraryError) as err:
        phrases.load_library(path)
    text = str(err.value)
    assert "gloss 'Refund'" in text and "lower-case" in text
    assert "gloss 'refund'" in text and "Chinese characters" in text


def test_the_same_words_three_times_running(mini):
    assert "rep" in mini.check("在催了在催了在催了，别急。").rule_ids
    assert "rep" not in mini.check("谢谢谢谢谢谢").rule_ids  # one character repeated is collapsed, not pasted
    assert "rep" not in mini.check("在催了，别急。").rule_ids


def test_english_sentences_pasted_again(mini):
    pasted = "Sorry for the inconvenience. Sorry for the inconvenience. Sorry for the inconvenience."
    (hit,) = [v for v in mini.check(pasted).violations if v.rule_id == "rep"]
    assert pasted[hit.start : hit.end] == hit.matched
    assert "rep" not in mini.check("We are looking into it. Thanks for your patience.").rule_ids
    # A run of tildes is replaced mark for mark, so spans still point into the draft.
    tildes = "亲您放心哦~~亲您放心哦~~亲这边马上给您看哦~亲您放心哦~"
    (hit,) = [v for v in mini.check(tildes).violations if v.rule_id == "rep"]
    assert tildes[hit.start : hit.end] == hit.matched


def test_an_order_number_that_starts_with_wx_is_no_wechat_id(default_guard):
    assert default_guard.check("您家的报修单号是WX20240518003，可以在App里随时查看进度。").action == "pass"
    assert default_guard.check("我的微信号是wx20240518003，加我。").action == "block"


def test_a_closing_emoji_ends_a_message(mini):
    assert mini.check("关注我们店铺可以领五元无门槛券哦😊").action == "pass"
    assert mini.check("您好您的快递已经到了驿站记得去取哦").action == "rewrite"


def test_a_match_that_runs_into_reported_words_is_not_the_agents(default_guard):
    # 您说“…”: the pattern 您…不知道…找 runs from the agent's words into the customer's.
    assert default_guard.check("您说“不知道该找哪个部门”，没关系，这个诉求我已帮您转派住建局。").action == "pass"
    assert default_guard.check("你自己不知道找哪个部门吗？").action == "block"
    # A quotation mark that is not reported speech leaves the match alone: a leaked label.
    assert default_guard.check("后台显示这单被标了'难缠客户'，所以没人愿意接。").action == "block"


@pytest.mark.parametrize(
    "text, seconds",
    [
        pytest.param("请稍等30fen钟，我去问下", 1800, id="unit-typed-in-pinyin"),
        pytest.param("稍微等会儿啊，我去仓库翻一遍，估计个把钟头。", 3600, id="about-an-hour"),
        pytest.param("退费审核大概要半小时，您先在线别走开。", 1800, id="stay-online-length-before"),
        pytest.param("您先别下线，大概二十来分钟我给您答复。", 1200, id="approx-minutes-before-reply"),
        pytest.param("我去库房问问批号，得二十来分钟，您先忙别的。", 1200, id="do-something-else-meanwhile"),
        pytest.param("辛苦等我30分钟哈，库房在盘点", 1800, id="thanks-before-a-wait-with-a-length"),
    ],
)
def test_waits_named_in_other_words(text, seconds):
    found = guards.find_wait(text)
    assert found is not None and found.seconds == seconds
    assert 0 <= found.start < found.end <= len(text)


@pytest.mark.parametrize(
    "text", ["快递员大约30分钟后到，到时候请别走开哦", "等会员日再买更划算", "预计半小时内送达，您不用在线等",
             "您先忙别的，师傅大约40分钟后上门"]
)
def test_no_chat_wait_in_visits_and_lookalikes(text):
    found = guards.find_wait(text)
    assert found is None or found.seconds is None


def test_enumeration_commas_typed_as_dots(mini):
    v = mini.check("嗯、、、、你再去看一眼吧")
    assert v.action == "rewrite" and "、、、、" not in v.rewritten
    assert mini.check("红色、蓝色、黑色都有货。").action == "pass"


def test_closing_again_after_the_goodbye_was_only_acknowledged(mini):
    question, goodbye = "请问是否还有其他问题可以为您服务?", "感谢您的支持,祝您生活愉快。"
    said = [
        {"role": "agent", "text": question},
        {"role": "customer", "text": "我再想想"},
        {"role": "agent", "text": goodbye},
        {"role": "customer", "text": "嗯"},
    ]
    assert "closing-again" in mini.check(question + goodbye, history=said).rule_ids
    # The customer came back with something to say: answering it and closing again is fine.
    came_back = [*said[:3], {"role": "customer", "text": "对了我还想把收货地址改成公司的地址"}]
    assert "closing-again" not in mini.check("已为您改好地址。" + question, history=came_back).rule_ids


def test_dialect_pronouns_read_as_mandarin(default_guard):
    # 俺 and 咱 are 我: patterns written with 我 see through them.
    assert default_guard.check("俺表哥就是干这个的，找他便宜一半。").action == "block"
    assert default_guard.check("俺这就帮您查一下物流。").action == "pass"


def test_a_long_clause_pasted_twice_in_one_sentence(mini):
    assert "rep" in mini.check("我们这边已经按流程走了，您稍等哈，我们这边已经按流程走了。").rule_ids
    # An acknowledgement before the copy does not make it a new sentence; a short one stays speech.
    assert "rep" in mini.check("请您耐心等待，我们正在处理。好的，请您耐心等待，我们正在处理。").rule_ids
    assert "rep" not in mini.check("好的，您稍等，我看一下，好的，找到了。").rule_ids


def test_shanghainese_pronoun_and_particle(default_guard):
    assert default_guard.check("侬眼睛长了伐？页面上写着呢。").action == "block"


def test_waiting_on_this_page_with_a_length(default_guard):
    found = guards.find_wait("我去调一下记录，可能要一刻钟左右，您先在这个页面等我。")
    assert found is not None and found.seconds == 900
    assert guards.find_wait("我在这等您回复，大概5分钟后我再看") is None


@pytest.mark.parametrize(
    "text, span",
    [
        pytest.param("<b>不</b>知<i>道</i>，系统里看不到。", (3, 13), id="html-tags-inside-the-word"),
        pytest.param("不&nbsp;知道，您问物流吧", (0, 9), id="html-entity"),
        pytest.param("不知\n道，反正不是我发的货。", (0, 4), id="line-break-before-a-lone-character"),
        pytest.param("灬不灬知灬道灬", (1, 6), id="radical-as-decoration"),
    ],
)
def test_markup_and_line_breaks_hide_nothing(mini, text, span):
    v = mini.check(text)
    hits = [x for x in v.violations if x.rule_id == "fp-dont-know"]
    assert hits and (hits[0].start, hits[0].end) == span


def test_markup_in_a_good_reply_is_only_formatting(mini):
    assert mini.check("亲，已帮您改成 <b>XL 码</b>，今天下午发出。").action == "pass"
    assert mini.check("如果您<b>不知道</b>尺码，可以参考详情页。").action == "pass"


@pytest.mark.parametrize(
    "text, rule",
    [
        pytest.param("I don’t know where it is.", "fp-dont-know", id="typographic-apostrophe"),
        pytest.param("Nоthing I саn dо.", "fp-no-way", id="cyrillic-homoglyphs"),
        pytest.param("D-i-d y-o-u e-v-e-n r-e-a-d the description?", "rq-retort", id="spelled-letter-by-letter"),
        pytest.param("Wut do u want me 2 do?", "rq-what-do-you-want", id="txt-speak"),
        pytest.param("I guar@ntee a full r3fund.", "op-money", id="leet"),
        pytest.param("c@ll the h0tline, not doing this in chat", "rf-redirect-hotline", id="leet-symbol-joins-a-word"),
    ],
)
def test_english_evasions_read_as_words(default_guard, text, rule):
    assert rule in default_guard.check(text).rule_ids


def test_an_apostrophe_is_no_quotation_mark(default_guard):
    # there's ... that's: the words between two apostrophes are not quoted.
    assert "ps-no-way" in default_guard.check("There's no way around it, that's just how it is.").rule_ids
    assert default_guard.check("您说的'不关我的事'是指物流吗？").action == "pass"


def test_glossed_context_words_clear_glossed_matches(default_guard):
    # The context is read in the view the match was found in: "don't need to" glosses to 不需要.
    assert default_guard.check("You don't need to give me your phone number; the courier has it.").action == "pass"
    assert default_guard.check("If you don't know your size, check the chart.").action == "pass"
    assert default_guard.check("Send me your phone number.").action == "block"


def test_english_waits_have_a_length():
    found = guards.find_wait("Please wait 20 minutes, I'm checking with the warehouse.")
    assert found is not None and found.seconds == 1200
    assert guards.find_wait("hold on 2 hrs").seconds == 7200
    assert guards.find_wait("Please wait 2 minutes while I check.").seconds == 120
    # A reply promised after a length, numbers in words too; a day-long follow-up is no chat wait.
    assert guards.find_wait("Hold on, I'll get back to you in about half an hour.").seconds == 1800
    assert guards.find_wait("Give me ten minutes or so to dig through the logs.").seconds == 600
    assert guards.find_wait("Our team will reply within 24 hours by email.") is None
    assert guards.find_wait("Please hold for 20 minutes while I check.").seconds == 1200


def test_invisible_characters_inside_english_words(default_guard):
    assert "im-already-said" in default_guard.check("I've al\u200bready ex\u200bplained th\u200bis.").rule_ids


def test_english_words_read_back():
    import re

    from guards.english import read_words

    def words(text, known=("internal", "email")):
        tokens = [(m.group(), m.start(), m.end()) for m in re.finditer("[a-z0-9'’@$]+", text)]
        found, runs = read_words(tokens, text, set(known))
        return [w for w, _, _ in found], [letters for letters, _ in runs]

    assert words("ur in-ternal l0gin") == (["your", "internal", "login"], [])
    assert words("guar@ntee, e-mail, x-ray") == (["guarantee", "email", "x", "ray"], [])
    assert words("gu@r@nteed") == (["guaranteed"], [])  # several symbols in one word
    assert words("order sf1234567 and 2023") == (["order", "sf1234567", "and", "2023"], [])
    assert words("d-i-d y-o-u") == ([], ["didyou"])
    assert words("alreadyyy explained, me 2 do") == (["already", "explained", "me", "to", "do"], [])
