"""Quality floors of the default guard on the labelled corpus, and the harness that measures them."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import guards
import phrases
from guards.model import Verdict, Violation

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus"

# bench/ is a folder of scripts, not a package: load the harness module from its file.
_spec = importlib.util.spec_from_file_location("bench_quality", REPO / "bench" / "quality.py")
assert _spec and _spec.loader
quality = importlib.util.module_from_spec(_spec)
sys.modules["bench_quality"] = quality
_spec.loader.exec_module(quality)

# Floors from the brief; the corpus is never relabelled to meet them.
RECALL_FLOOR = {"direct": 0.98, "evasion": 0.95, "paraphrase": 0.80}
FP_CEILING = {"hard_negative": 0.01, "clean": 0.01}
MIN_ROWS = {"direct": 180, "evasion": 120, "paraphrase": 100, "hard_negative": 130, "clean": 100}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return quality.load_corpus(CORPUS)


@pytest.fixture(scope="module")
def result(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return quality.evaluate(guards.Guard(phrases.load_library()), rows)


def _listing(items: list[dict[str, Any]], limit: int = 40) -> str:
    lines = [f"{f['where']} expected={f['expected']} got={f['action']} {f['categories']} {f['text']!r}"
             for f in items[:limit]]
    return "\n".join(lines) + (f"\n... and {len(items) - limit} more" if len(items) > limit else "")


# --- the corpus itself -------------------------------------------------------------------------


def test_every_corpus_line_parses_with_known_kind_category_and_action(rows: list[dict[str, Any]]) -> None:
    files = sorted(p.name for p in CORPUS.glob("*.jsonl"))
    assert files == ["clean.jsonl", "direct.jsonl", "evasion.jsonl", "hard_negative.jsonl", "paraphrase.jsonl"]
    for path in CORPUS.glob("*.jsonl"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            row = json.loads(line)  # no blank or broken lines either
            assert row["kind"] == path.stem, f"{path.name}:{n} has kind {row['kind']}"
    assert len(rows) == sum(1 for p in CORPUS.glob("*.jsonl") for _ in p.read_text("utf-8").splitlines())


def test_corpus_has_the_required_size_and_spread(rows: list[dict[str, Any]]) -> None:
    per_kind = Counter(r["kind"] for r in rows)
    for kind, floor in MIN_ROWS.items():
        assert per_kind[kind] >= floor, f"{kind}: {per_kind[kind]} rows < {floor}"
    direct = Counter(c for r in rows if r["kind"] == "direct" for c in r["categories"])
    thin = {c: direct[c] for c in phrases.CATEGORIES if direct[c] < 10}
    assert not thin, f"direct rows per category below 10: {thin}"
    keyed = [(r["text"], json.dumps(r.get("history"), ensure_ascii=False)) for r in rows]
    assert len(keyed) == len(set(keyed)), "duplicate rows"


def test_zero_width_characters_are_written_as_escapes() -> None:
    raw = (CORPUS / "evasion.jsonl").read_text(encoding="utf-8")
    assert "\\u200b" in raw and "\\u200d" in raw and "\\ufeff" in raw
    assert not any(ch in raw for ch in "\u200b\u200c\u200d\ufeff")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param('{"text": "x", "kind": "direct", "categories": ["rudeness"], "action": "block", "note": ""}',
                     "categories", id="unknown-category"),
        pytest.param('{"text": "x", "kind": "weird", "categories": [], "action": "pass", "note": ""}',
                     "unknown kind", id="unknown-kind"),
        pytest.param('{"text": "x", "kind": "clean", "categories": ["contempt"], "action": "pass", "note": ""}',
                     "no categories", id="negative-with-category"),
        pytest.param('{"text": "x", "kind": "direct", "categories": ["contempt"], "action": "pass", "note": ""}',
                     "needs categories", id="positive-passing"),
        pytest.param('{"text": "x", "kind": "clean", "categories": [], "action": "pass", "note": "",'
                     ' "history": [{"role": "bot", "text": "hi"}]}', "history", id="bad-history-role"),
        pytest.param('{"text": "x", "kind": "clean"', "not JSON", id="broken-json"),
    ],
)
def test_load_corpus_rejects_a_bad_line_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = '{"text": "好的。", "kind": "clean", "categories": [], "action": "pass", "note": ""}'
    (tmp_path / "mixed.jsonl").write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(quality.CorpusError, match=rf"mixed\.jsonl:2: .*{message}"):
        quality.load_corpus(tmp_path)


# --- the scoring arithmetic, on real Verdict values --------------------------------------------


def _verdict(action: str, *categories: str) -> Verdict:
    return Verdict(action=action, violations=tuple(
        Violation(rule_id=f"r-{c}", category=c, severity="fatal", action=action, matched="x", start=0, end=1,
                  reason="test") for c in categories))


def test_score_counts_recall_precision_and_false_positives() -> None:
    def r(kind: str, cats: list[str], line: int) -> dict[str, Any]:
        return {"text": "t", "kind": kind, "categories": cats, "action": "block" if cats else "pass",
                "note": "", "file": "f.jsonl", "line": line}

    rows = [r("direct", ["contempt"], 1), r("direct", ["contempt", "rhetorical_question"], 2),
            r("direct", ["refusal"], 3), r("evasion", ["contempt"], 4),
            r("clean", [], 5), r("clean", [], 6), r("hard_negative", [], 7)]
    verdicts = [_verdict("block", "contempt"), _verdict("block", "rhetorical_question"),
                _verdict("block", "contempt"),  # wrong category: a miss and a false contempt report
                _verdict("pass", "contempt"),  # a pass verdict never counts as caught
                _verdict("rewrite", "forbidden_phrase"), _verdict("warn", "repetition"), _verdict("pass")]
    out = quality.score(rows, verdicts)
    assert out["kinds"]["direct"] == {"rows": 3, "caught": 2, "recall": 2 / 3}
    assert out["kinds"]["evasion"]["recall"] == 0
    assert out["kinds"]["clean"] == {"rows": 2, "fp": 1, "fp_rate": 0.5, "warn": 1, "warn_rate": 0.5}
    assert out["kinds"]["hard_negative"]["fp"] == 0
    contempt = out["categories"]["contempt"]
    assert (contempt["expected"], contempt["caught"], contempt["reported"], contempt["correct"]) == (3, 1, 2, 1)
    assert out["categories"]["rhetorical_question"]["precision"] == 1.0
    assert out["categories"]["refusal"]["recall"] == 0
    assert out["categories"]["wait_time"]["recall"] is None
    assert [m["where"] for m in out["misses"]] == ["f.jsonl:3", "f.jsonl:4"]
    assert [m["where"] for m in out["false_positives"]] == ["f.jsonl:5"]
    assert [m["where"] for m in out["off_label"]] == ["f.jsonl:3"]
    assert out["action_agreement"] == 1.0
    assert "MISSES (2)" in quality.render(out, misses=True)


# --- the floors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(RECALL_FLOOR))
def test_recall_meets_the_floor(result: dict[str, Any], kind: str) -> None:
    got = result["kinds"][kind]["recall"]
    misses = [m for m in result["misses"] if m["kind"] == kind]
    assert got >= RECALL_FLOOR[kind], f"{kind} recall {got:.3f} < {RECALL_FLOOR[kind]}\n{_listing(misses)}"


@pytest.mark.parametrize("kind", sorted(FP_CEILING))
def test_false_positive_rate_stays_under_the_ceiling(result: dict[str, Any], kind: str) -> None:
    got = result["kinds"][kind]["fp_rate"]
    fps = [f for f in result["false_positives"] if f["kind"] == kind]
    assert got <= FP_CEILING[kind], f"{kind} rewrite/block rate {got:.3f} > {FP_CEILING[kind]}\n{_listing(fps)}"


# --- the blind sets: no rule change may lose what they catch ------------------------------------

# Rows caught (direct, evasion, paraphrase) per blind set with the current library. The first-run
# figures are in README; these are the figures after the rules each set asked for, so a change
# that loses a row, or rewrites or blocks any of their good replies, fails here.
BLIND = CORPUS / "blind"
BLIND_CAUGHT = {
    "2026-11-28-b.jsonl": (50, 30, 49),
    "2026-11-28-c.jsonl": (50, 30, 50),
    "2026-11-28-d.jsonl": (50, 30, 50),
    "2026-11-28.jsonl": (50, 30, 45),
    "2026-11-29-aa.jsonl": (49, 28, 46),
    "2026-11-29-ab.jsonl": (50, 30, 48),
    "2026-11-29-ac.jsonl": (50, 30, 48),
    "2026-11-29-ad.jsonl": (50, 30, 48),
    "2026-11-29-ae.jsonl": (50, 29, 50),
    "2026-11-29-af.jsonl": (50, 30, 48),
    "2026-11-29-ag.jsonl": (50, 30, 48),
    "2026-11-29-e.jsonl": (49, 29, 42),
    "2026-11-29-f.jsonl": (50, 30, 50),
    "2026-11-29-g.jsonl": (50, 30, 50),
    "2026-11-29-h.jsonl": (49, 30, 49),
    "2026-11-29-i.jsonl": (50, 30, 50),
    "2026-11-29-j.jsonl": (47, 29, 49),
    "2026-11-29-k.jsonl": (45, 27, 44),
    "2026-11-29-l.jsonl": (47, 30, 45),
    "2026-11-29-m.jsonl": (49, 30, 49),
    "2026-11-29-n.jsonl": (50, 30, 49),
    "2026-11-29-o.jsonl": (49, 30, 47),
    "2026-11-29-p.jsonl": (50, 30, 47),
    "2026-11-29-q.jsonl": (50, 30, 47),
    "2026-11-29-r.jsonl": (50, 30, 48),
    "2026-11-29-s.jsonl": (49, 30, 47),
    "2026-11-29-t.jsonl": (49, 30, 48),
    "2026-11-29-u.jsonl": (48, 30, 47),
    "2026-11-29-v.jsonl": (50, 30, 50),
    "2026-11-29-w.jsonl": (50, 30, 49),
    "2026-11-29-x.jsonl": (50, 29, 48),
    "2026-11-29-y.jsonl": (50, 30, 50),
    "2026-11-29-z.jsonl": (49, 30, 45),
    "2026-11-30-ah.jsonl": (50, 30, 47),
    "2026-11-30-ai.jsonl": (50, 29, 47),
    "2026-11-30-aj.jsonl": (49, 29, 48),
    "2026-11-30-ak.jsonl": (47, 29, 45),
    "2026-11-30-al.jsonl": (49, 30, 49),
    "2026-11-30-am.jsonl": (48, 29, 48),
    "2026-11-30-an.jsonl": (49, 28, 49),
    "2026-11-30-ao.jsonl": (46, 30, 43),
    "2026-11-30-ap.jsonl": (49, 30, 46),
    "2026-11-30-aq.jsonl": (49, 30, 48),
    "2026-11-30-ar.jsonl": (49, 30, 48),
    "2026-11-30-as.jsonl": (50, 28, 47),
    "2026-11-30-at.jsonl": (50, 29, 48),
    "2026-11-30-au.jsonl": (47, 29, 46),
    "2026-11-30-av.jsonl": (48, 29, 45),
    "2026-11-30-aw.jsonl": (49, 30, 47),
    "2026-11-30-ax.jsonl": (47, 29, 45),
    "2026-11-30-ay.jsonl": (50, 30, 50),
    "2026-11-30-az.jsonl": (48, 30, 47),
    "2026-11-30-ba.jsonl": (48, 29, 49),
    "2026-11-30-bb.jsonl": (50, 29, 47),
    "2026-11-30-bc.jsonl": (50, 30, 49),
    "2026-11-30-bd.jsonl": (50, 29, 50),
    "2026-11-30-be.jsonl": (50, 30, 50),
    "2026-11-30-bf.jsonl": (49, 30, 48),
    "2026-11-30-bg.jsonl": (50, 30, 49),
    "2026-11-30-bh.jsonl": (50, 30, 50),
    "2026-11-30-bi.jsonl": (50, 30, 50),
    "2026-11-30-bj.jsonl": (50, 30, 50),
    "2026-11-30-bk.jsonl": (50, 30, 50),
    "2026-11-30-bl.jsonl": (49, 30, 47),
    "2026-11-30-bm.jsonl": (49, 30, 50),
    "2026-11-30-bn.jsonl": (50, 30, 49),
    "2026-11-30-bo.jsonl": (50, 30, 48),
    "2026-11-30-bp.jsonl": (49, 30, 46),
    "2026-11-30-bq.jsonl": (50, 30, 49),
    "2026-11-30-br.jsonl": (49, 29, 48),
    "2026-11-30-bs.jsonl": (50, 29, 49),
    "2026-11-30-bt.jsonl": (50, 30, 50),
    "2026-11-30-bu.jsonl": (50, 29, 50),
    "2026-11-30-bv.jsonl": (50, 30, 50),
    "2026-11-30-bw.jsonl": (50, 30, 50),
    "2026-11-30-bx.jsonl": (49, 30, 49),
    "2026-11-30-by.jsonl": (49, 30, 49),
    "2026-11-30-bz.jsonl": (50, 30, 48),
    "2026-11-30-ca.jsonl": (50, 30, 49),
    "2026-11-30-cb.jsonl": (50, 30, 50),
    "2026-11-30-cc.jsonl": (49, 30, 50),
    "2026-11-30-cd.jsonl": (50, 30, 49),
    "2026-11-30-ce.jsonl": (49, 29, 49),
    "2026-11-30-cf.jsonl": (49, 30, 49),
    "2026-11-30-cg.jsonl": (49, 29, 49),
    "2026-11-30-ch.jsonl": (42, 24, 27),
    "2026-11-30-ci.jsonl": (50, 30, 50),
    "2026-11-30-cj.jsonl": (50, 30, 48),
    "2026-11-30-ck.jsonl": (50, 30, 47),
    "2026-11-30-cl.jsonl": (49, 30, 50),
    "2026-11-30-cm.jsonl": (50, 30, 49),
    "2026-11-30-cn.jsonl": (50, 29, 48),
    "2026-11-30-co.jsonl": (50, 30, 49),
    "2026-11-30-cp.jsonl": (50, 30, 49),
    "2026-11-30-cq.jsonl": (49, 30, 47),
    "2026-11-30-cr.jsonl": (49, 30, 48),
    "2026-11-30-cs.jsonl": (42, 21, 21),
    "2026-11-30-ct.jsonl": (50, 30, 46),
    "2026-11-30-cu.jsonl": (50, 29, 50),
    "2026-11-30-cv.jsonl": (50, 30, 46),
    "2026-11-30-cw.jsonl": (33, 18, 20),
    "2026-11-30-cx.jsonl": (49, 30, 46),
    "2026-11-30-cy.jsonl": (50, 30, 49),
    "2026-11-30-cz.jsonl": (49, 28, 47),
    "2026-11-30-da.jsonl": (50, 30, 49),
    "2026-11-30-db.jsonl": (48, 30, 47),
    "2026-11-30-dc.jsonl": (50, 30, 48),
    "2026-11-30-dd.jsonl": (41, 16, 7),
    "2026-11-30-de.jsonl": (50, 30, 50),
    "2026-11-30-df.jsonl": (50, 30, 48),
    "2026-11-30-dg.jsonl": (49, 30, 49),
    "2026-11-30-dh.jsonl": (50, 30, 48),
}


@pytest.fixture(scope="module")
def blind_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    guard = guards.Guard(phrases.load_library())
    out = {}
    for path in sorted(BLIND.glob("*.jsonl")):
        one = tmp_path_factory.mktemp(path.stem)
        (one / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
        out[path.name] = quality.evaluate(guard, quality.load_corpus(one))
    return out


def test_every_blind_set_has_floors(blind_results: dict[str, dict[str, Any]]) -> None:
    assert sorted(blind_results) == sorted(BLIND_CAUGHT), "a new blind set needs its row in BLIND_CAUGHT"


@pytest.mark.parametrize("name", sorted(BLIND_CAUGHT))
def test_blind_set_keeps_what_it_catches(blind_results: dict[str, dict[str, Any]], name: str) -> None:
    result = blind_results[name]
    kinds = result["kinds"]
    caught = tuple(kinds[k]["caught"] for k in ("direct", "evasion", "paraphrase"))
    misses = _listing(result["misses"])
    assert all(c >= f for c, f in zip(caught, BLIND_CAUGHT[name])), f"{name}: {caught} < {BLIND_CAUGHT[name]}\n{misses}"
    assert not result["false_positives"], f"{name}: false positives\n{_listing(result['false_positives'])}"
