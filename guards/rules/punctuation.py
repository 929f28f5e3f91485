"""Punctuation as attitude (spec 1 `punctuation`, seed 002 文字标点): !!, ??, 。。。, …… and none at all.

Runs on the folded view, which is the original character for character, so offsets need no map.
Each finding carries its in-place fix: one mark for a run, "，" for spaces used as punctuation,
"。" at the end of a long draft that has none.
"""

from __future__ import annotations

import re
import unicodedata

from phrases.schema import Library, Rule

from ..context import QUOTE_MARK, Context, inside_quotes
from ..errors import RuleConfigError
from ..model import Violation
from ..normalize import Normalized
from .base import violation

__all__ = ["Punctuation"]

# Two or more ! or ? in a row (mixed too: ?!) read as shouting or a challenge.
# Hidden characters between the marks (! !, ?\u200b?) do not make them one each.
_RUN = re.compile(r"[!?](?:\x00*+[!?])+")
_STOPS = re.compile(r"。(?:\x00*+。)+")
# 。。。 is never a sentence end, so it is speechless wherever it stands (、、、 typed for it too);
# …… / ... are speechless where they open or close a clause (……行吧 / 那好吧……), not as the
# hesitation inside a sentence (这个……我帮您查一下), which reads differently; nor after a colon,
# where they stand for text left out (条款是这样写的：……).
_DOTS = r"(?:…++|[.．]{3,}+)"
_SPEECHLESS = re.compile(
    rf"[。｡]{{2,}}+|[、､]{{3,}}+|(?P<lead>(?<![\w\u3400-\u9fff….．:：]){_DOTS})(?=[\w\u3400-\u9fff])|{_DOTS}(?![\w\u3400-\u9fff])"
)
# Dots before giving in (……行吧, ……算了) read as a sigh, wherever they stand.
_RESIGNED = re.compile(rf"{_DOTS}(?=(?:行吧|好吧|好的吧|算了|随便|无语|呵呵|那您随意|您随意|随意吧|那就这样吧|您随便))")
_CJK = r"[\u3400-\u9fff]"
# Spaces standing in for punctuation between two runs of Chinese: 好的 我看一下 马上处理
_SPACE_AS_PUNCT = re.compile(rf"(?<={_CJK}{{2}})[ \u3000\t]+(?={_CJK}{{2}})")
# ...but the space that closes an @mention in a group chat (@王女士 您好) is how a mention is typed.
_MENTION_BEFORE = re.compile(r"[@＠][^\s@＠,，。!?！？]{1,20}$")


_MARKS = re.compile(f"{_RUN.pattern}|{_STOPS.pattern}")
# Two marks in a row, hidden characters allowed between: what _RUN or _STOPS need (and more).
# A leading character class lets the regex engine skip to candidates; _MARKS cannot.
_MARK_PAIR = re.compile("[!?。]\x00*[!?。]")


def _dotted(original: str) -> bool:
    return (
        "…" in original or "..." in original or "．．．" in original or "。。" in original or "｡｡" in original
        or "、、、" in original
    )


def _spaced(original: str) -> bool:
    return " " in original or "\u3000" in original or "\t" in original


def _emoji_end(body: str) -> bool:
    last = body[-1]
    return last >= "\U0001F000" or unicodedata.category(last) == "So"


_ANY_PUNCT = re.compile(r"[,.!?;:。、…~，！？；：．｡～]")


class Punctuation:
    id = "punctuation"
    triggers = ()

    def __init__(self, rule: Rule, library: Library) -> None:
        self.rule = rule
        min_length = rule.options.get("min_length", 15)
        if not isinstance(min_length, int) or min_length < 1:
            raise RuleConfigError(f"rule '{rule.id}': option 'min_length' must be a positive integer")
        self.min_length = min_length

    def check(self, draft: Normalized, ctx: Context) -> list[Violation]:
        folded, original = draft.folded, draft.original
        out: list[Violation] = []
        # Substring tests and one scan that skips straight to ! ? 。 (the folded view has full-width
        # ！？｡ already turned into !?。) say which of the scans below can find anything.
        marks = _MARK_PAIR.search(folded) is not None and _MARKS.search(folded) is not None
        dotted, spaced = _dotted(original), _spaced(original)
        for m in _RUN.finditer(folded) if marks else ():
            mark = "?" if "?" in m.group() else "!"
            # Keep the agent's width: a full-width run becomes one full-width mark.
            if original[m.start()] in "！？":
                mark = {"?": "？", "!": "！"}[mark]
            out.append(violation(self.rule, draft, m.start(), m.end(), "repeated !/? reads as shouting", replacement=mark))
        for m in _STOPS.finditer(folded) if marks else ():
            if "\x00" in m.group():  # plain 。。 runs are handled on the original below
                out.append(violation(self.rule, draft, m.start(), m.end(), "。。。 reads as speechless", replacement="。"))
        for m in _SPEECHLESS.finditer(original) if dotted else ():
            # Leading dots are dropped; elsewhere one full stop takes their place.
            fix = "" if m.group("lead") else "。"
            out.append(violation(self.rule, draft, m.start(), m.end(), "。。。/…… reads as speechless", replacement=fix))
        for m in _RESIGNED.finditer(original) if dotted and not out else ():
            out.append(violation(self.rule, draft, m.start(), m.end(), "…… before giving in reads as a sigh", replacement="，"))
        mentions = "@" in original or "＠" in original
        for m in _SPACE_AS_PUNCT.finditer(original) if spaced else ():
            if mentions and _MENTION_BEFORE.search(original, 0, m.start()):
                continue
            out.append(violation(self.rule, draft, m.start(), m.end(), "spaces used instead of punctuation", replacement="，"))
        if out and QUOTE_MARK.search(original):
            # Marks quoted back to the customer (您发的“？？”我看到了) are theirs, not the agent's.
            out = [v for v in out if not inside_quotes(draft, v.start, v.end)]
        body = original.rstrip()
        # A closing emoji (好的😊) ends a chat message as a full stop would.
        if len(body) >= self.min_length and not _ANY_PUNCT.search(original) and not out and not _emoji_end(body):
            end = len(body)
            out.append(
                violation(self.rule, draft, end, end, "a long reply with no punctuation", replacement="。")
            )
        return out
