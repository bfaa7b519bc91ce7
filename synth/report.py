"""report.json: what was generated, what was dropped and why, and how diverse the text is."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from synth.dedup import normalise


def distinct_ngrams(texts: Iterable[str], n: int) -> float:
    """Distinct-n: unique word n-grams / all word n-grams (higher = more diverse)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = normalise(text).split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def counts(rows: list[dict]) -> dict:
    by_policy: dict[str, dict] = {}
    for policy in sorted({r["policy"] for r in rows}):
        mine = [r for r in rows if r["policy"] == policy]
        by_policy[policy] = {
            "n": len(mine),
            "label": {str(k): v for k, v in sorted(Counter(r["label"] for r in mine).items())},
            "kind": dict(sorted(Counter(r.get("kind", "") for r in mine).items())),
            "style": dict(sorted(Counter(r.get("style", "") for r in mine).items())),
            "lang": dict(sorted(Counter(r.get("lang", "") for r in mine).items())),
            "source": dict(sorted(Counter(r.get("source", "") for r in mine).items())),
        }
    return {"n": len(rows), "label": {str(k): v for k, v in sorted(Counter(r["label"] for r in rows).items())},
            "per_policy": by_policy}


def diversity(rows: list[dict]) -> dict:
    texts = [r["text"] for r in rows]
    lengths = [len(normalise(t).split()) for t in texts]
    return {
        "distinct_1": round(distinct_ngrams(texts, 1), 4),
        "distinct_2": round(distinct_ngrams(texts, 2), 4),
        "distinct_3": round(distinct_ngrams(texts, 3), 4),
        "mean_words": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "languages": len({r.get("lang", "") for r in rows}),
    }


def diversity_by_policy(splits: dict[str, list[dict]]) -> dict:
    """Distinct-1/2/3 (and mean length, languages) per policy, per split and over all splits, plus
    per-style distinct-2 over all splits so a style that repeats itself shows up."""
    everything = [row for rows in splits.values() for row in rows]
    out: dict[str, dict] = {}
    for policy in sorted({r["policy"] for r in everything}):
        mine = [r for r in everything if r["policy"] == policy]
        styles = sorted({r.get("style", "") for r in mine})
        out[policy] = {
            "all": diversity(mine),
            "splits": {name: diversity([r for r in rows if r["policy"] == policy]) for name, rows in splits.items()},
            "style_distinct_2": {style: round(distinct_ngrams([r["text"] for r in mine if r.get("style", "") == style], 2), 4)
                                 for style in styles},
        }
    return out


def build_report(splits: dict[str, list[dict]], *, settings: dict, generation: dict, reflection: dict, dedup: dict,
                 cross_policy: dict[str, int]) -> dict:
    everything = [row for rows in splits.values() for row in rows]
    return {
        "settings": settings,
        "splits": {name: counts(rows) for name, rows in splits.items()},
        "total": counts(everything),
        "generation": generation,
        "reflection": reflection,
        "dedup": dedup,
        "cross_policy_rows": cross_policy,  # per split: other policies' rows relabelled for injection policies
        "diversity": {**diversity(everything), "per_policy": diversity_by_policy(splits)},
    }
