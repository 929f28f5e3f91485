"""Scores behind the QA report: the per-conversation QA score and the 0-5 early-warning dimensions.

Early warning (spec 4, from 003): each dimension is the mean of its metrics' 0-5 scores (metrics
with no data are left out); a dimension under 3.5 raises a warning naming the metrics that
scored under 3.5 (or, if none did alone, all of the dimension's metrics). Scales:
- efficiency: first_response_s and avg_response_s score 5 up to response_s and fall linearly to 0
  at slow_gap_s; reply_rate_30s and reply_rate score 5 x rate; slow_share scores 5 x (1 - share).
- attitude: violations of the attitude categories (contempt, impatience, rhetorical question,
  forbidden phrase, refusal, passive service) per agent message; 0 scores 5, 10 % or more scores 0
  (so 3 % is the 3.5 line).
- standards: greeting_share and closing_share score 5 x share; qa_score_avg scores avg / 20.
- compliance: violations of the other categories (privacy, over-promise, leaks, self-promotion,
  wait time, punctuation, repetition) and overrides, each per agent message, on the attitude scale;
  reminders_missed per conversation on the same scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["QA_ITEMS", "WARN_BELOW", "dimensions", "qa_score"]

WARN_BELOW = 3.5
# spec 4 (from 002): item -> weight; 沟通能力 is 15 for fatal problems and 5 for non-fatal ones.
QA_ITEMS: dict[str, int] = {
    "礼貌开始": 10, "确认需求": 15, "确认信息": 15, "方案提供": 15, "礼貌结束": 10, "单据": 15,
    "沟通能力(致命)": 15, "沟通能力(非致命)": 5,
}
ASSUMED_MET = ("确认需求", "确认信息", "单据")  # not observable in the log
ATTITUDE = frozenset({"contempt", "impatience", "rhetorical_question", "forbidden_phrase", "refusal", "passive_service"})
_RATE_ZERO_AT = 0.10


def qa_score(*, greeting: bool, closing: bool, replied: bool, severities: Iterable[str]) -> tuple[int, dict[str, int]]:
    """The conversation's score out of 100 and each item's points; a fatal violation zeroes it."""
    sev = set(severities)
    met = {
        "礼貌开始": greeting, "确认需求": True, "确认信息": True, "方案提供": replied, "礼貌结束": closing,
        "单据": True, "沟通能力(致命)": "fatal" not in sev, "沟通能力(非致命)": "non_fatal" not in sev,
    }
    items = {name: (w if met[name] else 0) for name, w in QA_ITEMS.items()}
    return (0 if "fatal" in sev else sum(items.values())), items


def _time_score(seconds: float | None, th: Any) -> float | None:
    if seconds is None:
        return None
    if seconds <= th.response_s:
        return 5.0
    span = th.slow_gap_s - th.response_s
    return max(0.0, 5.0 * (1 - (seconds - th.response_s) / span))


def _rate_score(count: float, per: float) -> float | None:
    if not per:
        return None
    return max(0.0, 5.0 * (1 - (count / per) / _RATE_ZERO_AT))


def _share(value: float | None, *, invert: bool = False) -> float | None:
    if value is None:
        return None
    return 5.0 * (1 - value if invert else value)


def dimensions(m: dict[str, Any], violations: dict[str, int], th: Any) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Score each dimension out of 5 and list warnings for those under WARN_BELOW."""
    msgs = m["agent_messages"]
    attitude = sum(n for c, n in violations.items() if c in ATTITUDE)
    other = sum(n for c, n in violations.items() if c not in ATTITUDE)
    parts: dict[str, dict[str, float | None]] = {
        "efficiency": {
            "first_response_s": _time_score(m["first_response_s"], th),
            "avg_response_s": _time_score(m["avg_response_s"], th),
            "reply_rate_30s": _share(m["reply_rate_30s"]),
            "reply_rate": _share(m["reply_rate"]),
            "slow_share": _share(m["slow_share"], invert=True),
        },
        "attitude": {"attitude_violations_per_message": _rate_score(attitude, msgs)},
        "standards": {
            "greeting_share": _share(m["greeting_share"]),
            "closing_share": _share(m["closing_share"]),
            "qa_score_avg": m["qa_score_avg"] / 20 if m["qa_score_avg"] is not None else None,
        },
        "compliance": {
            "compliance_violations_per_message": _rate_score(other, msgs),
            "overrides_per_message": _rate_score(m["overrides"], msgs),
            "reminders_missed_per_conversation": _rate_score(m["reminders_missed"], m["conversations"]),
        },
    }
    scores: dict[str, float | None] = {}
    warnings: list[dict[str, Any]] = []
    for dim, metrics in parts.items():
        known = {k: v for k, v in metrics.items() if v is not None}
        if not known:
            scores[dim] = None
            continue
        score = round(sum(known.values()) / len(known), 2)
        scores[dim] = score
        if score < WARN_BELOW:
            causes = [k for k, v in known.items() if v < WARN_BELOW] or list(known)
            warnings.append({"dimension": dim, "score": score, "metrics": causes,
                             "metric_scores": {k: round(known[k], 2) for k in causes}})
    return scores, warnings
