"""A private contact handed out or taken off-platform (spec 1 `privacy_request`, seed 002).

Lexical rules catch the asking (加我微信, 你QQ多少); this detector catches the number or id
itself: a mobile number the customer never gave, or an id after a QQ/WeChat word. Repeating the
customer's own order phone back for confirmation is not a violation, so numbers that appear in
the customer's messages are skipped.
"""

from __future__ import annotations

import re

from phrases.schema import Library, Rule

from ..context import SENTENCE_ENDS, Context, clause_bounds
from ..model import Violation
from ..normalize import Normalized
from .base import violation

__all__ = ["ContactNumber"]

_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9](?:[- ]?[0-9]){8}(?![0-9])")
_IM_ID = re.compile(
    r"(?:qq|微信|vx|wx|weixin|v信|威信|薇信|扣扣|企鹅)(?:号|号码)?\s*(?:是|:|：|为)?\s*"
    r"(?P<id>[0-9]{5,12}|[a-z][-_a-z0-9]{5,19})(?![-_a-z0-9])",
    re.I,
)


_MOBILE_HINT = re.compile(r"1[3-9][0-9]{9}")
_IM = ("qq", "微信", "vx", "wx", "weixin", "v信", "威信", "薇信", "扣扣", "企鹅")
_IM_WORDS = re.compile("|".join(_IM))
# The first characters of _IM: one class the regex engine skips along, where it tries the
# alternation at every position. The folded view is lower case, so this covers both views.
_IM_FIRST = re.compile("[" + "".join(sorted({w[0] for w in _IM})) + "]")


# A number that belongs to whoever delivers or installs (快递员的电话是…) is service information the
# customer needs, not the agent's private contact.
_SERVICE_PEOPLE = ("快递员", "快递小哥", "师傅", "骑手", "配送员", "送货员", "安装工", "维修工", "网点", "驿站")
# An 11-digit number (or an id after WX/QQ) named as an order, waybill or ticket number is not a
# phone number or an IM id.
_NOT_PHONE = ("订单号", "单号", "编号", "取件码", "流水号", "会员号", "工单号", "订单编号", "卡号")


# Chinese digits read out one by one (幺三八 两两四六 九九零一): the same number, character for character.
_CN_DIGITS = str.maketrans("幺一二两三四五六七八九零〇", "1122345678900")
_CN_MOBILE_START = ("幺三", "幺五", "幺八", "一三", "一五", "一八", "一九", "一七", "一四", "一六", "幺九", "幺七")


def _named_before(text: str, start: int, end: int, words: tuple[str, ...]) -> bool:
    """True when one of `words` comes before text[start:end] in its sentence (师傅的电话是…, 单号是…)."""
    cs, _ = clause_bounds(text, start, end, stops=SENTENCE_ENDS)
    return any(w in text[cs:start] for w in words)


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


class ContactNumber:
    id = "contact_number"
    # An IM word, or the first two digits of a mainland mobile number.
    # An IM word, the first two digits of a mainland mobile number, or the same read out in
    # Chinese digits (幺三, 一八: triggers match the plain text, so 意思 does not run this).
    triggers = (*_IM, *(f"1{d}" for d in range(3, 10)), *_CN_MOBILE_START)

    def __init__(self, rule: Rule, library: Library) -> None:
        self.rule = rule

    def check(self, draft: Normalized, ctx: Context) -> list[Violation]:
        # The folded view turns full-width digits and letters into ASCII, position for position.
        # Cheap scans of the matching view (separators already gone: 138-1234-5678 reads as one
        # number) decide which of the two slower regexes can find anything.
        # (and the folded view too: the matching view collapses QQ to q).
        im = _IM_FIRST.search(draft.folded) is not None and (
            _IM_WORDS.search(draft.text) is not None or _IM_WORDS.search(draft.folded) is not None)
        spoken = any(w in draft.text for w in _CN_MOBILE_START)
        # Spoken digits are looked for in the folded view: the matching view collapses 两两 to 两.
        hint = draft.folded.replace("\x00", "").translate(_CN_DIGITS) if spoken else draft.text
        mobile = _MOBILE_HINT.search(hint) is not None
        if not im and not mobile:
            return []
        text = draft.folded.replace("\x00", " ")
        if spoken:
            text = text.translate(_CN_DIGITS)
        given = {_digits(m.group()) for msg in ctx.history if msg.role == "customer" for m in _MOBILE.finditer(msg.text)}
        out: list[Violation] = []
        for m in _MOBILE.finditer(text) if mobile else ():
            if _named_before(text, m.start(), m.end(), _SERVICE_PEOPLE + _NOT_PHONE):
                continue
            if _digits(m.group()) not in given:
                out.append(violation(self.rule, draft, m.start(), m.end(), "a private phone number in the reply"))
        for m in _IM_ID.finditer(text) if im else ():
            # 报修单号是WX2024…: an order number that starts with the letters of an IM, not an id.
            if _named_before(text, m.start(), m.end(), _NOT_PHONE):
                continue
            out.append(violation(self.rule, draft, m.start(), m.end("id"), "a private QQ/WeChat id in the reply"))
        return out
