"""Search benchmark: worker scaling, racing savings, and strategies at equal budget.

    python -m experiments.bench_search --config CONFIG.yaml --pool DIR [--budget 24] [--work DIR]

Prints, from one run on this machine:
  1. evaluations per second with 1 and 2 Ray workers of one thread each (goal: >= 1.8x with 2);
  2. example-forwards spent with racing vs evaluating every recipe fully (goal: >= 3x fewer), and
     whether the racing run's Pareto front equals the front of the same recipes evaluated fully;
  3. DE (TwoPointsDE), CMA, the paper's Thompson-sampling bandit and random search at equal budget:
     best held-out F1 and hypervolume.
Defaults to the smoke pool (tiny random guards), which exercises the machinery; pass a pool of real
MiniLM guards (e.g. the quickstart's, with experiments/configs/minilm_search.yaml) for meaningful F1.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import ray

from engine.pareto import hypervolume, pareto_front
from engine.search import load_search_config, run_search

SMOKE_CONFIG = Path(__file__).parent / "configs" / "smoke_search.yaml"


def _evals_per_second(entries: list[dict]) -> float:
    times = sorted(e["finished_at"] for e in entries)
    return (len(times) - 1) / (times[-1] - times[0])


def _search(config, run_dir: Path, budget: int, workers: int) -> list[dict]:
    try:
        return run_search(config, run_dir, budget=budget, workers=workers, progress=False)
    finally:
        ray.shutdown()


def scaling(config, work: Path, budget: int) -> dict:
    rates = {}
    for workers in (1, 2):
        entries = _search(config, work / f"scaling_{workers}", budget, workers)
        rates[workers] = _evals_per_second(entries)
    return rates


def racing(config, work: Path, budget: int) -> dict:
    raced = _search(config, work / "racing", budget, 2)
    full_config = config.model_copy(update={"fitness": config.fitness.model_copy(update={"racing": (1.0,)})})
    same_recipes = _evaluate_fully(full_config, raced)  # the racing run's recipes, each on all the data
    spent = sum(e["forwards"] for e in raced)
    full_cost = sum(e["full_forwards"] for e in raced)
    front_raced = {e["hash"] for e in pareto_front(raced)}
    front_full = {e["hash"] for e in pareto_front(same_recipes)}
    return {"forwards_with_racing": spent, "forwards_without": full_cost, "saving": full_cost / max(spent, 1),
            "same_front": front_raced == front_full, "front_racing": sorted(front_raced), "front_full": sorted(front_full),
            "raced_out": sum(e["raced_out"] for e in raced), "evaluated": len(raced)}


def _evaluate_fully(full_config, raced: list[dict]) -> list[dict]:
    """Full-data objectives of every recipe the racing run evaluated."""
    from transformers import AutoTokenizer

    from engine.recipe import Recipe
    from engine.search import _prepare
    from fitness.evaluator import Evaluator

    setup = _prepare(full_config)
    tokenizer = AutoTokenizer.from_pretrained(setup["tokenizer_dir"])
    evaluator = Evaluator(setup["pool"], setup["eval_set"], tokenizer, full_config.fitness)
    out = []
    for e in raced:
        if not e["raced_out"]:
            out.append(e)
            continue
        result = evaluator.evaluate(Recipe.from_dict(e["recipe"])).to_dict()
        result.pop("recipe_hash")
        out.append({**e, **result})
    return out


def strategies(config, work: Path, budget: int) -> dict:
    results = {}
    for name in ("TwoPointsDE", "CMA", "bandit", "random"):
        strategy = config.strategy.model_copy(update={"name": name})
        entries = _search(config.model_copy(update={"strategy": strategy}), work / f"strategy_{name}", budget, 2)
        complete = [e for e in entries if not e["raced_out"]]
        size_ref = max(e["size_bytes"] for e in entries)
        latency_ref = max(e["latency_ms"] for e in entries)
        results[name] = {"best_f1": max(e["f1"] for e in complete), "hypervolume": hypervolume(entries, size_ref, latency_ref)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=SMOKE_CONFIG)
    parser.add_argument("--pool", type=Path, default=None, help="pool directory (default: build the smoke pool)")
    parser.add_argument("--budget", type=int, default=24)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--only", choices=["scaling", "racing", "strategies"], default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="uniguard-bench-search-"))
    pool = args.pool
    if pool is None:
        from experiments.smoke_pool import build_smoke_pool

        pool = build_smoke_pool(work / "smoke_pool")
    config = load_search_config(args.config, pool)
    config = config.model_copy(update={"fitness": config.fitness.model_copy(update={"threads": 1})})
    report = {"config": str(args.config), "pool": str(pool), "budget": args.budget}
    if args.only in (None, "scaling"):
        rates = scaling(config, work, args.budget)
        report["scaling"] = rates
        print(f"evaluations/s: 1 worker {rates[1]:.2f}, 2 workers {rates[2]:.2f}, speed-up {rates[2] / rates[1]:.2f}x (goal >= 1.8)")
    if args.only in (None, "racing"):
        r = racing(config, work, args.budget)
        report["racing"] = r
        print(f"racing: {r['forwards_with_racing']} example-forwards vs {r['forwards_without']} without, "
              f"{r['saving']:.2f}x fewer (goal >= 3); {r['raced_out']}/{r['evaluated']} raced out; "
              f"front identical to full evaluation of the same recipes: {r['same_front']}")
    if args.only in (None, "strategies"):
        s = strategies(config, work, args.budget)
        report["strategies"] = s
        print(f"strategies at budget {args.budget}:")
        for name, v in s.items():
            print(f"  {name:<12} best F1 {v['best_f1']:.4f}  hypervolume {v['hypervolume']:.4f}")
    (work / "bench_search.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"details: {work / 'bench_search.json'}")


if __name__ == "__main__":
    main()
