"""Racing: whether a partly evaluated candidate can still reach the Pareto front.

A rung's validation prefix is a stratified random sample, without replacement, of the full
validation data (the deal in `fitness.data` is a seeded permutation), so a candidate's quality on
the full data differs from its quality on the prefix by sampling error alone. That error is
estimated by a seeded, stratified bootstrap of the prefix: both halves are resampled and the metric
re-run on every replicate, threshold choice included, so the estimate holds for any plug-in metric
and for the macro average over policies (a binomial formula does neither: F1 rests on the positives
and flagged examples only, far fewer than n). The target is the quality on the N validation
examples, m of which are already seen, so the standard error shrinks by the finite-population
correction sqrt(1 - m/N).

A front point is compared unpaired (its full-data value taken as exact, the candidate's prefix value
as the sample) or, where its per-example scores are known, paired: both read on the same prefix and
the same replicates, the margin being the difference of their values, whose standard error is
below either's when two merges of the same guards err on the same examples. The comparison with the
smaller standard error is used (see `_comparison`). A candidate stops when some front point no larger and no slower beats it by
more than z standard errors (`race_z`, default 3); the rung must hold `min_examples` per policy and
half for the bootstrap to mean anything. Why 3 and not 2: a search makes hundreds of these tests (each
candidate, rung and rival), and a wrong stop can drop the search's best recipe. At 2 (2.3% one-sided
per test, before the bootstrap's small-sample optimism) a 64-recipe benchmark lost its best recipe
that way; at 3 a test errs about 0.1% of the time.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from fitness.data import EvalSet

Scores = list[tuple[np.ndarray, np.ndarray]]  # per policy (in EvalSet order): calibration, scoring scores
Draws = list[tuple[np.ndarray, np.ndarray]]  # per policy: (replicates, n) indices into each half


class Rival(NamedTuple):
    """A front point a candidate is raced against (its per-example scores, where known, pair the test)."""

    f1: float
    size_bytes: int
    latency_ms: float
    scores: Scores | None = None  # full-data scores, where known: enables the paired comparison


def bootstrap_draws(prefix: EvalSet, replicates: int, seed: int) -> Draws:
    rng = np.random.default_rng(seed)
    return [(_stratified(p.calibration.labels, replicates, rng), _stratified(p.scoring.labels, replicates, rng))
            for p in prefix.policies]


def _stratified(labels: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Resample each label's examples with replacement, so every replicate keeps the label counts."""
    columns = [rng.choice(idx, size=(replicates, idx.size)) for idx in (np.flatnonzero(labels == k) for k in (0, 1)) if idx.size]
    return np.concatenate(columns, axis=1)


def macro_value(metric, prefix: EvalSet, scores: Scores, draws: Draws | None = None) -> np.ndarray | float:
    """The metric averaged over policies on the prefix (scores may run past it), or on every replicate."""
    total: np.ndarray | float = 0.0
    for data, (cal, sco), picks in zip(prefix.policies, scores, draws or [None] * len(scores)):
        cl, sl = data.calibration.labels, data.scoring.labels
        cs, ss = cal[: len(cl)], sco[: len(sl)]
        if picks is None:
            total = total + metric(cl, cs, sl, ss).value
        else:
            total = total + np.array([metric(cl[c], cs[c], sl[s], ss[s]).value for c, s in zip(*picks)])
    return total / len(prefix.policies)


def beaten(metric, prefix: EvalSet, full_size: int, mine: Scores, size: int, latency: float,
           front: Sequence[Rival], draws: Draws, z: float) -> bool:
    """Whether a front point no larger and no slower is better by more than z standard errors."""
    rivals = sorted((p for p in front if p.size_bytes <= size and p.latency_ms <= latency), key=lambda p: -p.f1)
    if not rivals:
        return False
    shrink = math.sqrt(max(0.0, 1 - prefix.size / full_size))
    value, replicates = macro_value(metric, prefix, mine), macro_value(metric, prefix, mine, draws)
    for rival in rivals:
        margin, spread = _comparison(metric, prefix, rival, value, replicates, draws)
        if margin > z * spread * shrink:
            return True
    return False


def _comparison(metric, prefix: EvalSet, rival: Rival, value: float, replicates: np.ndarray,
                draws: Draws) -> tuple[float, float]:
    """(margin, its standard error before the correction): unpaired against the rival's exact
    full-data value, or paired on the prefix where that has the smaller error. Which one is chosen
    by the errors alone, never by the margins, so the z-error rule keeps its meaning; pairing wins
    when two merges err on the same examples, and loses to the exact value when their thresholds,
    re-chosen per replicate, move apart."""
    unpaired = (rival.f1 - value, float(np.std(replicates, ddof=1)))
    if rival.scores is None:
        return unpaired
    theirs = macro_value(metric, prefix, rival.scores, draws)
    paired = (macro_value(metric, prefix, rival.scores) - value, float(np.std(theirs - replicates, ddof=1)))
    return min(unpaired, paired, key=lambda c: c[1])


def enough_examples(prefix: EvalSet, min_examples: int) -> bool:
    return all(min(len(p.calibration), len(p.scoring)) >= min_examples for p in prefix.policies)
