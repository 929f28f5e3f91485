"""The default library as tests: every entry's examples, clean templates, every category covered."""

import pytest

import guards
import phrases

LIB = phrases.load_library()
GUARD = guards.Guard(LIB)

HITS = [pytest.param(r.id, text, id=f"{r.id}-hit{i}") for r in LIB.rules for i, text in enumerate(r.examples.hit)]
MISSES = [pytest.param(r.id, text, id=f"{r.id}-miss{i}") for r in LIB.rules for i, text in enumerate(r.examples.miss)]


@pytest.mark.parametrize("rule_id, text", HITS)
def test_example_hit(rule_id, text):
    assert rule_id in GUARD.check(text).rule_ids


@pytest.mark.parametrize("rule_id, text", MISSES)
def test_example_miss(rule_id, text):
    assert rule_id not in GUARD.check(text).rule_ids


@pytest.mark.parametrize("template", LIB.templates, ids=lambda t: t.id)
def test_templates_are_clean(template):
    verdict = GUARD.check(template.text)
    assert verdict.action == "pass", verdict


@pytest.mark.parametrize("rule", [r for r in LIB.rules if r.replacement], ids=lambda r: r.id)
def test_replacements_are_clean(rule):
    assert GUARD.check(rule.replacement).action == "pass"


def test_greeting_and_closing_are_clean():
    greeting = LIB.greetings.text.format(line="售后", agent_no="1024")
    assert GUARD.check(greeting).action == "pass"
    assert GUARD.check(LIB.closings.question + LIB.closings.text).action == "pass"


def test_every_category_has_rules_and_blocking_rules_suggest():
    assert {r.category for r in LIB.rules} == set(phrases.CATEGORIES)
    for r in LIB.rules:
        if r.action == "block":
            assert r.suggest, r.id


def test_templates_the_service_relies_on_exist():
    for tid in ("wait-thanks", "wait-apology", "thanks-reply", "closing", "wait-named"):
        assert LIB.template(tid).text


def test_a_lone_latin_letter_is_a_word_only_on_its_own():
    # "v" stands for 微信 where it stands alone; inside a Latin word it is part of that word.
    assert "privacy_request" in GUARD.check("方便加个V❤吗?我拉您进群。").categories
    assert GUARD.check("您可以加个VIP会员,享受包邮。").action == "pass"
