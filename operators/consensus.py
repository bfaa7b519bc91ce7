"""Sign consensus (TIES "elect" and "disjoint merge"), composable with any sparsifier."""

from __future__ import annotations

from typing import Literal

import torch

ConsensusRule = Literal["sum", "count"]


def elect_sign(weighted_deltas: torch.Tensor, rule: ConsensusRule = "sum") -> torch.Tensor:
    """Per-entry majority sign (+1 / -1) over the model axis 0.

    `sum` (TIES paper): the sign of the summed weighted deltas, i.e. the sign with more total mass.
    `count`: the sign that more models agree on. Ties go to +1.
    """
    votes = weighted_deltas if rule == "sum" else weighted_deltas.sign()
    return torch.where(votes.sum(dim=0) >= 0, 1.0, -1.0).to(weighted_deltas.dtype)


def agreeing(weighted_deltas: torch.Tensor, elected: torch.Tensor) -> torch.Tensor:
    """Mask of entries whose sign matches the elected one (zeros never agree)."""
    return weighted_deltas.sign() == elected
