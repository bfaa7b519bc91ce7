"""Data-aware merges, RegMean and Fisher merging: the operator math only, not yet registered.

Both weight each candidate by statistics of its own activations or gradients on data, which the
operator call shape `(base, tensors, **params)` does not carry. The functions here are the
per-tensor math, tested; registering them waits for the pool to supply the statistics, since a
registered operator shows up in the search space and a search would pick one it cannot feed.

Design note for the later change (the pool-statistics plumbing):
  * What: per candidate i, for each linear layer y = W x (W: out x in) the Gram matrix of its inputs
    G_i = X_i^T X_i (in x in) over the data (RegMean), and for every floating tensor the diagonal
    Fisher F_i = mean over examples of (d log p(y | x) / d theta)^2 (Fisher merging; the empirical
    Fisher on the labels, or sampled labels).
  * When: once per pool, like the task vectors: one forward pass per candidate with hooks on the
    nn.Linear inputs for the Grams, one backward pass per example batch for the Fisher. They do not
    depend on the recipe, so the search never recomputes them.
  * From which data: the fitness data the workers already hold tokenised, but only its calibration
    half (fitness/ keeps seeded calibration and scoring halves): statistics from the scoring half
    would let the merge see the data that scores it.
  * How they travel: owned by engine/pool.py (a `ModelPool.statistics(name)` beside `context(name)`,
    keyed by tensor name: the Gram for `*.weight` of a linear layer, the Fisher for every tensor),
    passed to operators declared with a new registry flag (e.g. `uses_statistics=True`, as
    `uses_depth`), and shipped to Ray workers with the pool. Memory: one in x in Gram per linear layer
    and candidate (MiniLM: 36 layers, 384^2 or 1536^2 floats each, about 130 MB for 3 candidates) and
    one Fisher the size of each task vector.
  * Tensors without a Gram (biases, norms, embeddings) fall back to the plain average in RegMean, as
    the paper does; Fisher merging covers every tensor.
"""

from __future__ import annotations

from typing import Sequence

import torch


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
