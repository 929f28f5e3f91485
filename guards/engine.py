"""The guard: normalise the draft once, run every rule, decide, rewrite, suggest.

`Guard(library).check(text, history=[...])` is a pure function of its arguments and the library:
no I/O, no clock, no randomness. The verdict's action is the strictest of its violations; a
rewrite is applied in place and the rewritten draft is checked again, so a rewrite that is not
clean becomes a block with suggestions instead (rewriting is idempotent by construction).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from phrases.schema import Library

from .context import Context
from .errors import RuleConfigError
from .model import ACTION_RANK, Message, Suggestion, Verdict, Violation, strictest
from .normalize import normalize
from .registry import DETECTORS
from .rules.lexical import LexicalRules

__all__ = ["Guard"]

_PASS = Verdict(action="pass")
_NO_HISTORY = Context()
_FALLBACK_TEMPLATE = Suggestion(template_id="generic-polite", text="这个问题我帮您确认一下,请您稍等。")


def _message(m: Message | Mapping[str, str]) -> Message:
    return m if isinstance(m, Message) else Message(role=m["role"], text=m["text"])  # type: ignore[arg-type]


def _prune(violations: list[Violation], draft: str) -> list[Violation]:
    """One finding per stretch of text: overlapping hits of a rule merge into one, and a hit
    inside another hit of the same category that acts at least as strictly is dropped."""
    if not violations:
        return violations
    merged: list[Violation] = []
    for v in sorted(violations, key=lambda v: (v.rule_id, v.start, -v.end)):
        last = merged[-1] if merged else None
        if last is not None and last.rule_id == v.rule_id and v.start < last.end and v.end > last.end:
            end = v.end
            merged[-1] = last.model_copy(update={"end": end, "matched": draft[last.start : end]})
        elif last is not None and last.rule_id == v.rule_id and v.start >= last.start and v.end <= last.end:
            continue
        else:
            merged.append(v)
    out: list[Violation] = []
    for v in sorted(merged, key=lambda v: (v.start, -(v.end - v.start), -ACTION_RANK[v.action], v.rule_id)):
        if any(
            o.category == v.category and o.start <= v.start and v.end <= o.end
            and ACTION_RANK[o.action] >= ACTION_RANK[v.action]
            for o in out
        ):
            continue
        out.append(v)
    return out


def apply_rewrites(text: str, violations: Iterable[Violation]) -> str:
    """`text` with each rewrite's span replaced; overlapping spans keep the earliest, longest."""
    chosen: list[Violation] = []
    for v in sorted(violations, key=lambda v: (v.start, -(v.end - v.start))):
        if v.replacement is None:
            continue
        if chosen and v.start < chosen[-1].end:
            continue
        chosen.append(v)
    out, pos = [], 0
    for v in chosen:
        out.append(text[pos : v.start])
        out.append(v.replacement or "")
        pos = v.end
    out.append(text[pos:])
    return "".join(out)


class Guard:
    """Checks agent drafts against one phrase library."""

    def __init__(self, library: Library) -> None:
        self.library = library
        enabled = [r for r in library.rules if r.enabled]
        lexical = [r for r in enabled if r.detector == "lexical"]
        reference = "\n".join(t.text for t in library.templates)
        self._detectors = []
        for rule in enabled:
            if rule.detector == "lexical":
                continue
            if rule.detector not in DETECTORS:
                raise RuleConfigError(f"rule '{rule.id}': unknown detector '{rule.detector}'")
            self._detectors.append(DETECTORS[rule.detector](rule, library))
        # Detectors with trigger words run only on drafts where the lexical pass saw one.
        self._gated = frozenset(i for i, d in enumerate(self._detectors) if getattr(d, "triggers", ()))
        triggers = {i: self._detectors[i].triggers for i in self._gated}
        self._lexical = LexicalRules(
            lexical, library.contexts, reference=reference, triggers=triggers, glosses=library.glosses
        )
        self._rules = {r.id: r for r in library.rules}
        self._templates = {t.id: t for t in library.templates}
        self._repeat_rules = frozenset(r.id for r in lexical if r.repeat_action)
        self._said: dict[str, frozenset[str]] = {}

    def _rule_ids_in(self, text: str) -> frozenset[str]:
        """Lexical rule ids an earlier agent message hit (memoised: histories are re-sent)."""
        hit = self._said.get(text)
        if hit is None:
            draft = normalize(text)
            hit = frozenset(v.rule_id for v in self._lexical.check(draft, Context()))
            if len(self._said) > 8192:
                self._said.clear()
            self._said[text] = hit
        return hit

    def _repeated(self, ctx: Context) -> frozenset[str]:
        if not self._repeat_rules or not ctx.agent_texts:
            return frozenset()
        said: set[str] = set()
        for text in ctx.agent_texts:
            said |= self._rule_ids_in(text)
        return frozenset(said & self._repeat_rules)

    def _suggestions(self, violations: list[Violation]) -> tuple[Suggestion, ...]:
        out: dict[str, Suggestion] = {}
        for v in sorted(violations, key=lambda v: -ACTION_RANK[v.action]):
            rule = self._rules.get(v.rule_id)
            for tid in rule.suggest if rule else ():
                t = self._templates.get(tid)
                if t is not None and tid not in out:
                    out[tid] = Suggestion(template_id=tid, text=t.text)
        return tuple(out.values())

    def _violations(self, text: str, ctx: Context) -> list[Violation]:
        draft = normalize(text)
        triggered: set[int] = set()
        found = self._lexical.check(draft, ctx, repeated=self._repeated(ctx), triggered=triggered)
        for i, detector in enumerate(self._detectors):
            if i not in self._gated or i in triggered:
                found.extend(detector.check(draft, ctx))
        return _prune(found, text)

    def check(self, text: str, history: Iterable[Message | Mapping[str, str]] = ()) -> Verdict:
        """The verdict on one draft, given the conversation so far (oldest first)."""
        messages = tuple(_message(m) for m in history)
        ctx = Context.of(messages) if messages else _NO_HISTORY
        violations = self._violations(text, ctx)
        if not violations:
            return _PASS
        action = strictest([v.action for v in violations])
        rewritten = None
        if action == "rewrite":
            rewritten = apply_rewrites(text, (v for v in violations if v.action == "rewrite"))
            again = self._violations(rewritten, ctx)
            if strictest([v.action for v in again]) == "rewrite" and all(v.severity == "non_fatal" for v in again):
                # The fix itself needs a finishing touch (a long reply now missing its full
                # stop): apply it, once.
                rewritten = apply_rewrites(rewritten, (v for v in again if v.action == "rewrite"))
                again = self._violations(rewritten, ctx)
            if rewritten == text or strictest([v.action for v in again]) in ("rewrite", "block"):
                # No safe rewrite: the fixed draft still breaks a rule.
                action, rewritten = "block", None
        suggestions = self._suggestions(violations)
        if action == "block" and not suggestions:
            suggestions = (_FALLBACK_TEMPLATE,)
        return Verdict(action=action, violations=tuple(violations), rewritten=rewritten, suggestions=suggestions)
