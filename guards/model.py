"""Values the engine returns: a Violation per finding, one Verdict per draft."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ACTION_RANK", "Message", "Suggestion", "Verdict", "Violation", "strictest"]

Action = Literal["pass", "warn", "rewrite", "block"]
ACTION_RANK: dict[str, int] = {"pass": 0, "warn": 1, "rewrite": 2, "block": 3}


def strictest(actions: list[str] | tuple[str, ...]) -> str:
    """The strictest of some actions; `pass` when there are none."""
    return max(actions, key=ACTION_RANK.__getitem__, default="pass")


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(_Value):
    """One earlier message of the conversation, as the engine sees it."""

    role: Literal["customer", "agent"]
    text: str


class Violation(_Value):
    """One finding: which rule, where in the text the agent typed, and what to do about it."""

    rule_id: str
    category: str
    severity: Literal["fatal", "non_fatal"]
    action: Action
    matched: str = Field(description="the original text between start and end")
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    reason: str
    replacement: str | None = None


class Suggestion(_Value):
    """A template offered to the agent instead of (or besides) the draft."""

    template_id: str
    text: str


class Verdict(_Value):
    """The engine's answer for one draft; everything in it serialises to JSON."""

    action: Action
    violations: tuple[Violation, ...] = ()
    rewritten: str | None = None
    suggestions: tuple[Suggestion, ...] = ()

    @property
    def rule_ids(self) -> list[str]:
        return [v.rule_id for v in self.violations]

    @property
    def categories(self) -> list[str]:
        return sorted({v.category for v in self.violations})
