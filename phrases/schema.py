"""Pydantic models of a phrase library: rules, templates, greetings, closings, thresholds.

A library is data an admin edits. Everything is validated here, once, when it is loaded, so the
engine never sees a bad entry. Messages name the entry and the fix.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "Action",
    "Category",
    "Closings",
    "Context",
    "SharedContext",
    "Detector",
    "Examples",
    "Greetings",
    "Library",
    "Pattern",
    "Rule",
    "Severity",
    "Template",
    "Thresholds",
]

# A gloss's word: Latin letters, digits, spaces and apostrophes (refund, bank account, i've).
_GLOSS_WORD = re.compile("[a-z0-9' ]*[a-z][a-z0-9' ]*")

# The categories of spec section 1, plus `wait_time` for spec section 3 (a wait must be named
# and may not exceed the cap), which is checked on the draft before it is sent.
Category = Literal[
    "forbidden_phrase",
    "rhetorical_question",
    "contempt",
    "impatience",
    "passive_service",
    "refusal",
    "privacy_request",
    "over_promise",
    "self_promotion",
    "internal_leak",
    "customer_data_leak",
    "punctuation",
    "repetition",
    "wait_time",
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]

Severity = Literal["fatal", "non_fatal"]
Action = Literal["pass", "warn", "rewrite", "block"]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]

# How a rule finds its candidates. `lexical` rules are phrases, variants and word-group
# patterns; the others are detectors in guards/rules/ configured by the rule's `options`.
Detector = Literal[
    "lexical",
    "punctuation",
    "repetition",
    "repeat_closing",
    "wait_promise",
    "contact_number",
]

# A stable id: it appears in violations, audit rows and admins' edits.
EntryId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{1,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pattern(_Model):
    """Word groups that must appear in order, each within `max_gap` characters of the last.

    A group is a list of synonyms: [["跟", "和", "与"], ["我"], ["没关系", "无关"]] catches
    "这跟我真的没关系" and "此事与我无关" without listing every sentence.
    """

    groups: list[list[str]] = Field(min_length=1, max_length=6)
    max_gap: int = Field(6, ge=0, le=40)
    # clause: the gaps stop at any clause punctuation; sentence: they may cross commas and
    # semicolons (我跟您保证,钱三天内到账) but not a sentence end.
    scope: Literal["clause", "sentence"] = "clause"
    # The match must close its clause: only softening particles (的, 哦, 呢, 哈, 啦…) may follow
    # before the clause punctuation or the end ("退差价不可以的哦~"); the span takes them in.
    ends_clause: bool = False

    @field_validator("groups")
    @classmethod
    def _groups_not_empty(cls, groups: list[list[str]]) -> list[list[str]]:
        for i, group in enumerate(groups):
            if not group or any(not w.strip() for w in group):
                raise ValueError(f"group {i} must hold at least one non-empty word")
        return groups


class Context(_Model):
    """Words around a candidate that clear it (根据语境判断, spec section 1).

    `before`: a word in the same clause, at most `window` characters before the match.
    `after`: a word starting at most `after_window` characters after the match, same clause.
    `clause`: a word anywhere in the same clause.
    `sentence`: a word anywhere in the same sentence (clauses joined by commas), for context that
    sits in the neighbouring clause: "为了给您预约上门安装,麻烦提供一下联系电话".
    """

    before: list[str] = []
    after: list[str] = []
    clause: list[str] = []
    sentence: list[str] = []
    window: int = Field(8, ge=0, le=60)
    after_window: int = Field(2, ge=0, le=60)


class SharedContext(Context):
    """An allow-context every lexical rule of some categories shares (negation, condition).

    "我们不会通过私人微信联系您" warns against a scam; it does not ask for a WeChat id. Such
    contexts hold for a whole category, so they are written once, not in every rule.
    """

    name: str = Field(min_length=1)
    categories: list[Category] = Field(min_length=1)


class Examples(_Model):
    """Drafts the rule must catch (`hit`) and must leave alone (`miss`); they become tests."""

    hit: list[str] = []
    miss: list[str] = []


class Rule(_Model):
    id: EntryId
    category: Category
    severity: Severity
    action: Action
    source: str = Field(min_length=1, description="spec clause this rule enforces")
    description: str = ""
    detector: Detector = "lexical"
    phrases: list[str] = []
    variants: list[str] = Field(
        [], description="homophone, dialect or pinyin spellings of the phrases (布吉岛, bzd)"
    )
    patterns: list[Pattern] = []
    phonetic: bool | None = Field(
        None,
        description="also match same-sounding characters and typed pinyin of the phrases; "
        "unset: on for phrases of 3+ Chinese characters",
    )
    fuzzy: bool = Field(False, description="also match near variants (one character changed) of phrases of 7+ characters")
    allow: Context | None = None
    replacement: str | None = None
    suggest: list[str] = []
    repeat_action: Action | None = Field(
        None, description="action when the agent already said this earlier in the conversation"
    )
    options: dict[str, int | float | str | bool | list[str]] = {}
    enabled: bool = True
    examples: Examples = Examples()

    @field_validator("phrases", "variants")
    @classmethod
    def _no_blank_phrases(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            if not p.strip():
                raise ValueError(f"item {i} is blank")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.detector == "lexical" and not (self.phrases or self.variants or self.patterns):
            raise ValueError(
                f"rule '{self.id}': a lexical rule needs at least one of 'phrases', 'variants', 'patterns'"
            )
        if self.detector != "lexical" and (self.phrases or self.variants or self.patterns):
            raise ValueError(
                f"rule '{self.id}': 'phrases', 'variants' and 'patterns' belong to lexical rules only"
            )
        if self.action == "rewrite" and self.replacement is None and self.detector == "lexical":
            raise ValueError(f"rule '{self.id}': 'replacement' is required when action is 'rewrite'")
        if self.action == "block" and not self.suggest and self.severity == "fatal":
            raise ValueError(f"rule '{self.id}': a blocking rule must 'suggest' at least one template")
        return self


class Template(_Model):
    """A polite reply keyed by situation, offered instead of a blocked draft."""

    id: EntryId
    situation: str
    text: str = Field(min_length=1)


class Greetings(_Model):
    """首问语 (spec section 2): the text, and the words that show a draft already greets."""

    text: str = "您好,这里是{line}专线,客服{agent_no}为您服务。"
    markers: list[str] = ["您好", "你好", "亲,", "亲，", "欢迎", "很高兴为您服务", "为您服务"]


class Closings(_Model):
    """结束承接语 and 结束语 (spec section 2), and the words that show a draft closes."""

    question: str = "请问是否还有其他问题可以为您服务?"
    text: str = "感谢您的支持,祝您生活愉快!"
    markers: list[str] = ["还有其他问题", "祝您生活愉快", "感谢您的支持", "祝您购物愉快", "再见"]


class Thresholds(_Model):
    """Time rules of spec section 3, in seconds; every one a per-tenant default."""

    response_s: int = Field(60, ge=5, le=3600, description="a question gets an answer within (002)")
    pre_warn_s: int = Field(45, ge=1, le=3600, description="warn the agent this long after the question")
    reply_rate_s: int = Field(30, ge=5, le=600, description="platform 30-second reply rate (000, 004)")
    reply_rate_hours: tuple[str, str] = ("08:00", "23:00")
    wait_default_s: int = Field(60, ge=5, le=3600, description="after 请稍等 with no time named (002)")
    wait_max_s: int = Field(180, ge=10, le=7200, description="a promised wait may not exceed (002)")
    slow_gap_s: int = Field(200, ge=10, le=7200, description="a gap above this is a slow response (003)")

    @field_validator("reply_rate_hours")
    @classmethod
    def _hours(cls, v: tuple[str, str]) -> tuple[str, str]:
        for h in v:
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", h):
                raise ValueError(f"'{h}' is not a HH:MM time")
        return v

    @model_validator(mode="after")
    def _order(self) -> Thresholds:
        if self.pre_warn_s >= self.response_s:
            raise ValueError("'pre_warn_s' must be less than 'response_s'")
        if self.wait_default_s > self.wait_max_s:
            raise ValueError("'wait_default_s' must not exceed 'wait_max_s'")
        return self


class Library(_Model):
    """A whole phrase library; ids are unique and every suggested template exists."""

    version: str = "1"
    locale: str = "zh-CN"
    rules: list[Rule] = []
    templates: list[Template] = []
    contexts: list[SharedContext] = []
    greetings: Greetings = Greetings()
    closings: Closings = Closings()
    thresholds: Thresholds = Thresholds()
    glosses: dict[str, str] = Field(
        default={},
        description="words of English (or other Latin script) that agents mix into Chinese, with their Chinese "
        "meaning: the guard also reads a draft with these words in Chinese (我 promise 一定 refund → 我保证一定退款)",
    )

    @field_validator("glosses")
    @classmethod
    def _glosses(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for word, meaning in value.items():
            if not _GLOSS_WORD.fullmatch(word):
                problems.append(f"gloss {word!r}: write the word in lower-case Latin letters, digits, spaces or '")
            if not meaning or not all("\u4e00" <= c <= "\u9fff" for c in meaning):
                problems.append(f"gloss {word!r}: the meaning must be Chinese characters, got {meaning!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _references(self) -> Library:
        problems: list[str] = []
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                problems.append(f"rule '{rule.id}': id is used twice")
            seen.add(rule.id)
        template_ids = {t.id for t in self.templates}
        if len(template_ids) != len(self.templates):
            problems.append("templates: an id is used twice")
        for rule in self.rules:
            for tid in rule.suggest:
                if tid not in template_ids:
                    problems.append(f"rule '{rule.id}': suggests unknown template '{tid}'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def template(self, template_id: str) -> Template:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise KeyError(template_id)
