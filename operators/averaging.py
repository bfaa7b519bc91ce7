"""Operators that average or interpolate weights: weighted average, SLERP, Karcher mean, Model Stock."""

from __future__ import annotations

import torch

from operators.registry import Param, merge_operator
from operators.task_arithmetic import WEIGHTS, generalized_task_arithmetic, normalize_param

# Beyond this cosine two tensors are (numerically) parallel: SLERP falls back to linear interpolation.
PARALLEL_COSINE = 0.9995


@merge_operator("linear", params=[WEIGHTS, normalize_param(True)], needs_base=False,
                reference="https://arxiv.org/abs/2203.05482")
def linear(base, deltas, *, weights, normalize, out=None):
    """Weighted average of the candidates' weights (model soup). Written over task vectors from any
    reference point `base` (the pool's base; the first candidate when called without one), because
    sum_i w_i (base + delta_i) / sum_i w_i = base + sum_i w_i delta_i / sum_i w_i: so it runs on the
    fused kernel like task arithmetic. Without normalising (or weights summing to 0): sum_i w_i x_i."""
    total = float(sum(weights))
    if normalize and abs(total) > 1e-8:
        return generalized_task_arithmetic(base, deltas, weights, normalize=True, out=out)
    merged = generalized_task_arithmetic(base, deltas, weights, out=out)  # base + sum_i w_i delta_i
    return merged.add_(base, alpha=total - 1.0)


@merge_operator("slerp", params=[Param("t", float, default=0.5, low=0.0, high=1.0, help="0 = first model, 1 = second")],
                inputs="weights", needs_base=False, min_models=2, max_models=2,
                reference="https://doi.org/10.1145/325165.325242")
def slerp(base, tensors, *, t):
    """Spherical linear interpolation between two tensors along the great circle of their directions
    (Shoemake 1985); magnitudes interpolate with the same coefficients. Near-parallel tensors lerp."""
    a, b = tensors
    cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0, eps=1e-12).clamp(-1, 1)
    if cos.abs() > PARALLEL_COSINE:
        return torch.lerp(a, b, t)
    theta = torch.arccos(cos)
    sin_theta = torch.sin(theta)
    return (torch.sin((1 - t) * theta) / sin_theta) * a + (torch.sin(t * theta) / sin_theta) * b


@merge_operator("karcher", params=[WEIGHTS, Param("max_iter", int, default=10, low=1, high=100, searchable=False),
                Param("tol", float, default=1e-5, low=1e-9, high=1e-1, searchable=False)],
                inputs="weights", needs_base=False, min_models=2, reference="https://arxiv.org/abs/2502.08843")
def karcher(base, tensors, *, weights, max_iter, tol):
    """Weighted Riemannian (Karcher) mean of the tensors' directions on the unit sphere, scaled by
    the weighted mean of their norms: the many-model generalisation of SLERP."""
    w = torch.tensor(weights, dtype=torch.float32)
    w = w / w.sum()
    norms = torch.stack([t.norm() for t in tensors])
    units = torch.stack([(t / n).flatten() if n > 0 else t.flatten() for t, n in zip(tensors, norms)])
    mean = _unit((w[:, None] * units).sum(0))
    for _ in range(max_iter):
        cos = (units @ mean).clamp(-1, 1)
        theta = torch.arccos(cos)
        # log map of each unit vector at `mean`: the tangent direction scaled by the angle
        scale = torch.where(theta > 1e-7, theta / torch.sin(theta).clamp_min(1e-12), torch.ones_like(theta))
        tangent = (w * scale)[:, None] * (units - cos[:, None] * mean)
        step = tangent.sum(0)
        step_norm = step.norm()
        if step_norm < tol:
            break
        mean = _unit(torch.cos(step_norm) * mean + torch.sin(step_norm) * step / step_norm)
    return (mean * (w * norms).sum()).reshape(tensors[0].shape)


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = v.norm()
    return v / n if n > 0 else v


@merge_operator("model_stock", params=[], inputs="deltas", min_models=2, reference="https://arxiv.org/abs/2403.19522")
def model_stock(base, deltas, **_):
    """Model Stock: interpolate between the candidates' average and the base by
    t = N cos / (1 + (N - 1) cos), cos the mean pairwise cosine of the task vectors (per tensor).
    At the singularity (cos = -1/(N-1)) the base is kept."""
    n = len(deltas)
    flat = [d.flatten() for d in deltas]
    cosines = [
        torch.nn.functional.cosine_similarity(flat[i], flat[j], dim=0, eps=1e-6).clamp(-1, 1)
        for i in range(n) for j in range(i + 1, n)
    ]
    cos = torch.stack(cosines).mean()
    denominator = 1 + (n - 1) * cos
    t = torch.zeros(()) if denominator.abs() < 1e-6 else n * cos / denominator
    mean_delta = deltas.mean(0)
    return base + t * mean_delta
