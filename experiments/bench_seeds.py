"""How much of a MultiTaskGuard's real-traffic quality is the training seed, and what a soup of seeds buys.

    python -m experiments.bench_seeds [--policies P ...] [--n 1000] [--seeds 0,1,2] [--data-seed 0]
        [--set KEY=VALUE ...] [--out experiments/results/quality/bench_seeds.json] [--keep DIR]

One synthetic data draw (`uniguard synth`'s template backend, as `bench_quality` makes it), one
MultiTaskGuard per training seed on it (the seed moves the head's initialisation and the batch order,
nothing else), and the uniform soup of those guards: their weights averaged by the engine's `linear`
operator, thresholds placed on the validation split by the training rule. Each is scored on the real
dev sets (measurement only) with `bench_quality`'s metrics; the summary gives the mean and sample
standard deviation over seeds, so a one-seed difference elsewhere can be read against it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from experiments.bench_quality import score_devset, synth_data
from synth.cross_policy import DEFAULT_CROSS_SHARE

POLICIES = ["prompt_injection", "violence_weapons", "self_harm", "illegal_activity", "hate_harassment"]
SUMMARY = ("f1", "fpr", "auprc", "recall_at_1pct_fpr", "recall_at_3pct_fpr")


def soup(guard_dirs: list[Path], validation, policies: dict, config, everyday=()):
    """The uniform linear merge of the guards, calibrated like a trained guard."""
    from engine.merge import merge_state_dict
    from engine.pool import ModelPool
    from engine.recipe import Recipe
    from trainers.guard import Guard
    from trainers.training import calibrate, encode_examples, score_encoded, with_benign

    pool = ModelPool.load(guard_dirs[0], guard_dirs)  # any common base gives the same average
    merged = Guard.load(guard_dirs[0])
    merged.model.load_state_dict(merge_state_dict(pool, Recipe(operator="linear", weights=[1.0] * len(guard_dirs))))
    as_trained = config.model_copy(update={"truncate": True, "max_length": merged.max_length})  # None in the config: resolved at training
    encoded = encode_examples(merged.tokenizer, validation, policies, as_trained, "validation data")
    scores = score_encoded(merged.model, merged.tokenizer, encoded, merged.compute)
    merged.thresholds = calibrate(*with_benign(merged, encoded, scores, (), everyday, policies), config.threshold_rule)
    return merged


def summary(per_policy: dict[str, dict]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in per_policy.values()])) for k in SUMMARY}


def run(policies: list[str], n: int, seeds: list[int], data_seed: int, work: Path, options: dict) -> dict:
    from fitness.devsets import benign_pool, load_devset
    from trainers.data import everyday_rows, load_splits, resolve_policies
    from trainers.guard import Guard
    from trainers.training import make_config, train_guard

    splits = load_splits([synth_data(policies, n, data_seed, work / "data", DEFAULT_CROSS_SHARE)])
    resolved = resolve_policies(policies, policies)
    dev = {p: [r for r in load_devset(p, data_seed) if r["policy"] == p] for p in policies}
    pool_texts = {r["text"] for r in benign_pool(data_seed)}
    guards, dirs = {}, []
    for seed in seeds:
        config = make_config(**{"kind": "multitask", "epochs": 1, "threshold_rule": "fpr:0.03", **options, "seed": seed})  # --set may override
        everyday = everyday_rows(splits["validation"], config.threshold_rule)  # calibration rows, as the quickstart passes them
        dirs.append(train_guard(config, splits["train"], splits["validation"], resolved, work / f"multitask_seed{seed}",
                                progress=False, everyday=everyday).out_dir)
        guards[f"seed {seed}"] = Guard.load(dirs[-1])
    guards["uniform soup"] = soup(dirs, splits["validation"], resolved, config, everyday)
    report = {name: {p: score_devset(g, p, dev[p], pool_texts) for p in policies} for name, g in guards.items()}
    per_seed = [summary(report[f"seed {s}"]) for s in seeds]
    report_summary = {name: summary(per_policy) for name, per_policy in report.items()}
    report_summary["seeds mean"] = {k: float(np.mean([s[k] for s in per_seed])) for k in SUMMARY}
    report_summary["seeds sd"] = {k: float(np.std([s[k] for s in per_seed], ddof=1)) for k in SUMMARY}
    return {"summary": report_summary, "per_policy": report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", nargs="+", default=POLICIES)
    parser.add_argument("--n", type=int, default=1000, help="template samples per policy")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated (at least two)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a TrainConfig option; repeatable")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/quality/bench_seeds.json"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the data and guards in this (new) directory")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) < 2:
        parser.error(f"--seeds {args.seeds!r}: give at least two training seeds, e.g. 0,1,2")
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args.policies, args.n, seeds, args.data_seed, args.keep or Path(tmp), dict(item.split("=", 1) for item in args.set))
    report["args"] = {k: str(v) for k, v in vars(args).items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print("model            " + " ".join(f"{k[:10]:>10}" for k in SUMMARY))
    for name, values in report["summary"].items():
        print(f"{name:<16} " + " ".join(f"{values[k]:>10.3f}" for k in SUMMARY))
    print(f"details: {args.out}")


if __name__ == "__main__":
    main()
