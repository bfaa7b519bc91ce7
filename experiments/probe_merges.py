"""Fixed merge recipes scored per policy on a study seed's confirmation split, for three pools.

    python -m experiments.probe_merges OUT/seed_N [--config experiments/configs/study_specialists.yaml]
                                       [--replay 0.5] [--threads 2] [--json FILE]

OUT/seed_N is a `uniguard study` seed directory (data/, data_fitness/, guards/). Each pool's merges
(every candidate alone, the uniform average, task arithmetic, TIES at density 0.5, TSV) are scored as
the search scores them (thresholds on the confirmation data's calibration half, F1 on its scoring half):
- `pure`: the study's pool, MultiTaskGuard and its specialists (each fine-tuned on its policy's rows);
- `replay`: specialists fine-tuned again from the same MultiTaskGuard on their policy's training rows
  plus the other policies' (REPLAY of each specialist's rows), so a task vector moves its policy
  without pulling the others off what MultiTaskGuard learnt;
- `continued`: the control for replay's extra training, MultiTaskGuard fine-tuned on as many rows of
  every policy as one replay specialist sees.
Per recipe: macro F1 with its bootstrap standard error, F1 per policy, and the worst shortfall against
the pool's best source on each policy (the study's bar: at most 0.01). Then each policy's real dev
set (`uniguard devset`, all rows; measurement only) for MultiTaskGuard, the `continued` control and
the policy's pure and replay specialists, at their stored thresholds: F1, FPR, AUPRC. Trained guards
are cached in OUT/seed_N/probe/; --no-merges skips the merges.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

MERGES = {"uniform average": ("linear", {}), "task arithmetic": ("task_arithmetic", {}),
          "TIES d=0.5": ("ties", {"density": 0.5}), "TSV": ("tsv", {})}


def train_from(start: Path, rows: list, plan, splits: dict, policies: list[str], out: Path) -> Path:
    from trainers.data import everyday_rows, only_policies, resolve_policies
    from trainers.training import make_config, train_guard

    if not (out / "uniguard.json").is_file():
        resolved = resolve_policies(policies, policies)
        config = make_config(list(resolved.values()), kind="single", base_model=str(start), epochs=plan.epochs,
                             max_length=plan.max_length, seed=plan.seed, truncate=True, threshold_rule=plan.threshold_rule)
        train_guard(config, rows, only_policies(splits["validation"], policies), resolved, out, overwrite=True,
                    everyday=everyday_rows(splits["validation"], plan.threshold_rule))
    return out


def replay_pools(seed_dir: Path, plan, policies: list[str], share: float) -> dict[str, dict[str, Path]]:
    """The `replay` pool and the `continued` control, trained from the seed's MultiTaskGuard."""
    from trainers.data import load_split, only_policies

    splits = {name: load_split(seed_dir / "data", name) for name in ("train", "validation")}
    train = only_policies(splits["train"], policies)
    multitask, rng = seed_dir / "guards" / "multitask", random.Random(plan.seed)
    replay, size = {}, 0
    for p in policies:
        own = [e for e in train if e.policy == p]
        others = [e for e in train if e.policy != p]
        rows = own + rng.sample(others, min(len(others), round(len(own) * share / (1 - share))))
        size = max(size, len(rows))
        replay[p] = train_from(multitask, rows, plan, splits, policies, seed_dir / "probe" / f"replay_{p}")
    continued = train_from(multitask, rng.sample(train, min(size, len(train))), plan, splits, policies,
                           seed_dir / "probe" / "multitask_continued")
    return {"replay": {**replay, "multitask": multitask}, "continued": {"continued": continued, "multitask": multitask}}


def score_pool(plan, guards: dict[str, Path], seed_dir: Path) -> dict[str, dict]:
    from transformers import AutoTokenizer

    from engine.recipe import Recipe
    from engine.search import alone_label, prepare
    from engine.worker import RecipeScorer
    from experiments.quickstart import search_config

    fitness = seed_dir / "data_fitness"
    config = search_config(plan, guards, fitness / "search.jsonl", operators=tuple(dict.fromkeys(op for op, _ in MERGES.values())))
    setup = prepare(config, fitness / "confirmation.jsonl")
    scorer = RecipeScorer(setup.pool, setup.eval_set, AutoTokenizer.from_pretrained(setup.tokenizer_dir),
                          config.fitness.model_copy(update={"racing": (1.0,)}))
    names, anchor = list(config.names), config.space.anchor
    recipes = {alone_label(name): Recipe(operator="linear", weights=[float(j == i) for j in range(len(names))], anchor=i)
               for i, name in enumerate(names)}
    if len(names) > 2:
        recipes |= {label: Recipe(operator=op, weights=[1.0] * len(names), anchor=anchor, **extra)
                    for label, (op, extra) in MERGES.items()}
    scores = {}
    for label, recipe in recipes.items():
        evaluation = scorer.evaluate(recipe)
        scores[label] = {"f1": evaluation.f1, "f1_se": evaluation.f1_se, "per_policy": evaluation.per_policy}
        print(f"  {label:32s} {evaluation.f1:.3f} ± {evaluation.f1_se:.3f} | "
              + " ".join(f"{p} {v:.3f}" for p, v in evaluation.per_policy.items()), flush=True)
    return with_shortfalls(scores)


def dev_scores(seed_dir: Path, policies: list[str]) -> dict[str, dict[str, dict]]:
    """{policy: {guard: {f1, fpr, auprc}}} on the policy's whole real dev set."""
    from fitness.devsets import devset_names, load_devset
    from fitness.evaluate import evaluate
    from trainers.data import Example, resolve_policies
    from trainers.runtime import load_guard

    results = {}
    for p in [p for p in policies if p in devset_names()]:
        rows = [Example(r["text"], r["label"], r["policy"]) for r in load_devset(p, 0) if r["policy"] == p]
        guards = {"MultiTaskGuard": seed_dir / "guards" / "multitask", "continued": seed_dir / "probe" / "multitask_continued",
                  "specialist": seed_dir / "guards" / p, "replay specialist": seed_dir / "probe" / f"replay_{p}"}
        results[p] = {}
        for name, path in guards.items():
            metrics = evaluate(load_guard(path), rows, resolve_policies([p], [p]))["per_policy"][p]
            results[p][name] = {m: round(float(metrics[m]), 3) for m in ("f1", "fpr", "auprc")}
            print(f"  {p} {name:18s} " + " ".join(f"{m} {v:.3f}" for m, v in results[p][name].items()), flush=True)
    return results


def with_shortfalls(scores: dict[str, dict]) -> dict[str, dict]:
    from engine.confirm import shortfalls

    gaps = shortfalls([(label, s["per_policy"]) for label, s in scores.items()])
    return {label: {**s, "shortfall": gap} for (label, s), gap in zip(scores.items(), gaps)}


def main(argv: list[str] | None = None) -> None:
    import torch

    from experiments.study import load_study_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("seed_dir", type=Path)
    parser.add_argument("--config", default="experiments/configs/study_specialists.yaml")
    parser.add_argument("--replay", type=float, default=0.5, help="share of other policies' rows in a replay specialist's data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-merges", action="store_true", help="train the probe's guards and score the dev sets only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not 0.0 < args.replay < 1.0:
        parser.error(f"--replay {args.replay}: give a share between 0 and 1 (exclusive), e.g. 0.5")
    torch.set_num_threads(args.threads)
    config = load_study_config(args.config)
    seed = int(args.seed_dir.name.removeprefix("seed_"))
    plan, policies = config.plan(seed), list(config.policies)
    pure = {p: args.seed_dir / "guards" / p for p in policies} | {"multitask": args.seed_dir / "guards" / "multitask"}
    pools = {"pure": pure, **replay_pools(args.seed_dir, plan, policies, args.replay)}
    results = {}
    for name, guards in ({} if args.no_merges else pools).items():
        print(f"{name}:", flush=True)
        results[name] = score_pool(plan, guards, args.seed_dir)
    print("real dev sets:", flush=True)
    dev = dev_scores(args.seed_dir, policies)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seed": seed, "replay": args.replay, "pools": results, "dev": dev}, indent=1) + "\n")


if __name__ == "__main__":
    main()
