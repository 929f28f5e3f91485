"""Per-draft latency of Guard.check against a bare Aho-Corasick pass over the same phrases and drafts.

    python bench/guard.py [--drafts 2000] [--rounds 5]

Two library sizes: the default library, and the default plus a 10,000-phrase word list. For each,
the same 200-character drafts go through `Guard.check` (all normalisation on) and through a bare
pyahocorasick iteration over the raw draft with an automaton of the same phrases. The two are
interleaved draft by draft (which goes first alternates by round), so machine noise hits both
alike: timing whole rounds one side after the other let the slower side's longer rounds catch more
of other processes' bursts. Prints medians, p99 and the ratio, two ways:

* round medians: the median over drafts in each round, then the median of the rounds;
* best of rounds: each draft's fastest time over the rounds, then the median over drafts. On a
  shared machine this drops the moments another process held the core, for both sides alike.

The guard itself scans with ahocorasick_rs; the baseline stays the pyahocorasick pass named by
the target.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ahocorasick

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import guards  # noqa: E402
import phrases  # noqa: E402
from guards.normalize import fold_phrase  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"


def make_drafts(n: int, rng: random.Random) -> list[str]:
    """200-character drafts stitched from the labelled corpus: mostly good replies, a violation in some.

    Real agent language (the corpus rows), not a handful of repeated sentences, so hit counts
    and pattern wake-ups are those of real drafts.
    """
    good: list[str] = []
    bad: list[str] = []
    for path in sorted(CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                (good if row["kind"] in ("clean", "hard_negative") else bad).append(row["text"])
    drafts = []
    for i in range(n):
        parts: list[str] = []
        while sum(map(len, parts)) < 200:
            # Distinct rows: a reply that pastes the same sentence twice is a repetition finding,
            # not an ordinary draft.
            row = rng.choice(good)
            if row not in parts:
                parts.append(row)
        if i % 4 == 0:
            parts.insert(rng.randrange(len(parts)), rng.choice(bad))
        drafts.append("".join(parts)[:200])
    return drafts


def word_list(n: int, rng: random.Random) -> list[str]:
    common = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从"
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(common) for _ in range(rng.randint(3, 6))))
    return sorted(out)


def bare_automaton(library: phrases.Library) -> ahocorasick.Automaton:
    a = ahocorasick.Automaton()
    for rule in library.rules:
        for p in [*rule.phrases, *rule.variants]:
            key = fold_phrase(p.strip("^$"))
            if key:
                a.add_word(key, rule.id)
    a.make_automaton()
    return a


def timed_pair(first, second, drafts: list[str]) -> tuple[list[float], list[float]]:
    """µs per draft for both functions, interleaved draft by draft, so that both sides sample the
    same moments of a noisy machine (a round of the slower side lasts four times as long and used
    to catch more of other processes' bursts)."""
    a: list[float] = []
    b: list[float] = []
    clock = time.perf_counter_ns
    for d in drafts:
        t0 = clock()
        first(d)
        t1 = clock()
        second(d)
        t2 = clock()
        a.append((t1 - t0) / 1000)
        b.append((t2 - t1) / 1000)
    return a, b


def p99(xs: list[float]) -> float:
    return sorted(xs)[int(len(xs) * 0.99) - 1]


def run(name: str, library: phrases.Library, drafts: list[str], rounds: int) -> dict:
    guard = guards.Guard(library)
    auto = bare_automaton(library)

    def bare(d: str) -> None:
        for _ in auto.iter(d):
            pass

    for d in drafts[:200]:  # warm caches (translate table, regex) before timing
        guard.check(d)
        bare(d)
    g_all: list[float] = []
    b_all: list[float] = []
    g_medians, b_medians = [], []
    g_best = [float("inf")] * len(drafts)
    b_best = [float("inf")] * len(drafts)
    for r in range(rounds):
        if r % 2 == 0:
            b, g = timed_pair(bare, guard.check, drafts)
        else:
            g, b = timed_pair(guard.check, bare, drafts)
        b_all += b
        g_all += g
        b_medians.append(statistics.median(b))
        g_medians.append(statistics.median(g))
        g_best = list(map(min, g_best, g))
        b_best = list(map(min, b_best, b))
    gm, bm = statistics.median(g_medians), statistics.median(b_medians)
    gb, bb = statistics.median(g_best), statistics.median(b_best)
    return {
        "library": name, "phrases": sum(len(r.phrases) + len(r.variants) for r in library.rules),
        "guard_median_us": gm, "guard_p99_us": p99(g_all), "bare_median_us": bm, "bare_p99_us": p99(b_all),
        "ratio": gm / bm, "guard_best_us": gb, "bare_best_us": bb, "best_ratio": gb / bb,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drafts", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--library", default=None, help="library to start from (default: the packaged one)")
    args = ap.parse_args()
    rng = random.Random(7)
    drafts = make_drafts(args.drafts, rng)
    default = phrases.load_library(args.library)
    big_data = default.model_dump()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.txt"
        path.write_text("\n".join(word_list(10_000, rng)), encoding="utf-8")
        added = phrases.load_library(path)
    # The word list's rules and template on top of the chosen library.
    known = {r["id"] for r in big_data["rules"]}
    big_data["rules"] += [r.model_dump() for r in added.rules if r.id.startswith("wordlist-") and r.id not in known]
    big_data["templates"] += [t.model_dump() for t in added.templates if t.id == "wordlist-polite"]
    big = phrases.library_from_data(big_data)
    rows = [run("default", default, drafts, args.rounds), run("default + 10,000 words", big, drafts, args.rounds)]
    print(f"{args.drafts} drafts of 200 chars, {args.rounds} rounds, guard and bare interleaved draft by draft;"
          " times in µs per draft\n")
    print("| library | phrases | Guard.check median | p99 | bare AC median | p99 | ratio (round medians) "
          "| Guard.check / bare, best of rounds | ratio (best of rounds) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['library']} | {r['phrases']} | {r['guard_median_us']:.1f} | {r['guard_p99_us']:.1f} | "
            f"{r['bare_median_us']:.1f} | {r['bare_p99_us']:.1f} | {r['ratio']:.2f}× | "
            f"{r['guard_best_us']:.1f} / {r['bare_best_us']:.1f} | {r['best_ratio']:.2f}× |"
        )


if __name__ == "__main__":
    main()
