"""The protocol every rule implements, and the helper that turns a finding into a Violation."""

from __future__ import annotations

from typing import Protocol

from phrases.schema import Library, Rule

from ..context import Context
from ..model import Violation
from ..normalize import Normalized

__all__ = ["Detector", "violation"]


class Detector(Protocol):
    """A non-lexical rule: built once from its library entry, then asked about each draft."""

    id: str
    # Words of which the draft's matching view must hold one for `check` to find anything, or
    # empty to run on every draft. The guard looks for them in its one automaton pass and skips
    # the detector when none is there; `check` stays correct on its own all the same.
    triggers: tuple[str, ...]

    def __init__(self, rule: Rule, library: Library) -> None: ...

    def check(self, draft: Normalized, ctx: Context) -> list[Violation]: ...


def violation(
    rule: Rule, draft: Normalized, start: int, end: int, reason: str, *, replacement: str | None = None,
    action: str | None = None,
) -> Violation:
    """A Violation of `rule` over original text[start:end]."""
    return Violation(
        rule_id=rule.id,
        category=rule.category,
        severity=rule.severity,
        action=action or rule.action,  # type: ignore[arg-type]
        matched=draft.original[start:end],
        start=start,
        end=end,
        reason=reason,
        replacement=replacement,
    )
