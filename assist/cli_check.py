"""`assist check`: run the guard on a draft, or on JSON lines from stdin, from the command line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

__all__ = ["check"]

_COLOURS = {"pass": "green", "warn": "yellow", "rewrite": "cyan", "block": "red"}


def _load_guard(library: str | None):
    import guards
    import phrases

    try:
        return guards.Guard(phrases.load_library(library))
    except (phrases.LibraryError, guards.RuleConfigError) as err:
        raise click.ClickException(str(err)) from None


def _marked(text: str, spans: list[tuple[int, int]]) -> str:
    """The draft with each violation's span wrapped in ⟦ ⟧ (overlaps merged)."""
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    out, pos = [], 0
    for s, e in merged:
        out += [text[pos:s], "⟦", text[s:e], "⟧"]
        pos = e
    out.append(text[pos:])
    return "".join(out)


def _readable(text: str, verdict: Any) -> str:
    lines = [click.style(verdict.action.upper(), fg=_COLOURS[verdict.action], bold=True) + "  "
             + _marked(text, [(v.start, v.end) for v in verdict.violations])]
    for v in verdict.violations:
        lines.append(f"  [{v.start}:{v.end}] {v.matched!r}  {v.rule_id}  {v.category}/{v.severity} → {v.action}: {v.reason}")
    if verdict.rewritten is not None:
        lines.append(f"  rewritten: {verdict.rewritten}")
    for s in verdict.suggestions:
        lines.append(f"  suggest ({s.template_id}): {s.text}")
    return "\n".join(lines)


def _jsonl(guard: Any, stream: Any, out: Any) -> int:
    errors = 0
    for n, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise ValueError("expected an object with a string 'text'")
            history = item.get("history") or []
            if not isinstance(history, list) or not all(
                isinstance(m, dict) and m.get("role") in ("customer", "agent") and isinstance(m.get("text"), str)
                for m in history
            ):
                raise ValueError("'history' must be a list of {role: customer|agent, text}")
            result: dict[str, Any] = guard.check(item["text"], history=history).model_dump(mode="json")
        except (ValueError, json.JSONDecodeError) as err:
            errors += 1
            result = {"error": {"code": "invalid_line", "message": str(err), "details": [{"line": n}]}}
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
        out.flush()
    return errors


@click.command()
@click.argument("text", required=False)
@click.option("--jsonl", "jsonl", is_flag=True, help="Read JSON lines {text, history} from stdin; write one verdict per line.")
@click.option("--library", type=click.Path(dir_okay=True), default=None, help="A library JSON file, folder, or .txt word list.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict of TEXT as JSON.")
def check(text: str | None, jsonl: bool, library: str | None, as_json: bool) -> None:
    """Check a draft reply and show the verdict with the matched spans marked.

    Example: assist check "你自己不会看吗"
    """
    guard = _load_guard(library)
    if jsonl:
        _jsonl(guard, sys.stdin, sys.stdout)
        return
    if text is None:
        raise click.UsageError("give TEXT to check, or --jsonl to read JSON lines from stdin")
    verdict = guard.check(text)
    if as_json:
        click.echo(verdict.model_dump_json())
    else:
        click.echo(_readable(text, verdict))
