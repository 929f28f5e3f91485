"""Build the one automaton that all lexical rules of a library share.

Every key lives in the homophone-folded view (same-sounding characters folded onto one
representative, see guards/phonetic.py), so a single pass over the folded draft finds exact and
same-sounding occurrences alike; each hit is then told apart by comparing the unfolded text
with the phrase. Besides the phrases and variants, the automaton holds the typed pinyin of
phonetic phrases, the anchor words that wake word-group pattern regexes, and the bigrams that
make a fuzzy phrase worth scoring. Mixed hanzi/pinyin spellings get a small automaton of their own
over the pinyin view, used only for drafts that contain Latin letters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import ahocorasick_rs
import numpy as np

from phrases.schema import Rule

from ..context import SENTENCE_ENDS
from ..errors import RuleConfigError
from ..normalize import BOUNDARIES, CLAUSE_END, char_class, fold_phrase
from ..phonetic import full_pinyin, homophone_table, sound_of, syllables, typed_pinyin

__all__ = ["RESPELL", "Automaton", "Index", "Key", "Wake", "build_index"]

_GAP = "[^" + re.escape("".join(sorted(BOUNDARIES))) + "]"
_SENTENCE_GAP = "[^" + re.escape("".join(sorted(SENTENCE_ENDS))) + "]"


# The rule number of a mixed-pinyin key that stands for a pattern word, not a rule's phrase.
RESPELL = -1


@dataclass(frozen=True, slots=True)
class Key:
    """One way a rule can match at a hit of the automaton."""

    rule: int
    kind: str  # phrase | variant | pinyin | mixed pinyin | word (RESPELL)
    plain: str = ""  # the key before homophone folding: a hit equal to it is exact
    phonetic: bool = False  # a same-sounding hit counts too
    at_start: bool = False
    at_end: bool = False


class Wake(NamedTuple):
    """A pattern woken by a word, and how far before and after the word a match can reach."""

    pattern: int
    before: int
    after: int


@dataclass
class Index:
    automaton: Automaton | None
    mixed: Automaton | None
    table: dict[int, str]
    sounds: re.Pattern[str] | None
    dense: np.ndarray | None  # the table as an array over the BMP, the matching view's range
    patterns: list[tuple[int, re.Pattern[str]]] = field(default_factory=list)
    fuzzy: list[tuple[int, str]] = field(default_factory=list)
    # Every syllable of the mixed keys: a Latin run that starts with none of them is not typed
    # pinyin of any phrase (qq, wifi, sku) and needs no pinyin view.
    syllables: set[str] = field(default_factory=set)


_LATIN_WORD = re.compile("[a-z]+")


def _word_regex(word: str) -> str:
    """A group word as a regex. A word of Latin letters (v for 微信, q for QQ, sb) counts only
    where it stands alone, not inside a longer Latin word (vip, iqoo, usb)."""
    if _LATIN_WORD.fullmatch(word):
        return f"(?<![a-z]){word}(?![a-z])"
    return re.escape(word)


def _strip_anchors(phrase: str) -> tuple[str, bool, bool]:
    at_start = phrase.startswith("^")
    at_end = phrase.endswith("$") and len(phrase) > 1
    return phrase[int(at_start) : len(phrase) - int(at_end)], at_start, at_end


def is_phonetic(rule: Rule, key: str) -> bool:
    """Phonetic matching for a phrase: as the rule says, else on for 3+ Chinese characters."""
    if rule.phonetic is not None:
        return rule.phonetic
    return sum("\u4e00" <= c <= "\u9fff" for c in key) >= 3


class Automaton(NamedTuple):
    """Keys and what each stands for: `scan(text)` lists (value index, start, end), overlaps too."""

    matcher: ahocorasick_rs.AhoCorasick
    values: list

    def scan(self, text: str) -> list[tuple[int, int, int]]:
        return self.matcher.find_matches_as_indexes(text, overlapping=True)


def _automaton(entries: dict[str, Any]) -> Automaton | None:
    if not entries:
        return None
    return Automaton(ahocorasick_rs.AhoCorasick(list(entries)), list(entries.values()))


def _commonness(reference: str, table: dict[int, str]) -> Callable[[list[str]], tuple[int, int]]:
    """How often a group's words turn up in ordinary service language (lower is rarer).

    The reference is the library's own harmless text: its templates and every rule's `miss`
    examples. Words are counted as the automaton sees them, homophone-folded, since every
    same-sounding occurrence costs a hit (定 is hit by every 订单). Short words break ties,
    since they occur more often in drafts at large.
    """
    text = fold_phrase(reference).translate(table)

    def score(group: list[str]) -> tuple[int, int]:
        return sum(text.count(w.translate(table)) for w in group), -min(map(len, group))

    return score


def _split_wakes(wakes: list[Wake]) -> tuple[tuple[tuple[int, int], ...], tuple[Wake, ...]]:
    """(pattern, after) of the wakes whose group opens the pattern (a match starts at the word),
    and the wakes that must search a window around it: told apart once, not at every hit."""
    return tuple((w.pattern, w.after) for w in wakes if not w.before), tuple(tuple(w) for w in wakes if w.before)


def build_index(rules: list[Rule], *, reference: str = "", triggers: dict[int, tuple[str, ...]] | None = None) -> Index:
    """Compile every lexical rule; raise RuleConfigError on a phrase that normalises to nothing.

    `reference` is ordinary service text, used to pick the rarest group of each word-group
    pattern as the one that wakes its regex. `triggers` maps a detector's number to the words
    that let it find anything; the scan reports which numbers it saw.
    """
    keys: list[tuple[str, Key]] = []
    wakes: list[tuple[str, Wake]] = []
    hints: list[tuple[str, int]] = []
    mixed: dict[str, list[Key]] = {}
    respell: set[str] = set()  # pattern words already keyed for respelling
    grouped: list[tuple[list[list[str]], int, bool]] = []  # each pattern's folded groups, gap, ends_clause
    index = Index(automaton=None, mixed=None, table={}, sounds=None, dense=None)
    for ri, rule in enumerate(rules):
        for kind, items in (("phrase", rule.phrases), ("variant", rule.variants)):
            for raw in items:
                body, s, e = _strip_anchors(raw)
                key = fold_phrase(body)
                if not key:
                    raise RuleConfigError(f"rule '{rule.id}': phrase {raw!r} is empty once normalised")
                phonetic = kind == "phrase" and is_phonetic(rule, key)
                keys.append((key, Key(ri, kind, key, phonetic, s, e)))
                if phonetic:
                    typed = typed_pinyin(key)
                    if typed:
                        keys.append((typed, Key(ri, "pinyin", typed)))
                    spelled = full_pinyin(key)
                    if spelled:
                        mixed.setdefault(spelled, []).append(Key(ri, "mixed pinyin", spelled, False, s, e))
                        index.syllables.update(syllables(key))
                        index.syllables.update(filter(None, map(sound_of, key)))
                # One changed character flips the meaning of a short Chinese phrase (指什么意思 is not
                # 你什么意思), so near variants are only sought for long ones.
                if rule.fuzzy and kind == "phrase" and len(key) >= 7:
                    index.fuzzy.append((ri, key))
                    hints += [(key[j : j + 2], len(index.fuzzy) - 1) for j in range(len(key) - 1)]
        for pattern in rule.patterns:
            groups = [sorted({fold_phrase(w) for w in g} - {""}, key=len, reverse=True) for g in pattern.groups]
            if any(not g for g in groups):
                raise RuleConfigError(f"rule '{rule.id}': a pattern group is empty once normalised")
            gap = f"{_GAP if pattern.scope == 'clause' else _SENTENCE_GAP}{{0,{pattern.max_gap}}}?"
            body = gap.join("(?:" + "|".join(map(_word_regex, g)) + ")" for g in groups)
            if pattern.ends_clause:
                body += CLAUSE_END
            regex = re.compile(body)
            index.patterns.append((ri, regex))
            # A group word typed partly or wholly in pinyin (手ji号, yi ding) is spelled back
            # in Chinese before the patterns run again (see LexicalRules._respelled).
            for word in {w for g in groups for w in g} - respell:
                spelled = full_pinyin(word)
                if spelled:
                    respell.add(word)
                    mixed.setdefault(spelled, []).append(Key(RESPELL, "word", word))
                    index.syllables.update(syllables(word))
            grouped.append((groups, pattern.max_gap, pattern.ends_clause))

    index.table = homophone_table([k.plain for _, k in keys if k.phonetic])
    table = index.table
    commonness = _commonness(reference + "\n" + "\n".join(m for r in rules for m in r.examples.miss), table)
    for pi, (groups, max_gap, ends_clause) in enumerate(grouped):
        # The rarest group wakes the regex, so common words like 我 or 看 do not wake it on
        # every draft; and the regex then runs only in the window around the woken word
        # where a match holding it can lie, not over the whole draft.
        a = groups.index(min(groups, key=commonness))
        reach = [max(map(len, g)) for g in groups]
        before = sum(reach[:a]) + a * max_gap
        after = sum(reach[a + 1 :]) + (len(groups) - 1 - a) * max_gap
        if ends_clause:
            # The particles, and one more character: the regex must see what follows the
            # match (a window's end would pass for the end of the draft).
            after += 4
        wakes += [(word, Wake(pi, before, after)) for word in groups[a]]
    if table:
        # A small table is applied by a regex that visits only the same-sounding characters; a
        # large one (most common characters sound like some phrase's) by translating everything.
        index.sounds = re.compile(char_class(sorted(table)))
        dense = np.arange(0x10000, dtype=np.uint16)
        dense[list(table)] = [ord(rep) for rep in table.values()]
        index.dense = dense
    # Per key: direct hits, the patterns it wakes (by plain word: anchored, windowed), the fuzzy
    # phrases it hints at, and the detectors it triggers. The automaton runs over the
    # homophone-folded view but patterns match the plain text, so a key's wakes are kept per
    # plain word: a hit wakes a pattern only where the plain text is the word itself (订 folds
    # onto 定; a pattern waiting for 定 has nothing to find at 订单). Triggers are kept per plain
    # word too: 候 folds onto 后 and 幺 onto 要, and a detector run for every 后 or 要 costs more
    # than the check.
    entries: dict[str, tuple[list[Key], dict[str, list[Wake]], list[int], dict[str, set[int]]]] = {}

    def entry(word: str) -> tuple[list[Key], dict[str, list[Wake]], list[int], dict[str, set[int]]]:
        return entries.setdefault(word.translate(table), ([], {}, [], {}))

    for key, k in keys:
        entry(key)[0].append(k)
    for word, wake in wakes:
        entry(word)[1].setdefault(word, []).append(wake)
    for bigram, fi in hints:
        entry(bigram)[2].append(fi)
    for di, words in (triggers or {}).items():
        for word in filter(None, map(fold_phrase, words)):
            entry(word)[3].setdefault(word, set()).add(di)
    index.automaton = _automaton(
        {
            # (wakes by plain word, anything else?, direct keys, fuzzy hints, detector triggers)
            k: ({word: _split_wakes(ws) for word, ws in w.items()} or None, bool(d or h or t), tuple(d), tuple(h),
                {word: tuple(sorted(ds)) for word, ds in t.items()} or None)
            for k, (d, w, h, t) in entries.items()
        }
    )
    index.mixed = _automaton({k: tuple(v) for k, v in mixed.items()})
    return index
