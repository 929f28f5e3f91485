"""What a rule may know besides the draft: the conversation so far, and clause helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .model import Message
from .normalize import BOUNDARIES, Normalized

__all__ = [
    "CONTEXT_CLAUSE_ENDS", "QUOTES", "QUOTE_MARK", "SENTENCE_ENDS", "Context", "clause_bounds", "crosses_quote", "inside_quotes",
]

# Marks that end a sentence; commas, colons and semicolons only end a clause.
SENTENCE_ENDS = frozenset("。!?\n…")
# Where an allow-context's clause ends: every boundary but the enumeration comma, which joins the
# items of one clause (我们不会要求您添加微信、QQ或私下转账: the 不会 covers all three).
CONTEXT_CLAUSE_ENDS = BOUNDARIES - {"、"}

_OPEN = "“「『《‘"
_CLOSE = "”」』》’"
# Every quotation mark the matching view keeps; a draft without one quotes nobody.
QUOTES = _OPEN + _CLOSE + "\"'"
# Finds any of them: rules skip the quotation check on drafts without one.
QUOTE_MARK = re.compile("[" + re.escape(QUOTES) + "]")


@dataclass(frozen=True, slots=True)
class Context:
    """The conversation before the draft, oldest first, with the agent's part pre-split."""

    history: tuple[Message, ...] = ()
    agent_texts: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, history: tuple[Message, ...]) -> Context:
        return cls(history=history, agent_texts=tuple(m.text for m in history if m.role == "agent"))

    def since_last_customer(self) -> tuple[Message, ...]:
        """Agent messages sent after the customer last wrote."""
        out: list[Message] = []
        for m in reversed(self.history):
            if m.role == "customer":
                break
            out.append(m)
        return tuple(reversed(out))


def _stop_finders(stops: frozenset[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    cls = "[" + re.escape("".join(sorted(stops))) + "]"
    # The last stop before a position (matched with endpos: the greedy .* backtracks from the
    # position, so the cost is the clause's length, not the draft's), and the first one after it.
    return re.compile(f".*{cls}", re.DOTALL), re.compile(cls)


_FINDERS = {stops: _stop_finders(stops) for stops in (BOUNDARIES, SENTENCE_ENDS)}


def clause_bounds(text: str, start: int, end: int, *, stops: frozenset[str] = BOUNDARIES) -> tuple[int, int]:
    """The clause (or, with stops=SENTENCE_ENDS, the sentence) that holds text[start:end]."""
    finders = _FINDERS.get(stops)
    if finders is None:
        finders = _FINDERS[stops] = _stop_finders(stops)
    last, first = finders
    m = last.match(text, 0, start)
    n = first.search(text, end)
    return (m.end() if m else 0), (n.start() if n else len(text))


_APOSTROPHE = re.compile(r"(?<=[a-z])['’](?=[a-z])", re.IGNORECASE)


def inside_quotes(draft: Normalized, start: int, end: int) -> bool:
    """True when original text[start:end] sits inside quotation marks that do not wrap the whole draft.

    Quoting the customer's own words back ("您说的“不关我的事”是指…") is not the agent saying them
    (spec 1, 根据语境判断); a draft that is nothing but a quote is still the agent's.
    """
    before = draft.folded[:start]
    depth = sum(before.count(c) for c in _OPEN) - sum(before.count(c) for c in _CLOSE)
    singles = before.count("'")
    if singles or "’" in before:
        # An apostrophe (there's, don’t) quotes nothing: neither a straight nor a closing mark.
        apostrophes = _APOSTROPHE.findall(before)
        singles -= apostrophes.count("'")
        depth += len(apostrophes) - apostrophes.count("'")
    straight = before.count('"') % 2 == 1 or singles % 2 == 1
    if depth <= 0 and not straight:
        return False
    stripped = draft.original.strip()
    rest = draft.original[end:].strip()
    prefix = draft.original[:start].strip()
    return not (len(prefix) <= 1 and len(rest) <= 1 and len(stripped) <= end - start + 2)


# An opening quotation mark right after a verb of speech: what follows is someone's words reported
# (您说“不知道该找哪个部门”, 电销人员承诺“全额退还”, 他表示“…”), not the agent's own.
_REPORTED = re.compile("[说问讲道写称诺示][" + re.escape(_OPEN) + "\"]")


def crosses_quote(draft: Normalized, start: int, end: int) -> bool:
    """True when original text[start:end] runs from the agent's words into words reported after
    a verb of speech and an opening quotation mark: the match is neither's."""
    return end - start > 2 and _REPORTED.search(draft.folded, start, end - 1) is not None
