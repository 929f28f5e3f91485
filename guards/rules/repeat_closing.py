"""The closing sent again to hurry the customer off (spec 1 `impatience`, seed 002 服务耐心).

A closing is fine once, and again after the customer has gone on talking; a closing while the
agent's previous closing is still unanswered is the "短时间内连续发送结束承接语" the seed forbids.
"""

from __future__ import annotations

from phrases.schema import Library, Rule

from ..context import Context
from ..model import Violation
from ..normalize import Normalized, fold_phrase
from .base import violation

__all__ = ["RepeatClosing"]


class RepeatClosing:
    id = "repeat_closing"

    def __init__(self, rule: Rule, library: Library) -> None:
        self.rule = rule
        self.markers = tuple(m for m in (fold_phrase(x) for x in library.closings.markers) if m)

    def _closes(self, text: str) -> int:
        """Index in `text` (matching view) of the first closing marker, or -1."""
        hits = [i for i in (text.find(m) for m in self.markers) if i >= 0]
        return min(hits, default=-1)

    def check(self, draft: Normalized, ctx: Context) -> list[Violation]:
        pending = [m for m in ctx.since_last_customer() if self._closes(fold_phrase(m.text)) >= 0]
        if not pending or self._closes(draft.text) < 0:
            return []
        start, end = 0, len(draft.original.rstrip())
        return [violation(self.rule, draft, start, end, "closing sent again before the customer answered the last one")]
