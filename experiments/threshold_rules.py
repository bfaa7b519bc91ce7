"""Threshold rules side by side: `f1` (best validation F1), `balanced` (best TPR - FPR), `fpr:TARGET`.

    python -m experiments.threshold_rules RUN_DIR [RUN_DIR ...] [--threads 2]
    python -m experiments.threshold_rules --quickstart OUT [--json FILE]
    python -m experiments.threshold_rules --quickstart OUT --pools [--json FILE]

A RUN_DIR holds `data_s{SEED}/` data directories (train, validation, test from `uniguard synth`) and,
optionally, `guard_s{SEED}/` guards trained on them: the layout `experiments.guard_vs_tfidf --out`
writes. Per seed, TF-IDF + LR is fitted on the data's training split and the guard (when present) is
loaded; each model's threshold is set on validation by each rule, then read on the synthetic test split
and on the policy's real offline dev set (all of its rows, `uniguard devset`). Prints one JSON line per
model and rule with means over every seed of every RUN_DIR: F1, false-positive rate, recall, accuracy.
The guards are scored once; only the threshold differs between rules.

With --quickstart, the guards of a `uniguard quickstart --out OUT` run instead: each single-policy
guard on its own policy, MultiTaskGuard and UniGuard on every policy with a dev set. Each policy's
threshold is set by each rule (QUICKSTART_RULES) on that policy's rows of OUT/data/validation.jsonl,
then read on the policy's whole real dev set; one JSON line per guard and policy.

With --pools (and --quickstart), the same guards under the fpr:0.03 rule with four calibrations:
`own`, the policy's own validation rows only; `everyday`, plus the other policies' everyday
(out_of_domain) rows (`trainers.data.everyday_rows`, the default); `shared`, plus all the other
policies' benign rows that are benign under every policy (`shared_rows`: a built-in topic policy's
allowed, borderline and on-topic rows too); `max`, the higher of the `own` threshold and the one
the rule places on the other policies' shared rows alone (the target held on each group). Means
per guard kind close the output (docs/guards.md, "Threshold rules").
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


QUICKSTART_RULES = ("f1", "balanced", "fpr:0.01", "fpr:0.03", "fpr:0.05", "fpr:0.1")


def quickstart_guards(out: Path, policies: list[str], shared_on: list[str]) -> list[tuple[str, str, Path, list[str]]]:
    """(kind, name, directory, policies to score) for a quickstart run's guards: each single-policy guard
    of `policies` on its own policy, then MultiTaskGuard and UniGuard on `shared_on`."""
    singles = [("single", p, out / "guards" / p, [p]) for p in policies if (out / "guards" / p).is_dir()]
    shared = {"multitask": out / "guards" / "multitask", "uniguard": out / "exports" / "uniguard"}
    return singles + [(kind, kind, path, shared_on) for kind, path in shared.items() if path.is_dir()]


def quickstart_rules(out: Path) -> dict:
    """{"guard/policy": {rule: {f1, fpr, recall} on the real dev set}} for a quickstart run's guards."""
    from trainers.data import Example, load_split, resolve_policies
    from fitness.devsets import devset_names, load_devset
    from fitness.evaluate import score_examples
    from trainers.runtime import load_guard

    validation = load_split(out / "data", "validation")
    dev = {name: [Example(r["text"], r["label"], r["policy"]) for r in load_devset(name, 0)] for name in devset_names()}
    results = {}
    for _, name, path, policies in quickstart_guards(out, list(dev), list(dev)):
        guard = load_guard(path)
        for policy in policies:
            policy_map = resolve_policies([policy], [policy])
            val = [e for e in validation if e.policy == policy]
            val_labels, val_scores = np.array([e.label for e in val]), score_examples(guard, val, policy_map)
            labels, scores = np.array([e.label for e in dev[policy]]), score_examples(guard, dev[policy], policy_map)
            row = {"validation_benign": int((val_labels == 0).sum()), "dev_rows": len(labels), "dev_violating": int(labels.sum())}
            for rule in QUICKSTART_RULES:
                metrics = binary_metrics(labels, scores, best_threshold(val_labels, val_scores, rule)[0])
                row[rule] = {m: round(metrics[m], 3) for m in ("f1", "fpr", "recall")}
            results[f"{name}/{policy}"] = row
            print(json.dumps({"guard": name, "policy": policy, **row}), flush=True)
    return results


POOL_RULE = "fpr:0.03"


def shared_rows(validation: list) -> list:
    """Benign rows of every policy that are benign under the others too: every everyday row, and a
    built-in topic policy's allowed, borderline and on-topic rows (an injection policy's borderline rows
    are plain harmful requests; a policy not built in cannot be told apart). Each text once, under its
    source policy where an injection policy reuses it (`synth.cross_policy`)."""
    from synth.policy import builtin_policy_names, load_policy
    from synth.samples import ALLOWED, BORDERLINE, IN_DOMAIN, OUT_OF_DOMAIN
    from synth.traffic import is_injection_policy

    names = {e.policy for e in validation}
    topic = {n: n in builtin_policy_names() and not is_injection_policy(load_policy(n)) for n in names}
    rows, seen = [], set()
    for e in sorted(validation, key=lambda e: not topic[e.policy]):
        if e.label == 0 and e.text not in seen and (e.kind == OUT_OF_DOMAIN or (topic[e.policy] and e.kind in (ALLOWED, BORDERLINE, IN_DOMAIN))):
            rows.append(e)
            seen.add(e.text)
    return rows


def pool_thresholds(own_labels: list[int], own_scores: list[float], extra: dict[str, list[float]]) -> dict[str, float]:
    """{pool: threshold} by the fpr rule on the policy's own rows plus each pool's benign scores, and
    `max`: the target held on each group, the own rows and the shared rows alone (with the own positives)."""
    thresholds = {pool: best_threshold(own_labels + [0] * len(benign), own_scores + benign, POOL_RULE)[0] for pool, benign in extra.items()}
    positives = [s for s, y in zip(own_scores, own_labels) if y == 1]
    alone = best_threshold([1] * len(positives) + [0] * len(extra["shared"]), positives + extra["shared"], POOL_RULE)[0]
    return thresholds | {"max": max(thresholds["own"], alone)}


def calibration_pools(out: Path) -> dict:
    """{"guard/policy": {pool: {f1, fpr, recall, threshold} on the real dev set}} for a quickstart run's guards."""
    from trainers.data import Example, everyday_rows, load_split, resolve_policies
    from fitness.devsets import devset_names, load_devset
    from fitness.evaluate import score_examples
    from trainers.runtime import load_guard

    validation = load_split(out / "data", "validation")
    shared, everyday = shared_rows(validation), everyday_rows(validation, POOL_RULE)
    pools = {"own": lambda p: [],
             "everyday": lambda p: [e for e in everyday if e.policy != p],
             "shared": lambda p: [e for e in shared if e.policy != p]}
    dev = {name: [Example(r["text"], r["label"], r["policy"]) for r in load_devset(name, 0) if r["policy"] == name]
           for name in devset_names()}
    results, by_kind = {}, defaultdict(lambda: defaultdict(list))
    with_singles = [p for p in dev if (out / "guards" / p).is_dir()]
    for kind, name, path, policies in quickstart_guards(out, list(dev), with_singles):
        guard = load_guard(path)
        for policy in policies:
            policy_map = resolve_policies([policy], [policy])
            own = [e for e in validation if e.policy == policy]
            extra = list(dict.fromkeys(e.text for pool in pools.values() for e in pool(policy)))  # each text scored once
            scored = dict(zip(extra, guard.score(extra, policy_map[policy]))) if extra else {}
            own_labels, own_scores = [e.label for e in own], list(score_examples(guard, own, policy_map))
            labels, scores = np.array([e.label for e in dev[policy]]), score_examples(guard, dev[policy], policy_map)
            row = {"dev_rows": len(labels), "dev_violating": int(labels.sum())}
            extra_scores = {pool: [scored[e.text] for e in rows_of(policy)] for pool, rows_of in pools.items()}
            for pool, threshold in pool_thresholds(own_labels, own_scores, extra_scores).items():
                metrics = binary_metrics(labels, scores, threshold)
                row[pool] = {"benign_rows": own_labels.count(0) + len(extra_scores.get(pool, extra_scores["shared"])),
                             "threshold": round(float(threshold), 4), **{m: round(metrics[m], 3) for m in ("f1", "fpr", "recall")}}
                for m in ("f1", "fpr", "recall"):
                    by_kind[kind][pool, m].append(metrics[m])
            results[f"{name}/{policy}"] = row
            print(json.dumps({"guard": name, "policy": policy, **row}), flush=True)
    results["mean"] = {kind: {f"{pool} {m}": round(float(np.mean(v)), 3) for (pool, m), v in cells.items()} for kind, cells in by_kind.items()}
    print(json.dumps({"mean": results["mean"]}))
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--quickstart", type=Path, help="a `uniguard quickstart --out` directory instead of RUN_DIRs")
    ap.add_argument("--json", type=Path, help="with --quickstart: also write the results here")
    ap.add_argument("--pools", action="store_true", help="with --quickstart: compare calibration pools instead of rules")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quickstart:
        results = (calibration_pools if args.pools else quickstart_rules)(args.quickstart)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return
    if not args.runs:
        ap.error("pass RUN_DIRs or --quickstart OUT")

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
