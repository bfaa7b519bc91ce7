"""Sparsifiers for task vectors, composable with any consensus rule.

Rank-based sparsifiers never sort per recipe. A `MagnitudeIndex` is built once per task vector
(one sort, kept by the model pool) and turns a density into a magnitude threshold by table lookup,
so TIES / breadcrumbs at any density cost one elementwise pass. Densities resolve to steps of
1/1000 (exact for densities with at most three decimals, e.g. 0.5 keeps exactly int(0.5 * n)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

DENSITY_STEPS = 1000


@dataclass
class MagnitudeIndex:
    """|delta| at descending ranks k_i - 1 with k_i = max(1, i * n // DENSITY_STEPS), i = 0..DENSITY_STEPS."""

    numel: int
    table: torch.Tensor
    _row_rank: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def build(cls, delta: torch.Tensor) -> "MagnitudeIndex":
        n = delta.numel()
        descending = delta.detach().abs().flatten().float().sort(descending=True).values
        steps = torch.arange(DENSITY_STEPS + 1, dtype=torch.int64)
        ranks = torch.clamp(steps * n // DENSITY_STEPS, min=1) - 1
        return cls(numel=n, table=descending[ranks].clone())

    def threshold(self, fraction: float) -> float:
        """Smallest magnitude among the top `fraction` of entries (at least one entry is kept)."""
        step = min(DENSITY_STEPS, max(1, math.floor(fraction * DENSITY_STEPS + 1e-9)))
        return float(self.table[step])

    def row_rank(self, delta: torch.Tensor) -> torch.Tensor:
        """Each entry's magnitude rank within its row, scaled to [0, 1] (0 = smallest); cached."""
        if self._row_rank is None:
            rows = delta.detach().abs().float().reshape(delta.shape[0] if delta.dim() > 1 else 1, -1)
            width = rows.shape[1]
            rank = rows.argsort(dim=1).argsort(dim=1).float()
            scaled = rank / max(width - 1, 1)
            self._row_rank = scaled.to(torch.float16).reshape(delta.shape)
        return self._row_rank


def _index(delta: torch.Tensor, index: MagnitudeIndex | None) -> MagnitudeIndex:
    return index if index is not None else MagnitudeIndex.build(delta)


def magnitude_topk(delta: torch.Tensor, density: float, index: MagnitudeIndex | None = None) -> torch.Tensor:
    """TIES trim: keep the `density` fraction of entries with the largest magnitude."""
    if density >= 1:
        return delta
    threshold = _index(delta, index).threshold(density)
    return delta * (delta.abs() >= threshold)


def magnitude_band(
    delta: torch.Tensor, density: float, gamma: float, index: MagnitudeIndex | None = None
) -> torch.Tensor:
    """Model Breadcrumbs: drop the top `gamma` outliers and the smallest entries, keeping `density`."""
    if density >= 1:
        return delta
    idx = _index(delta, index)
    magnitude = delta.abs()
    keep = magnitude >= idx.threshold(min(1.0, gamma + density))
    if gamma * DENSITY_STEPS >= 1:
        keep &= magnitude < idx.threshold(gamma)
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
