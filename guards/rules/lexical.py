"""Every lexical rule of the library in one Aho-Corasick pass: phrases, variants, pinyin, patterns.

One automaton holds every key of every lexical rule: the phrases and variants themselves, their
typed pinyin, the first words of word-group patterns (which then run their regex) and, for fuzzy
rules, the bigrams that make a near variant worth scoring with rapidfuzz. A second automaton
matches phonetic rules on the homophone-folded view. Candidates then pass the context check:
anchors, allow-contexts and quotation (spec 1, 根据语境判断).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import ahocorasick
from rapidfuzz import fuzz

from phrases.schema import Context as Allow, Rule, SharedContext

from ..context import Context, clause_bounds, inside_quotes
from ..errors import RuleConfigError
from ..model import Violation
from ..normalize import BOUNDARIES, Normalized, char_class as _char_class, fold_phrase
from ..phonetic import close_enough, full_pinyin, homophone_table, pinyin_view, typed_pinyin

__all__ = ["LexicalRules"]

_GAP = "[^" + re.escape("".join(sorted(BOUNDARIES))) + "]"
_ASCII_WORD = re.compile(r"[a-z0-9]")
_LETTERS = re.compile(r"[a-z]{2}")


@dataclass(frozen=True, slots=True)
class _Key:
    rule: int
    kind: str  # phrase | variant | pinyin | pattern | fuzzy
    ref: int = 0  # pattern index / fuzzy phrase index
    length: int = 0  # of the key in the matching view
    at_start: bool = False
    at_end: bool = False


def _strip_anchors(phrase: str) -> tuple[str, bool, bool]:
    at_start = phrase.startswith("^")
    at_end = phrase.endswith("$") and len(phrase) > 1
    return phrase[int(at_start) : len(phrase) - int(at_end)], at_start, at_end


class LexicalRules:
    """All `lexical` rules of a library, matched together."""

    id = "lexical"

    def __init__(self, rules: list[Rule], shared: list[SharedContext] | tuple[SharedContext, ...] = ()) -> None:
        self.rules = rules
        self._exact = ahocorasick.Automaton()
        self._phon = ahocorasick.Automaton()
        self._patterns: list[tuple[int, re.Pattern[str]]] = []
        self._fuzzy: list[tuple[int, str]] = []
        exact: dict[str, list[_Key]] = {}
        mixed: dict[str, list[_Key]] = {}
        phon_phrases: list[tuple[int, str, bool, bool]] = []
        for ri, rule in enumerate(rules):
            for kind, items in (("phrase", rule.phrases), ("variant", rule.variants)):
                for raw in items:
                    body, s, e = _strip_anchors(raw)
                    key = fold_phrase(body)
                    if not key:
                        raise RuleConfigError(f"rule '{rule.id}': phrase {raw!r} is empty once normalised")
                    exact.setdefault(key, []).append(_Key(ri, kind, length=len(key), at_start=s, at_end=e))
                    if self._phonetic(rule, key) and kind == "phrase":
                        phon_phrases.append((ri, key, s, e))
                        typed = typed_pinyin(key)
                        if typed:
                            exact.setdefault(typed, []).append(_Key(ri, "pinyin", length=len(typed)))
                        spelled = full_pinyin(key)
                        if spelled:
                            mixed.setdefault(spelled, []).append(_Key(ri, "mixed pinyin", length=len(spelled), at_start=s, at_end=e))
                    if rule.fuzzy and kind == "phrase" and len(key) >= 5:
                        fi = len(self._fuzzy)
                        self._fuzzy.append((ri, key))
                        for j in range(len(key) - 1):
                            exact.setdefault(key[j : j + 2], []).append(_Key(ri, "fuzzy", fi))
            for pattern in rule.patterns:
                groups = [sorted({fold_phrase(w) for w in g} - {""}, key=len, reverse=True) for g in pattern.groups]
                if any(not g for g in groups):
                    raise RuleConfigError(f"rule '{rule.id}': a pattern group is empty once normalised")
                gap = f"{_GAP}{{0,{pattern.max_gap}}}?"
                regex = re.compile(gap.join("(?:" + "|".join(map(re.escape, g)) + ")" for g in groups))
                pi = len(self._patterns)
                self._patterns.append((ri, regex))
                # The prefilter anchors on the rarest group (longest shortest word), so common
                # words like 我 or 看 do not wake the regex on every draft.
                anchor = max(groups, key=lambda g: (min(map(len, g)), -len(g)))
                for word in anchor:
                    exact.setdefault(word, []).append(_Key(ri, "pattern", pi))
        for key, keys in exact.items():
            # Per key: direct hits, the patterns it wakes, the fuzzy phrases it hints at.
            direct = tuple(k for k in keys if k.kind not in ("pattern", "fuzzy"))
            wakes = frozenset(k.ref for k in keys if k.kind == "pattern")
            hints = tuple(k.ref for k in keys if k.kind == "fuzzy")
            self._exact.add_word(key, (direct, wakes, hints))
        self._has_exact = bool(exact)
        if self._has_exact:
            self._exact.make_automaton()
        self._table = homophone_table([p for _, p, _, _ in phon_phrases])
        # A small table is applied by a regex that visits only the same-sounding characters; a
        # large one (most common characters sound like some phrase's) by translating everything.
        self._sounds = re.compile(_char_class(sorted(self._table))) if self._table else None
        self._dense = [chr(i) for i in range(0x10000)]
        for cp, rep in self._table.items():
            self._dense[cp] = rep
        phon: dict[str, list[tuple[_Key, str]]] = {}
        for ri, key, s, e in phon_phrases:
            phon.setdefault(key.translate(self._table), []).append((_Key(ri, "phonetic", length=len(key), at_start=s, at_end=e), key))
        for key, keys in phon.items():
            self._phon.add_word(key, tuple(keys))
        self._has_phon = bool(phon)
        if self._has_phon:
            self._phon.make_automaton()
        self._mixed = ahocorasick.Automaton()
        for key, keys in mixed.items():
            self._mixed.add_word(key, tuple(keys))
        self._has_mixed = bool(mixed)
        if self._has_mixed:
            self._mixed.make_automaton()
        # Each rule's own allow-context, then the shared ones of its category.
        self._contexts = [
            [c for c in [self._fold_context(r.allow)] + [self._fold_context(x) for x in shared if r.category in x.categories] if c]
            for r in rules
        ]

    @staticmethod
    def _phonetic(rule: Rule, key: str) -> bool:
        """Phonetic matching for this phrase: as the rule says, else on for 3+ Chinese characters."""
        if rule.phonetic is not None:
            return rule.phonetic
        return sum("\u4e00" <= c <= "\u9fff" for c in key) >= 3

    @staticmethod
    def _fold_context(allow: Allow | None) -> tuple[Allow, tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None:
        if allow is None:
            return None
        f = lambda words: tuple(w for w in (fold_phrase(x) for x in words) if w)  # noqa: E731
        return allow, f(allow.before), f(allow.after), f(allow.clause)

    # -- matching -------------------------------------------------------------------------

    def candidates(self, draft: Normalized) -> list[tuple[int, int, int, str]]:
        """(rule index, start, end, kind) in the matching view, before context is applied."""
        text = draft.text
        found: dict[tuple[int, int, int], str] = {}
        patterns: set[int] = set()
        fuzzy: dict[int, int] = {}
        if self._has_exact:
            for end, (direct, wakes, hints) in self._exact.iter(text):
                if wakes:
                    patterns |= wakes
                for fi in hints:
                    fuzzy[fi] = fuzzy.get(fi, 0) + 1
                for k in direct:
                    start = end + 1 - k.length
                    if k.kind == "pinyin" and not self._word_bounded(text, start, end + 1):
                        continue
                    if self._anchored(k, text, start, end + 1):
                        found.setdefault((k.rule, start, end + 1), k.kind)
        for pi in patterns:
            ri, regex = self._patterns[pi]
            for m in regex.finditer(text):
                found.setdefault((ri, m.start(), m.end()), "pattern")
        for fi, hits in fuzzy.items():
            ri, phrase = self._fuzzy[fi]
            if hits < 2 or any(r == ri for r, _, _ in found):
                continue
            cutoff = max(75.0, 100.0 * (len(phrase) - 1) / len(phrase) - 0.5)
            al = fuzz.partial_ratio_alignment(phrase, text, score_cutoff=cutoff)
            if al is not None and al.dest_end > al.dest_start:
                found.setdefault((ri, al.dest_start, al.dest_end), "fuzzy")
        if self._has_phon and self._sounds is not None and self._sounds.search(text):
            if len(self._table) > 3000:
                folded = text.translate(self._dense)
            else:
                table = self._table
                folded = self._sounds.sub(lambda m: table[ord(m.group())], text)
            if True:
                for end, keys in self._phon.iter(folded):
                    for k, phrase in keys:
                        start = end + 1 - len(phrase)
                        if (k.rule, start, end + 1) in found or not close_enough(text[start : end + 1], phrase):
                            continue
                        if self._anchored(k, text, start, end + 1):
                            found[(k.rule, start, end + 1)] = "phonetic"
        if self._has_mixed and _LETTERS.search(text):
            self._mixed_candidates(text, found)
        return [(ri, s, e, kind) for (ri, s, e), kind in found.items()]

    def _mixed_candidates(self, text: str, found: dict[tuple[int, int, int], str]) -> None:
        """Phrases spelled partly in pinyin (不qing楚, 你这话shenme意思), matched in pinyin."""
        view, origin, starts = pinyin_view(text)
        for end, keys in self._mixed.iter(view):
            for k in keys:
                vs, ve = end + 1 - k.length, end + 1
                # Whole units only, and at least one typed letter (pure Chinese is the
                # homophone pass's job, with its stricter closeness test).
                if not starts[vs] or (ve < len(view) and not starts[ve]):
                    continue
                start, stop = origin[vs], origin[ve - 1] + 1
                letters = sum("a" <= c <= "z" for c in text[start:stop])
                if not letters or not self._word_bounded(text, start, stop):
                    continue
                if letters == stop - start and letters < 7:
                    continue  # short all-Latin strings occur inside ordinary words and ids
                if (k.rule, start, stop) not in found and self._anchored(k, text, start, stop):
                    found[(k.rule, start, stop)] = "mixed pinyin"

    @staticmethod
    def _word_bounded(text: str, start: int, end: int) -> bool:
        before = text[start - 1] if start > 0 else ""
        after = text[end] if end < len(text) else ""
        return not (_ASCII_WORD.match(before) or _ASCII_WORD.match(after))

    @staticmethod
    def _anchored(k: _Key, text: str, start: int, end: int) -> bool:
        if k.at_start and start > 0 and text[start - 1] not in BOUNDARIES:
            return False
        if k.at_end and end < len(text) and text[end] not in BOUNDARIES and text[end - 1] not in BOUNDARIES:
            return False
        return True

    def allowed(self, ri: int, draft: Normalized, start: int, end: int) -> bool:
        """True when the context clears the candidate text[start:end] of rule `ri`."""
        text = draft.text
        for allow, before, after, clause in self._contexts[ri]:
            cs, ce = clause_bounds(text, start, end)
            window = text[max(cs, start - allow.window) : start]
            if any(w in window for w in before):
                return True
            tail = text[end : min(ce, end + allow.after_window + 8)]
            if any(tail.find(w, 0, allow.after_window + len(w)) != -1 for w in after):
                return True
            if clause and any(w in text[cs:ce] for w in clause):
                return True
        ostart, oend = draft.span(start, end)
        return inside_quotes(draft, ostart, oend)

    def check(self, draft: Normalized, ctx: Context, *, repeated: frozenset[str] = frozenset()) -> list[Violation]:
        out: list[Violation] = []
        for ri, start, end, kind in self.candidates(draft):
            if self.allowed(ri, draft, start, end):
                continue
            rule = self.rules[ri]
            ostart, oend = draft.span(start, end)
            action = rule.repeat_action if (rule.repeat_action and rule.id in repeated) else rule.action
            how = "" if kind in ("phrase", "pattern") else f" ({kind} match)"
            out.append(
                Violation(
                    rule_id=rule.id,
                    category=rule.category,
                    severity=rule.severity,
                    action=action,
                    matched=draft.original[ostart:oend],
                    start=ostart,
                    end=oend,
                    reason=(rule.description or f"{rule.category} phrase") + how
                    + (" — said again in this conversation" if action != rule.action else ""),
                    replacement=rule.replacement if action == "rewrite" else None,
                )
            )
        return out
