"""Sparsifiers for task vectors, composable with any consensus rule.

Rank-based sparsifiers never sort per recipe. A `MagnitudeIndex` is built once per task vector
(one sort, kept by the model pool) and turns a density into a magnitude threshold by table lookup,
so TIES / breadcrumbs at any density cost one elementwise pass. Counts are exact (as mergekit's
int(density * n)) for tensors up to EXACT_INDEX_MAX entries and for densities with at most three
decimals; otherwise they are within 1/1000 of the tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

DENSITY_STEPS = 1000
EXACT_INDEX_MAX = 4 * DENSITY_STEPS  # tensors up to this size keep every magnitude: exact at any count


@dataclass
class MagnitudeIndex:
    """Descending |delta| at selected counts: every count for small tensors, otherwise the counts
    max(1, i * n // DENSITY_STEPS), i = 1..DENSITY_STEPS. `table[j]` is the `counts[j]`-th largest."""

    numel: int
    counts: torch.Tensor
    table: torch.Tensor
    _row_rank: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def build(cls, delta: torch.Tensor) -> "MagnitudeIndex":
        n = delta.numel()
        descending = delta.detach().abs().flatten().float().sort(descending=True).values
        if n <= EXACT_INDEX_MAX:
            counts = torch.arange(1, n + 1, dtype=torch.int64)
        else:
            counts = torch.clamp(torch.arange(1, DENSITY_STEPS + 1, dtype=torch.int64) * n // DENSITY_STEPS, min=1)
        return cls(numel=n, counts=counts, table=descending[counts - 1].clone())

    def count(self, fraction: float) -> int:
        """How many entries a fraction of this tensor is (rounded down, as mergekit does)."""
        return int(fraction * self.numel)

    def magnitude_at_count(self, k: int) -> float:
        """The k-th largest magnitude (k >= 1); between stored counts, the nearest stored count below k
        (so a threshold keeps at most 1/DENSITY_STEPS of the tensor more than asked)."""
        k = min(max(k, 1), self.numel)
        position = max(int(torch.searchsorted(self.counts, k, right=True)) - 1, 0)
        return float(self.table[position])

    def row_rank(self, delta: torch.Tensor) -> torch.Tensor:
        """Each entry's magnitude rank within its row, scaled to [0, 1] (0 = smallest); cached."""
        if self._row_rank is None:
            rows = delta.detach().abs().float().reshape(delta.shape[0] if delta.dim() > 1 else 1, -1)
            rank = rows.argsort(dim=1).argsort(dim=1).float() / max(rows.shape[1] - 1, 1)
            self._row_rank = rank.to(torch.float16).reshape(delta.shape)
        return self._row_rank


def _index(delta: torch.Tensor, index: MagnitudeIndex | None) -> MagnitudeIndex:
    return index if index is not None else MagnitudeIndex.build(delta)


def magnitude_topk(delta: torch.Tensor, density: float, index: MagnitudeIndex | None = None) -> torch.Tensor:
    """TIES trim: keep the `density` fraction of entries with the largest magnitude."""
    if density >= 1:
        return delta
    if density <= 0:
        return torch.zeros_like(delta)
    idx = _index(delta, index)
    return delta * (delta.abs() >= idx.magnitude_at_count(max(1, idx.count(density))))


def magnitude_band(
    delta: torch.Tensor, density: float, gamma: float, index: MagnitudeIndex | None = None
) -> torch.Tensor:
    """Model Breadcrumbs: drop the top `gamma` outliers and the smallest entries, keeping `density`."""
    if density >= 1:
        return delta
    idx = _index(delta, index)
    keep_count = idx.count(density)
    if keep_count == 0:
        return torch.zeros_like(delta)
    # Drop the top `gamma` outliers, fewer if the band would otherwise run past the smallest entry.
    skip = min(idx.count(gamma), idx.numel - keep_count)
    magnitude = delta.abs()
    keep = magnitude >= idx.magnitude_at_count(skip + keep_count)
    if skip > 0:
        keep &= magnitude < idx.magnitude_at_count(skip)
    return delta * keep


def random_drop(delta: torch.Tensor, density: float, generator: torch.Generator, rescale: bool = True) -> torch.Tensor:
    """DARE: drop each entry with probability 1 - density and rescale survivors by 1 / density."""
    if density >= 1:
        return delta
    keep = torch.rand(delta.shape, generator=generator) < density
    out = delta * keep
    return out.div_(density) if rescale else out


def ranked_random_drop(
    delta: torch.Tensor,
    density: float,
    epsilon: float,
    generator: torch.Generator,
    index: MagnitudeIndex | None = None,
    rescale: bool = True,
) -> torch.Tensor:
    """DELLA MagPrune: keep probability rises linearly with magnitude rank in its row, from
    density - epsilon (smallest) to density + epsilon (largest); survivors are rescaled by 1 / p.
    Probabilities are clipped to [0.001, 1] so every entry keeps a chance and no rescale explodes."""
    if density >= 1:
        return delta
    rank = _index(delta, index).row_rank(delta).float()
    keep_prob = (density - epsilon + 2 * epsilon * rank).clamp_(1e-3, 1.0)
    keep = torch.rand(delta.shape, generator=generator) < keep_prob
    out = delta * keep
    return out.div_(keep_prob) if rescale else out
