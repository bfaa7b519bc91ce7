"""`uniguard quickstart`: the whole pipeline on the built-in policies with the offline models.

Stages, each cached in OUT so a rerun or an interrupted run picks up where it stopped:
  1. synth     synthetic train / validation / test data for the built-in policies
  2. train     one single-policy guard per policy and MultiTaskGuard over all of them (MiniLM)
  3. search    Ray-distributed evolutionary search over merge recipes, scored on a separate fitness
               set (fresh synthetic data, none of it seen in training), then the front's best and the
               baselines re-scored on a confirmation split the search never used (UniGuard = best there)
  4. export    UniGuard and the front's smallest member within COMPACT_F1_BUDGET of it as Hugging Face guards
  5. evaluate  every guard, fixed merge and baseline on the synthetic test splits and real dev sets
  6. report    report.md and report.html (plots embedded)
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from trainers.metrics import DEFAULT_THRESHOLD_RULE
from uniguard.core.errors import UserError
from uniguard.core.io import read_json, read_jsonl, write_json, write_jsonl


@dataclass(frozen=True)
class Plan:
    policies: tuple[str, ...] | None  # None = every built-in policy
    n: int  # synthetic samples per policy before dedup and splitting
    epochs: int
    budget: int
    workers: int
    devset_rows: int  # per real dev set, a subsample stratified by label
    judge_rows: int  # per policy and per dev set for the (slow) zero-shot LLM judge
    seed: int = 0
    base_model: str | None = None  # None = the offline MiniLM; any Hugging Face encoder directory or hub id
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / validation / test shares of the synthetic data
    # synthetic samples per policy (before dedup) for the search's scoring data and the confirmation
    # split, half each, drawn in the same run as the guards' data and split off it (disjoint)
    fitness_n: int = 600
    # None = the trainer's default (256 tokens, capped at the model's positions): the policy instruction
    # alone takes 41-83 tokens, and at 128 long real prompts lost their payload to truncation
    max_length: int | None = None
    # one rule for the guards' calibration, the search's fitness thresholds and the TF-IDF baseline, so
    # every model in the report is read at thresholds placed the same way (docs/guards.md, Threshold rules)
    threshold_rule: str = DEFAULT_THRESHOLD_RULE
    # each single-policy guard is a specialist: MultiTaskGuard fine-tuned further on its policy's rows
    # alone. Trained from the bare encoder on a few hundred rows, the topic guards ranked real prompts
    # barely above chance (docs/guards.md, "Specialists"); all candidates then also share one basin
    singles_from_multitask: bool = True


# The default draws n=1000 plus fitness_n=1200 template samples per policy; the templates' distinct texts
# are dealt out to all five splits, which leaves each single guard 406-719 training rows (the n=160
# plan had ~125) for one epoch, and the search >= 300 scoring rows per policy (issue 18: fewer cannot rank
# recipes apart; at fitness_n=600 the smallest policy had 187). The grammar of the topic policies runs
# out of distinct texts near ~1,200-1,900 (self_harm: 1,112 of 1,400 samples, 1,891 of 3,000), so more
# fitness rows take training rows: hence n=1000. Training volume was the largest lever on real-traffic
# quality (docs/guards.md), and length buckets, eager attention on the CPU and bf16 made a training
# step ~2.5-3x faster (docs/compute.md), which pays for it. Two epochs, or 10x the rows, do not fit
# the ~30-minute budget on 2 cores yet.
PLANS = {
    "default": Plan(policies=None, n=1000, epochs=1, budget=32, workers=2, devset_rows=120, judge_rows=8, fitness_n=1200),
    "fast": Plan(policies=("prompt_injection", "violence_weapons", "pii_disclosure"), n=80, epochs=1, budget=12, workers=2,
                 devset_rows=30, judge_rows=4, fitness_n=160),
}


class Stages:
    """Runs named stages once; a finished stage leaves a marker with its result in OUT/stages/."""

    def __init__(self, out: Path, say: Callable[[str], None]):
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.say = say

    def run(self, name: str, fn: Callable[[], object]):
        marker = self.dir / f"{name}.json"
        if marker.is_file():
            self.say(f"[cached] {name}")
            fix = f"delete it to rerun the {name} stage"
            cached = read_json(marker, fix)
            if not isinstance(cached, dict) or "result" not in cached:
                raise UserError(f"{marker}: not a stage marker (no result field); {fix}")
            return cached["result"]
        self.say(f"[start ] {name}")
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        write_json(marker, {"result": result, "seconds": round(seconds, 1)})
        self.say(f"[done  ] {name} in {seconds:.0f}s")
        return result


def run_quickstart(out: Path, fast: bool = False, say: Callable[[str], None] = print, base_model: str | None = None) -> Path:
    from synth.policy import builtin_policy_names

    plan = replace(PLANS["fast" if fast else "default"], base_model=base_model)
    policies = list(plan.policies or builtin_policy_names())
    out.mkdir(parents=True, exist_ok=True)
    _check_same_plan(out, {**asdict(plan), "policies": policies, "fast": fast})
    stages = Stages(out, say)
    data = out / "data"
    fitness = out / "data_fitness"
    stages.run("synth", lambda: synthesize(policies, plan, data, fitness_dir=fitness))
    guards = train_pool(plan, policies, data, out / "guards", stages)
    run_dir = out / "search"
    stages.run("search", lambda: search_stage(plan, guards, fitness / SEARCH_FILE, run_dir))
    stages.run("confirm", lambda: confirm_stage(run_dir, fitness / CONFIRMATION_FILE))
    exports = stages.run("export", lambda: export_front(run_dir, out / "exports"))
    results = stages.run("evaluate", lambda: _evaluate(plan, policies, guards, exports, data, out))
    report = _write_report(out, plan, policies, results, fast)
    say(f"\nreport: {report} and {report.with_suffix('.html')}")
    return report


def _check_same_plan(out: Path, plan: dict) -> None:
    """Cached stages belong to the plan that made them: another plan in the same OUT would mix guards
    (e.g. MiniLM guards searched with a multilingual base), so it is refused before anything runs."""
    stored = out / "plan.json"
    plan = json.loads(json.dumps(plan))  # tuples read back as lists
    if stored.is_file():
        before = read_json(stored, f"delete {stored} to start over")
        changed = sorted(k for k in plan.keys() | before.keys() if k in before and before.get(k) != plan.get(k))
        if changed:
            raise UserError(f"--out {out}: holds a quickstart run with another plan ({', '.join(f'{k}: {before[k]!r} there' for k in changed)}); "
                            "rerun with the same options to resume it, or pass another --out")
    write_json(stored, plan)


def synthesize(policies: list[str], plan: Plan, data: Path, backend=None, fitness_dir: Path | None = None) -> dict:
    """The guards' train / validation / test splits in `data`; with `fitness_dir`, also the search's
    scoring data and the confirmation split there (plan.fitness_n samples per policy between them).

    All five come from one generation run, deduplicated together and dealt out per (policy, label,
    kind) stratum, so they are disjoint and each holds both labels. Separate runs are not: a policy's
    templates yield a few hundred distinct violating texts, and at the default n a second draw with the
    training texts removed kept 0-4 positives for most policies (the search then refused to start)."""
    from synth.generate import BackendSpec, SynthSettings, run_synthesis
    from synth.policy import load_policies
    from synth.cross_policy import add_cross_policy_rows
    from synth.splits import stratified_split

    # Default: the template backend, the one that runs in minutes on 2 CPU cores (see the README's
    # synth section for what model rewriting adds and costs).
    backend = backend or BackendSpec("template")
    extra = plan.fitness_n if fitness_dir is not None else 0
    total = plan.n + extra
    train, validation, test = (share * plan.n / total for share in plan.split)
    held_out = test + extra / total  # the guards' test share, then the search's and confirmation's halves
    run_synthesis(load_policies(policies), backend,
                  SynthSettings(n=total, seed=plan.seed, fractions=(train, validation, held_out)), data)
    if fitness_dir is not None:
        fitness_half = (1 - test / held_out) / 2
        parts = stratified_split(read_jsonl(data / "test.jsonl"), (test / held_out, fitness_half, fitness_half), plan.seed)
        # the held-out rows' cross-policy copies, made again per part: no text in two of them
        add_cross_policy_rows(parts, load_policies(policies), plan.seed)
        fitness_dir.mkdir(parents=True, exist_ok=True)
        for path, key in ((data / "test.jsonl", "train"), (fitness_dir / SEARCH_FILE, "validation"),
                          (fitness_dir / CONFIRMATION_FILE, "test")):
            write_jsonl(path, parts[key])
    files = [data / f"{name}.jsonl" for name in ("train", "validation", "test")]
    files += [fitness_dir / SEARCH_FILE, fitness_dir / CONFIRMATION_FILE] if fitness_dir is not None else []
    counts = {path.name: len(read_jsonl(path)) for path in files}
    return {"counts": counts, "dir": str(data)}


def train_pool(plan: Plan, policies: list[str], data: Path, out: Path, stages: Stages) -> dict[str, Path]:
    """MultiTaskGuard over `policies` and one single-policy guard each (the plan's specialists of it, or
    guards from the bare encoder), as the merge pool's candidates: {policy: dir, ..., "multitask": dir}."""
    multitask = Path(stages.run("train_multitask", lambda: train_policies(plan, data, out / "multitask", policies)))
    start = str(multitask) if plan.singles_from_multitask else None
    guards = {p: Path(stages.run(f"train_single_{p}", lambda p=p: train_policies(plan, data, out / p, [p], start))) for p in policies}
    return {**guards, "multitask": multitask}


def train_policies(plan: Plan, data: Path, out_dir: Path, policies: list[str], start: str | None = None) -> str:
    """Train a guard of `policies` on the plan's data, from `start` (a base encoder or a trained guard;
    None: the plan's base)."""
    from trainers.data import everyday_rows, load_split, only_policies, resolve_policies
    from trainers.training import make_config, train_guard

    kind = "single" if len(policies) == 1 else "multitask"
    splits = {name: load_split(data, name) for name in ("train", "validation", "test")}
    split = {name: only_policies(rows, policies) for name, rows in splits.items()}
    resolved = resolve_policies(policies, policies)
    config = make_config(list(resolved.values()), kind=kind, base_model=start or plan.base_model, epochs=plan.epochs,
                         max_length=plan.max_length, seed=plan.seed, truncate=True, threshold_rule=plan.threshold_rule)
    train_guard(config, split["train"], split["validation"], resolved, out_dir, test=split["test"], overwrite=False,
                everyday=everyday_rows(splits["validation"], plan.threshold_rule))
    return str(out_dir)


SEARCH_FILE, CONFIRMATION_FILE = "search.jsonl", "confirmation.jsonl"


def confirm_stage(run_dir: Path, data: Path) -> list[dict]:
    from engine.confirm import confirm
    from engine.rundir import RunDir

    return [c.model_dump() for c in confirm(RunDir(run_dir), data)]


OPERATORS = ("ties", "dare_ties", "task_arithmetic", "linear", "della", "lines")  # the default search space's


def search_config(plan: Plan, guards: dict[str, Path], validation: Path, strategy: str = "TwoPointsDE",
                  weight_groups: int | str = 2, operators: tuple[str, ...] = OPERATORS, metric: str = "guard_f1"):
    from engine.config import DataConfig, PoolConfig, SearchConfig
    from engine.space import SpaceConfig
    from engine.strategies import StrategyConfig
    from fitness.evaluator import FitnessSettings

    names = list(guards)
    return SearchConfig(
        pool=PoolConfig(base=pool_base(plan, guards), candidates=tuple(str(guards[n]) for n in names),
                        names=tuple(names), multitask="multitask"),
        data=DataConfig(validation=str(validation)),
        space=SpaceConfig(operators=operators, weight_groups=weight_groups,
                          scopes=("all", "all_but_head"), layers="search", dtypes=("float32", "float16"),
                          anchor=names.index("multitask"), seed=plan.seed),
        strategy=StrategyConfig(name=strategy, seed=plan.seed),
        fitness=FitnessSettings(metric=metric, threshold_rule=plan.threshold_rule, racing=(0.25, 0.5, 1.0),
                                max_length=plan.max_length, seed=plan.seed),  # None: the guards' own
        budget=plan.budget, workers=plan.workers,
    )


def pool_base(plan: Plan, guards: dict[str, Path]) -> str:
    """The checkpoint every candidate was fine-tuned from, so task vectors hold what each learnt there:
    MultiTaskGuard for its specialists (measured against the bare encoder, every task vector would be
    mostly MultiTaskGuard's own, and TIES or DARE trimming them would cut into it), else the encoder."""
    from uniguard.core.assets import resolve_model

    return str(guards["multitask"]) if plan.singles_from_multitask else resolve_model(plan.base_model)


def search_stage(plan: Plan, guards: dict[str, Path], validation: Path, run_dir: Path, address: str | None = None, **space) -> dict:
    import ray

    from engine.search import run_search

    try:
        entries = run_search(search_config(plan, guards, validation, **space), run_dir, address=address, progress=True)
    finally:
        ray.shutdown()
    return {"evaluated": len(entries), "run_dir": str(run_dir)}


# The compact UniGuard may give up at most this much search F1 for its size: the front's very smallest
# members (a few layers) are there for their size and latency, not as guards (one read F1 0.10).
COMPACT_F1_BUDGET = 0.05


def export_front(run_dir: Path, out: Path, int8: bool = True) -> dict:
    """UniGuard (the best candidate on the confirmation split, or the front's best-F1 member where the
    run has no confirmation) and the front's smallest other member within COMPACT_F1_BUDGET of its
    search F1 (when there is one), plus the fixed merges the search
    evaluated first (uniform average, TIES defaults), each with its calibrated thresholds; with `int8`,
    also UniGuard as an int8 ONNX guard, measured like a merge and put on the run's Pareto front."""
    from engine.export import export_entry
    from engine.front import FrontPoint, pareto_front
    from engine.pool import ModelPool
    from engine.rundir import RunDir
    from engine.confirm import load_confirmations
    from engine.variants import add_variant
    from trainers.onnx import export_onnx

    run = RunDir(run_dir)
    entries = run.entries()
    front = pareto_front(entries)
    confirmed = load_confirmations(run)
    by_hash = {e.hash: e for e in entries}
    uniguard = by_hash[confirmed[0].hash] if confirmed else max(front, key=lambda e: (e.f1, -e.size_bytes))
    chosen = {
        "uniguard": uniguard,
        "uniform_average": next(e for e in entries if e.label == "uniform average"),
        "ties_defaults": next(e for e in entries if e.label == "TIES defaults"),
    }
    compact = compact_member(front, uniguard)
    if compact is not None:
        chosen["uniguard_compact"] = compact
    config = run.config()
    pool = ModelPool.load(config.pool.base, list(config.pool.candidates), config.names)
    for name in ("uniguard", "uniguard_compact", "uniform_average", "ties_defaults", "uniguard_int8"):  # exports refuse a non-empty --out; these are this stage's own, from a killed run
        shutil.rmtree(out / name, ignore_errors=True)
    exported = {}
    for name, entry in chosen.items():
        export_entry(run_dir, entry, out / name, pool=pool)
        exported[name] = _exported(out / name, entry)
    if int8:
        int8_dir = export_onnx(out / "uniguard", out / "uniguard_int8", "int8")
        exported["uniguard_int8"] = _exported(int8_dir, add_variant(run, FrontPoint.of(0, chosen["uniguard"]), int8_dir))
    return exported


def compact_member(front: list, uniguard, budget: float = COMPACT_F1_BUDGET):
    """The smallest front member smaller than UniGuard and at most `budget` below its search F1, or None."""
    near = [e for e in front if e.size_bytes < uniguard.size_bytes and e.f1 >= uniguard.f1 - budget]
    return min(near, key=lambda e: (e.size_bytes, -e.f1)) if near else None


def _exported(model_dir: Path, entry) -> dict:
    return {"dir": str(model_dir), "hash": entry.hash, "f1_validation": entry.f1, "size_bytes": entry.size_bytes,
            "latency_ms": entry.latency_ms, "recipe": entry.recipe}


def _subsample(rows: list[dict], k: int, seed: int) -> list[dict]:
    import random

    if len(rows) <= k:
        return rows
    rng = random.Random(seed)
    pos = [r for r in rows if r["label"] == 1]
    neg = [r for r in rows if r["label"] == 0]
    k_pos = min(len(pos), max(1, round(k * len(pos) / len(rows))))
    return rng.sample(pos, k_pos) + rng.sample(neg, min(len(neg), k - k_pos))


def _evaluate(plan: Plan, policies: list[str], guards: dict[str, Path], exports: dict, data: Path, out: Path) -> dict:
    """F1 (and AUPRC, FPR) of every model on the synthetic test split and the offline real dev sets."""
    from trainers.data import load_split, resolve_policies

    from experiments.report import SPECIALISTS

    policy_map = resolve_policies(policies, policies)
    test = load_split(data, "test")
    dev = dev_examples(plan, policy_map)
    models = {"MultiTaskGuard": guards["multitask"], "uniform average": exports["uniform_average"]["dir"],
              "TIES defaults": exports["ties_defaults"]["dir"], "UniGuard (searched)": exports["uniguard"]["dir"]}
    if "uniguard_compact" in exports:
        models[f"UniGuard compact (within {COMPACT_F1_BUDGET} F1)"] = exports["uniguard_compact"]["dir"]
    if "uniguard_int8" in exports:
        models["UniGuard int8 (ONNX)"] = exports["uniguard_int8"]["dir"]
    results = {SPECIALISTS: specialists_results({p: guards[p] for p in policies}, test, dev, policy_map)}
    results |= {label: guard_results(model_dir, test, dev, policy_map) for label, model_dir in models.items()}
    return results | baseline_results(plan, data, test, dev, policy_map)


def specialists_results(guards: dict[str, Path], test, dev: dict, policy_map) -> dict:
    """The single-policy guards as the one system a user would deploy instead of a merge: each
    policy's examples go to that policy's guard. (A guard scored on other policies' rows only shows
    that it was not trained for them, and would cost most of the evaluation.) Size: all the guards'
    weights together; latency: one guard's, as one policy check runs one guard."""
    from trainers.guard import Guard

    loaded = {p: Guard.load(guards[p]) for p in guards}

    class Specialists:
        def score(self, texts, policy):
            return loaded[policy.name].score(texts, policy)

        def threshold(self, policy):
            return loaded[policy.name].threshold(policy)

    results = score_everything(Specialists(), test, dev, policy_map)
    results["size_bytes"] = sum((Path(d) / "model.safetensors").stat().st_size for d in guards.values())
    first = next(iter(guards))
    results |= _latency(loaded[first], [e for e in test if e.policy == first])
    return results


def dev_examples(plan: Plan, policy_map) -> dict:
    """Each offline real dev set's rows for these policies: plan.devset_rows of them, stratified by label."""
    from trainers.data import Example
    from fitness.devsets import devset_names, load_devset

    dev = {}
    for name in devset_names():
        rows = [r for r in load_devset(name, plan.seed) if r["policy"] in policy_map]
        if rows:
            dev[name] = [Example(r["text"], r["label"], r["policy"]) for r in _subsample(rows, plan.devset_rows, plan.seed)]
    return dev


def guard_results(model_dir, test, dev: dict, policy_map) -> dict:
    """A guard's test and dev metrics, the size of its weights file and its batch-1 latency (PyTorch or ONNX)."""
    from trainers.onnx import ONNX_FILE, is_onnx_guard_dir
    from trainers.runtime import load_guard

    guard = load_guard(model_dir)
    weights = ONNX_FILE if is_onnx_guard_dir(model_dir) else "model.safetensors"
    results = score_everything(guard, test, dev, policy_map)
    results["size_bytes"] = (Path(model_dir) / weights).stat().st_size
    results |= _latency(guard, test)
    return results


def baseline_results(plan: Plan, data: Path, test, dev: dict, policy_map) -> dict:
    """TF-IDF + logistic regression on the same training data, and the zero-shot LLM judge on a
    per-policy sample of plan.judge_rows (skipped when judge_rows is 0)."""
    from trainers.baselines import LLMJudge, TfidfBaseline
    from trainers.data import load_split

    train, validation = load_split(data, "train"), load_split(data, "validation")
    tfidf = TfidfBaseline(threshold_rule=plan.threshold_rule).fit(train, validation)
    results = {"TF-IDF + logistic regression": score_everything(tfidf, test, dev, policy_map)}
    if plan.judge_rows:
        judge = LLMJudge()  # F1-best: a few rows per policy cannot place a false-positive target
        judge.calibrate(_per_policy_sample(validation, plan.judge_rows, plan.seed), policy_map)
        judge_test = _per_policy_sample(test, plan.judge_rows, plan.seed)
        judge_dev = {name: _per_policy_sample(rows, plan.judge_rows, plan.seed) for name, rows in dev.items()}
        label = "zero-shot LLM judge (SmolLM2-135M)"
        results[label] = score_everything(judge, judge_test, judge_dev, policy_map)
        results[label]["note"] = f"{plan.judge_rows} examples per policy and per dev set"
    return results


def _per_policy_sample(examples, k: int, seed: int):
    from trainers.data import Example

    rows = [{"text": e.text, "label": e.label, "policy": e.policy} for e in examples]
    out = []
    for policy in sorted({r["policy"] for r in rows}):
        out += _subsample([r for r in rows if r["policy"] == policy], k, seed)
    return [Example(r["text"], r["label"], r["policy"]) for r in out]


def score_everything(scorer, test, dev: dict, policy_map) -> dict:
    from fitness.evaluate import evaluate

    return {"test": evaluate(scorer, test, policy_map),
            "dev": {name: evaluate(scorer, rows, policy_map) for name, rows in dev.items()}}


LATENCY_PROMPTS, LATENCY_REPEATS = 8, 5


def _latency(guard, test) -> dict:
    """Milliseconds per prompt at batch 1, warmed: the median and the 10th-90th percentile spread of
    LATENCY_REPEATS passes over LATENCY_PROMPTS test prompts (one timing per prompt and pass)."""
    import numpy as np

    from synth.policy import load_policy

    policy = load_policy(test[0].policy)
    texts = [e.text for e in test[:LATENCY_PROMPTS]]
    guard.score(texts[:2], policy)  # warm-up: the first forwards allocate and pick kernels
    timings = []
    for _ in range(LATENCY_REPEATS):
        for text in texts:
            started = time.perf_counter()
            guard.score([text], policy)
            timings.append(1000 * (time.perf_counter() - started))
    p10, p50, p90 = np.percentile(timings, [10, 50, 90])
    return {"latency_ms": float(p50), "latency_spread_ms": [float(p10), float(p90)]}


def _write_report(out: Path, plan: Plan, policies: list[str], results: dict, fast: bool) -> Path:
    from experiments.report import render_report

    from engine.rundir import RunDir

    search = RunDir(out / "search").entries()
    command = "uniguard quickstart" + (" --fast" if fast else "") + f" --out {shlex.quote(str(out))}"
    return render_report(out, plan, policies, results, search, command, python=sys.executable)
