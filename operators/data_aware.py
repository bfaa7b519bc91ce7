"""Data-aware merges, RegMean and Fisher merging: the per-tensor math and the registered operators.

Both weight each candidate by statistics of its own activations or gradients on data, which the
operator call shape `(base, tensors, **params)` does not carry: they are declared
`uses_statistics` and receive `statistics=`, one `TensorStatistics` per tensor, which the model
pool computes once (engine/pool.py `ModelPool.compute_statistics`, engine/statistics.py):
  * What: per candidate i, for each linear layer y = W x (W: out x in) the Gram matrix of its inputs
    G_i = X_i^T X_i / n_i (in x in) over the n_i non-padding rows it saw (RegMean; the mean rather than
    the sum so a candidate that sees more rows does not outweigh the others by count alone), and for
    every parameter the diagonal empirical Fisher F_i = mean over batches of the squared gradient of
    the cross-entropy loss on the labels (Fisher merging).
  * When: once per pool, like the task vectors, and only when the search space (or the recipe being
    exported) has an operator that needs them; they do not depend on the recipe.
  * From which data: the fitness data the workers hold tokenised, but only its calibration half
    (fitness/data.py): statistics from the scoring half would let the merge see the data that scores
    it. Each candidate sees the rows of the policies its guard metadata lists (a MultiTaskGuard, or a
    guard naming none of the data's policies, sees all of them), tokenised with that policy's instruction.
  * How they travel: owned by the pool (`ModelPool.statistics(name)`, keyed by tensor name: the Gram
    under a linear layer's `*.weight`, the Fisher under every parameter), shipped to Ray workers with it.
    Memory: one in x in Gram per linear layer and candidate (MiniLM: 36 layers, 384^2 or 1536^2 floats,
    about 220 MB for 3 candidates; q, k and v share one input, so three of them are equal) and one
    Fisher the size of each task vector.
  * Tensors without a Gram (biases, norms, embeddings) get the plain average in RegMean, as the paper
    does; Fisher merging covers every tensor (one without a Fisher, a buffer, gets the l-weighted average).

Cost per recipe: RegMean depends on the recipe through `alpha` only, and both sides of its linear system
are affine in alpha, so the pool caches sum_i W_i G_i, sum_i W_i diag(G_i), sum_i G_i and its diagonal
once per tensor; a recipe then costs one in x in solve (float64) per linear weight. Fisher merging is
one pass over the task vectors and Fishers per new set of weights (2N tensor reads, one write).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from operators.registry import Param, merge_operator
from operators.sparsify import TaskVectorContext
from uniguard.core.errors import UserError

# RegMean's ridge, relative to the mean diagonal of sum_i G_i: each Gram gets (r / N) I added, which
# pulls directions no candidate's data covers to the plain average instead of leaving the system
# singular (alpha = 1 with fewer rows than inputs, as for the classifier head); on directions the
# data covers it moves the result by about this fraction.
RIDGE = 1e-6
ALPHA = Param("alpha", float, default=0.9, low=0.0, high=1.0,
              help="RegMean: share of each Gram's off-diagonal kept (1 = the exact regression, 0 = per-input averages)")
FISHER_WEIGHTS = Param("weights", float, default=1.0, low=0.0, high=4.0, per_model=True, search=(0.0, 1.0),
                       help="l_i: each candidate's weight in the Fisher-weighted average")


@dataclass(frozen=True)
class TensorStatistics:
    """One tensor's per-candidate data statistics, as the pool hands them to `uses_statistics` operators.
    `gram`: (N, in, in), only for a linear layer's weight; `fisher`: (N, *shape), for parameters."""

    gram: torch.Tensor | None = None
    fisher: torch.Tensor | None = None


def regmean(weights: torch.Tensor, grams: torch.Tensor, alpha: float = 0.9) -> torch.Tensor:
    """RegMean (Jin et al. 2023) for one linear layer: the W minimising sum_i ||X_i W^T - X_i W_i^T||^2,
    W = (sum_i W_i G_i)(sum_i G_i)^-1, with each Gram's off-diagonal entries scaled by `alpha`
    (G_i <- alpha G_i + (1 - alpha) diag(G_i), the paper's regularisation: alpha = 0 merges each input
    dimension separately, a diag(G)-weighted average). `weights`: (N, out, in), `grams`: (N, in, in)."""
    if weights.dim() != 3 or grams.shape != (weights.shape[0], weights.shape[2], weights.shape[2]):
        raise ValueError(f"regmean: need weights (N, out, in) and grams (N, in, in), got {tuple(weights.shape)} and {tuple(grams.shape)}")
    diagonal = torch.diag_embed(torch.diagonal(grams, dim1=-2, dim2=-1))
    regularised = alpha * grams + (1 - alpha) * diagonal
    total = regularised.sum(0)  # symmetric: W total = B  <=>  total W^T = B^T
    rhs = torch.einsum("noi,nij->oj", weights, regularised)
    return torch.linalg.solve(total, rhs.T).T


def fisher_merge(tensors: torch.Tensor, fishers: torch.Tensor, model_weights: Sequence[float] | None = None,
                 epsilon: float = 1e-8) -> torch.Tensor:
    """Fisher merging (Matena & Raffel 2022): per entry, sum_i l_i F_i theta_i / sum_i l_i F_i with the
    diagonal Fishers F_i floored at `epsilon`, so an entry no candidate's Fisher weighs gets the
    l-weighted average. `tensors`, `fishers`: (N, *shape); `model_weights` l_i default 1."""
    if tensors.shape != fishers.shape:
        raise ValueError(f"fisher_merge: tensors {tuple(tensors.shape)} and fishers {tuple(fishers.shape)} differ")
    n = tensors.shape[0]
    lam = torch.tensor(list(model_weights) if model_weights is not None else [1.0] * n, dtype=tensors.dtype)
    weighted = lam.reshape(-1, *([1] * (tensors.dim() - 1))) * fishers.clamp_min(epsilon)
    return (weighted * tensors).sum(0) / weighted.sum(0)


@dataclass(frozen=True)
class RegMeanTerms:
    """The recipe-independent sums of RegMean over one matrix's task vectors D_i and Grams G_i; both
    sides of its system are affine in alpha, so these once per pool make a recipe one solve."""

    dg: torch.Tensor  # sum_i D_i G_i  (out, in)
    dd: torch.Tensor  # sum_i D_i diag(G_i)  (out, in)
    g: torch.Tensor  # sum_i G_i  (in, in)
    d: torch.Tensor  # diag(sum_i G_i)  (in,)
    mean: torch.Tensor  # mean_i D_i: where the ridge pulls uncovered directions

    @classmethod
    def build(cls, deltas: torch.Tensor, grams: torch.Tensor) -> "RegMeanTerms":
        """Summed in float64 and kept in the task vectors' dtype: the solve amplifies rounding by the
        Grams' condition number."""
        d64, g64 = deltas.double(), grams.double()
        diagonals = torch.diagonal(g64, dim1=-2, dim2=-1)  # (N, in)
        terms = (torch.einsum("noi,nij->oj", d64, g64), torch.einsum("noi,ni->oi", d64, diagonals),
                 g64.sum(0), diagonals.sum(0), d64.mean(0))
        return cls(*(t.to(deltas.dtype) for t in terms))

    def solve(self, alpha: float) -> torch.Tensor:
        """regmean(deltas, grams + r / N I, alpha), i.e.
        (alpha dg + (1 - alpha) dd + r mean)(alpha g + (1 - alpha) diag(d) + r I)^-1,
        in float64 (the Grams of correlated inputs are ill-conditioned)."""
        d = self.d.double()
        scale = float(d.mean())
        ridge = RIDGE * (scale if scale > 0 else 1.0)  # all-zero Grams (no data reached it): the plain average
        total = alpha * self.g.double() + torch.diag((1 - alpha) * d + ridge)
        rhs = alpha * self.dg.double() + (1 - alpha) * self.dd.double() + ridge * self.mean.double()
        return torch.linalg.solve(total, rhs.T).T.to(self.dg.dtype)


def _add(base: torch.Tensor, delta: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    return torch.add(base, delta) if out is None else torch.add(base, delta, out=out)


@merge_operator("regmean", params=[ALPHA], uses_context=True, uses_statistics=("gram",),
                reference="https://arxiv.org/abs/2212.09849")
def regmean_operator(base, deltas, *, alpha, statistics, context=None, out=None):
    """RegMean: each linear layer's weight solves min_W sum_i ||X_i W^T - X_i W_i^T||^2 over the candidates'
    calibration inputs X_i (Grams' off-diagonals scaled by alpha); other tensors base + mean_i delta_i."""
    gram = statistics.gram
    if gram is None or deltas.dim() != 3:
        return _add(base, deltas.mean(0), out)
    if gram.shape != (deltas.shape[0], deltas.shape[2], deltas.shape[2]):
        raise ValueError(f"regmean: Grams {tuple(gram.shape)} do not fit task vectors {tuple(deltas.shape)}")
    context = context if context is not None else TaskVectorContext(deltas)
    terms = context.memo("regmean_terms", None, lambda: RegMeanTerms.build(deltas, gram))
    return _add(base, terms.solve(alpha), out)


@merge_operator("fisher", params=[FISHER_WEIGHTS], uses_statistics=("fisher",), reference="https://arxiv.org/abs/2111.09832")
def fisher_operator(base, deltas, *, weights, statistics, out=None):
    """Fisher merging: per entry, base + sum_i l_i F_i delta_i / sum_i l_i F_i with the diagonal Fishers F_i
    (floored at 1e-8) and l_i the recipe's weights; a tensor without a Fisher gets the l-weighted average."""
    if not any(w > 0 for w in weights):
        raise UserError(f"operator 'fisher': weights {list(weights)} give no candidate a positive weight; "
                        "give at least one a weight above 0")
    fishers = statistics.fisher if statistics.fisher is not None else torch.ones_like(deltas)
    return _add(base, fisher_merge(deltas, fishers, weights), out)
