"""Every lexical rule of the library in one Aho-Corasick pass: phrases, variants, pinyin, patterns.

One automaton holds every key of every lexical rule: the phrases and variants themselves, their
typed pinyin, the first words of word-group patterns (which then run their regex) and, for fuzzy
rules, the bigrams that make a near variant worth scoring with rapidfuzz. A second automaton
matches phonetic rules on the homophone-folded view. Candidates then pass the context check:
anchors, allow-contexts and quotation (spec 1, 根据语境判断).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice, product

from rapidfuzz import fuzz

from phrases.schema import Context as Allow
from phrases.schema import Rule, SharedContext

from ..context import (
    CONTEXT_CLAUSE_ENDS,
    QUOTE_MARK,
    SENTENCE_ENDS,
    Context,
    clause_bounds,
    crosses_quote,
    inside_quotes,
)
from ..english import read_words
from ..model import Violation
from ..normalize import (
    BOUNDARIES,
    HOLE,
    Normalized,
    clause_end,
    codes,
    fold_phrase,
    from_codes,
)
from ..phonetic import close_enough, pinyin_view
from .lexical_index import RESPELL, Key, build_index

__all__ = ["LexicalRules"]

_ASCII_WORD = re.compile(r"[a-z0-9]")
_LETTERS = re.compile(r"[a-z]{2}")
_LATIN_RUN = re.compile(r"[a-z]+")
# Below this length per-character Python or regex work beats numpy's fixed cost per call.
_SHORT_DRAFT = 64
# Spellings of one draft tried when its pinyin-typed words read as several homophones.
_READINGS = 8


_Words = re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class _Allow:
    """A rule's allow-contexts (its own and the shared ones of its category) merged: one regex per
    kind and window, so a candidate costs a few searches however many contexts apply."""

    before: tuple[tuple[int, re.Pattern[str]], ...]  # (window, words)
    after: tuple[tuple[int, re.Pattern[str]], ...]  # (after_window, words)
    clause: _Words
    sentence: _Words


def _words(raw: Iterable[str]) -> _Words:
    # One search over the window instead of a substring test per word; longest first.
    folded = sorted({w for w in (fold_phrase(x) for x in raw) if w}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, folded))) if folded else None


def _merge(allows: list[Allow]) -> _Allow | None:
    if not allows:
        return None
    before: dict[int, list[str]] = {}
    after: dict[int, list[str]] = {}
    for a in allows:
        before.setdefault(a.window, []).extend(a.before)
        after.setdefault(a.after_window, []).extend(a.after)

    def by_window(groups: dict[int, list[str]]) -> tuple[tuple[int, re.Pattern[str]], ...]:
        return tuple((w, rx) for w, words in sorted(groups.items()) if (rx := _words(words)) is not None)

    return _Allow(
        by_window(before), by_window(after),
        _words(w for a in allows for w in a.clause), _words(w for a in allows for w in a.sentence),
    )


# A word of a glossed phrase in the folded view (lower-case, full-width already half-width).
_LATIN_TOKEN = re.compile("[a-z0-9'’@$]+")


def _gloss_table(glosses: dict[str, str]) -> tuple[dict[str, str], int]:
    """Each glossed word or phrase with single spaces, and the most words a phrase has."""
    table = {" ".join(w.split()): v for w, v in glosses.items()}
    return table, max((k.count(" ") + 1 for k in table), default=0)


def _a_not_a(text: str, i: int) -> bool:
    """True when text[i] is the 不 of an A-not-A question (能不能, 会不会, 可不可以): a question, not a
    negation, so a context word such as 不能 found there clears nothing."""
    return text[i] == "不" and 0 < i < len(text) - 1 and text[i - 1] == text[i + 1]


def _says(words: re.Pattern[str], text: str, lo: int, hi: int) -> bool:
    """True when text[lo:hi] holds one of the context words, not counting a negation that is
    the middle of an A-not-A question (能不能私下 asks; it does not say 不能私下)."""
    # Most windows hold no word: one search says so for less than a finditer.
    m = words.search(text, lo, hi)
    while m is not None:
        if not _a_not_a(text, m.start()):
            return True
        m = words.search(text, m.end(), hi)
    return False


class LexicalRules:
    """All `lexical` rules of a library, matched together."""

    id = "lexical"

    def __init__(
        self,
        rules: list[Rule],
        shared: list[SharedContext] | tuple[SharedContext, ...] = (),
        *,
        reference: str = "",
        triggers: dict[int, tuple[str, ...]] | None = None,
        glosses: dict[str, str] | None = None,
    ) -> None:
        self.rules = rules
        self._index = build_index(rules, reference=reference, triggers=triggers)
        self._glosses, self._gloss_len = _gloss_table(glosses or {})
        self._gloss_words = {k for k in self._glosses if " " not in k}
        # The same phrases with their spaces removed, for words spelled out letter by letter.
        self._gloss_runs = {k.replace(" ", "").replace("'", ""): v for k, v in self._glosses.items() if len(k) >= 4}
        self._run_len = max(map(len, self._gloss_runs), default=0)
        # Each rule's own allow-context and the shared ones of its category, merged.
        self._contexts = [
            _merge([a for a in [r.allow, *(x for x in shared if r.category in x.categories)] if a is not None])
            for r in rules
        ]

    # -- matching -------------------------------------------------------------------------

    def _folded(self, text: str) -> str:
        ix = self._index
        if ix.sounds is None or not ix.sounds.search(text):
            return text
        if len(text) < _SHORT_DRAFT:
            # A short draft pays less for str.translate than for numpy's fixed cost per call.
            return text.translate(ix.table)
        if len(ix.table) > 3000 and ix.dense is not None:
            return from_codes(ix.dense.take(codes(text)))  # one gather over the code points
        table = ix.table
        return ix.sounds.sub(lambda m: table[ord(m.group())], text)

    def candidates(
        self, draft: Normalized, triggered: set[int] | None = None, *, respelling: bool = False
    ) -> list[tuple[int, int, int, str]]:
        """(rule index, start, end, kind) in the matching view, before context is applied.

        The numbers of the detectors whose trigger words were seen are added to `triggered`.
        """
        ix = self._index
        text = draft.text
        found: dict[tuple[int, int, int], str] = {}
        windows: dict[int, list[int]] = {}
        anchored: list[tuple[int, int, int]] = []
        fuzzy: dict[int, int] = {}
        if ix.automaton is not None:
            values = ix.automaton.values
            for vi, start, stop in ix.automaton.scan(self._folded(text)):
                words, more, direct, hints, triggers = values[vi]
                if words:
                    woken = words.get(text[start:stop])
                    if woken is not None:
                        opening, around = woken
                        for pattern, after in opening:
                            # The woken group opens the pattern: a match starts right here.
                            anchored.append((pattern, start, stop + after))
                        for pattern, before, after in around:
                            lo, hi = start - before, stop + after
                            seen = windows.get(pattern)
                            if seen is None:
                                windows[pattern] = [lo, hi]
                            else:
                                if lo < seen[0]:
                                    seen[0] = lo
                                if hi > seen[1]:
                                    seen[1] = hi
                if not more:
                    continue  # most hits only wake patterns
                if triggers and triggered is not None:
                    detectors = triggers.get(text[start:stop])
                    if detectors:
                        triggered.update(detectors)
                if hints:
                    for fi in hints:
                        fuzzy[fi] = fuzzy.get(fi, 0) + 1
                if not direct:
                    continue
                for k in direct:
                    seg = text[start:stop]
                    if seg == k.plain:
                        kind = k.kind
                    elif k.phonetic and close_enough(seg, k.plain):
                        kind = "phonetic"
                    else:
                        continue
                    if k.kind == "pinyin" and not self._word_bounded(text, start, stop):
                        continue
                    end = self._anchored(k, text, start, stop)
                    if end >= 0:
                        found.setdefault((k.rule, start, end), kind)
        self._pattern_candidates(text, anchored, windows, found)
        if fuzzy:
            self._fuzzy_candidates(text, fuzzy, found)
        if not respelling and _LETTERS.search(text):
            respelled = self._mixed_candidates(text, found) if ix.mixed is not None else []
            if self._glosses:
                respelled += self._glossed(draft)
            if respelled:
                self._respelled(text, respelled, found, triggered)
        return [(ri, s, e, kind) for (ri, s, e), kind in found.items()]

    def _pattern_candidates(
        self, text: str, anchored: list[tuple[int, int, int]], windows: dict[int, list[int]],
        found: dict[tuple[int, int, int], str],
    ) -> None:
        """Run the woken word-group patterns: at the woken word, or in the window around it."""
        patterns = self._index.patterns
        for pi, lo, hi in anchored:
            ri, regex = patterns[pi]
            m = regex.match(text, lo, hi)
            if m is not None:
                found.setdefault((ri, lo, m.end()), "pattern")
        for pi, (lo, hi) in windows.items():
            ri, regex = patterns[pi]
            if lo < 0:
                lo = 0
            # Most woken patterns find nothing: one search says so for less than a finditer.
            if regex.search(text, lo, hi) is None:
                continue
            for m in regex.finditer(text, lo, hi):
                found.setdefault((ri, m.start(), m.end()), "pattern")

    def _fuzzy_candidates(self, text: str, fuzzy: dict[int, int], found: dict[tuple[int, int, int], str]) -> None:
        """Score the long fuzzy phrases two or more of whose bigrams were seen (rapidfuzz)."""
        for fi, hits in fuzzy.items():
            ri, phrase = self._index.fuzzy[fi]
            if hits < 2 or any(r == ri for r, _, _ in found):
                continue
            cutoff = max(75.0, 100.0 * (len(phrase) - 1) / len(phrase) - 0.5)
            al = fuzz.partial_ratio_alignment(phrase, text, score_cutoff=cutoff)
            if al is not None and al.dest_end > al.dest_start:
                found.setdefault((ri, al.dest_start, al.dest_end), "fuzzy")

    def _mixed_candidates(self, text: str, found: dict[tuple[int, int, int], str]) -> list[tuple[int, int, str]]:
        """Phrases spelled partly in pinyin (不qing楚, 你这话shenme意思), matched in pinyin.

        Only the stretches around Latin runs are spelled out: a phrase of up to 12 characters
        that holds typed letters lies within 12 characters of them. Returns the pattern words
        found typed that way (start, end, word), for `_respelled`.
        """
        respelled: list[tuple[int, int, str]] = []
        windows: list[list[int]] = []
        syllables = self._index.syllables
        for m in _LATIN_RUN.finditer(text):
            run = m.group()
            # Typed pinyin starts with a whole syllable (a phrase's unit starts the run, or the
            # run follows a Chinese unit); runs that cannot are skipped.
            if not any(run[:n] in syllables for n in range(1, min(6, len(run)) + 1)):
                continue
            lo, hi = max(0, m.start() - 12), min(len(text), m.end() + 12)
            if windows and lo <= windows[-1][1]:
                windows[-1][1] = hi
            else:
                windows.append([lo, hi])
        for lo, hi in windows:
            self._mixed_window(text, lo, hi, found, respelled)
        return respelled

    def _glossed(self, draft: Normalized) -> list[tuple[int, int, str]]:
        """Library glosses of the draft's English words, as (start, end, Chinese) in the matching
        view: 我 promise 一定 refund 给你 reads 我保证一定退款给你. Words are read in the folded view,
        where the spaces between them still stand (as holes): whole words only (refunded is not
        refund), and a phrase's words must be separated by spaces alone. Longest phrase first."""
        folded = draft.folded
        raw = [(m.group(), m.start(), m.end()) for m in _LATIN_TOKEN.finditer(folded)]
        # Chat spellings, leet and split words read as words (guards/english.py).
        tokens, runs = read_words(raw, draft.original, self._gloss_words)
        out: list[tuple[int, int, str]] = []
        for letters, starts in runs:
            # Spelled out letter by letter (d-i-d y-o-u e-v-e-n r-e-a-d): the word breaks are
            # gone, so the glosses are looked up with theirs removed, longest first.
            i = 0
            while i < len(letters):
                for n in range(min(self._run_len, len(letters) - i), 3, -1):
                    meaning = self._gloss_runs.get(letters[i : i + n])
                    if meaning is not None:
                        start, end = draft.matching_span(starts[i], starts[i + n - 1] + 1)
                        if end > start:
                            out.append((start, end, meaning))
                        i += n
                        break
                else:
                    i += 1
        i = 0
        while i < len(tokens):
            phrase, found = tokens[i][0], None
            for k in range(i, min(len(tokens), i + self._gloss_len)):
                if k > i:
                    if folded[tokens[k - 1][2] : tokens[k][1]].strip(HOLE):
                        break  # more than spaces between the words: not one phrase
                    phrase += " " + tokens[k][0]
                meaning = self._glosses.get(phrase)
                if meaning is not None:
                    found = (k, meaning)
            if found is None:
                i += 1
                continue
            k, meaning = found
            start, end = draft.matching_span(tokens[i][1], tokens[k][2])
            if end > start:
                out.append((start, end, meaning))
            i = k + 1
        return out

    def _respelled(
        self, text: str, respelled: list[tuple[int, int, str]], found: dict[tuple[int, int, int], str],
        triggered: set[int] | None,
    ) -> None:
        """Run the rules again over the draft with its pinyin-typed pattern words spelled in
        Chinese (她的手ji号 → 她的手机号), keeping what involves a respelled word.

        Pinyin has homophones: bao guo is 包过 and 报过 alike. Each reading of a span is tried
        (at most _READINGS spellings of the draft in all)."""
        words: dict[tuple[int, int], list[str]] = {}
        for start, stop, word in respelled:
            readings = words.setdefault((start, stop), [])
            if word not in readings:
                readings.append(word)
        chosen: list[tuple[int, int]] = []
        for start, stop in sorted(words, key=lambda r: (r[0], r[0] - r[1])):
            if not chosen or start >= chosen[-1][1]:
                chosen.append((start, stop))
        for spelling in islice(product(*(words[span] for span in chosen)), _READINGS):
            parts: list[str] = []
            starts: list[int] = []  # per character of the respelled text: its start and end in `text`
            ends: list[int] = []
            pos = 0
            for (start, stop), word in zip(chosen, spelling):
                parts += [text[pos:start], word]
                starts += [*range(pos, start), *[start] * len(word)]
                ends += [*range(pos + 1, start + 1), *[stop] * len(word)]
                pos = stop
            parts.append(text[pos:])
            starts += range(pos, len(text))
            ends += range(pos + 1, len(text) + 1)
            fixed = "".join(parts)
            view = Normalized(original=fixed, folded=fixed, text=fixed)
            for ri, s, e, _ in self.candidates(view, triggered, respelling=True):
                if self.allowed(ri, view, s, e):
                    continue  # the context is read where the match was found: 如果 glossed from "if" clears it
                start, end = starts[s], ends[e - 1]
                if any(a < end and start < b for a, b in chosen):
                    found.setdefault((ri, start, end), "mixed pinyin")

    def _mixed_window(
        self, text: str, lo: int, hi: int, found: dict[tuple[int, int, int], str], respelled: list[tuple[int, int, str]]
    ) -> None:
        view, origin, starts = pinyin_view(text[lo:hi], lo)
        assert self._index.mixed is not None
        values = self._index.mixed.values
        for vi, vs, ve in self._index.mixed.scan(view):
            for k in values[vi]:
                # Whole units only, and at least one typed letter (pure Chinese is the
                # homophone pass's job, with its stricter closeness test).
                if not starts[vs] or (ve < len(view) and not starts[ve]):
                    continue
                start, stop = origin[vs], origin[ve - 1] + 1
                letters = sum("a" <= c <= "z" for c in text[start:stop])
                if not letters or not self._word_bounded(text, start, stop):
                    continue
                if k.rule == RESPELL:
                    # A pattern word: respelled only where letters stand for part of it, or a
                    # whole word of 5+ letters (yiding); shorter all-Latin runs are ids and words.
                    if letters < stop - start or letters >= 5:
                        respelled.append((start, stop, k.plain))
                    continue
                if letters == stop - start and letters < 7:
                    continue  # short all-Latin strings occur inside ordinary words and ids
                end = self._anchored(k, text, start, stop)
                if end >= 0 and (k.rule, start, end) not in found:
                    found[(k.rule, start, end)] = "mixed pinyin"

    @staticmethod
    def _word_bounded(text: str, start: int, end: int) -> bool:
        # Typed pinyin must start a word (mailbuzhidao@ is an address, not an answer); what
        # follows may be more pinyin (buqingchu ne), so the end is not checked.
        return not (start > 0 and _ASCII_WORD.match(text[start - 1]))

    @staticmethod
    def _anchored(k: Key, text: str, start: int, end: int) -> int:
        """The hit's end if its anchors hold, else -1. A key that must close its clause may be
        followed by softening particles (不可以的哦); its end then takes them in."""
        if k.at_start and start > 0 and text[start - 1] not in BOUNDARIES:
            return -1
        if k.at_end and text[end - 1] not in BOUNDARIES:
            return clause_end(text, end)
        return end

    def allowed(self, ri: int, draft: Normalized, start: int, end: int) -> bool:
        """True when the context clears the candidate text[start:end] of rule `ri`."""
        text = draft.text
        allow = self._contexts[ri]
        if allow is not None:
            cs, ce = clause_bounds(text, start, end, stops=CONTEXT_CLAUSE_ENDS)
            for window, before in allow.before:
                if _says(before, text, max(cs, start - window), start):
                    return True
            for after_window, after in allow.after:
                # A word that starts at most after_window characters after the match.
                m = after.search(text, end, min(ce, end + after_window + 8))
                if m is not None and m.start() - end <= after_window:
                    return True
            if allow.clause is not None and _says(allow.clause, text, cs, ce):
                return True
            if allow.sentence is not None and _says(allow.sentence, text, *clause_bounds(text, start, end, stops=SENTENCE_ENDS)):
                return True
        if QUOTE_MARK.search(text) is None:
            return False
        ostart, oend = draft.span(start, end)
        return inside_quotes(draft, ostart, oend) or crosses_quote(draft, ostart, oend)

    def check(
        self, draft: Normalized, ctx: Context, *, repeated: frozenset[str] = frozenset(), triggered: set[int] | None = None
    ) -> list[Violation]:
        out: list[Violation] = []
        for ri, start, end, kind in self.candidates(draft, triggered):
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
