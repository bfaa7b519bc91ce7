"""`uniguard study CONFIG --out DIR`: the paper's four questions, over several seeds, at the scale the
config sets (this machine: a few policies and MiniLM; elsewhere: more policies, a bigger encoder from
the hub, an LLM endpoint for synthesis, a Ray cluster -- only the config changes).

  Q1  Do guards trained on synthetic data beat the baselines (TF-IDF, zero-shot LLM judge) on real data?
  Q2  Does MultiTaskGuard beat single-policy guards on policies it was not fine-tuned for?
  Q3  Does the searched merge (UniGuard) beat every source model and the fixed merges?
  Q4  Evolutionary per-layer search vs the paper's bandit over k tied weights, at equal budget.

Per seed, in OUT/seed_S (every stage cached as in the quickstart, so an interrupted study resumes):
synthetic data, one guard per policy, MultiTaskGuard on all policies and on all but the held-out
ones, an evolutionary and a bandit search over the same pool, exports, then one evaluation of every
model on the synthetic test split and the offline real dev sets. After each seed, OUT/study.md and
OUT/study.json are rewritten from the finished seeds: mean ± sample standard deviation, and in how
many seeds each claim held.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiments.quickstart import OPERATORS, Plan, Stages
from experiments.report import SPECIALISTS
from trainers.metrics import DEFAULT_THRESHOLD_RULE, parse_threshold_rule
from uniguard.core.errors import UserError, format_validation_error
from uniguard.core.io import atomic_write_text, read_yaml_mapping, write_json

MTG = "MultiTaskGuard"
MTG_HELD_OUT = "MultiTaskGuard (held-out policies unseen)"
# MultiTaskGuard trained on from itself over every policy's rows for the plan's epochs: as many extra
# steps as its specialists took together, so a merge of them is compared at equal training compute
MTG_MATCHED = "MultiTaskGuard, compute-matched"
TFIDF = "TF-IDF + logistic regression"
JUDGE = "zero-shot LLM judge (SmolLM2-135M)"
ARMS = ("evolutionary", "bandit")


class SearchArm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    strategy: str
    weight_groups: int | Literal["per_layer"]


class StudyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policies: tuple[str, ...] = Field(min_length=2, description="built-in names or policy YAML paths")
    held_out: tuple[str, ...] = Field(min_length=1, description="Q2: policies one MultiTaskGuard never trains on")
    seeds: tuple[int, ...] = Field((0, 1, 2), min_length=1)
    base_model: str | None = Field(None, description="None = the offline MiniLM; any HF encoder directory or hub id")
    synth: dict = Field(default_factory=lambda: {"name": "template"}, description="synth.generate.BackendSpec fields")
    n: int = Field(100, ge=10, description="synthetic samples per policy before dedup and splitting")
    split: tuple[float, float, float] = Field((0.6, 0.2, 0.2), description="train / validation / test shares: larger held-out "
                                              "shares than the quickstart's, so test F1 over seeds means something")
    epochs: int = Field(1, ge=1)
    max_length: int = Field(128, ge=16)
    budget: int = Field(16, ge=1, description="recipes per search, equal for both arms (known-good seeds included)")
    fitness_n: int = Field(0, ge=0, description="synthetic samples per policy (before dedup) for the searches' own scoring "
                           "data and a confirmation split, half each, disjoint from the guards' data; UniGuard is then "
                           "chosen on the confirmation split. 0 = search on the validation split, no confirmation")
    operators: tuple[str, ...] = Field(OPERATORS, min_length=1, description="the search space's merge operators")
    metric: str = Field("guard_f1", description="the fitness metric the searches maximise (fitness/registry.py)")
    threshold_rule: str = Field(DEFAULT_THRESHOLD_RULE, description="how every guard's, search's and baseline's thresholds "
                                "are placed (f1, balanced or fpr:TARGET)")
    singles_from_multitask: bool = Field(True, description="train each single-policy guard as a specialist of MultiTaskGuard "
                                         "(and measure the pool's task vectors from it); false: from the bare encoder")
    workers: int = Field(2, ge=1)
    address: str | None = Field(None, description="a Ray cluster for the searches; None = a local one")
    devset_rows: int = Field(60, ge=1)
    judge_rows: int = Field(4, ge=0, description="per policy and dev set for the LLM judge; 0 skips the judge")
    evolutionary: SearchArm = SearchArm(strategy="TwoPointsDE", weight_groups="per_layer")
    bandit: SearchArm = SearchArm(strategy="bandit", weight_groups=1)

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        import operators

        unknown = [n for n in names if n not in operators.available()]
        if unknown:  # refused at load, not after the guards have trained
            raise ValueError(f"unknown merge operators {unknown}; available: {', '.join(sorted(operators.available()))}")
        return names

    @field_validator("threshold_rule")
    @classmethod
    def _known_rule(cls, rule: str) -> str:
        parse_threshold_rule(rule)  # refused at load; its ValueError names the rule and the choices
        return rule

    @model_validator(mode="after")
    def _held_out_is_a_strict_subset(self) -> "StudyConfig":
        unknown = [p for p in self.held_out if p not in self.policies]
        if unknown:
            raise ValueError(f"held_out {unknown} are not in policies {list(self.policies)}; list them there too")
        if len(set(self.held_out)) == len(set(self.policies)):
            raise ValueError("held_out names every policy; leave at least one for the held-out MultiTaskGuard to train on")
        return self

    def plan(self, seed: int) -> Plan:
        return Plan(policies=self.policies, n=self.n, epochs=self.epochs, max_length=self.max_length, budget=self.budget,
                    workers=self.workers, devset_rows=self.devset_rows, judge_rows=self.judge_rows, seed=seed,
                    base_model=self.base_model, split=self.split, fitness_n=self.fitness_n, threshold_rule=self.threshold_rule,
                    singles_from_multitask=self.singles_from_multitask)

    def backend(self):
        from synth.generate import BackendSpec

        try:
            return BackendSpec(**self.synth)
        except TypeError as exc:
            raise UserError(f"study config `synth`: {exc}; use the fields of synth.generate.BackendSpec (name, model, base_url, ...)") from None


def load_study_config(path: str | Path) -> StudyConfig:
    try:
        return StudyConfig(**read_yaml_mapping(path, "study config"))
    except ValidationError as exc:
        raise UserError(f"{path}: invalid study config:\n{format_validation_error(exc)}") from None


def run_study(config: StudyConfig, out: Path, say: Callable[[str], None] = print) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config.model_dump(mode="json"))
    finished, per_seed = finished_seeds(out, config), {}
    for seed in config.seeds:
        say(f"== seed {seed} ==" + (" (evaluated: cached)" if seed in finished else ""))
        # an evaluated seed is not rerun, so its guards and searches may be deleted to free disk
        per_seed[seed] = finished[seed] if seed in finished else run_seed(config, seed, out / f"seed_{seed}", say)
        report = write_study(out, config, per_seed)
    say(f"\nstudy: {report} ({len(per_seed)} seeds)")
    return report


# -- one seed ---------------------------------------------------------------------------------------

def run_seed(config: StudyConfig, seed: int, out: Path, say: Callable[[str], None]) -> dict:
    from experiments.quickstart import CONFIRMATION_FILE, SEARCH_FILE, confirm_stage, export_front, search_stage, synthesize, train_policies, train_pool

    plan = config.plan(seed)
    policies = list(config.policies)
    trained_on = [p for p in policies if p not in config.held_out]
    stages, data = Stages(out, say), out / "data"
    fitness = out / "data_fitness" if config.fitness_n else None
    stages.run("synth", lambda: synthesize(policies, plan, data, config.backend(), fitness_dir=fitness))
    guards = train_pool(plan, policies, data, out / "guards", stages)
    held_out_guard = Path(stages.run("train_multitask_held_out",
                                     lambda: train_policies(plan, data, out / "guards" / "multitask_held_out", trained_on)))
    matched = None
    if config.singles_from_multitask:  # the specialists' training compute, spent on MultiTaskGuard instead (MTG_MATCHED)
        matched = Path(stages.run("train_multitask_matched", lambda: train_policies(
            plan, data, out / "guards" / "multitask_matched", policies, str(guards["multitask"]))))
    scoring = fitness / SEARCH_FILE if fitness else data / "validation.jsonl"
    space = {"metric": config.metric, "operators": config.operators}
    exports = {}
    for arm_name in ARMS:
        arm, run_dir = getattr(config, arm_name), out / "search" / arm_name
        stages.run(f"search_{arm_name}", lambda: search_stage(plan, guards, scoring, run_dir, address=config.address,
                                                         strategy=arm.strategy, weight_groups=arm.weight_groups, **space))
        if fitness:
            stages.run(f"confirm_{arm_name}", lambda: confirm_stage(run_dir, fitness / CONFIRMATION_FILE))
        exports[arm_name] = stages.run(f"export_{arm_name}", lambda: export_front(run_dir, out / "exports" / arm_name, int8=False))
    return stages.run("evaluate", lambda: evaluate_seed(plan, policies, guards, held_out_guard, exports, data, out, matched))


def evaluate_seed(plan: Plan, policies: list[str], guards: dict[str, Path], held_out_guard: Path, exports: dict,
                  data: Path, out: Path, matched: Path | None = None) -> dict:
    from experiments.quickstart import baseline_results, dev_examples, guard_results, specialists_results
    from trainers.data import load_split, resolve_policies

    policy_map = resolve_policies(policies, policies)
    test = load_split(data, "test")
    dev = dev_examples(plan, policy_map)
    model_dirs = {f"single:{p}": guards[p] for p in policies} | {MTG: guards["multitask"], MTG_HELD_OUT: held_out_guard}
    model_dirs |= {MTG_MATCHED: matched} if matched else {}
    evolutionary = exports["evolutionary"]
    model_dirs |= {"uniform average": evolutionary["uniform_average"]["dir"], "TIES defaults": evolutionary["ties_defaults"]["dir"]}
    model_dirs |= {f"UniGuard ({arm})": exports[arm]["uniguard"]["dir"] for arm in ARMS}
    models = {label: guard_results(d, test, dev, policy_map) for label, d in model_dirs.items()}
    models[SPECIALISTS] = specialists_results({p: guards[p] for p in policies}, test, dev, policy_map)
    models |= baseline_results(plan, data, test, dev, policy_map)
    searches = {arm: search_summary(out / "search" / arm) for arm in ARMS}
    _share_hypervolume_reference(searches)
    return {"models": models, "searches": searches, "seed": plan.seed}


def search_summary(run_dir: Path) -> dict:
    from engine.confirm import load_confirmations
    from engine.rundir import RunDir

    run = RunDir(run_dir)
    entries = run.entries()
    best = max((e for e in entries if not e.raced_out), key=lambda e: e.f1)
    confirmed = load_confirmations(run)  # UniGuard is the confirmation split's best where there is one
    chosen = {"uniguard_search_f1": confirmed[0].search_f1, "uniguard_confirm_f1": confirmed[0].confirm_f1,
              "uniguard_confirm_shortfall": confirmed[0].shortfall} if confirmed else \
        {"uniguard_search_f1": best.f1, "uniguard_confirm_f1": None}
    return {"evaluations": len(entries), "best_validation_f1": best.f1, "best_hash": best.hash, **chosen,
            "max_size_bytes": max(e.size_bytes for e in entries), "max_latency_ms": max(e.latency_ms for e in entries),
            "entries": entries}


def _share_hypervolume_reference(searches: dict) -> None:
    """Both arms' hypervolumes against one reference point (the largest size and latency either saw),
    so they compare; the raw journal entries are dropped from the stored summary afterwards."""
    from engine.front import hypervolume

    size_ref = max(s["max_size_bytes"] for s in searches.values())
    latency_ref = max(s["max_latency_ms"] for s in searches.values())
    for summary in searches.values():
        summary["hypervolume"] = hypervolume(summary.pop("entries"), size_ref, latency_ref)


# -- tables over seeds ------------------------------------------------------------------------------

def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.mean(values) if values else math.nan


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def synthetic_score(model: dict, policy: str | None = None, metric: str = "f1") -> float:
    """The synthetic test split's macro metric, or one policy's."""
    block = model["test"]["macro"] if policy is None else model["test"]["per_policy"].get(policy, {})
    return block.get(metric, math.nan)


def dev_score(model: dict, policy: str | None = None, metric: str = "f1") -> float:
    """Mean over the real dev sets of the macro metric (or one policy's metric, over sets that have it)."""
    values = []
    for report in model["dev"].values():
        block = report["macro"] if policy is None else report["per_policy"].get(policy)
        if block is not None:
            values.append(block.get(metric, math.nan))
    return _mean(values)


def _wins(per_seed: dict, left: Callable[[dict], float], right: Callable[[dict], float]) -> str:
    wins = sum(1 for r in per_seed.values() if left(r) > right(r))
    return f"{wins}/{len(per_seed)} seeds"


def q1(per_seed: dict) -> tuple[str, list[str]]:
    """Synthetic-data guards vs the baselines on the real dev sets."""
    first = next(iter(per_seed.values()))["models"]
    sets = sorted({name for m in first.values() for name in m["dev"]})
    rows_for = [m for m in (SPECIALISTS, MTG, "UniGuard (evolutionary)", TFIDF, JUDGE) if m in first]
    rows = []
    for model in rows_for:
        cells = [_mean_std([r["models"][model]["dev"].get(s, {}).get("macro", {}).get("f1", math.nan) for r in per_seed.values()])
                 for s in sets]
        rows.append([model, *cells, _mean_std([dev_score(r["models"][model]) for r in per_seed.values()]),
                     _mean_std([dev_score(r["models"][model], metric="auprc") for r in per_seed.values()]),
                     _mean_std([synthetic_score(r["models"][model]) for r in per_seed.values()])])
    verdicts = []
    for guard in (SPECIALISTS, MTG):
        for baseline in (b for b in (TFIDF, JUDGE) if b in first):
            wins = _wins(per_seed, lambda r: dev_score(r["models"][guard]), lambda r: dev_score(r["models"][baseline]))
            verdicts.append(f"{guard} beats {baseline} on mean real-dev F1 in {wins}.")
    header = ["model", *sets, "mean dev F1", "mean dev AUPRC", "synthetic test F1"]
    return _table(header, rows), verdicts


Q2_METRICS = {"test F1": lambda model, p: synthetic_score(model, p), "test AUPRC": lambda model, p: synthetic_score(model, p, "auprc"),
              "dev F1": lambda model, p: dev_score(model, p), "dev AUPRC": lambda model, p: dev_score(model, p, "auprc")}


def _held_out_values(result: dict, policy: str, others: list[str], metric) -> dict[str, float]:
    """One seed's `metric` on held-out `policy` for each model Q2 compares (the first two are the contest)."""
    models = result["models"]
    by_others = [metric(models[o], policy) for o in others]
    return {f"{MTG} trained without {policy}": metric(models[MTG_HELD_OUT], policy),
            "best single guard of another policy (picked on this split)": max(by_others),
            "single guards of other policies (mean)": _mean(by_others),
            f"reference: single:{policy} (trained on it)": metric(models[f"single:{policy}"], policy),
            f"reference: {MTG} (trained on it)": metric(models[MTG], policy)}


def q2(per_seed: dict, config: StudyConfig) -> tuple[str, list[str]]:
    """On each held-out policy P: the MultiTaskGuard that never saw P vs single guards of other policies."""
    rows, verdicts = [], []
    for policy in config.held_out:
        others = [f"single:{p}" for p in config.policies if p != policy]
        values = {name: [_held_out_values(r, policy, others, metric) for r in per_seed.values()]
                  for name, metric in Q2_METRICS.items()}
        labels = list(values["test F1"][0])
        for label in labels:
            rows.append([policy, label, *(_mean_std([seed[label] for seed in values[name]]) for name in Q2_METRICS)])
        unseen, best_other = labels[:2]
        for name in ("test AUPRC", "dev AUPRC", "dev F1"):
            wins = sum(1 for seed in values[name] if seed[unseen] > seed[best_other])
            verdicts.append(f"{policy}: the MultiTaskGuard that never saw it beats the best other single guard on {name} "
                            f"in {wins}/{len(per_seed)} seeds.")
    return _table(["held-out policy", "model", *Q2_METRICS], rows), verdicts


def q3(per_seed: dict, config: StudyConfig) -> tuple[str, list[str]]:
    """UniGuard vs every source model and the fixed merges, each as one model for all policies."""
    searched = "UniGuard (evolutionary)"
    others = [f"single:{p}" for p in config.policies] + [MTG, "uniform average", "TIES defaults"]
    matched = all(MTG_MATCHED in r["models"] for r in per_seed.values())  # seeds run before it existed lack it
    rows = []
    for model in [*others, *([MTG_MATCHED] if matched else []), searched]:
        values = [r["models"][model] for r in per_seed.values()]
        rows.append([model, _mean_std([synthetic_score(v) for v in values]), _mean_std([dev_score(v) for v in values]),
                     f"{statistics.mean(v['size_bytes'] for v in values) / 1e6:.1f}"])
    verdicts = []
    for name, score in (("synthetic test macro F1", synthetic_score), ("mean real-dev F1", dev_score)):
        wins = _wins(per_seed, lambda r: score(r["models"][searched]), lambda r: max(score(r["models"][o]) for o in others))
        verdicts.append(f"{searched} beats every source model and fixed merge on {name} in {wins}.")
        if matched:
            wins = _wins(per_seed, lambda r: score(r["models"][searched]), lambda r: score(r["models"][MTG_MATCHED]))
            verdicts.append(f"{searched} beats {MTG_MATCHED} (as many training steps as the specialists) on {name} in {wins}.")
    for name, score in (("the synthetic test split", synthetic_score), ("the real dev sets", dev_score)):
        met = sum(1 for r in per_seed.values() if meets_paper_bar(r["models"], searched, config.policies, score))
        verdicts.append(f"The issue's bar on {name} ({searched} at most 1 point below the best source model on every policy, "
                        f"and at least {MTG} + 2 points macro F1) is met in {met}/{len(per_seed)} seeds.")
    # Latency is left out here: these models mostly share one architecture, and batch-1 timings taken
    # while the study's other stages load the machine differ by noise; the search's own latencies are in Q4's hypervolume.
    return _table(["model", "synthetic test F1", "mean dev F1", "size (MB)"], rows), verdicts


def meets_paper_bar(models: dict, merged: str, policies, score: Callable[..., float]) -> bool:
    """`merged` is within 1 point of the best source model (single guards, MultiTaskGuard) on each
    policy the score covers, and 2 points above MultiTaskGuard on the macro average."""
    sources = [f"single:{p}" for p in policies] + [MTG]
    for policy in policies:
        best = max(score(models[s], policy) for s in sources)
        if not math.isnan(best) and not score(models[merged], policy) >= best - 0.01:
            return False
    return score(models[merged]) >= score(models[MTG]) + 0.02


def q4(per_seed: dict, config: StudyConfig) -> tuple[str, list[str]]:
    """Evolutionary per-layer search vs the bandit over tied weights, equal budget."""
    rows = []
    for arm in ARMS:
        spec = getattr(config, arm)
        searches = [r["searches"][arm] for r in per_seed.values()]
        models = [r["models"][f"UniGuard ({arm})"] for r in per_seed.values()]
        rows.append([arm, spec.strategy, str(spec.weight_groups), _mean_std([s["best_validation_f1"] for s in searches]),
                     _mean_std([s["hypervolume"] for s in searches]), _mean_std([s.get("uniguard_search_f1") for s in searches]),
                     _mean_std([s.get("uniguard_confirm_f1") for s in searches]), _mean_std([synthetic_score(m) for m in models]),
                     _mean_std([dev_score(m) for m in models]), f"{statistics.mean(s['evaluations'] for s in searches):.0f}"])
    verdicts = []
    for arm in ARMS:  # the winner's curse: how much of the score it was chosen on survives on unseen data
        gaps = [r["searches"][arm].get("uniguard_search_f1", math.nan) - synthetic_score(r["models"][f"UniGuard ({arm})"])
                for r in per_seed.values()]
        verdicts.append(f"{arm}: UniGuard's search F1 minus its synthetic test F1 is {_mean_std(gaps)}.")
    difference = [synthetic_score(r["models"]["UniGuard (evolutionary)"]) - synthetic_score(r["models"]["UniGuard (bandit)"])
                  for r in per_seed.values()]
    verdicts.append(f"UniGuard test F1, evolutionary minus bandit: {_mean_std(difference)}.")
    for name, value in (("best validation F1", lambda r, a: r["searches"][a]["best_validation_f1"]),
                        ("hypervolume", lambda r, a: r["searches"][a]["hypervolume"]),
                        ("synthetic test F1 of its UniGuard", lambda r, a: synthetic_score(r["models"][f"UniGuard ({a})"]))):
        ties = sum(1 for r in per_seed.values() if value(r, "evolutionary") == value(r, "bandit"))
        wins = _wins(per_seed, lambda r: value(r, "evolutionary"), lambda r: value(r, "bandit"))
        verdicts.append(f"evolutionary beats bandit on {name} in {wins} ({ties} tied).")
    header = ["arm", "strategy", "weight groups", "best search F1", "hypervolume", "UniGuard search F1", "UniGuard confirmation F1",
              "UniGuard test F1", "UniGuard dev F1", "evaluations"]
    return _table(header, rows), verdicts


def write_study(out: Path, config: StudyConfig, per_seed: dict) -> Path:
    sections = {"Q1. Synthetic-data guards vs baselines on real data (macro F1 per real dev set)": q1(per_seed),
                "Q2. MultiTaskGuard on policies it was not fine-tuned for": q2(per_seed, config),
                "Q3. Searched merge vs source models and fixed merges": q3(per_seed, config),
                "Q4. Evolutionary per-layer search vs bandit over k weights (equal budget)": q4(per_seed, config)}
    seeds = ", ".join(map(str, per_seed))
    md = [f"# uniguard study\n\nSeeds: {seeds} (cells: mean ± sample standard deviation over seeds). Policies: "
          f"{', '.join(config.policies)}; held out for Q2: {', '.join(config.held_out)}. Base encoder: "
          f"{config.base_model or 'all-MiniLM-L6-v2 (offline)'}; synthetic data: {config.synth.get('name', 'template')} backend, "
          f"n = {config.n} per policy split {'/'.join(map(str, config.split))}; {config.epochs} epoch(s); search budget "
          f"{config.budget} recipes per arm ({config.metric}; operators: {', '.join(config.operators or OPERATORS)}), "
          + (f"scored on {config.fitness_n} further samples per policy split between the search and a confirmation split that "
             "chooses UniGuard. " if config.fitness_n else "scored on the validation split. ")
          + f"Real dev sets: class-balanced subsamples of {config.devset_rows} rows; the LLM judge saw {config.judge_rows} per policy and set."]
    for title, (table, verdicts) in sections.items():
        md.append(f"## {title}\n\n{table}\n\n" + "\n".join(f"- {v}" for v in verdicts))
    path = out / "study.md"
    atomic_write_text(path, "\n\n".join(md) + "\n")
    write_json(out / "study.json", {"config": config.model_dump(mode="json"),
                                    "verdicts": {title: v for title, (_, v) in sections.items()},
                                    "per_seed": {str(s): r for s, r in per_seed.items()}})
    return path


def finished_seeds(out: Path, config: StudyConfig) -> dict:
    """Per-seed results of the seeds already evaluated in OUT (to rewrite the tables without running)."""
    import json

    per_seed = {}
    for seed in config.seeds:
        marker = out / f"seed_{seed}" / "stages" / "evaluate.json"
        if marker.is_file():
            per_seed[seed] = json.loads(marker.read_text())["result"]
    return per_seed

