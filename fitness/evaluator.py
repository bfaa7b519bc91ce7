"""Scores a model it is handed: held-out guard quality (raced), and measured latency; size is the caller's.

The model arrives as a `Scorer` (pre-tokenised features -> P(violation)), so a merged PyTorch model
in a search worker and an exported ONNX variant are measured by one protocol: the same validation
halves, metric, thresholds, latency batch and timing rule. Building models and merging recipes is
the engine's job (`engine.worker`).

Quality is read on growing validation prefixes (racing): after each rung, a candidate that some
front point no larger and no slower beats by more than `race_z` standard errors stops (`fitness.racing`
says how the error is estimated), and only the examples of the rungs it ran are forwarded. Scores
of earlier rungs are kept, so every example is forwarded at most once per recipe.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Callable, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fitness.data import EvalSet, Features, Half
from fitness.racing import Rival, Scores, beaten, bootstrap_draws, enough_examples, macro_value
from fitness.registry import get_metric
from trainers.compute import DeviceChoice, PrecisionChoice
from trainers.metrics import DEFAULT_THRESHOLD_RULE, parse_threshold_rule

Scorer = Callable[[Features], np.ndarray]  # pre-tokenised features -> P(violation), in input order


class FitnessSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = "guard_f1"
    threshold_rule: str = Field(default=DEFAULT_THRESHOLD_RULE, description="how each policy's threshold is placed on the calibration "
                                "half, as in training (f1, balanced or fpr:TARGET); the metric is read at it and "
                                "exports ship it")
    racing: tuple[float, ...] = Field(default=(0.125, 0.25, 0.5, 1.0), description="validation fractions per rung, ending at 1")
    race_replicates: int = Field(default=200, ge=20, description="bootstrap replicates behind a racing decision")
    race_min_examples: int = Field(default=8, ge=2, description="per policy and half, before a rung may stop a candidate")
    se_replicates: int = Field(default=100, ge=0, description="bootstrap replicates behind each complete evaluation's "
                               "standard error of F1 (0: none); the front marks points within noise of each other as ties")
    race_z: float = Field(default=3.0, gt=0, description="standard errors by which a front point must beat a candidate "
                          "to stop it (fitness/racing.py says why 3)")
    # a one-thread worker scores MiniLM pairs (~90 tokens) 1.28x faster at 16 than at 64 here (43 vs 34
    # examples/s): a batch's activations then stay in the core's cache
    batch_size: int = Field(default=16, ge=1, description="examples per forward when scoring validation data")
    max_length: Optional[int] = Field(default=None, ge=8, description="token limit for instruction + text; "
                                      "None = the guards' own (the smallest in the pool), which the exported merge uses")
    latency_batch: int = Field(default=8, ge=1)
    latency_repeats: int = Field(default=5, ge=1)
    threads: int = Field(default=1, ge=1, description="torch threads per worker")
    compile: bool = Field(default=True, description="torch.compile each worker's scoring model once (a merge rewrites "
                          "its weights in place, so one compile serves every recipe of a shape); costs 9-14 s per worker "
                          "and shape on a cold cache, then scores faster (experiments/bench_compute.py)")
    device: DeviceChoice = Field(default="auto", description="where workers score: auto = a GPU when the worker has one, else CPU")
    precision: PrecisionChoice = Field(default="auto", description="bfloat16 autocast or float32; auto = bfloat16 where "
                                       "the hardware runs it fast (measured ranking agreement: experiments/bench_compute.py)")
    gpus_per_worker: Optional[float] = Field(default=None, gt=0, le=1, description="GPU share each Ray worker asks for "
                                             "(several workers share a GPU below 1); None = 1/workers when the cluster has GPUs")
    seed: int = 0

    @field_validator("threshold_rule")
    @classmethod
    def _rule(cls, rule: str) -> str:
        parse_threshold_rule(rule)  # its ValueError names the rule and the choices
        return rule

    @field_validator("racing")
    @classmethod
    def _rungs(cls, rungs: tuple[float, ...]) -> tuple[float, ...]:
        if not rungs or list(rungs) != sorted(rungs) or rungs[-1] != 1.0 or rungs[0] <= 0:
            raise ValueError("racing must be increasing fractions in (0, 1] ending at 1.0, e.g. [0.25, 0.5, 1.0]")
        return rungs


@dataclass
class Evaluation:
    f1: float  # macro over policies of the configured metric (named f1 for the default metric)
    f1_se: float | None  # its bootstrap standard error over the scoring data (None for a raced-out partial value)
    per_policy: dict[str, float]
    thresholds: dict[str, float]
    size_bytes: int
    latency_ms: float
    shape: str  # layers kept and dtype: what size and latency depend on
    forwards: int
    full_forwards: int
    fraction: float  # of the validation data this value was read on
    raced_out: bool
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    scores: Scores | None = field(default=None, repr=False)  # full-data scores of a complete evaluation

    def to_dict(self) -> dict:
        """The journaled fields (scores travel separately: they are large and only racing needs them)."""
        out = asdict(self)
        out.pop("scores")
        return out


class Evaluator:
    def __init__(self, eval_set: EvalSet, settings: FitnessSettings):
        self.eval_set, self.settings = eval_set, settings
        self.metric = partial(get_metric(settings.metric), threshold_rule=settings.threshold_rule)
        self._latencies: dict[str, float] = {}
        self._draws: dict[float | str, list] = {}  # bootstrap replicates per racing rung, and "full"

    def evaluate(self, score: Scorer, size_bytes: int, shape: str, front: Sequence[tuple] = (),
                 latencies: dict[str, float] | None = None) -> Evaluation:
        """`shape`: what size and latency depend on (one latency per shape per search); `front`:
        (f1, size, latency[, scores]) points racing may lose to; `latencies`: ms per example already
        measured for a shape elsewhere (other workers), reused so one shape has one latency."""
        start = time.perf_counter()
        if latencies and shape in latencies:
            self._latencies[shape] = latencies[shape]
        latency = self._latency(score, shape)
        scored = self._race(score, size_bytes, latency, [Rival(*p) for p in front])
        return Evaluation(size_bytes=size_bytes, latency_ms=latency, shape=shape, seconds=time.perf_counter() - start, **scored)

    def _race(self, score: Scorer, size: int, latency: float, front: list[Rival]) -> dict:
        scores = {p.name: ([], []) for p in self.eval_set.policies}  # calibration, scoring scores so far
        forwards, full = 0, self.eval_set.size
        for rung in self.settings.racing:
            prefix = self.eval_set.prefix(rung)
            for data in prefix.policies:
                cal, sco = scores[data.name]
                forwards += self._extend(score, data.calibration, cal) + self._extend(score, data.scoring, sco)
            mine = [(np.concatenate(scores[p.name][0]), np.concatenate(scores[p.name][1])) for p in prefix.policies]
            if rung < 1.0 and self._stops(prefix, mine, size, latency, front, rung):
                return dict(**self._quality(prefix, mine), f1_se=None, forwards=forwards, full_forwards=full, fraction=rung,
                            raced_out=True)
        return dict(**self._quality(prefix, mine), f1_se=self._standard_error(mine), forwards=forwards, full_forwards=full,
                    fraction=1.0, raced_out=False, scores=mine)

    def _quality(self, prefix: EvalSet, mine: Scores) -> dict:
        results = {data.name: self.metric(data.calibration.labels, cal, data.scoring.labels, sco)
                   for data, (cal, sco) in zip(prefix.policies, mine)}
        per_policy = {name: r.value for name, r in results.items()}
        return dict(f1=float(np.mean(list(per_policy.values()))), per_policy=per_policy,
                    thresholds={name: r.threshold for name, r in results.items()})

    def _standard_error(self, mine: Scores) -> float | None:
        """Bootstrap standard error of the macro value on the full data: the same seeded, stratified
        replicates for every recipe (thresholds re-chosen per replicate), so errors compare."""
        if not self.settings.se_replicates:
            return None
        if "full" not in self._draws:
            self._draws["full"] = bootstrap_draws(self.eval_set, self.settings.se_replicates, self.settings.seed + 1)
        return float(np.std(macro_value(self.metric, self.eval_set, mine, self._draws["full"]), ddof=1))

    def _stops(self, prefix: EvalSet, mine: Scores, size: int, latency: float, front: list[Rival], rung: float) -> bool:
        if not enough_examples(prefix, self.settings.race_min_examples):
            return False
        if not any(p.size_bytes <= size and p.latency_ms <= latency for p in front):
            return False  # nothing to lose to: skip the bootstrap
        if rung not in self._draws:  # the same replicates for every candidate: comparisons share their noise
            self._draws[rung] = bootstrap_draws(prefix, self.settings.race_replicates, self.settings.seed)
        return beaten(self.metric, prefix, self.eval_set.size, mine, size, latency, front, self._draws[rung], self.settings.race_z)

    def _extend(self, score: Scorer, half: Half, done: list[np.ndarray]) -> int:
        """Score the examples of `half` not scored yet (prefixes are nested); return how many."""
        have = sum(len(s) for s in done)
        new = {k: v[have:] for k, v in half.features.items()}
        if not new["input_ids"]:
            return 0
        done.append(score(new))
        return len(new["input_ids"])

    def _latency(self, score: Scorer, shape: str) -> float:
        """Fastest of several timed calls at a fixed batch, in milliseconds per example (the minimum is
        the least disturbed by other load on the machine), after two warm-up calls. Weights' values do
        not change a dense model's speed, so it is measured once per shape per worker, or taken from
        `latencies` where another worker measured it first."""
        if shape not in self._latencies:
            features = self.eval_set.policies[0].scoring.features
            sample = {k: v[: self.settings.latency_batch] for k, v in features.items()}
            score(sample)  # warm-up
            score(sample)
            times = []
            for _ in range(self.settings.latency_repeats):
                t0 = time.perf_counter()
                score(sample)
                times.append(time.perf_counter() - t0)
            self._latencies[shape] = 1000 * min(times) / len(sample["input_ids"])
        return self._latencies[shape]
