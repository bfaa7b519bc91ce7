"""Search strategies behind one ask/tell interface.

  * any nevergrad optimizer by its registry name (TwoPointsDE, DE, CMA, PSO, OnePlusOne, ...);
    `NGOpt`-family meta-optimizers are refused (they fail with numpy 2.4 here);
  * `random`: nevergrad's RandomSearch over the same space;
  * `bandit`: the paper's multi-armed bandit, Thompson sampling over a discrete grid of
    (operator, tied weight profile) arms; each pull samples the arm's remaining continuous values.

Recipes the strategy did not propose (known-good seeds, a replayed journal) are told as
"not asked", so a resumed search continues from everything it has seen.
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

import nevergrad as ng
import numpy as np
from pydantic import BaseModel, ConfigDict

from engine.recipe import Recipe
from engine.space import SearchSpace
from uniguard.core.errors import UserError


class StrategyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "TwoPointsDE"
    seed: int = 0
    bandit_levels: tuple[float, ...] = (0.0, 0.5, 1.0)


class Strategy(Protocol):
    def ask(self) -> tuple[Any, Recipe]: ...

    def tell(self, token: Any, recipe: Recipe, loss: float) -> None: ...


class NevergradStrategy:
    def __init__(self, name: str, space: SearchSpace, budget: int, workers: int, seed: int):
        if name.startswith("NGOpt") or name in ("NgIohTuned", "Wiz", "Shiwa"):
            raise UserError(f"strategy {name!r}: nevergrad meta-optimizers fail with numpy 2.4 here; name one explicitly (TwoPointsDE, CMA, PSO, OnePlusOne)")
        if name not in ng.optimizers.registry:
            known = ", ".join(["bandit", "random", "TwoPointsDE", "DE", "CMA", "PSO", "OnePlusOne", "..."])
            raise UserError(f"unknown strategy {name!r}; use one of {known} (any nevergrad optimizer name)")
        self.space = space
        parametrization = space.parametrization()
        parametrization.random_state = np.random.RandomState(seed)
        self.optimizer = ng.optimizers.registry[name](parametrization=parametrization, budget=max(budget, 1), num_workers=workers)

    def ask(self) -> tuple[Any, Recipe]:
        candidate = self.optimizer.ask()
        return candidate, self.space.decode(candidate.value)

    def tell(self, token: Any, recipe: Recipe, loss: float) -> None:
        if token is None:
            token = self.optimizer.parametrization.spawn_child(new_value=self.space.encode(recipe))
            try:
                self.optimizer.tell(token, loss)
            except (ng.errors.TellNotAskedNotSupportedError, ValueError):
                pass  # this optimizer learns only from its own proposals; the journal still has it
            return
        self.optimizer.tell(token, loss)


class ThompsonBandit:
    """Arms = operator x tied weight profile (each candidate's weight from `levels`, not all zero).
    Rewards are held-out F1 in [0, 1], treated as fractional Bernoulli outcomes of a Beta(1, 1) prior."""

    def __init__(self, space: SearchSpace, levels: tuple[float, ...], seed: int):
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.parametrization = space.parametrization()
        self.parametrization.random_state = np.random.RandomState(seed)
        profiles = [p for p in itertools.product(levels, repeat=space.n) if any(p)]
        self.arms = [(op, profile) for op in space.config.operators for profile in profiles]
        self.alpha = np.ones(len(self.arms))
        self.beta = np.ones(len(self.arms))

    def ask(self) -> tuple[Any, Recipe]:
        arm = int(np.argmax(self.rng.beta(self.alpha, self.beta)))
        operator, profile = self.arms[arm]
        value = dict(self.parametrization.sample().value)
        value["operator"] = operator
        value["weights"] = np.tile(np.array(profile), (self.space.weight_groups, 1))
        return arm, self.space.decode(value)

    def tell(self, token: Any, recipe: Recipe, loss: float) -> None:
        arm = token if token is not None else self._nearest_arm(recipe)
        if arm is None:
            return
        reward = float(np.clip(-loss, 0.0, 1.0))
        self.alpha[arm] += reward
        self.beta[arm] += 1.0 - reward

    def _nearest_arm(self, recipe: Recipe) -> int | None:
        weights = np.array(recipe.weights_for(0) or [1.0] * self.space.n)
        candidates = [i for i, (op, _) in enumerate(self.arms) if op == recipe.operator]
        if not candidates:
            return None
        return min(candidates, key=lambda i: float(np.abs(np.array(self.arms[i][1]) - weights).sum()))


def make_strategy(config: StrategyConfig, space: SearchSpace, budget: int, workers: int) -> Strategy:
    if config.name == "bandit":
        return ThompsonBandit(space, config.bandit_levels, config.seed)
    name = "RandomSearch" if config.name == "random" else config.name
    return NevergradStrategy(name, space, budget, workers, config.seed)
