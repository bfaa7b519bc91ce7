"""Search benchmark: worker scaling, racing savings, and strategies at equal budget.

    python -m experiments.bench_search --config CONFIG.yaml --pool DIR [--budget 24] [--work DIR]

Prints, from one run on this machine:
  1. evaluations per second with 1 and 2 Ray workers of one thread each (goal: >= 1.8x with 2);
  2. example-forwards spent with racing vs evaluating every recipe fully (goal: >= 3x fewer), whether
     the racing run's Pareto front equals the front of the same recipes evaluated fully, and the
     saving of an oracle that knows every full-data F1 (the ceiling for any sound rule on that run);
  3. DE (TwoPointsDE), CMA, the paper's Thompson-sampling bandit and random search at equal budget:
     best held-out F1 and hypervolume.
Defaults to the smoke pool (tiny random guards), which exercises the machinery; pass a pool of real
MiniLM guards (e.g. the quickstart's, with experiments/configs/minilm_search.yaml) for meaningful F1.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import ray

from engine.front import hypervolume, pareto_front
from engine.config import load_search_config
from engine.journal import JournalEntry
from engine.search import run_search
from fitness.evaluator import FitnessSettings

SMOKE_CONFIG = Path(__file__).parent / "configs" / "smoke_search.yaml"


def _evals_per_second(entries: list[JournalEntry]) -> float:
    times = sorted(e.finished_at for e in entries)
    return (len(times) - 1) / (times[-1] - times[0])


def _search(config, run_dir: Path, budget: int, workers: int) -> list[JournalEntry]:
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
    spent = sum(e.forwards for e in raced)
    full_cost = sum(e.full_forwards for e in raced)
    front_raced = {e.hash for e in pareto_front(raced)}
    front_full = {e.hash for e in pareto_front(same_recipes)}
    stopped_at = Counter(str(e.fraction) for e in raced if e.raced_out)
    rivals = [_rivals(raced, e) for e in raced]
    return {"rungs": list(config.fitness.racing), "validation_examples": raced[0]["full_forwards"],
            "forwards_with_racing": spent, "forwards_without": full_cost, "saving": full_cost / max(spent, 1),
            "same_front": front_raced == front_full, "front_racing": sorted(front_raced), "front_full": sorted(front_full),
            "raced_out": sum(e.raced_out for e in raced), "stopped_at": dict(stopped_at), "evaluated": len(raced),
            "contested": sum(bool(r) for r in rivals), "oracle_saving": _oracle_saving(raced, rivals, same_recipes, config.fitness.racing[0]),
            "wrongly_raced_out": _wrongly_raced_out(raced, same_recipes)}


def _rivals(entries: list[JournalEntry], e: JournalEntry) -> list[JournalEntry]:
    """Front points no larger and no slower than e when it started (front rebuilt from finish times;
    a start is finish minus duration): the only points racing may stop e against."""
    started = e.finished_at - e.seconds
    front = pareto_front([d for d in entries if d.finished_at <= started])
    return [p for p in front if p.size_bytes <= e.size_bytes and p.latency_ms <= e.latency_ms]


def _oracle_saving(raced: list[JournalEntry], rivals: list[list[JournalEntry]], full: list[JournalEntry], first_rung: float) -> float:
    """The saving of an oracle that knows every full-data F1: it stops at the first rung each candidate
    that a rival beats, and runs the rest (new corners of the front, and candidates that join it) to
    the end. No rule that stops only beaten candidates, at these rungs, saves more on the same arrival
    order."""
    full_f1 = {e.hash: e.f1 for e in full}
    spent = 0.0
    for e, theirs in zip(raced, rivals):
        beaten = bool(theirs) and full_f1[e.hash] < max(p.f1 for p in theirs)
        spent += first_rung * e.full_forwards if beaten else e.full_forwards
    return sum(e.full_forwards for e in raced) / spent


def _wrongly_raced_out(raced: list[JournalEntry], full: list[JournalEntry]) -> list[str]:
    """Raced-out recipes whose full-data objectives would have put them on the front of all recipes."""
    front = {e.hash for e in pareto_front(full)}
    return sorted(e.hash for e in raced if e.raced_out and e.hash in front)


def _evaluate_fully(full_config, raced: list[JournalEntry]) -> list[JournalEntry]:
    """Full-data objectives of every recipe the racing run evaluated. Latency is the run's own per
    shape, so the two fronts differ only where racing changed a quality value."""
    from transformers import AutoTokenizer

    from engine.recipe import Recipe
    from engine.search import _latencies, prepare
    from engine.worker import RecipeScorer

    setup = prepare(full_config)
    tokenizer = AutoTokenizer.from_pretrained(setup.tokenizer_dir)
    evaluator = RecipeScorer(setup.pool, setup.eval_set, tokenizer, full_config.fitness)
    latencies = _latencies(raced)
    out = []
    for e in raced:
        if not e.raced_out:
            out.append(e)
            continue
        result = evaluator.evaluate(Recipe.from_dict(e.recipe), (), latencies).to_dict()
        out.append(e.model_copy(update=result))
    return out


def strategies(config, work: Path, budget: int) -> dict:
    results = {}
    for name in ("TwoPointsDE", "CMA", "bandit", "random"):
        strategy = config.strategy.model_copy(update={"name": name})
        entries = _search(config.model_copy(update={"strategy": strategy}), work / f"strategy_{name}", budget, 2)
        complete = [e for e in entries if not e.raced_out]
        size_ref = max(e.size_bytes for e in entries)
        latency_ref = max(e.latency_ms for e in entries)
        results[name] = {"best_f1": max(e.f1 for e in complete), "hypervolume": hypervolume(entries, size_ref, latency_ref)}
    return results


def _fractions(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=SMOKE_CONFIG)
    parser.add_argument("--pool", type=Path, default=None, help="pool directory (default: build the smoke pool)")
    parser.add_argument("--budget", type=int, default=24)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--only", choices=["scaling", "racing", "strategies"], default=None)
    parser.add_argument("--racing", type=_fractions, default=None, help="rungs, e.g. 0.125,0.25,0.5,1 (default: the config's)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="uniguard-bench-search-"))
    pool = args.pool
    if pool is None:
        from experiments.smoke_pool import build_smoke_pool

        pool = build_smoke_pool(work / "smoke_pool")
    config = load_search_config(args.config, pool)
    fitness = {"threads": 1, **({"racing": args.racing} if args.racing else {})}
    config = config.model_copy(update={"fitness": FitnessSettings.model_validate({**config.fitness.model_dump(), **fitness})})
    report = {"config": str(args.config), "pool": str(pool), "budget": args.budget}
    if args.only in (None, "scaling"):
        rates = scaling(config, work, args.budget)
        report["scaling"] = rates
        print(f"evaluations/s: 1 worker {rates[1]:.2f}, 2 workers {rates[2]:.2f}, speed-up {rates[2] / rates[1]:.2f}x (goal >= 1.8)")
    if args.only in (None, "racing"):
        r = racing(config, work, args.budget)
        report["racing"] = r
        print(f"racing (rungs {r['rungs']}, {r['validation_examples']} validation examples): "
              f"{r['forwards_with_racing']} example-forwards vs {r['forwards_without']} without, "
              f"{r['saving']:.2f}x fewer (goal >= 3); {r['raced_out']}/{r['evaluated']} raced out (stopped at {r['stopped_at']}); "
              f"{r['contested']} met a front point no larger and no slower; an oracle stopping every beaten one "
              f"at the first rung would save {r['oracle_saving']:.2f}x; "
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
