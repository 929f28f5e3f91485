"""The same wording again (spec 1 `repetition`, seeds 000/002: 重复话术 feels perfunctory).

Compares the draft with the agent's earlier messages of the conversation in the matching view
(so spacing or punctuation changes do not hide a copy) with rapidfuzz.
"""

from __future__ import annotations

from rapidfuzz import fuzz

from phrases.schema import Library, Rule

from ..context import Context
from ..errors import RuleConfigError
from ..model import Violation
from ..normalize import Normalized, fold_phrase
from .base import violation

__all__ = ["Repetition"]


class Repetition:
    id = "repetition"
    triggers = ()

    def __init__(self, rule: Rule, library: Library) -> None:
        self.rule = rule
        similarity = rule.options.get("similarity", 90)
        min_length = rule.options.get("min_length", 8)
        if not isinstance(similarity, (int, float)) or not 50 <= similarity <= 100:
            raise RuleConfigError(f"rule '{rule.id}': option 'similarity' must be a number from 50 to 100")
        if not isinstance(min_length, int) or min_length < 1:
            raise RuleConfigError(f"rule '{rule.id}': option 'min_length' must be a positive integer")
        self.similarity = float(similarity)
        self.min_length = min_length
        # The standard greeting and closing are meant to be the same every time.
        self._standard = {fold_phrase(library.closings.question), fold_phrase(library.closings.text)}

    def check(self, draft: Normalized, ctx: Context) -> list[Violation]:
        text = draft.text
        if len(text) < self.min_length or not ctx.agent_texts or text in self._standard:
            return []
        for earlier in ctx.agent_texts:
            score = fuzz.ratio(text, fold_phrase(earlier), score_cutoff=self.similarity)
            if score:
                body = draft.original.strip()
                start = draft.original.find(body) if body else 0
                return [
                    violation(
                        self.rule, draft, start, start + len(body),
                        f"repeats an earlier reply of this conversation ({score:.0f}% alike)",
                    )
                ]
        return []
