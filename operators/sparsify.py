"""Sparsifiers for task vectors, as keep rules that compose with any weighting and consensus.

Every sparsifier in the task-arithmetic family is one `KeepRule`: keep an entry when its magnitude
lies in [lo, hi) and a uniform draw falls under `prob + prob_slope * row_rank`, rescaling survivors
by 1 / probability. Magnitude top-k (TIES), magnitude band (breadcrumbs), random drop (DARE) and
magnitude-ranked random drop (DELLA) are four ways of filling in those numbers; the fused kernel
applies whichever rule each candidate has.

Rank-based rules never sort per recipe. A `MagnitudeIndex` is built once per task vector (one sort,
kept by the model pool) and turns a density into a magnitude threshold by table lookup. Counts are
exact (as mergekit's int(density * n)) for tensors up to EXACT_INDEX_MAX entries and for densities
with at most three decimals; otherwise within 1/DENSITY_STEPS of the tensor.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

import numpy as np
import torch

DENSITY_STEPS = 1000
EXACT_INDEX_MAX = 4 * DENSITY_STEPS  # tensors up to this size keep every magnitude: exact at any count


@dataclass
class MagnitudeIndex:
    """Descending |delta| at selected counts: every count for small tensors, otherwise the counts
    max(1, i * n // DENSITY_STEPS), i = 1..DENSITY_STEPS. `table[j]` is the `counts[j]`-th largest."""

    numel: int
    counts: np.ndarray  # int64, ascending
    table: np.ndarray  # float32

    @classmethod
    def build(cls, delta: torch.Tensor) -> "MagnitudeIndex":
        n = delta.numel()
        # One float32 copy sorted in place (numpy's SIMD sort, no index array): the only transient.
        ascending = np.abs(delta.detach().float().reshape(-1).numpy())
        ascending.sort()
        if n <= EXACT_INDEX_MAX:
            counts = np.arange(1, n + 1, dtype=np.int64)
        else:
            counts = np.maximum(np.arange(1, DENSITY_STEPS + 1, dtype=np.int64) * n // DENSITY_STEPS, 1)
        return cls(numel=n, counts=counts, table=ascending[n - counts])  # the k-th largest is ascending[n - k]

    def count(self, fraction: float) -> int:
        """How many entries a fraction of this tensor is (rounded down, as mergekit does)."""
        return int(fraction * self.numel)

    def magnitude_at_count(self, k: int) -> float:
        """The k-th largest magnitude (k >= 1); between stored counts, the nearest stored count below k
        (so a threshold keeps at most 1/DENSITY_STEPS of the tensor more than asked)."""
        # numpy, not torch: a recipe makes one lookup per tensor and model (315 for MiniLM + 3), and
        # torch's per-call overhead made them 3.5 ms CPU per recipe against 1.5 ms with numpy
        k = min(max(k, 1), self.numel)
        position = max(int(np.searchsorted(self.counts, k, side="right")) - 1, 0)
        return float(self.table[position])


def row_ranks(delta: torch.Tensor) -> torch.Tensor:
    """Each entry's magnitude rank within its row (1-D tensors: one row), as uint16 0..65535."""
    rows = delta.detach().abs().float().reshape(delta.shape[0] if delta.dim() > 1 else 1, -1)
    order = rows.argsort(dim=1)
    # the inverse permutation of the sort order (what a second argsort gives, at the cost of a scatter)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(rows.shape[1]).expand_as(order))
    rank = rank.float() / max(rows.shape[1] - 1, 1)
    return (rank * 65535).round().to(torch.int32).to(torch.uint16).reshape(delta.shape)


@dataclass
class TaskVectorContext:
    """What rank-based rules need about a tensor's task vectors, built once and cached by the pool.

    `memo` keeps other operators' derived values (operators/spectral.py: each task's SVD, once per
    pool; orthogonalised bases per rank; the last recipe's spectrum) under a family name, at most
    `keep` keys per family, so a search that keeps changing a parameter holds bounded memory."""

    deltas: torch.Tensor  # (N, *shape)
    _indexes: list[MagnitudeIndex] | None = field(default=None, repr=False)
    _ranks: torch.Tensor | None = field(default=None, repr=False)
    _memo: dict[str, OrderedDict] = field(default_factory=dict, repr=False)

    def memo(self, family: str, key: Hashable, build: Callable[[], Any], keep: int = 1) -> Any:
        """`build()` cached under (family, key); the family's least recently used keys beyond `keep` are dropped."""
        entries = self._memo.setdefault(family, OrderedDict())
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        value = entries[key] = build()
        while len(entries) > keep:
            entries.popitem(last=False)
        return value

    @property
    def indexes(self) -> list[MagnitudeIndex]:
        if self._indexes is None:
            self._indexes = [MagnitudeIndex.build(d) for d in self.deltas]
        return self._indexes

    @property
    def ranks(self) -> torch.Tensor:
        if self._ranks is None:
            self._ranks = torch.stack([row_ranks(d) for d in self.deltas])
        return self._ranks


@dataclass(frozen=True)
class KeepRule:
    lo: float = 0.0
    hi: float = math.inf
    prob: float = 1.0
    prob_slope: float = 0.0  # keep probability rises by this much from the smallest to the largest in a row

    @property
    def uses_ranks(self) -> bool:
        return self.prob_slope != 0.0


KEEP_ALL = KeepRule()


def magnitude_topk(index: MagnitudeIndex, density: float) -> KeepRule:
    """TIES trim: keep the `density` fraction of entries with the largest magnitude (at least one)."""
    if density >= 1:
        return KEEP_ALL
    if density <= 0:
        return KeepRule(lo=math.inf)
    return KeepRule(lo=index.magnitude_at_count(max(1, index.count(density))))


def magnitude_band(index: MagnitudeIndex, density: float, gamma: float) -> KeepRule:
    """Model Breadcrumbs: drop the top `gamma` outliers and the smallest entries, keeping `density`."""
    if density >= 1:
        return KEEP_ALL
    keep_count = index.count(density)
    if keep_count == 0:
        return KeepRule(lo=math.inf)
    # Drop the top `gamma` outliers, fewer if the band would otherwise run past the smallest entry.
    skip = min(index.count(gamma), index.numel - keep_count)
    hi = index.magnitude_at_count(skip) if skip > 0 else math.inf
    return KeepRule(lo=index.magnitude_at_count(skip + keep_count), hi=hi)


def random_drop(density: float) -> KeepRule:
    """DARE: keep each entry with probability `density` (survivors rescaled by 1 / density)."""
    return KEEP_ALL if density >= 1 else KeepRule(prob=density)


def ranked_random_drop(density: float, epsilon: float) -> KeepRule:
    """DELLA MagPrune: keep probability rises linearly with magnitude rank in its row, from
    density - epsilon (smallest) to density + epsilon (largest); clipped to [0.001, 1] so every
    entry keeps a chance and no rescale explodes."""
    return KEEP_ALL if density >= 1 else KeepRule(prob=density - epsilon, prob_slope=2 * epsilon)
