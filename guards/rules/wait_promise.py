"""A promised wait longer than the tenant's cap (spec 3: may not exceed 3 minutes, seed 002).

Warns on the draft before it is sent; the conversation clock still keeps the promise.
"""

from __future__ import annotations

from phrases.schema import Library, Rule

from ..context import Context
from ..model import Violation
from ..normalize import Normalized
from ..waits import WAIT_HINTS, WAIT_WORDS, find_wait_folded, names_time
from .base import violation

__all__ = ["WaitPromiseCap"]


class WaitPromiseCap:
    id = "wait_promise"
    triggers = WAIT_WORDS

    def __init__(self, rule: Rule, library: Library) -> None:
        self.rule = rule
        self.max_s = library.thresholds.wait_max_s

    def check(self, draft: Normalized, ctx: Context) -> list[Violation]:
        # Only a wait of named length can exceed the cap.
        if WAIT_HINTS.search(draft.text) is None or not names_time(draft.folded):
            return []
        # Every wait in the draft, not only the first: 说好稍等2分钟,再等我5分钟吧 stretches a
        # promise past the cap in its second sentence.
        folded, pos = draft.folded, 0
        wait = find_wait_folded(folded, named=True)
        while wait is not None:
            if wait.seconds is not None and wait.seconds > self.max_s:
                return [
                    violation(
                        self.rule, draft, pos + wait.start, pos + wait.end,
                        f"promises a wait of {wait.seconds} s; the limit is {self.max_s} s",
                    )
                ]
            pos += max(wait.end, 1)
            if WAIT_HINTS.search(folded, pos) is None:
                return []  # no other wait word after this one
            wait = find_wait_folded(folded[pos:])
        return []
