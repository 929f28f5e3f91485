"""The detection and rewrite engine: pure, no I/O. `Guard(library).check(text, history=...)`."""

from .engine import Guard, apply_rewrites
from .errors import RuleConfigError
from .model import Message, Suggestion, Verdict, Violation
from .normalize import Normalized, normalize
from .waits import WaitPromise, find_wait

__all__ = [
    "Guard",
    "Message",
    "Normalized",
    "RuleConfigError",
    "Suggestion",
    "Verdict",
    "Violation",
    "WaitPromise",
    "apply_rewrites",
    "find_wait",
    "normalize",
]
