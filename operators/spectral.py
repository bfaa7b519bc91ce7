"""Spectral merges over each 2-D weight matrix: TSV-Merge, Iso-C and Iso-CTS.

Each works on the singular value decomposition of the task vectors of one matrix (N tasks, m x n):

  TSV-Merge (Gargiulo et al. 2025): keep each task's top k singular triplets (k = rank * min(m, n) / N),
  put the task singular vectors side by side (U = [U_1k .. U_Nk], V likewise), replace U and V by their
  nearest orthogonal matrices (polar factors, from one SVD each: A = P S Q^T -> P Q^T), which removes
  the interference between tasks' subspaces, and reassemble U_perp diag(w_i sigma_i) V_perp^T.
  One task at full rank gives its task vector back.
  Iso-C (Marczak et al. 2025): the task-arithmetic sum, with its singular values all replaced by their
  mean: an isotropic spectrum, so no dominant direction drowns the others.
  Iso-CTS (same paper): the top singular directions of the sum (the common subspace, a `common`
  fraction of the rank) plus, per task, the top directions of its residual orthogonal to that subspace
  (the rest of the rank, split evenly), orthogonalised as in TSV, with the isotropic spectrum.

The merged matrix is scaled by `lambda_` (the papers' alpha) and added to the base. Tensors that are
not matrices (biases, norms) fall back to the papers' average: base + lambda * mean_i w_i delta_i.
Where a decomposition is rank-deficient (duplicate tasks, zero task vectors) only its numerical rank
is used (see `orthogonalised`, `isotropic`); for full-rank task vectors this is exactly the papers'
formulas. Every 2-D tensor counts as a matrix, the word embeddings and the classifier head included (uniguard's
scope and layer choices already decide which tensors are merged at all). `weights` scale each task
vector before the decomposition (1 reproduces the papers): for TSV they scale sigma_i only, so the
orthogonalised bases do not depend on them.

Cost (the SVDs are the expensive part; the pool's `TaskVectorContext` caches, per tensor):
  TSV: each task's SVD once per pool, the two polar factors once per rank value (the last few kept),
  so a recipe that changes only weights or lambda costs one m x Nk x n matmul per matrix.
  Iso-C: one SVD of the weighted sum per matrix for each new `weights`; lambda alone is free.
  Iso-CTS: N + 3 SVDs per matrix (the sum, each residual, the two polar factors) for each new
  (weights, common); lambda alone is free.
"""

from __future__ import annotations

from typing import Sequence

import torch

from operators.registry import Param, merge_operator
from operators.sparsify import TaskVectorContext
from operators.task_arithmetic import LAMBDA, WEIGHTS, generalized_task_arithmetic

RANK = Param("rank", float, default=1.0, low=0.0, high=1.0, search=(0.1, 1.0),
             help="fraction of each matrix's rank the tasks share: each keeps rank * min(shape) / N singular vectors")
COMMON = Param("common", float, default=0.8, low=0.0, high=1.0, search=(0.5, 1.0),
               help="fraction of each matrix's rank for the common subspace; the rest is split between tasks")
BASES_KEPT = 2  # TSV: orthogonalised bases cached per tensor (one per rank value)
EPS = 1e-9  # rank fractions times sizes are floored; this keeps 0.3 * 30 from flooring to 8


def numerical_rank_mask(s: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Singular values above max(shape) * eps * the largest (numpy's matrix_rank rule)."""
    return s > s.max() * max(shape) * torch.finfo(s.dtype).eps


def svd(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of a matrix or a stack of matrices. LAPACK's divide-and-conquer routine (gesdd, what
    torch uses on the CPU) fails to converge on some ill-conditioned task matrices (it ended a real
    search); those fall back to the slower QR-iteration routine (gesvd), which converges."""
    try:
        return torch.linalg.svd(a, full_matrices=False)
    except torch.linalg.LinAlgError:
        import numpy as np
        import scipy.linalg

        stack = a.detach().cpu().double().numpy().reshape(-1, *a.shape[-2:])
        parts = [scipy.linalg.svd(m, full_matrices=False, lapack_driver="gesvd") for m in stack]
        u, s, vh = (torch.from_numpy(np.stack(factor)).to(a.device, a.dtype) for factor in zip(*parts))
        lead = a.shape[:-2]
        return u.reshape(*lead, *u.shape[1:]), s.reshape(*lead, *s.shape[1:]), vh.reshape(*lead, *vh.shape[1:])


def orthogonalised(a: torch.Tensor) -> torch.Tensor:
    """The orthogonal polar factor of `a`: P Q^T where a = P S Q^T, the matrix with orthonormal
    columns (rows, when `a` is wide) nearest to `a` in Frobenius norm (orthogonal Procrustes).
    Where `a` is rank-deficient (tasks sharing directions) the factor is taken on its range only
    (a partial isometry): the paper's P Q^T is not unique there, and this choice maps identical
    tasks to their own truncation instead of to arbitrary directions."""
    p, s, qh = svd(a)
    keep = numerical_rank_mask(s, a.shape)
    return p @ qh if bool(keep.all()) else p[:, keep] @ qh[keep]


def tsv_rank(shape: Sequence[int], n_tasks: int, rank: float) -> int:
    """Singular vectors each task keeps: floor(rank * min(shape) / N), at least one."""
    return max(1, int(rank * min(shape) / n_tasks + EPS))


def iso_cts_split(r: int, n_tasks: int, common: float) -> tuple[int, int]:
    """(common subspace size k, directions per task s) for a rank-r matrix: s = floor((r - common * r) / N),
    and the common subspace takes what the even split leaves, so k + N s = r."""
    s = int((r - int(common * r + EPS)) / n_tasks)
    return r - n_tasks * s, s


def _weighted(deltas: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    return deltas * torch.tensor(weights, dtype=deltas.dtype).reshape(-1, *([1] * (deltas.dim() - 1)))


def _average(base, deltas, weights, lambda_, out):
    """Non-matrix tensors: base + lambda * mean_i w_i delta_i (fused, as task arithmetic)."""
    n = deltas.shape[0]
    return generalized_task_arithmetic(base, deltas, [w / n for w in weights], lambda_=lambda_, out=out)


def _add(base: torch.Tensor, delta: torch.Tensor, lambda_: float, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return torch.add(base, delta, alpha=lambda_)
    return torch.add(base, delta, alpha=lambda_, out=out)


def task_svds(context: TaskVectorContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each task's thin SVD of this matrix, (N, m, r), (N, r), (N, r, n): once per pool."""
    return context.memo("task_svd", None, lambda: svd(context.deltas))


def _tsv_bases(context: TaskVectorContext, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Orthogonalised [U_1k .. U_Nk] (m x Nk), [V_1k .. V_Nk]^T (Nk x n), and the kept sigma (N, k)."""
    u, s, vh = task_svds(context)
    n_tasks, m, _ = u.shape
    u_cat = u[:, :, :k].permute(1, 0, 2).reshape(m, n_tasks * k)  # column t * k + j: task t's j-th vector
    vh_cat = vh[:, :k, :].reshape(n_tasks * k, vh.shape[-1])
    return orthogonalised(u_cat), orthogonalised(vh_cat), s[:, :k].clone()


@merge_operator("tsv", params=[WEIGHTS, RANK, LAMBDA], uses_context=True, reference="https://arxiv.org/abs/2412.00081")
def tsv(base, deltas, *, weights, rank, lambda_, context=None, out=None):
    """TSV-Merge: per matrix, each task's top rank * min(shape) / N singular vectors, the concatenated
    U and V orthogonalised (polar factors), base + lambda * U_perp diag(w_i sigma_i) V_perp^T;
    other tensors base + lambda * mean_i w_i delta_i."""
    if deltas.dim() != 3:
        return _average(base, deltas, weights, lambda_, out)
    context = context if context is not None else TaskVectorContext(deltas)
    k = tsv_rank(deltas.shape[1:], deltas.shape[0], rank)
    u_perp, vh_perp, sigma = context.memo("tsv_bases", k, lambda: _tsv_bases(context, k), keep=BASES_KEPT)
    scaled = (torch.tensor(weights, dtype=sigma.dtype)[:, None] * sigma).reshape(-1)
    return _add(base, (u_perp * scaled) @ vh_perp, lambda_, out)


def isotropic(matrix: torch.Tensor) -> torch.Tensor:
    """`matrix` with every singular value replaced by their mean: mean(sigma) * U V^T, over its
    numerical rank (a rank-deficient sum gets no weight on the arbitrary null-space directions an
    SVD returns; for the full-rank sums of fine-tuned task vectors this is the paper's formula)."""
    u, s, vh = svd(matrix)
    keep = numerical_rank_mask(s, matrix.shape)
    return s[keep].mean() * (u[:, keep] @ vh[keep]) if bool(keep.any()) else torch.zeros_like(matrix)


@merge_operator("iso_c", params=[WEIGHTS, LAMBDA], uses_context=True, reference="https://arxiv.org/abs/2502.04959")
def iso_c(base, deltas, *, weights, lambda_, context=None, out=None):
    """Iso-C: per matrix, the sum of w_i delta_i with its singular values replaced by their mean,
    base + lambda * mean(sigma) U V^T; other tensors base + lambda * mean_i w_i delta_i."""
    if deltas.dim() != 3:
        return _average(base, deltas, weights, lambda_, out)
    context = context if context is not None else TaskVectorContext(deltas)
    merged = context.memo("iso_c", tuple(weights), lambda: isotropic(_weighted(deltas, weights).sum(0)))
    return _add(base, merged, lambda_, out)


def iso_cts_matrix(deltas: torch.Tensor, weights: Sequence[float], common: float) -> torch.Tensor:
    """The Iso-CTS merged task vector of one matrix (before lambda)."""
    weighted = _weighted(deltas, weights)
    n_tasks, m, n = weighted.shape
    k, per_task = iso_cts_split(min(m, n), n_tasks, common)
    if per_task == 0:  # the common subspace is the whole rank: Iso-C
        return isotropic(weighted.sum(0))
    u, s, vh = svd(weighted.sum(0))
    u_common = u[:, :k]
    residuals = weighted - u_common @ (u_common.T @ weighted)  # each task without its common-subspace part
    ru, rs, rvh = svd(residuals)
    u_cat = torch.cat([u_common, ru[:, :, :per_task].permute(1, 0, 2).reshape(m, n_tasks * per_task)], dim=1)
    vh_cat = torch.cat([vh[:k], rvh[:, :per_task, :].reshape(n_tasks * per_task, n)], dim=0)
    sigma = torch.cat([s[:k], rs[:, :per_task].reshape(-1)])
    keep = numerical_rank_mask(sigma, (m, n))  # directions with (numerically) zero singular value say nothing
    if not bool(keep.any()):
        return torch.zeros(m, n, dtype=weighted.dtype, device=weighted.device)
    return sigma[keep].mean() * (orthogonalised(u_cat[:, keep]) @ orthogonalised(vh_cat[keep]))


@merge_operator("iso_cts", params=[WEIGHTS, COMMON, LAMBDA], uses_context=True, reference="https://arxiv.org/abs/2502.04959")
def iso_cts(base, deltas, *, weights, common, lambda_, context=None, out=None):
    """Iso-CTS: per matrix, the top `common` fraction of the singular directions of sum_i w_i delta_i
    plus each task's top directions orthogonal to them (the remaining rank split evenly), both bases
    orthogonalised, with an isotropic spectrum (the mean of the kept singular values); base + lambda *
    that; other tensors base + lambda * mean_i w_i delta_i."""
    if deltas.dim() != 3:
        return _average(base, deltas, weights, lambda_, out)
    context = context if context is not None else TaskVectorContext(deltas)
    merged = context.memo("iso_cts", (tuple(weights), common), lambda: iso_cts_matrix(deltas, weights, common))
    return _add(base, merged, lambda_, out)
