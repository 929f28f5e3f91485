"""Measure the guard's recall and false-positive rate on the labelled corpus in tests/corpus.

Usage:  python bench/quality.py [--library PATH] [--corpus DIR] [--misses] [--json] [--split dev|held-out]

Positive rows (kinds direct, evasion, paraphrase) count as caught when the verdict holds a
violation of at least one expected category and its action is not "pass". Negative rows
(hard_negative, clean) count as false positives when the verdict's action is rewrite or block;
warn verdicts on them are reported separately, since a warning does not change what is sent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere, without installing bench
    sys.path.insert(0, str(REPO))

from guards.model import Verdict  # noqa: E402
from phrases import CATEGORIES  # noqa: E402

__all__ = [
    "CorpusError",
    "NEGATIVE_KINDS",
    "POSITIVE_KINDS",
    "evaluate",
    "load_corpus",
    "main",
    "render",
    "score",
    "split_of",
]

POSITIVE_KINDS: tuple[str, ...] = ("direct", "evasion", "paraphrase")
NEGATIVE_KINDS: tuple[str, ...] = ("hard_negative", "clean")
ACTIONS: tuple[str, ...] = ("pass", "warn", "rewrite", "block")
FALSE_POSITIVE_ACTIONS = frozenset({"rewrite", "block"})
DEFAULT_CORPUS = REPO / "tests" / "corpus"
_KEYS = {"text", "history", "kind", "categories", "action", "note"}


class CorpusError(ValueError):
    """A corpus line that does not parse or carries an unknown kind, category or action."""


class _Checker(Protocol):
    def check(self, text: str, history: Iterable[Mapping[str, str]] = ()) -> Verdict: ...


def _validate(row: Any, where: str) -> dict[str, Any]:
    """Check one decoded line against the corpus format; raise CorpusError naming file:line."""
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: a line must be a JSON object")
    unknown = set(row) - _KEYS
    missing = {"text", "kind", "categories", "action", "note"} - set(row)
    if unknown or missing:
        raise CorpusError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    if not isinstance(row["text"], str) or not row["text"].strip():
        raise CorpusError(f"{where}: 'text' must be a non-empty string")
    kind = row["kind"]
    if kind not in POSITIVE_KINDS + NEGATIVE_KINDS:
        raise CorpusError(f"{where}: unknown kind {kind!r}")
    cats = row["categories"]
    if not isinstance(cats, list) or any(c not in CATEGORIES for c in cats):
        raise CorpusError(f"{where}: categories {cats!r} must be a list of {list(CATEGORIES)}")
    if row["action"] not in ACTIONS:
        raise CorpusError(f"{where}: unknown action {row['action']!r}")
    if kind in POSITIVE_KINDS and (not cats or row["action"] == "pass"):
        raise CorpusError(f"{where}: a {kind} row needs categories and an action other than pass")
    if kind in NEGATIVE_KINDS and (cats or row["action"] != "pass"):
        raise CorpusError(f"{where}: a {kind} row has no categories and action 'pass'")
    for m in row.get("history") or []:
        if not (isinstance(m, dict) and set(m) == {"role", "text"} and m["role"] in ("customer", "agent")):
            raise CorpusError(f"{where}: history items are {{'role': 'customer'|'agent', 'text': ...}}")
    return row


def load_corpus(folder: str | Path = DEFAULT_CORPUS) -> list[dict[str, Any]]:
    """Read every *.jsonl file in `folder`; each row also gets `file` and `line` for reports."""
    files = sorted(Path(folder).glob("*.jsonl"))
    if not files:
        raise CorpusError(f"{folder}: no *.jsonl corpus files")
    rows: list[dict[str, Any]] = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{n}"
            try:
                decoded = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{where}: not JSON ({err.msg})") from None
            row = _validate(decoded, where)
            rows.append({**row, "file": path.name, "line": n})
    return rows


def split_of(row: Mapping[str, Any]) -> str:
    """`dev` or `held-out`: a stable half of the corpus by a hash of the text.

    Rule writers look at dev misses only; held-out numbers show whether a change generalises
    or merely fits the rows it was made for.
    """
    return "dev" if hashlib.sha1(row["text"].encode("utf-8")).hexdigest()[0] in "01234567" else "held-out"


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _finding(row: Mapping[str, Any], verdict: Verdict) -> dict[str, Any]:
    return {
        "where": f"{row['file']}:{row['line']}",
        "kind": row["kind"],
        "text": row["text"],
        "expected": list(row["categories"]),
        "action": verdict.action,
        "categories": verdict.categories,
        "rule_ids": verdict.rule_ids,
        "matched": [v.matched for v in verdict.violations],
    }


def score(rows: Sequence[Mapping[str, Any]], verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """Turn rows and the guard's verdicts for them into recall, precision and false-positive figures."""
    if len(rows) != len(verdicts):
        raise ValueError(f"{len(rows)} rows but {len(verdicts)} verdicts")
    kinds: dict[str, dict[str, Any]] = {}
    cats = {c: {"expected": 0, "caught": 0, "reported": 0, "correct": 0} for c in CATEGORIES}
    misses: list[dict[str, Any]] = []
    false_positives: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    off_label: list[dict[str, Any]] = []
    action_agree = 0
    for row, verdict in zip(rows, verdicts):
        expected = set(row["categories"])
        got = set(verdict.categories) if verdict.action != "pass" else set()
        k = kinds.setdefault(row["kind"], {"rows": 0, "caught": 0, "fp": 0, "warn": 0})
        k["rows"] += 1
        for c in got:
            cats[c]["reported"] += 1
            cats[c]["correct"] += c in expected
        if row["kind"] in POSITIVE_KINDS:
            for c in expected:
                cats[c]["expected"] += 1
                cats[c]["caught"] += c in got
            if got - expected:
                off_label.append(_finding(row, verdict))
            if expected & got:
                k["caught"] += 1
                action_agree += verdict.action == row["action"]
            else:
                misses.append(_finding(row, verdict))
        elif verdict.action in FALSE_POSITIVE_ACTIONS:
            k["fp"] += 1
            false_positives.append(_finding(row, verdict))
        elif verdict.action == "warn":
            k["warn"] += 1
            warnings.append(_finding(row, verdict))
    for kind, k in kinds.items():
        if kind in POSITIVE_KINDS:
            kinds[kind] = {"rows": k["rows"], "caught": k["caught"], "recall": _ratio(k["caught"], k["rows"])}
        else:
            kinds[kind] = {"rows": k["rows"], "fp": k["fp"], "fp_rate": _ratio(k["fp"], k["rows"]),
                           "warn": k["warn"], "warn_rate": _ratio(k["warn"], k["rows"])}
    for c in cats.values():
        c["recall"] = _ratio(c["caught"], c["expected"])
        c["precision"] = _ratio(c["correct"], c["reported"])
    caught = sum(k.get("caught", 0) for k in kinds.values())
    return {
        "rows": len(rows),
        "kinds": kinds,
        "categories": cats,
        "action_agreement": _ratio(action_agree, caught),
        "misses": misses,
        "false_positives": false_positives,
        "warnings": warnings,
        "off_label": off_label,
    }


def evaluate(guard: _Checker, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Run `guard.check` on every row (with its history) and score the verdicts."""
    verdicts: list[Verdict] = []
    took: list[float] = []
    for row in rows:
        start = time.perf_counter()
        verdicts.append(guard.check(row["text"], history=row.get("history") or ()))
        took.append(time.perf_counter() - start)
    result = score(rows, verdicts)
    # Informational only: speed is judged by the latency bench, never asserted here.
    result["check_ms_median"] = statistics.median(took) * 1000 if took else None
    return result


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{x * 100:5.1f}%"


def render(result: Mapping[str, Any], *, misses: bool = False) -> str:
    """Format an `evaluate` result as plain-text tables (and, if asked, every miss)."""
    out = [f"corpus rows: {result['rows']}", "", "kind            rows  caught  recall"]
    kinds = result["kinds"]
    for kind in POSITIVE_KINDS:
        if kind in kinds:
            k = kinds[kind]
            out.append(f"{kind:<14} {k['rows']:5} {k['caught']:7}  {_pct(k['recall'])}")
    out += ["", "kind            rows  rewrite/block  fp-rate   warn  warn-rate"]
    for kind in NEGATIVE_KINDS:
        if kind in kinds:
            k = kinds[kind]
            out.append(f"{kind:<14} {k['rows']:5} {k['fp']:14}  {_pct(k['fp_rate'])} {k['warn']:6}  {_pct(k['warn_rate'])}")
    out += ["", "category             expected caught  recall  reported correct precision"]
    for name, c in result["categories"].items():
        out.append(f"{name:<20} {c['expected']:8} {c['caught']:6}  {_pct(c['recall'])} {c['reported']:8} "
                   f"{c['correct']:7}  {_pct(c['precision'])}")
    out += ["", f"action agreement on caught rows: {_pct(result['action_agreement'])}"]
    if result.get("check_ms_median") is not None:
        out.append(f"median check time: {result['check_ms_median']:.2f} ms")
    if misses:
        for title, items in (("MISSES", result["misses"]), ("FALSE POSITIVES", result["false_positives"]),
                             ("WARNINGS ON NEGATIVES", result["warnings"]),
                             ("OFF-LABEL CATEGORIES ON POSITIVE ROWS", result["off_label"])):
            out += ["", f"{title} ({len(items)})"]
            for f in items:
                out.append(f"  {f['where']:<22} [{f['kind']}] expected={','.join(f['expected']) or '-'} "
                           f"got={f['action']} {','.join(f['categories']) or '-'} rules={','.join(f['rule_ids']) or '-'}")
                out.append(f"      {f['text']!r}  matched={f['matched']}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: load the library and corpus, evaluate, print the tables."""
    import guards
    import phrases

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", help="phrase library (JSON file, folder or .txt word list); default zh-CN library")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="folder of *.jsonl corpus files")
    ap.add_argument("--misses", action="store_true",
                    help="list every miss, false positive, warning and off-label category")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    ap.add_argument("--split", choices=("all", "dev", "held-out"), default="all",
                    help="half of the corpus: rule writers tune on dev and are judged on held-out")
    args = ap.parse_args(argv)
    rows = load_corpus(args.corpus)
    if args.split != "all":
        rows = [r for r in rows if split_of(r) == args.split]
    guard = guards.Guard(phrases.load_library(args.library))
    result = evaluate(guard, rows)
    print(json.dumps(result, ensure_ascii=False, indent=1) if args.json else render(result, misses=args.misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
