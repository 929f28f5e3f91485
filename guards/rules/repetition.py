"""The same wording again (spec 1 `repetition`, seeds 000/002: 重复话术 feels perfunctory).

Compares the draft with the agent's earlier messages of the conversation in the matching view
(so spacing or punctuation changes do not hide a copy) with rapidfuzz, and the draft's own
sentences with each other: the same sentence sent twice in one reply is as mechanical.
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz

from phrases.schema import Library, Rule

from ..context import SENTENCE_ENDS, Context
from ..errors import RuleConfigError
from ..model import Violation
from ..normalize import PARTICLES, Normalized, fold_phrase, normalize
from .base import violation

__all__ = ["Repetition"]

# A sentence: a run of text up to and including its end marks ("?" too: the closing question);
# a semicolon ends one here too (已为您催件;已为您催件). A clause also ends at a comma.
_SENTENCE_MARKS = "".join(sorted(SENTENCE_ENDS | {";"}))
_MARKS = "".join(sorted(SENTENCE_ENDS | {";", ","}))
_SENTENCE = re.compile("[^" + re.escape(_SENTENCE_MARKS) + "]+[" + re.escape(_SENTENCE_MARKS) + "]*")
_CLAUSE = re.compile("[^" + re.escape(_MARKS) + "]+[" + re.escape(_MARKS) + "]*")
_OTHER_MARKS = _MARKS.replace("。", "")
# Clause marks inside a sentence do not make it another sentence (亲,请耐心等待 = 亲请耐心等待).
_INNER = re.compile("[,:、]")
# A short sentence (好的。) may come twice; said three times it is a copied script.
_SHORT = 4
# A clause of this length said twice in a row is pasted (好的好的 and 您好,您好 are speech).
_RUNNING = 5
# Any sentence, however short, said this many times.
_MANY = 4
# A clause this long said twice anywhere in one reply is pasted (…已经按流程走了,您稍等,…已经按流程走了).
_LONG_CLAUSE = 10
# Up to this length a draft is compared with its fillers and particles set aside (a pasted
# script with 嗯 or 哈 added is still pasted); longer drafts compare clauses as written.
_CHATTY = 80
# Fillers of dictated speech before a clause (and the 好的 that acknowledges before a copy), and
# softening particles after it.
_FILLERS = re.compile("^(?:嗯+|那个|就是说|然后呢?|对对对|啊|好的(?=.{4}))+")
_PARTICLE_CHARS = "".join(sorted(PARTICLES))
# Sentence ends the matching view does not keep: tildes, and an ASCII full stop before a space.
_SEPARATED = re.compile(r"[~～]+|\.(?=\s)")
# Three or more characters said three times running, with no mark between the copies.
_TRIPLE = re.compile(r"([^。!?;,:、\n]{3,12}?)\1\1", re.DOTALL)


def _bare(body: str) -> str:
    body = _FILLERS.sub("", body)
    stripped = body.rstrip(_PARTICLE_CHARS)
    # 好的呢亲 stays whole: stripping would leave 好, too short to count, and lose a real script.
    return stripped if len(stripped) >= _SHORT else body


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
        if len(text) < self.min_length:
            return []
        found = self._within(draft)
        original = draft.original
        # Substring tests: the regex costs 3 us a draft, these a tenth of that.
        if not found and ("~" in original or "～" in original or ". " in original or ".\n" in original):
            found = self._within_separated(draft)
        if found or not ctx.agent_texts or text in self._standard:
            return found
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

    def _within_separated(self, draft: Normalized) -> list[Violation]:
        """_within with each tilde, and each ASCII full stop before a space, read as the end of a
        sentence: 亲您放心哦~亲您放心哦~ and Sorry for the inconvenience. Sorry for the inconvenience.

        The matching view drops tildes (decoration, and evasion: 不~知~道) and keeps the ASCII full
        stop as a character (不.知.道), so those copies run together there. Each mark is replaced
        by one 。, which keeps every offset: the spans found are the draft's own.
        """
        stopped = normalize(_SEPARATED.sub(lambda m: "。" * len(m.group()), draft.original))
        return [v.model_copy(update={"matched": draft.original[v.start : v.end]}) for v in self._within(stopped)]

    def _within(self, draft: Normalized) -> list[Violation]:
        """The same sentence said again in one draft: twice for a sentence of min_length or more,
        three times for a short one (亲，请耐心等待。×3); a clause said three times counts too
        (您反映的问题已收悉，您反映的问题已收悉，…). Reports the last copy.

        Copies, not near copies: within one reply a sentence said again is pasted, and comparing
        every pair of sentences would cost more than the rest of the guard. One split of the
        whole draft says whether any clause repeats at all; only then are the pieces walked for
        the span.
        """
        text = draft.text
        if len(text) < 2 * _SHORT:
            return []
        # str.replace and split, not a regex: sre walks a CJK draft several times slower.
        flat = text
        for mark in _OTHER_MARKS:
            if mark in flat:
                flat = flat.replace(mark, "。")
        pieces = flat.split("。")
        chatty = len(text) <= _CHATTY
        if chatty:
            # Short chatty drafts say 嗯, 那个 before a copy and 哈, 哦 after it: not a new clause.
            pieces = [_bare(p) for p in pieces]
            # The same words three times in a row with nothing between: 在催了在催了在催了.
            m = _TRIPLE.search(text)
            if m is not None:
                start, end = draft.span(m.start(), m.end())
                return [violation(self.rule, draft, start, end, "says the same words 3 times in a row")]
        distinct = set(pieces)
        distinct.discard("")
        if len(distinct) == len(pieces) - pieces.count(""):
            return []
        # Sentences: twice when min_length or longer; clauses: three times. Short ones (under
        # _SHORT) only when said _MANY times; any of them twice in a row from _RUNNING up.
        for finder, copies in ((_SENTENCE, 2), (_CLAUSE, 3)):
            counts: dict[str, int] = {}
            previous = ""
            for m in finder.finditer(text):
                body = _INNER.sub("", m.group()).rstrip(_MARKS)
                if chatty:
                    body = _bare(body)
                if len(body) < 2:
                    previous = ""
                    continue
                count = counts[body] = counts.get(body, 0) + 1
                if len(body) < _SHORT:
                    pasted = count >= _MANY  # even 收到。 said four times is a pasted script
                    previous = ""
                else:
                    needed = copies if len(body) >= self.min_length else 3
                    if finder is _CLAUSE and len(body) >= _LONG_CLAUSE:
                        needed = 2
                    pasted = count >= needed or (body == previous and len(body) >= _RUNNING)
                    previous = body
                if pasted:
                    start, end = draft.span(m.start(), m.end())
                    return [violation(self.rule, draft, start, end, f"says the same words {count} times in one reply")]
        return []
