"""The task-arithmetic family as one generalised operator plus thin registrations.

Generalised task arithmetic (as in mergekit and the DELLA paper): sparsify each task vector,
weight it, optionally keep only entries that agree with an elected sign, sum, optionally normalise
by the weight that contributed to each entry, scale by lambda and add to the base. TIES, DARE,
breadcrumbs and DELLA differ only in which sparsifier and consensus rule they compose.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from operators.consensus import ConsensusRule
from operators.kernels import MIN_KEEP_PROBABILITY, RANDOM_SPAN, rule_elect, rule_sum
from operators.registry import Param, check_out, merge_operator
from operators.sparsify import (
    KEEP_ALL, KeepRule, MagnitudeIndex, TaskVectorContext, magnitude_band, magnitude_topk, random_drop, ranked_random_drop,
)

WEIGHTS = Param("weights", float, default=1.0, low=-4.0, high=4.0, per_model=True, search=(0.0, 1.0),
                help="weight of each task vector")
DENSITY = Param("density", float, default=0.5, low=0.0, high=1.0, search=(0.1, 1.0), help="fraction of each task vector kept")
LAMBDA = Param("lambda_", float, default=1.0, low=0.0, high=4.0, search=(0.5, 1.5), help="scale of the merged task vector")
GAMMA = Param("gamma", float, default=0.01, low=0.0, high=0.5, search=(0.0, 0.1), help="fraction of largest-magnitude outliers dropped")
EPSILON = Param("epsilon", float, default=0.1, low=0.0, high=0.5, search=(0.0, 0.2),
                help="spread of DELLA keep probabilities around density")
SEED = Param("seed", int, default=0, low=0, high=2**31 - 1, searchable=False, help="seed of random drops")
BREADCRUMBS_DENSITY = replace(DENSITY, default=0.9)
RESCALE = Param("rescale", bool, default=True, searchable=False, help="rescale survivors by 1 / keep probability")


def normalize_param(default: bool) -> Param:
    return Param("normalize", bool, default=default, searchable=False, help="divide by the weight contributing to each entry")


def generalized_task_arithmetic(
    base: torch.Tensor,
    deltas: torch.Tensor | Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    rules: Sequence[KeepRule] | None = None,
    consensus: ConsensusRule | None = None,
    normalize: bool = False,
    lambda_: float = 1.0,
    rescale: bool = True,
    seed: int = 0,
    context: TaskVectorContext | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """base + lambda * combine_i(w_i * keep_i(delta_i)), in one fused pass over memory.

    `combine` is a sum, or with `consensus` the sum of values agreeing with the elected sign;
    `normalize` divides by the summed weights (of the agreeing models, with consensus). `out`: a
    float32 contiguous tensor of base's shape to write into (else a new one)."""
    stacked = deltas if isinstance(deltas, torch.Tensor) else torch.stack(list(deltas))
    n_models = stacked.shape[0]
    rules = list(rules) if rules is not None else [KEEP_ALL] * n_models
    # numpy views, reshaped in numpy: torch's per-call reshape overhead, times three per tensor and
    # a hundred tensors per model, was measurable next to a memory-speed kernel
    base_np = _float32_array(base)
    result = torch.from_numpy(np.empty_like(base_np)) if out is None else check_out(out, base_np.shape)
    base_flat, out_flat = base_np.reshape(-1), result.numpy().reshape(-1)
    deltas_flat = _float32_array(stacked).reshape(n_models, -1)
    if any(rule.uses_ranks for rule in rules):
        context = context or TaskVectorContext(stacked)
        ranks = context.ranks.reshape(n_models, -1).numpy()
    else:
        ranks = None
    _run_kernel(base_flat, deltas_flat, ranks, weights, rules, consensus, normalize, lambda_, rescale, seed, out_flat)
    return result


def _float32_array(tensor: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 numpy view of `tensor`, copied only when it is not one already."""
    return np.ascontiguousarray(tensor.detach().float().numpy())


def _run_kernel(base, deltas, ranks, weights, rules, consensus, normalize, lambda_, rescale, seed, out) -> None:
    """Per-model values go in as tuples of Python floats (one compiled version per model count, its
    model loop unrolled); the kernel rounds them to float32, as np.float32 here would, but without a
    scalar object per value and tensor. `drop` / `ranked` stay None where no rule needs them, so
    that kernel version compiles without the RNG or the rank reads."""
    w = tuple(map(float, weights))
    lo, hi = tuple(rule.lo for rule in rules), tuple(rule.hi for rule in rules)
    scale, drop, ranked = w, None, None
    if ranks is not None:  # per-entry keep probability: rescaled in the kernel
        drop = (np.uint64(seed), (np.uint64(0),) * len(rules))
        ranked = (ranks, tuple(rule.prob for rule in rules), tuple(rule.prob_slope for rule in rules), bool(rescale))
    elif any(rule.prob < 1.0 for rule in rules):
        probs = [1.0 if rule.prob >= 1.0 else max(rule.prob, MIN_KEEP_PROBABILITY) for rule in rules]
        # survivors rescaled by 1 / p; p = 1 keeps every entry: 53-bit draws are all below 2**53
        scale = tuple(x / p if rescale else x for x, p in zip(w, probs))
        drop = (np.uint64(seed), tuple(np.uint64(math.ceil(p * RANDOM_SPAN)) for p in probs))
    if consensus is None:
        weight_sum = sum(w)
        weight_sum = 1.0 if abs(weight_sum) < 1e-8 else weight_sum
        rule_sum(base, deltas, scale, lo, hi, drop, ranked, np.float32(lambda_ / weight_sum if normalize else lambda_), out)
    else:
        rule_elect(base, deltas, scale, w, lo, hi, drop, ranked, consensus == "count", bool(normalize), np.float32(lambda_), out)


def sparsified(delta: torch.Tensor, rule: KeepRule, *, rescale: bool = True, seed: int = 0) -> torch.Tensor:
    """One task vector after a keep rule (the kernel with one model, weight 1, zero base)."""
    return generalized_task_arithmetic(torch.zeros_like(delta), delta[None], [1.0], rules=[rule], rescale=rescale, seed=seed)


def _indexes(deltas: torch.Tensor, context: TaskVectorContext | None) -> list[MagnitudeIndex]:
    return (context or TaskVectorContext(deltas)).indexes


@merge_operator("task_arithmetic", params=[WEIGHTS, LAMBDA, normalize_param(False)],
                reference="https://arxiv.org/abs/2212.04089")
def task_arithmetic(base, deltas, *, weights, lambda_, normalize, out=None):
    """base + lambda * sum_i w_i * delta_i."""
    return generalized_task_arithmetic(base, deltas, weights, normalize=normalize, lambda_=lambda_, out=out)


@merge_operator("ties", params=[WEIGHTS, DENSITY, LAMBDA, normalize_param(True)],
                uses_context=True, reference="https://arxiv.org/abs/2306.01708")
def ties(base, deltas, *, weights, density, lambda_, normalize, context=None, out=None):
    """TIES: trim to top-density magnitudes, elect signs by mass, average the agreeing entries."""
    rules = [magnitude_topk(index, density) for index in _indexes(deltas, context)]
    return generalized_task_arithmetic(base, deltas, weights, rules=rules, consensus="sum", normalize=normalize, lambda_=lambda_, out=out)


def _dare(base, deltas, weights, density, lambda_, normalize, rescale, seed, consensus, out):
    return generalized_task_arithmetic(base, deltas, weights, rules=[random_drop(density)] * len(deltas), consensus=consensus,
                                       normalize=normalize, lambda_=lambda_, rescale=rescale, seed=seed, out=out)


@merge_operator("dare_linear", params=[WEIGHTS, DENSITY, LAMBDA, normalize_param(False), RESCALE, SEED],
                reference="https://arxiv.org/abs/2311.03099")
def dare_linear(base, deltas, *, weights, density, lambda_, normalize, rescale, seed, out=None):
    """DARE: random drop with probability 1 - density, rescale by 1 / density, weighted sum."""
    return _dare(base, deltas, weights, density, lambda_, normalize, rescale, seed, consensus=None, out=out)


@merge_operator("dare_ties", params=[WEIGHTS, DENSITY, LAMBDA, normalize_param(False), RESCALE, SEED],
                reference="https://arxiv.org/abs/2311.03099")
def dare_ties(base, deltas, *, weights, density, lambda_, normalize, rescale, seed, out=None):
    """DARE drop-and-rescale followed by TIES sign consensus."""
    return _dare(base, deltas, weights, density, lambda_, normalize, rescale, seed, consensus="sum", out=out)


def _breadcrumbs(base, deltas, weights, density, gamma, lambda_, normalize, context, consensus, out):
    rules = [magnitude_band(index, density, gamma) for index in _indexes(deltas, context)]
    return generalized_task_arithmetic(base, deltas, weights, rules=rules, consensus=consensus, normalize=normalize, lambda_=lambda_, out=out)


@merge_operator("breadcrumbs", params=[WEIGHTS, BREADCRUMBS_DENSITY, GAMMA, LAMBDA,
                normalize_param(False)], uses_context=True,
                reference="https://arxiv.org/abs/2312.06795")
def breadcrumbs(base, deltas, *, weights, density, gamma, lambda_, normalize, context=None, out=None):
    """Model Breadcrumbs: keep a magnitude band (no outliers, no small entries), weighted sum."""
    return _breadcrumbs(base, deltas, weights, density, gamma, lambda_, normalize, context, consensus=None, out=out)


@merge_operator("breadcrumbs_ties", params=[WEIGHTS, BREADCRUMBS_DENSITY, GAMMA,
                LAMBDA, normalize_param(False)], uses_context=True,
                reference="https://arxiv.org/abs/2312.06795")
def breadcrumbs_ties(base, deltas, *, weights, density, gamma, lambda_, normalize, context=None, out=None):
    """Model Breadcrumbs band followed by TIES sign consensus."""
    return _breadcrumbs(base, deltas, weights, density, gamma, lambda_, normalize, context, consensus="sum", out=out)


def _della(base, deltas, weights, density, epsilon, lambda_, normalize, rescale, seed, context, consensus, out):
    rules = [ranked_random_drop(density, epsilon)] * len(deltas)
    return generalized_task_arithmetic(base, deltas, weights, rules=rules, consensus=consensus, normalize=normalize,
                                       lambda_=lambda_, rescale=rescale, seed=seed, context=context, out=out)


@merge_operator("della", params=[WEIGHTS, DENSITY, EPSILON, LAMBDA, normalize_param(True), RESCALE, SEED],
                uses_context=True, reference="https://arxiv.org/abs/2406.11617")
def della(base, deltas, *, weights, density, epsilon, lambda_, normalize, rescale, seed, context=None, out=None):
    """DELLA: magnitude-ranked random drop (MagPrune), TIES sign election, fused average."""
    return _della(base, deltas, weights, density, epsilon, lambda_, normalize, rescale, seed, context, consensus="sum", out=out)


@merge_operator("della_linear", params=[WEIGHTS, DENSITY, EPSILON, LAMBDA, normalize_param(False), RESCALE, SEED],
                uses_context=True, reference="https://arxiv.org/abs/2406.11617")
def della_linear(base, deltas, *, weights, density, epsilon, lambda_, normalize, rescale, seed, context=None, out=None):
    """DELLA MagPrune without sign consensus, weighted sum."""
    return _della(base, deltas, weights, density, epsilon, lambda_, normalize, rescale, seed, context, consensus=None, out=out)
