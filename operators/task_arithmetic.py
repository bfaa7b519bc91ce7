"""The task-arithmetic family as one generalised operator plus thin registrations.

Generalised task arithmetic (as in mergekit and the DELLA paper): sparsify each task vector,
weight it, optionally keep only entries that agree with an elected sign, sum, optionally normalise
by the weight that contributed to each entry, scale by lambda and add to the base. TIES, DARE,
breadcrumbs and DELLA differ only in which sparsifier and consensus rule they compose.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import torch

from operators.consensus import ConsensusRule, agreeing, elect_sign
from operators.registry import Param, merge_operator
from operators.sparsify import MagnitudeIndex, magnitude_band, magnitude_topk, random_drop, ranked_random_drop

Sparsifier = Callable[[int, torch.Tensor], torch.Tensor]

WEIGHTS = Param("weights", float, default=1.0, low=-4.0, high=4.0, per_model=True, help="weight of each task vector")
DENSITY = Param("density", float, default=0.5, low=0.0, high=1.0, help="fraction of each task vector kept")
LAMBDA = Param("lambda_", float, default=1.0, low=0.0, high=4.0, help="scale of the merged task vector")
GAMMA = Param("gamma", float, default=0.01, low=0.0, high=0.5, help="fraction of largest-magnitude outliers dropped")
EPSILON = Param("epsilon", float, default=0.1, low=0.0, high=0.5, help="spread of DELLA keep probabilities around density")
SEED = Param("seed", int, default=0, low=0, high=2**31 - 1, searchable=False, help="seed of random drops")
BREADCRUMBS_DENSITY = replace(DENSITY, default=0.9)
RESCALE = Param("rescale", bool, default=True, searchable=False, help="rescale survivors by 1 / keep probability")


def normalize_param(default: bool) -> Param:
    return Param("normalize", bool, default=default, searchable=False, help="divide by the weight contributing to each entry")


def generalized_task_arithmetic(
    base: torch.Tensor,
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    sparsify: Sparsifier | None = None,
    consensus: ConsensusRule | None = None,
    normalize: bool = False,
    lambda_: float = 1.0,
) -> torch.Tensor:
    stacked = torch.stack([sparsify(i, d) if sparsify else d for i, d in enumerate(deltas)])
    w = torch.tensor(list(weights), dtype=stacked.dtype).reshape(-1, *([1] * base.dim()))
    stacked.mul_(w)
    if consensus:
        mask = agreeing(stacked, elect_sign(stacked, consensus))
        merged = (stacked * mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        merged = stacked.sum(dim=0)
        divisor = w.sum()
        if divisor.abs() < 1e-8:
            divisor = torch.ones(())
    if normalize:
        merged.div_(divisor)
    if lambda_ != 1:
        merged.mul_(lambda_)
    return merged.add_(base)


def _index(indexes: Sequence[MagnitudeIndex] | None, i: int) -> MagnitudeIndex | None:
    return indexes[i] if indexes is not None else None


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


@merge_operator("task_arithmetic", params=[WEIGHTS, LAMBDA, normalize_param(False)], elementwise=True,
                reference="https://arxiv.org/abs/2212.04089")
def task_arithmetic(base, deltas, *, weights, lambda_, normalize):
    """base + lambda * sum_i w_i * delta_i."""
    return generalized_task_arithmetic(base, deltas, weights, normalize=normalize, lambda_=lambda_)


@merge_operator("ties", params=[WEIGHTS, DENSITY, LAMBDA, normalize_param(True)], elementwise=True,
                uses_magnitude_index=True, reference="https://arxiv.org/abs/2306.01708")
def ties(base, deltas, *, weights, density, lambda_, normalize, indexes=None):
    """TIES: trim to top-density magnitudes, elect signs by mass, average the agreeing entries."""
    trim = lambda i, d: magnitude_topk(d, density, _index(indexes, i))  # noqa: E731
    return generalized_task_arithmetic(base, deltas, weights, sparsify=trim, consensus="sum", normalize=normalize, lambda_=lambda_)


def _dare(base, deltas, weights, density, lambda_, normalize, rescale, seed, consensus):
    generator = _generator(seed)
    drop = lambda i, d: random_drop(d, density, generator, rescale)  # noqa: E731
    return generalized_task_arithmetic(base, deltas, weights, sparsify=drop, consensus=consensus, normalize=normalize, lambda_=lambda_)


@merge_operator("dare_linear", params=[WEIGHTS, DENSITY, LAMBDA, normalize_param(False), RESCALE, SEED],
                elementwise=True, reference="https://arxiv.org/abs/2311.03099")
def dare_linear(base, deltas, *, weights, density, lambda_, normalize, rescale, seed):
    """DARE: random drop with probability 1 - density, rescale by 1 / density, weighted sum."""
    return _dare(base, deltas, weights, density, lambda_, normalize, rescale, seed, consensus=None)


@merge_operator("dare_ties", params=[WEIGHTS, DENSITY, LAMBDA, normalize_param(False), RESCALE, SEED],
                elementwise=True, reference="https://arxiv.org/abs/2311.03099")
def dare_ties(base, deltas, *, weights, density, lambda_, normalize, rescale, seed):
    """DARE drop-and-rescale followed by TIES sign consensus."""
    return _dare(base, deltas, weights, density, lambda_, normalize, rescale, seed, consensus="sum")


def _breadcrumbs(base, deltas, weights, density, gamma, lambda_, normalize, indexes, consensus):
    band = lambda i, d: magnitude_band(d, density, gamma, _index(indexes, i))  # noqa: E731
    return generalized_task_arithmetic(base, deltas, weights, sparsify=band, consensus=consensus, normalize=normalize, lambda_=lambda_)


@merge_operator("breadcrumbs", params=[WEIGHTS, BREADCRUMBS_DENSITY, GAMMA, LAMBDA,
                normalize_param(False)], elementwise=True, uses_magnitude_index=True,
                reference="https://arxiv.org/abs/2312.06795")
def breadcrumbs(base, deltas, *, weights, density, gamma, lambda_, normalize, indexes=None):
    """Model Breadcrumbs: keep a magnitude band (no outliers, no small entries), weighted sum."""
    return _breadcrumbs(base, deltas, weights, density, gamma, lambda_, normalize, indexes, consensus=None)


@merge_operator("breadcrumbs_ties", params=[WEIGHTS, BREADCRUMBS_DENSITY, GAMMA,
                LAMBDA, normalize_param(False)], elementwise=True, uses_magnitude_index=True,
                reference="https://arxiv.org/abs/2312.06795")
def breadcrumbs_ties(base, deltas, *, weights, density, gamma, lambda_, normalize, indexes=None):
    """Model Breadcrumbs band followed by TIES sign consensus."""
    return _breadcrumbs(base, deltas, weights, density, gamma, lambda_, normalize, indexes, consensus="sum")


def _della(base, deltas, weights, density, epsilon, lambda_, normalize, rescale, seed, indexes, consensus):
    generator = _generator(seed)
    prune = lambda i, d: ranked_random_drop(d, density, epsilon, generator, _index(indexes, i), rescale)  # noqa: E731
    return generalized_task_arithmetic(base, deltas, weights, sparsify=prune, consensus=consensus, normalize=normalize, lambda_=lambda_)


@merge_operator("della", params=[WEIGHTS, DENSITY, EPSILON, LAMBDA, normalize_param(True), RESCALE, SEED],
                elementwise=True, uses_magnitude_index=True, reference="https://arxiv.org/abs/2406.11617")
def della(base, deltas, *, weights, density, epsilon, lambda_, normalize, rescale, seed, indexes=None):
    """DELLA: magnitude-ranked random drop (MagPrune), TIES sign election, fused average."""
    return _della(base, deltas, weights, density, epsilon, lambda_, normalize, rescale, seed, indexes, consensus="sum")


@merge_operator("della_linear", params=[WEIGHTS, DENSITY, EPSILON, LAMBDA, normalize_param(False), RESCALE, SEED],
                elementwise=True, uses_magnitude_index=True, reference="https://arxiv.org/abs/2406.11617")
def della_linear(base, deltas, *, weights, density, epsilon, lambda_, normalize, rescale, seed, indexes=None):
    """DELLA MagPrune without sign consensus, weighted sum."""
    return _della(base, deltas, weights, density, epsilon, lambda_, normalize, rescale, seed, indexes, consensus=None)
