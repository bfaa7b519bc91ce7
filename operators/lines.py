"""LiNeS (Wang et al. 2025): scale the merged task vector linearly with depth.

Shallow layers hold general features that fine-tuning should not overwrite, deep layers the
task-specific ones; so the merged task vector of a tensor at relative depth d is scaled by
lambda(d) = alpha + (beta - alpha) * d, d = l / (L - 1) for encoder layer l of L (0 for the
embeddings, 1 for the head). The paper writes it as alpha + beta' * d with beta' = beta - alpha;
here beta is the scale of the deepest layer, so both ends are searched on the same scale. The base
merge is task arithmetic: base + lambda(d) * sum_i w_i delta_i.

Why a registered operator rather than a recipe helper that writes per-slot weights: per-slot
weights can express one LiNeS merge (weights[slot] = lambda(d_slot) * w), but then the search would
explore LiNeS only as an unconstrained (L + 2) x N weight grid, and a recipe would no longer say it
is LiNeS. As an operator, LiNeS is two searchable numbers (alpha, beta) declared once here, and the
only thing the engine adds is where a tensor sits (`depth=`, for every operator declared
`uses_depth`; engine/layout.py `TensorRole.depth`). Per-slot weights still compose with it.
"""

from __future__ import annotations

from operators.registry import Param, merge_operator
from operators.task_arithmetic import WEIGHTS, generalized_task_arithmetic

ALPHA = Param("alpha", float, default=0.5, low=0.0, high=4.0, search=(0.0, 1.5),
              help="scale of the merged task vector at the embeddings and first layer")
BETA = Param("beta", float, default=1.0, low=0.0, high=4.0, search=(0.5, 2.0),
             help="scale of the merged task vector at the last layer and head")


def lines_scale(depth: float, alpha: float, beta: float) -> float:
    """alpha at depth 0, beta at depth 1, linear in between."""
    return alpha + (beta - alpha) * depth


@merge_operator("lines", params=[WEIGHTS, ALPHA, BETA], uses_depth=True, reference="https://arxiv.org/abs/2410.17146")
def lines(base, deltas, *, weights, alpha, beta, depth, out=None):
    """LiNeS over task arithmetic: base + (alpha + (beta - alpha) * depth) * sum_i w_i delta_i."""
    return generalized_task_arithmetic(base, deltas, weights, lambda_=lines_scale(depth, alpha, beta), out=out)
