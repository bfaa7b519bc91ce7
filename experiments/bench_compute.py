"""Compute on this machine: training recipes, and float32 vs bfloat16 autocast for fitness and serving; ratios from one run.

    python -m experiments.bench_compute [--n 600] [--epochs 1] [--recipes 12] [--serve-rows 400]
        [--out experiments/results/compute]

1. Training: two MiniLM guards (prompt_injection, violence_weapons; template data, n per policy) trained
   by three recipes (TRAINING_RECIPES: the previous float32 defaults, bfloat16 autocast alone, today's
   defaults): examples/s, validation F1/AUPRC, F1/AUPRC on the real dev set (measured, never selected
   on), and the first/last CE of each run (the loss curves are in the JSON).
2. Fitness: the guards trained with today's defaults form a pool; the same random recipes (from the search space) are scored
   by one-thread workers in each of FITNESS_SETTINGS (precision, batch, torch.compile on or off):
   example-forwards/s, the largest F1 difference and Spearman's rank correlation of the recipes' F1
   against eager float32 at the default batch.
3. Serving: each of those guards (float32 weights) scores real dev-set prompts in both precisions: verdict agreement and
   examples/s.
Every ratio compares two measurements taken in this run on this machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

POLICIES = ("prompt_injection", "violence_weapons")
PRECISIONS = ("float32", "bfloat16")
# (precision, batch or None for the default, compiled): eager float32 first, the baseline of every ratio
FITNESS_SETTINGS = (("float32", None, False), ("bfloat16", None, False), ("float32", None, True), ("bfloat16", None, True),
                    ("bfloat16", 32, True))


def _data(root: Path, n: int) -> Path:
    from synth.generate import BackendSpec, SynthSettings, run_synthesis
    from synth.policy import load_policy

    run_synthesis([load_policy(p) for p in POLICIES], BackendSpec("template"), SynthSettings(n=n, seed=0), root / "data")
    return root / "data"


# Training recipes compared: the defaults before this benchmark's changes (float32, SDPA attention,
# random batches, attention dropout 0.1), bfloat16 autocast alone, and today's defaults.
TRAINING_RECIPES = {
    "previous": dict(precision="float32", attention="sdpa", length_buckets=False, attention_dropout=0.1),
    "bfloat16_only": dict(precision="bfloat16", attention="sdpa", length_buckets=False, attention_dropout=0.1),
    "current": dict(precision="auto", attention="auto"),
}


def bench_training(data: Path, root: Path, epochs: int, recipes: tuple[str, ...] = tuple(TRAINING_RECIPES)) -> dict:
    from fitness.devsets import load_devset
    from synth.policy import load_policy
    from trainers.data import load_splits, only_policies, resolve_policies
    from trainers.guard import Guard
    from trainers.metrics import evaluate_scores
    from trainers.training import make_config, train_guard

    splits = load_splits([data])
    out: dict = {"recipes": {name: TRAINING_RECIPES[name] for name in recipes}}
    for name in recipes:
        options = TRAINING_RECIPES[name]
        for policy in POLICIES:
            curve: list[float] = []
            config = make_config(epochs=epochs, device="cpu", **options)
            result = train_guard(config, only_policies(splits["train"], [policy]), only_policies(splits["validation"], [policy]),
                                 resolve_policies([policy], [policy]), root / name / policy, progress=False,
                                 on_step=lambda step, logged: curve.append(logged["ce"]))
            dev = [r for r in load_devset(policy) if r["policy"] == policy]  # measures only: nothing is chosen on it
            guard, spec = Guard.load(result.out_dir), load_policy(policy)
            dev_metrics = evaluate_scores(np.array([r["label"] for r in dev]), guard.score([r["text"] for r in dev], spec),
                                          guard.threshold(spec))
            out.setdefault(name, {})[policy] = {
                "examples_per_s": result.examples_per_second, "val_f1": result.validation["macro"]["f1"],
                "val_auprc": result.validation["macro"]["auprc"], "dev_f1": dev_metrics["f1"], "dev_auprc": dev_metrics["auprc"],
                "ce_first": curve[0], "ce_last": curve[-1], "ce_curve": curve}
    if "previous" in recipes:
        for name in recipes:
            out.setdefault("ratio_examples_per_s", {})[name] = {
                p: out[name][p]["examples_per_s"] / out["previous"][p]["examples_per_s"] for p in POLICIES}
    return out


def bench_fitness(root: Path, data: Path, recipes: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from engine.pool import ModelPool
    from engine.space import SearchSpace, SpaceConfig
    from engine.worker import RecipeScorer
    from fitness.data import build_eval_set
    from fitness.evaluator import FitnessSettings
    from trainers.data import load_rows, resolve_policies
    from uniguard.core.assets import resolve_model

    torch.set_num_threads(1)  # as a search worker
    guards = [root / "current" / p for p in POLICIES]
    pool = ModelPool.load(resolve_model(None), guards, list(POLICIES))
    tokenizer = AutoTokenizer.from_pretrained(guards[0])
    eval_set = build_eval_set(load_rows(data / "validation.jsonl"), resolve_policies(list(POLICIES), list(POLICIES)), tokenizer, 128, 0)
    space = SearchSpace(SpaceConfig(operators=("ties", "task_arithmetic", "linear"), seed=0), pool.num_candidates, pool.num_layers)
    param = space.parametrization()
    param.random_state.seed(0)
    chosen = [space.decode(param.spawn_child().sample().value) for _ in range(recipes)]
    default = FitnessSettings().batch_size
    out: dict = {"recipes": recipes, "validation_examples": eval_set.size, "batch_size": default}
    keys = []
    for precision, batch, compiled in FITNESS_SETTINGS:
        settings = FitnessSettings(racing=(1.0,), precision=precision, device="cpu", batch_size=batch or default, compile=compiled)
        scorer = RecipeScorer(pool, eval_set, tokenizer, settings)
        started = time.perf_counter()
        scorer.evaluate(chosen[0])  # warm-up: builds (and compiles) the shape's model
        warm_up = time.perf_counter() - started
        started = time.perf_counter()
        evaluations = [scorer.evaluate(r) for r in chosen]
        seconds = time.perf_counter() - started
        keys.append(precision + ("_compiled" if compiled else "") + (f"_batch{batch}" if batch else ""))
        out[keys[-1]] = {"example_forwards_per_s": recipes * eval_set.size / seconds, "f1": [e.f1 for e in evaluations],
                         "seconds": seconds, "warm_up_s": warm_up, "merge_s": sum(e.timings["merge_s"] for e in evaluations)}
    reference = np.asarray(out[keys[0]]["f1"])
    for key in keys[1:]:  # each setting against eager float32 at the default batch
        f1 = np.asarray(out[key]["f1"])
        out[key] |= {"ratio_vs_float32": out[key]["example_forwards_per_s"] / out[keys[0]]["example_forwards_per_s"],
                     "max_abs_f1_difference": float(np.max(np.abs(f1 - reference))), "spearman_vs_float32": _spearman(f1, reference)}
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if np.ptp(a) and np.ptp(b) else float("nan")


def bench_serving(root: Path, rows: int) -> dict:
    from fitness.devsets import devset_names, load_devset
    from trainers.compute import Compute
    from trainers.runtime import load_guard

    texts = [r["text"] for name in devset_names() for r in load_devset(name)][:rows]
    out: dict = {"texts": len(texts)}
    for policy in POLICIES:
        verdicts, speed = {}, {}
        for precision in PRECISIONS:
            guard = load_guard(root / "current" / policy, threads=2, compute=Compute("cpu", precision))
            guard.check(texts[:16], policy)  # warm-up
            started = time.perf_counter()
            verdicts[precision] = np.array([v.violates for v in guard.check(texts, policy)])
            speed[precision] = len(texts) / (time.perf_counter() - started)
        out[policy] = {"agreement": float(np.mean(verdicts["float32"] == verdicts["bfloat16"])),
                       "examples_per_s": speed, "ratio": speed["bfloat16"] / speed["float32"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=600, help="template samples per policy")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--recipes", type=int, default=12)
    parser.add_argument("--serve-rows", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/compute"))
    parser.add_argument("--fitness-only", action="store_true", help="train only the pool's guards (today's recipe) and "
                        "run the fitness part: writes bench_compute_fitness.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = _data(root, args.n)
        training = bench_training(data, root, args.epochs, ("current",) if args.fitness_only else tuple(TRAINING_RECIPES))
        report = {"fitness": bench_fitness(root, data, args.recipes), "args": {k: str(v) for k, v in vars(args).items()}}
        if not args.fitness_only:
            report |= {"training": training, "serving": bench_serving(root, args.serve_rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("bench_compute_fitness.json" if args.fitness_only else "bench_compute.json")).write_text(json.dumps(report, indent=2))
    _print_fitness(report["fitness"])
    if not args.fitness_only:
        _print_training_and_serving(report["training"], report["serving"])
    print(f"details: {args.out}")


def _print_fitness(f: dict) -> None:
    for key, m in [(k, v) for k, v in f.items() if isinstance(v, dict) and "ratio_vs_float32" in v]:
        print(f"fitness {key} vs eager float32 (batch {f['batch_size']}): {m['ratio_vs_float32']:.2f}x example-forwards/s over "
              f"{f['recipes']} recipes; max |F1 diff| {m['max_abs_f1_difference']:.4f}; Spearman {m['spearman_vs_float32']:.3f}; "
              f"merging {m['merge_s'] / m['seconds']:.0%} of its time; warm-up {m['warm_up_s']:.0f} s")


def _print_training_and_serving(t: dict, s: dict) -> None:
    for name in TRAINING_RECIPES:
        for p in POLICIES:
            m = t[name][p]
            print(f"training {name:<13} {p:<17} {m['examples_per_s']:6.1f} examples/s ({t['ratio_examples_per_s'][name][p]:.2f}x previous); "
                  f"val F1 {m['val_f1']:.3f}; real dev F1 {m['dev_f1']:.3f} AUPRC {m['dev_auprc']:.3f}; CE {m['ce_first']:.3f}->{m['ce_last']:.3f}")
    for p in POLICIES:
        print(f"serving {p}: verdict agreement {s[p]['agreement']:.4f} over {s['texts']} dev prompts; bf16/fp32 {s[p]['ratio']:.2f}x")


if __name__ == "__main__":
    main()
