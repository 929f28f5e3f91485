"""What the conversation clock knows of a tenant and of customers' words, as data.

`TenantRules` carries one tenant's thresholds (from its phrase library), time zone and suggestion
texts; `Cues` the customer words that call for a suggestion (assist/reminder_cues.json).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, time as dtime
from functools import cached_property
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from phrases import Library, Thresholds

__all__ = ["Cues", "TenantRules", "load_cues"]


@dataclass(frozen=True)
class Cues:
    """Customer words per situation; see assist/reminder_cues.json for the why."""

    groups: dict[str, dict[str, Any]]

    @staticmethod
    def prepare(text: str) -> tuple[str, str]:
        """The text as cues compare it: NFKC, lower case, no spaces; and that without punctuation."""
        norm = "".join(unicodedata.normalize("NFKC", text).lower().split())
        bare = "".join(c for c in norm if not unicodedata.category(c).startswith(("P", "S")))
        return norm, bare or norm  # a message of only "??" is compared as it is

    def match(self, name: str, prepared: tuple[str, str]) -> bool:
        g, (norm, bare) = self.groups[name], prepared
        if any(x in norm for x in g.get("exclude", ())):
            return False
        return bare in g.get("exact", ()) or any(x in norm for x in g.get("contains", ()))

    def template(self, name: str) -> str:
        return str(self.groups[name]["template_id"])


def load_cues() -> Cues:
    """The packaged cue lists (assist/reminder_cues.json)."""
    raw = json.loads((resources.files("assist") / "reminder_cues.json").read_text(encoding="utf-8"))
    return Cues({k: v for k, v in raw.items() if not k.startswith("_")})


@dataclass(frozen=True)
class TenantRules:
    """What the clock needs of one tenant: thresholds, time zone, suggestion texts."""

    thresholds: Thresholds
    tz: ZoneInfo
    templates: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_library(cls, library: Library, timezone_name: str) -> TenantRules:
        return cls(library.thresholds, ZoneInfo(timezone_name), {t.id: t.text for t in library.templates})

    @cached_property
    def _hours(self) -> tuple[dtime, dtime]:
        start, end = (dtime.fromisoformat(h) for h in self.thresholds.reply_rate_hours)
        return start, end

    def in_reply_rate_hours(self, at: float) -> bool:
        """True when `at` (epoch s) falls in the platform's reply-rate window, tenant time."""
        start, end = self._hours
        local = datetime.fromtimestamp(at, self.tz).time()
        return start <= local < end if start <= end else (local >= start or local < end)
