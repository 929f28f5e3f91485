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
_QUESTION = re.compile(r"[?]|吗|呢|么|怎|什么|多少|几|哪|能不能|可不可以|可以.{0,6}吗|是否|还有|想问|请问|问一下|咨询")


class RepeatClosing:
    id = "repeat_closing"

    def __init__(self, rule: Rule, library: Library) -> None:
        self.rule = rule
        self.markers = tuple(m for m in (fold_phrase(x) for x in library.closings.markers) if m)

    def _closes(self, text: str) -> int:
        """Index in `text` (matching view) of the first closing marker, or -1."""
        hits = [i for i in (text.find(m) for m in self.markers) if i >= 0]
        return min(hits, default=-1)

    def _hurried(self, ctx: Context) -> bool:
        """True when the agent's last closing has had no new question from the customer since."""
        for m in reversed(ctx.history):
            if m.role == "customer" and _QUESTION.search(fold_phrase(m.text)):
                return False
            if m.role == "agent" and self._closes(fold_phrase(m.text)) >= 0:
                return True
        return False

    def check(self, draft: Normalized, ctx: Context) -> list[Violation]:
        if not ctx.agent_texts or self._closes(draft.text) < 0 or not self._hurried(ctx):
            return []
        start, end = 0, len(draft.original.rstrip())
        return [violation(self.rule, draft, start, end, "closing sent again before the customer answered the last one")]
