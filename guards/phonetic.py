"""Homophone folding and typed pinyin for the phrases that agents disguise by sound.

Agents write 不知到 or bu zhi dao for 不知道. For rules marked `phonetic`, every character that
sounds like a character of one of their phrases (same toneless pinyin, most common reading) is
folded onto one representative, in the draft and in the phrase alike, so one automaton pass finds
the disguised forms. A phonetic hit is kept only when most of its characters are the phrase's own
(see `close_enough`), because whole words sound alike too (布置到 is not 不知道).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from pypinyin import Style, lazy_pinyin
from pypinyin.pinyin_dict import pinyin_dict

__all__ = ["close_enough", "homophone_table", "typed_pinyin"]


def _toneless(reading: str) -> str:
    base = unicodedata.normalize("NFD", reading)
    return "".join(c for c in base if unicodedata.category(c) != "Mn").replace("ü", "v")


@lru_cache(maxsize=1)
def _chars_by_sound() -> dict[str, tuple[int, ...]]:
    by: dict[str, list[int]] = {}
    for cp, readings in pinyin_dict.items():
        # Only the first (most common) reading: rarer readings fold too much together.
        by.setdefault(_toneless(readings.split(",")[0]), []).append(cp)
    return {k: tuple(v) for k, v in by.items()}


@lru_cache(maxsize=None)
def _sound(ch: str) -> str | None:
    cp = ord(ch)
    if cp not in pinyin_dict:
        return None
    return _toneless(pinyin_dict[cp].split(",")[0])


def homophone_table(phrases: list[str]) -> dict[int, str]:
    """A str.translate table folding every same-sounding character onto one representative."""
    reps: dict[str, str] = {}
    for phrase in phrases:
        for ch in phrase:
            sound = _sound(ch)
            if sound is not None:
                # The smallest code point is the representative: the choice must not depend
                # on the order phrases were listed in.
                reps[sound] = min(reps.get(sound, ch), ch)
    by = _chars_by_sound()
    table: dict[int, str] = {}
    for sound, rep in reps.items():
        for cp in by.get(sound, ()):
            # BMP only: rare astral ideographs are not typed as disguises, and one astral code
            # point in a character class makes every regex over it scan the class linearly.
            if cp <= 0xFFFF and chr(cp) != rep:
                table[cp] = rep
    return table


def typed_pinyin(phrase: str) -> str | None:
    """The phrase as typed pinyin (不知道 → buzhidao), or None when too short to be safe."""
    if not all("\u4e00" <= c <= "\u9fff" for c in phrase):
        return None
    typed = "".join(lazy_pinyin(phrase, style=Style.NORMAL)).replace("ü", "v")
    # Short pinyin strings ("bu", "meiyou") occur inside ordinary Latin text and ids.
    return typed if len(typed) >= 7 and len(phrase) >= 3 else None


def close_enough(found: str, phrase: str) -> bool:
    """True when a same-sounding hit keeps most of the phrase's own characters.

    A substitution made consistently counts once: 爱麦不麦 for 爱买不买 swaps one character,
    typed twice.
    """
    if len(found) != len(phrase):
        return False
    differing = len({(a, b) for a, b in zip(found, phrase) if a != b})
    return differing <= max(1, len(phrase) // 3)


def syllables(phrase: str) -> list[str]:
    """Toneless pinyin syllables of a phrase, one per character (不清楚 → bu, qing, chu)."""
    return [s.replace("ü", "v") for s in lazy_pinyin(phrase, style=Style.NORMAL)]


def full_pinyin(phrase: str) -> str | None:
    """Toneless pinyin of an all-Chinese phrase of 2+ characters (不清楚 → buqingchu), else None."""
    if len(phrase) < 2 or not all("\u4e00" <= c <= "\u9fff" for c in phrase):
        return None
    return "".join(syllables(phrase))


def sound_of(ch: str) -> str | None:
    """Toneless pinyin of a character's most common reading, or None."""
    return _sound(ch)


def pinyin_view(text: str, offset: int = 0) -> tuple[str, list[int], list[int]]:
    """`text` with each Chinese character spelled in pinyin, for drafts that mix the two (不qing楚).

    Returns the view and, for each of its positions, the index in `text` it came from and
    whether it starts a unit (1) or continues one (0). Characters that are neither Chinese with
    a reading nor ASCII letters become "|", which no key contains.
    """
    out: list[str] = []
    origin: list[int] = []
    starts: list[int] = []
    for i, ch in enumerate(text):
        if "a" <= ch <= "z":
            unit = ch
        else:
            unit = _sound(ch) or "|"
        out.append(unit)
        origin.extend([offset + i] * len(unit))
        starts.extend([1] + [0] * (len(unit) - 1))
    return "".join(out), origin, starts
