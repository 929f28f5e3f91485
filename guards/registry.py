"""The explicit registry: which detector class builds a library entry of each `detector` kind."""

from __future__ import annotations

from .rules.contact_number import ContactNumber
from .rules.punctuation import Punctuation
from .rules.repeat_closing import RepeatClosing
from .rules.repetition import Repetition
from .rules.wait_promise import WaitPromiseCap

__all__ = ["DEFAULT_RULES", "DETECTORS"]

# Lexical rules are not listed: LexicalRules builds every one of them into one automaton.
DEFAULT_RULES = (Punctuation, Repetition, RepeatClosing, WaitPromiseCap, ContactNumber)
DETECTORS = {cls.id: cls for cls in DEFAULT_RULES}
