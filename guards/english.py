"""English words as agents type them in chat, read back as dictionary words for the glosses.

Txt-speak (u, ur, pls, b4, w8), digits and symbols typed for letters (n0t, guar@ntee, adm1n), a
word split by a symbol (in-ternal) and a word spelled out letter by letter (d-i-d y-o-u, n o t h i
n g) are evasions of the same kind as 不 知 道 and 布吉岛 (spec: seeing through evasion). Pure
functions over the folded view's Latin tokens; the lexical rules look the words up in the library's
glosses.
"""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["Token", "read_words"]

# (word, start, end): a word and its span in the folded view.
Token = tuple[str, int, int]

# Chat spellings with one reading in a service reply.
TXT = {
    "u": "you", "ur": "your", "r": "are", "pls": "please", "plz": "please", "b4": "before", "w8": "wait",
    "wut": "what", "wat": "what", "msg": "message", "msgs": "messages", "numbr": "number", "sed": "said",
    "lik": "like", "cuz": "because", "coz": "because", "im": "i'm", "dont": "don't", "cant": "can't",
    "didnt": "didn't", "doesnt": "doesn't", "whats": "what's", "thats": "that's", "ya": "you", "yr": "your",
    "tmrw": "tomorrow", "tmr": "tomorrow", "nthng": "nothing", "nothin": "nothing", "rm": "room", "gimme": "give me",
    "lemme": "let me", "gonna": "going to", "wanna": "want to",
}
# A letter typed three or more times (alreadyyy, thisss) is the letter once.
_STRETCHED = re.compile(r"([a-z])\1{2,}")
# Digits and symbols that stand for letters inside a word (never in a word of digits alone).
_LEET_FROM, _LEET_TO = "013457@$", "oieastas"
_LEET = str.maketrans(_LEET_FROM, _LEET_TO)
_LEET_CHARS = frozenset(_LEET_FROM)
# The symbols among them: between two pieces of a word they are its letter (guar@ntee).
_LETTER_SYMBOLS = "@$"
# What makes a token worth more than a dictionary lookup: a leet character, a typographic
# apostrophe, a letter typed three times.
_UNUSUAL = re.compile("[" + re.escape(_LEET_FROM) + "’]|([a-z])\\1\\1")
# Three digits in a row: an id or an amount, not letters in disguise.
_ID = re.compile(r"[0-9]{3}")
# Between two words, a lone 2 or 4 is "to" / "for" (me 2 do, 4 u).
_BETWEEN = {"2": "to", "4": "for"}
_JOINERS = {**dict.fromkeys("-._*·/\\|~^+", ""), **{c: c.translate(_LEET) for c in _LETTER_SYMBOLS}}
# Invisible characters inside a word (al\u200bready): never a word break, so they always join.
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
_JOINERS.update(dict.fromkeys(_INVISIBLE, ""))


def _plain(word: str) -> str:
    spelled = TXT.get(word)
    if spelled is not None:
        return spelled
    if word.isdigit() or _UNUSUAL.search(word) is None or _ID.search(word) is not None:
        return word  # most words, numbers and ids (sf1234567): one search says so
    word = _STRETCHED.sub(r"\1", word.replace("’", "'").strip(_LETTER_SYMBOLS))
    if word in TXT:
        return TXT[word]
    if len(word) >= 3 and any(c.isalpha() for c in word) and not _LEET_CHARS.isdisjoint(word):
        return word.translate(_LEET)
    return word


def read_words(tokens: list[Token], original: str, known: Collection[str]) -> tuple[list[Token], list[tuple[str, list[int]]]]:
    """The tokens as dictionary words, and the runs of letters typed one by one.

    `known` holds the single words the glosses know: two pieces split by a hyphen, dot or the like
    are joined when the whole is one of them (in-ternal; e-mail stays two words unless the glosses
    know "email"); pieces split by @ or $ always join, the symbol read as its letter. A run of three
    or more one-letter tokens (d-i-d y-o-u) comes back apart, as its letters and each letter's
    start, for the caller to look phrases up in.
    """
    words: list[Token] = []
    runs: list[tuple[str, list[int]]] = []
    i = 0
    while i < len(tokens):
        j = i
        while (
            j + 1 < len(tokens) and len(tokens[j][0]) == 1 and len(tokens[j + 1][0]) == 1
            and tokens[j][0].isalpha() and tokens[j + 1][0].isalpha() and tokens[j + 1][1] - tokens[j][2] <= 2
        ):
            j += 1
        if j - i >= 2:
            runs.append(("".join(t[0] for t in tokens[i : j + 1]), [t[1] for t in tokens[i : j + 1]]))
            i = j + 1
            continue
        word, start, end = tokens[i]
        # guar@ntee reads its @ as the a it stands for (gu@r@nteed twice over); in-ternal drops the
        # hyphen. A symbol that stands for a letter or an invisible character always joins; a mere
        # splitter only into a known word.
        k, raw = i, word
        while k + 1 < len(tokens) and tokens[k + 1][1] - tokens[k][2] == 1 and original[tokens[k][2]] in _JOINERS:
            mark = original[tokens[k][2]]
            longer = raw + _JOINERS[mark] + tokens[k + 1][0]
            if not (mark in _LETTER_SYMBOLS and longer.isalpha() or mark in _INVISIBLE or _plain(longer) in known):
                break
            k, raw = k + 1, longer
        if k > i:
            words.append((_plain(raw), start, tokens[k][2]))
            i = k + 1
            continue
        plain = _plain(word)
        if plain in _BETWEEN and 0 < i < len(tokens) - 1 and tokens[i - 1][0].isalpha() and tokens[i + 1][0].isalpha():
            plain = _BETWEEN[plain]
        words.append((plain, start, end))
        i += 1
    return words, runs
