"""Normalise a draft once, before any rule runs, keeping a way back to the original offsets.

Two views are built:

* `folded` — the original, character for character (same length, same offsets): full-width →
  half-width, upper → lower case, traditional → simplified, clause punctuation in one form, and
  every character that only decorates or hides (spaces, symbols, zero-width and other format
  characters) replaced by a hole marker. Regex rules run here and report offsets directly.
* `text` — the matching view: `folded` without the holes and with runs of one character
  collapsed (不 知 道, 不*知*道, 不知知道 all read 不知道). Phrase rules run here; `span()` maps a
  match back to the original text. The map is built lazily: a clean draft never pays for it.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import opencc

__all__ = ["BOUNDARIES", "CLAUSE_END", "HOLE", "PARTICLES", "Normalized", "clause_end", "fold", "fold_phrase", "normalize"]

HOLE = "\x00"

# Clause punctuation stays in the matching view as a boundary: a phrase never matches across
# it, and rhetorical-question phrases may end on "?" (spec 1: 哪个? 什么?). The ASCII full stop is
# not one: agents put it between characters (不.知.道) far more often than they end a Chinese
# sentence with it.
BOUNDARIES = frozenset(",!?;:。、…\n")
# Sentence-final particles that soften a clause without changing what it says (不可以的哦~,
# 真的不行呢, 不行哦亲, 没门儿; 亲 closes a clause as an address): a phrase or pattern that must close
# its clause may be followed by a few of them.
PARTICLES = frozenset("的哦喔噢呢哈啦呀啊哟嘛滴捏咯啰噻亲儿")


# Up to three particles, then clause punctuation or the end of the text: a regex fragment, shared
# by clause_end (phrases) and the patterns that must end their clause (guards/rules/lexical_index).
CLAUSE_END = (
    "[" + re.escape("".join(sorted(PARTICLES))) + "]{0,3}"
    "(?=[" + re.escape("".join(sorted(BOUNDARIES))) + "]|$)"
)
_CLAUSE_END = re.compile(CLAUSE_END)


def clause_end(text: str, end: int) -> int:
    """Where the clause closes if text[end:] holds only particles up to it, else -1.

    The returned end takes the particles in (the span of 不可以的哦 is the whole of it).
    """
    m = _CLAUSE_END.match(text, end)
    return m.end() if m else -1


# Traditional characters that are also valid simplified ones, so OpenCC leaves them alone one
# character at a time; folding them everywhere is harmless because phrases are folded alike.
_AMBIGUOUS_T2S = {"覆": "复", "乾": "干", "著": "着", "瞭": "了", "夥": "伙", "藉": "借", "餘": "余", "甚": "什"}
# Regional forms read as their Mandarin meaning, one character for one, after OpenCC: 帳 (Taiwan's
# 帳戶, 到帳) is 账; the Bopomofo letters typed for 一, 吗, 的 (ㄧ定, 是ㄇ); and written Cantonese
# characters that standard Mandarin never uses (唔 不, 冇 没, 嘅 的, 咗 了, 睇 看, 俾 给, 佢 他, 哋 们,
# 嚟 来, 咩 吗, 喺 在, 嗰 那, 咁 这, 啲 些, 谂 想), so 唔關我事 and 冇辦法 meet 不关我事 and 没办法.
# Characters shared with Mandarin (係, 點, 識) are left alone: 關係 must stay 关系.
# Dialect pronouns and particles read as Mandarin's: 俺 (I) and 咱 (we, me) are 我, so 俺表哥 and 咱这边 meet
# the patterns written with 我; Shanghainese 侬 is 你 and its question particle 伐 is 吗 (侬眼睛长了伐).
_REGIONAL = {
    "帐": "账", "ㄧ": "一", "ㄇ": "吗", "ㄉ": "的",
    "唔": "不", "冇": "没", "嘅": "的", "咗": "了", "睇": "看", "俾": "给", "佢": "他", "哋": "们",
    "嚟": "来", "咩": "吗", "喺": "在", "嗰": "那", "咁": "这", "啲": "些", "谂": "想",
    "俺": "我", "咱": "我", "侬": "你", "伐": "吗",
}
# CJK strokes and radicals typed as decoration between characters (灬不灬清灬楚灬, 丶): never words in a reply.
_DECORATIONS = frozenset("灬丶")
_PUNCT_CANON = {
    "，": ",", "！": "!", "？": "?", "；": ";", "：": ":", "｡": "。", "､": "、", "⋯": "…", "︙": "…",
    "\r": "\n", "\u2028": "\n", "\u2029": "\n",
}
# Quotation marks are kept: they tell the engine that the agent is quoting the customer.
_KEEP = frozenset("\"'“”‘’「」『』《》()（）[]【】<>")

_T2S = opencc.OpenCC("t2s")


class _FoldTable(dict):
    """A str.translate table computed per code point on first use, then cached by the dict."""

    def __missing__(self, cp: int) -> str:
        value = _fold_char(chr(cp))
        self[cp] = value
        return value


# Cyrillic and Greek letters that look like Latin ones, typed to slip English past a check
# (Nоthing I саn dо with Cyrillic о, а, с): read as the Latin letter they imitate.
_HOMOGLYPHS = dict(zip("аеорсухіјѕԁɡοαρντικ", "aeopcyxijsdgoapvtik"))


def _fold_char(ch: str) -> str:
    if ch in _PUNCT_CANON:
        return _PUNCT_CANON[ch]
    if ch == "\n":
        return ch
    cat = unicodedata.category(ch)
    # Zero-width joiners, BOM, soft hyphen, bidi marks (Cf), controls (Cc) and every kind of
    # space hide or pad characters: the evasions 不\u200b知道 and 不 知 道.
    # Lone surrogates (Cs) arrive from JSON "\ud800" escapes; they cannot be encoded, so drop them.
    if cat in ("Cf", "Cc", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"):
        return HOLE
    nf = unicodedata.normalize("NFKC", ch)
    if len(nf) != 1:
        nf = ch
    if nf in _PUNCT_CANON:
        nf = _PUNCT_CANON[nf]
    if nf in BOUNDARIES or nf in _KEEP:
        return nf
    ncat = unicodedata.category(nf)
    # Symbols and connector/dash punctuation put between characters: 不*知*道, 不-知-道, 不~知~道.
    if ncat[0] in ("S", "P") or ncat in ("Zs",):
        return HOLE
    low = nf.lower()
    if len(low) != 1:
        low = nf
    low = _HOMOGLYPHS.get(low, low)
    if "a" <= unicodedata.normalize("NFD", low)[0] <= "z":
        # Pinyin typed with tone marks (bù zhī dào) reads as plain letters.
        low = unicodedata.normalize("NFD", low)[0]
    if low in _AMBIGUOUS_T2S:
        return _AMBIGUOUS_T2S[low]
    simp = _T2S.convert(low)
    out = simp if len(simp) == 1 else low
    out = _REGIONAL.get(out, out)
    if out in _DECORATIONS:
        return HOLE
    # The matching view holds only BMP characters, so per-character work on it can use 16-bit
    # arrays (see codes). What stays astral after folding (Extension B ideographs and the like)
    # is not typed in service replies: it reads as a hole.
    return HOLE if ord(out) > 0xFFFF else out


_TABLE = _FoldTable()


def char_class(codepoints: list[int]) -> str:
    """A regex character class for sorted code points, written as ranges."""
    parts: list[str] = []
    i = 0
    while i < len(codepoints):
        j = i
        while j + 1 < len(codepoints) and codepoints[j + 1] == codepoints[j] + 1:
            j += 1
        a, b = re.escape(chr(codepoints[i])), re.escape(chr(codepoints[j]))
        parts.append(a if i == j else f"{a}-{b}")
        i = j + 1
    return "[" + "".join(parts) + "]"


def _changing() -> re.Pattern[str]:
    # Every BMP character that folds to something else, plus the astral planes (emoji and
    # other symbols there are decoration). Most drafts hold only a few such characters, so a
    # regex that visits just those beats translating every character of the draft.
    changed = [cp for cp in range(0x10000) if _TABLE[cp] != chr(cp)]
    return re.compile(char_class(changed)[:-1] + "\U00010000-\U0010ffff]")


_CHANGING = _changing()


def codes(text: str) -> np.ndarray:
    """The code points of a matching-view string (BMP only, see _fold_char) as a uint16 array."""
    return np.frombuffer(text.encode("utf-16-le"), np.uint16)


def from_codes(a: np.ndarray) -> str:
    return a.tobytes().decode("utf-16-le")


_REPEAT = re.compile(r"(.)\1", re.DOTALL)


def _runs(text: str) -> list[tuple[int, int]]:
    """[start, end) of each run of one character repeated (不知知道 → the 知知), for collapsing.

    Digits are never collapsed: 400 and 40 are different numbers, not an evasion. One vector
    comparison finds the repeats; drafts hold few, so the rest is cheap Python.
    """
    if len(text) < 100 and _REPEAT.search(text) is None:
        # Most short drafts repeat nothing; one regex search says so for less than numpy's call.
        return []
    a = codes(text)
    runs: list[tuple[int, int]] = []
    for i in np.flatnonzero(a[1:] == a[:-1]).tolist():
        if "0" <= text[i] <= "9":
            continue
        if runs and runs[-1][1] == i + 1:
            runs[-1] = (runs[-1][0], i + 2)
        else:
            runs.append((i, i + 2))
    return runs


def _fold_match(m: re.Match[str]) -> str:
    return _TABLE[ord(m.group())]


# Regional words of more than one character, each read as the Mandarin word of the same length
# (a shorter one would be padded with a hole), so offsets do not move: Cantonese 乜嘢 (什么), Sichuan
# 咋个 (怎么), 莫得 (没得: not 莫得罪, don't offend), 晓不得 (不知道). Only words no Mandarin sentence
# forms by chance (边个, 哪个, is also 这边+个人), and none whose tone the library reads on its own:
# 自个儿 is 自己 said with a shrug (自个儿看去), 啥子 is 什么 said impatiently (催啥子催).
_REGIONAL_WORDS = {"乜嘢": "什么", "咋个": "怎么", "莫得": "没得", "晓不得": "不知道"}
_REGIONAL_WORD = re.compile("|".join(sorted(_REGIONAL_WORDS, key=len, reverse=True)).replace("莫得", "莫得(?!罪)"))
# Their first characters, one class: a search for it costs a draft a third of the alternation's.
_REGIONAL_FIRST = re.compile("[" + "".join(sorted({w[0] for w in _REGIONAL_WORDS})) + "]")


def _regional_word(m: re.Match[str]) -> str:
    return _REGIONAL_WORDS[m.group()]


def fold(text: str) -> str:
    """The `folded` view: same length as `text`, hidden characters turned into HOLE."""
    folded = _CHANGING.sub(_fold_match, text)
    if _REGIONAL_FIRST.search(folded) is not None:
        folded = _REGIONAL_WORD.sub(_regional_word, folded)
    return folded


_B = "[" + re.escape("".join(sorted(BOUNDARIES))) + "]"
_NB = "[^" + re.escape("".join(sorted(BOUNDARIES))) + "]"
# Punctuation between characters that stand alone (不,知,道 / 不。知。道) is a separator, not a
# clause boundary: a clause of one character says nothing on its own.
# A line break before a character that stands alone (不知\n道) splits a word the same way.
_LONE_SEP = re.compile(f"(?:(?<=^{_NB})|(?<={_B}{_NB})){_B}(?={_NB}(?:{_B}|$))|\n(?={_NB}(?:{_B}|$))")


# Cheap scans (a leading character class) that say whether _LONE_SEP can match at all.
_LONE_INNER = re.compile(f"{_B}{_NB}{_B}")
_LONE_FIRST = re.compile(f"{_NB}{_B}{_NB}(?:{_B}|$)")


def _lone_seps(text: str) -> bool:
    return bool(_LONE_FIRST.match(text) or _LONE_INNER.search(text))


def _squeeze(folded: str) -> str:
    if HOLE in folded:
        folded = folded.replace(HOLE, "")
    if _lone_seps(folded):
        folded = _LONE_SEP.sub("", folded)
    runs = _runs(folded)
    if not runs:
        return folded
    out, pos = [], 0
    for start, end in runs:
        out.append(folded[pos : start + 1])
        pos = end
    out.append(folded[pos:])
    return "".join(out)


@lru_cache(maxsize=65536)
def fold_phrase(phrase: str) -> str:
    """A library phrase in the matching view, so it is compared like for like with drafts."""
    return _squeeze(fold(phrase))


@dataclass(slots=True)
class Normalized:
    """A draft in both views, with a lazily built map from the matching view to the original."""

    original: str
    folded: str
    text: str
    _starts: list[int] | None = field(default=None, repr=False)
    _ends: list[int] | None = field(default=None, repr=False)

    def _build_map(self) -> None:
        # The same steps as _squeeze, keeping each character's original index.
        folded = self.folded
        if HOLE in folded:
            kept: list[int] | range = [i for i, ch in enumerate(folded) if ch != HOLE]
            unholed = folded.replace(HOLE, "")
        else:
            kept, unholed = range(len(folded)), folded
        if _lone_seps(unholed):
            dropped = {m.start() for m in _LONE_SEP.finditer(unholed)}
            kept = [i for j, i in enumerate(kept) if j not in dropped]
            unholed = _LONE_SEP.sub("", unholed)
        starts: list[int] = []
        collapsed: list[tuple[int, int]] = []  # (position in starts, original end) of each repeat run
        pos = 0
        for a, b in _runs(unholed):
            starts.extend(kept[pos : a + 1])
            # A collapsed repeat still belongs to the span: 不知知道 is reported whole.
            collapsed.append((len(starts) - 1, kept[b - 1] + 1))
            pos = b
        starts.extend(kept[pos:])
        ends = [i + 1 for i in starts]
        for j, end in collapsed:
            ends[j] = end
        self._starts, self._ends = starts, ends

    def matching_span(self, start: int, end: int) -> tuple[int, int]:
        """The matching-view slice that holds original text[start:end] (the inverse of span)."""
        if self._starts is None:
            self._build_map()
        assert self._starts is not None
        return bisect_left(self._starts, start), bisect_left(self._starts, end)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original [start, end) of the matching-view slice [start, end)."""
        if self._starts is None:
            self._build_map()
        assert self._starts is not None and self._ends is not None
        if not self._starts:
            return 0, 0
        start = min(max(start, 0), len(self._starts) - 1)
        end = min(max(end, start + 1), len(self._ends))
        return self._starts[start], self._ends[end - 1]


# Rich-text markup typed in a web console: HTML tags (<b>, </span>, <br/>) and entities (&nbsp;). They
# format a reply; inside a word they hide it (<b>不</b>清楚), so they read as holes, offsets unchanged.
_MARKUP = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]{0,200})?/?>|&(?:[a-zA-Z]{2,8}|#[0-9]{1,6});")


def _hide_markup(text: str, folded: str) -> str:
    parts: list[str] = []
    pos = 0
    for m in _MARKUP.finditer(text):
        parts += [folded[pos : m.start()], HOLE * (m.end() - m.start())]
        pos = m.end()
    parts.append(folded[pos:])
    return "".join(parts)


def normalize(text: str) -> Normalized:
    """Both views of `text`; see the module docstring."""
    folded = fold(text)
    if "<" in text or "&" in text:
        folded = _hide_markup(text, folded)
    return Normalized(original=text, folded=folded, text=_squeeze(folded))
