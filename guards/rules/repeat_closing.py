"""The closing sent again to hurry the customer off (spec 1 `impatience`, seed 002 服务耐心).

A closing is fine once, and again after the customer has asked something new; a closing while
the agent's previous one is unanswered, or answered only with an acknowledgement (好的, 我再看看),
is the "短时间内连续发送结束承接语" the seed forbids.
"""

from __future__ import annotations

import re

from phrases.schema import Library, Rule

from ..context import Context
from ..model import Violation
from ..normalize import Normalized, fold_phrase
from .base import violation

__all__ = ["RepeatClosing"]

# What makes a customer message a new question rather than an acknowledgement.
_CONTENT = re.compile(r"[\w]")
# A customer message of this many word characters tells something, unless it acknowledges.
_REPORT = 8
_ACK = re.compile(r"没有了|没有其他|没别的|没事了|谢谢|感谢|好的|知道了|明白了|可以了|行了|ok|嗯|拜拜|再见")


def _tells_something(text: str) -> bool:
    """A customer message that reports something in a sentence, not a mere acknowledgement."""
    return len(_CONTENT.findall(text)) >= _REPORT and not _ACK.search(text)


_QUESTION = re.compile(r"[?]|吗|呢|么|怎|什么|多少|几|哪|能不能|可不可以|可以.{0,6}吗|是否|还有|想问|请问|问一下|咨询")


class RepeatClosing:
    id = "repeat_closing"

    def __init__(self, rule: Rule, library: Library) -> None:
        self.rule = rule
        question = fold_phrase(library.closings.question)
        # Every check needs a closing marker in the draft: the lexical pass says when one is there.
        self.triggers = tuple(library.closings.markers)
        markers = [m for m in (fold_phrase(x) for x in library.closings.markers) if m]
        # Markers found in the closing question ask "anything else?"; the rest say goodbye.
        self.asking = tuple(m for m in markers if m in question)
        self.parting = tuple(m for m in markers if m not in question)
        # Any marker that asks whether there is anything else (还有其他问题, 还有别的事吗).
        self.anything_else = tuple(m for m in markers if m in question or "还有" in m)
        # Longest first, so removing them from a draft leaves only what else it says.
        self._closing_words = sorted({question, fold_phrase(library.closings.text), *markers}, key=len, reverse=True)

    def _only_closing(self, text: str) -> bool:
        for words in self._closing_words:
            text = text.replace(words, "")
        return len(_CONTENT.findall(text)) < 6

    def _kind(self, text: str) -> str | None:
        if any(m in text for m in self.asking):
            return "question"
        if any(m in text for m in self.parting):
            return "parting"
        return None

    def _hurried(self, kind: str, ctx: Context) -> bool:
        """Whether the agent's previous closing makes this one hurrying the customer off."""
        answered = False
        acknowledged = True  # every customer message since then only acknowledges (嗯, 好的)
        for m in reversed(ctx.history):
            text = fold_phrase(m.text)
            if m.role == "customer":
                if _QUESTION.search(text):
                    return False  # the customer asked something new: closing again is fine
                answered = True
                acknowledged = acknowledged and not _tells_something(text)
                continue
            before = self._kind(text)
            if before is None:
                continue
            # Unanswered, or "anything else?" asked again after a mere 好的 / 我再看看, or any
            # closing after the goodbye was said and only acknowledged; a goodbye after the
            # customer answered the closing question is the standard flow.
            return not answered or (before == "question" and kind == "question") or (before == "parting" and acknowledged)
        return False

    def _unanswered(self, ctx: Context) -> bool:
        """True when the customer's last message asks or reports something (a question, or a
        problem told in a sentence: 我想换成周六的课,但APP上点不动) that a bare closing leaves
        unanswered; an acknowledgement (好的, 没有了谢谢) wants no answer."""
        last = ctx.history[-1] if ctx.history else None
        if last is None or last.role != "customer":
            return False
        text = fold_phrase(last.text)
        if _QUESTION.search(text):
            return True
        return _tells_something(text)

    def check(self, draft: Normalized, ctx: Context) -> list[Violation]:
        text = draft.text
        if sum(text.count(m) for m in self.anything_else) >= 2 or any(text.count(m) >= 2 for m in self.parting):
            # The closing twice in one reply: 还有别的问题吗?没有就先这样。还有别的问题吗? or the
            # goodbye pasted twice (感谢您的支持,祝您生活愉快。感谢您的支持,祝您生活愉快。).
            start, end = 0, len(draft.original.rstrip())
            return [violation(self.rule, draft, start, end, "the closing said twice in one reply")]
        if not ctx.history:
            return []
        kind = self._kind(draft.text)
        if kind is None:
            return []
        # A bare closing in reply to a fresh question shows the customer out instead of answering.
        ignoring = self._unanswered(ctx) and self._only_closing(draft.text)
        if not ignoring and not (ctx.agent_texts and self._hurried(kind, ctx)):
            return []
        start, end = 0, len(draft.original.rstrip())
        return [violation(self.rule, draft, start, end, "closing sent again before the customer asked anything new")]
