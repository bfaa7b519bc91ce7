"""Sign consensus rules (TIES "elect" + "disjoint merge"), composable with any keep rule.

With a rule, each entry keeps only the weighted task-vector values whose sign matches the elected
sign, and (when normalising) divides by the weight of the models that agreed:
  `sum`   (TIES paper): the elected sign is the sign of the summed weighted values (more mass wins);
  `count`: the sign more models agree on. Ties go to +1. Zeros never agree.
"""

from __future__ import annotations

from typing import Literal

ConsensusRule = Literal["sum", "count"]
