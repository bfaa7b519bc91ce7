"""The two threshold rules side by side: `f1` (best validation F1) vs `balanced` (best TPR - FPR).

    python -m experiments.threshold_rules RUN_DIR [RUN_DIR ...] [--threads 2]

A RUN_DIR holds `data_s{SEED}/` data directories (train, validation, test from `uniguard synth`) and,
optionally, `guard_s{SEED}/` guards trained on them: the layout `experiments.guard_vs_tfidf --out`
writes. Per seed, TF-IDF + LR is fitted on the data's training split and the guard (when present) is
loaded; each model's threshold is set on validation by each rule, then read on the synthetic test split
and on the policy's real offline dev set (all of its rows, `uniguard devset`). Prints one JSON line per
model and rule with means over every seed of every RUN_DIR: F1, false-positive rate, recall, accuracy.
The guards are scored once; only the threshold differs between rules.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from trainers.metrics import THRESHOLD_RULES, best_threshold, binary_metrics

METRICS = ("f1", "fpr", "recall", "accuracy")


def seed_dirs(run: Path) -> list[Path]:
    found = sorted(run.glob("data_s*"), key=lambda p: int(p.name.removeprefix("data_s")))
    if not found:
        raise SystemExit(f"{run}: no data_s<SEED> directories; pass an `experiments.guard_vs_tfidf --out` directory")
    return found


def scored_splits(data_dir: Path, guard_dir: Path, dev_cache: dict) -> dict[str, dict[str, tuple]]:
    """{model: {split: (labels, scores)}} for validation, test and the real dev set."""
    from trainers.baselines import TfidfBaseline
    from trainers.data import Example, load_splits, policy_names, resolve_policies
    from fitness.devsets import load_devset
    from fitness.evaluate import score_examples
    from trainers.guard import Guard

    splits = load_splits([data_dir], test_required=True)
    (policy,) = policy_names(splits["train"])
    if policy not in dev_cache:
        dev_cache[policy] = [Example(r["text"], r["label"], r["policy"]) for r in load_devset(policy, 0)]
    examples = {"validation": splits["validation"], "test": splits["test"], "dev": dev_cache[policy]}
    policies = resolve_policies([policy])
    models = {"tfidf": TfidfBaseline().fit(splits["train"])}
    if guard_dir.is_dir():
        models["guard"] = Guard.load(guard_dir)
    return {
        name: {split: (np.array([e.label for e in rows]), score_examples(model, rows, policies)) for split, rows in examples.items()}
        for name, model in models.items()
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    results: dict[tuple, list[dict]] = defaultdict(list)
    dev_cache: dict = {}
    for run in args.runs:
        for data_dir in seed_dirs(run):
            scored = scored_splits(data_dir, run / data_dir.name.replace("data_", "guard_"), dev_cache)
            for model, splits in scored.items():
                for rule in THRESHOLD_RULES:
                    threshold = best_threshold(*splits["validation"], rule)[0]
                    results[model, rule].append({
                        f"{split}_{m}": binary_metrics(*splits[split], threshold)[m] for split in ("test", "dev") for m in METRICS
                    })
    for (model, rule), rows in sorted(results.items()):
        means = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}
        print(json.dumps({"model": model, "rule": rule, "seeds": len(rows), **means}))


if __name__ == "__main__":
    main()
