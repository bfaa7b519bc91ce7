"""The search space, derived from a model pool and the operator registry, and its nevergrad form.

Dimensions: operator choice; weights per candidate for `weight_groups` contiguous groups of slots
(1 = tied across layers, the paper's k weights with k = 1; the slot count = per layer); density per
`density_groups` groups; each operator's other searchable parameters (ranges from the registry);
merge scope; layers kept; output dtype. Any dimension can be fixed by the config.
"""

from __future__ import annotations

from typing import Any, Literal

import nevergrad as ng
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

import operators
from engine.recipe import Dtype, Recipe
from engine.layout import Scope

DEFAULT_OPERATORS = ("ties", "dare_ties", "task_arithmetic", "linear", "breadcrumbs_ties", "della")
_OWN = ("weights", "density", "seed")


class SpaceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operators: tuple[str, ...] = DEFAULT_OPERATORS
    weight_groups: int | Literal["per_layer"] = 1
    density_groups: int | Literal["per_layer"] = 1
    weight_range: tuple[float, float] | None = None  # default: the operator registry's search range
    density_range: tuple[float, float] | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="fix (a number) or narrow ([low, high]) an operator parameter")
    scopes: tuple[Scope, ...] = ("all",)
    layers: Literal["all", "search"] | tuple[int, ...] = "all"
    dtypes: tuple[Dtype, ...] = ("float32",)
    anchor: int = 0
    seed: int = 0

    @field_validator("operators")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            raise ValueError("list at least one operator")
        for name in names:
            operators.get(name)  # raises a UserError naming the available ones
        return names


class SearchSpace:
    def __init__(self, config: SpaceConfig, num_candidates: int, num_layers: int):
        self.config, self.n, self.num_layers = config, num_candidates, num_layers
        self.num_slots = num_layers + 2
        self.weight_groups = self.num_slots if config.weight_groups == "per_layer" else min(config.weight_groups, self.num_slots)
        self.density_groups = self.num_slots if config.density_groups == "per_layer" else min(config.density_groups, self.num_slots)
        self.ops = [operators.get(name) for name in config.operators]
        self.extra_params = self._extra_params()

    # -- derivation from the registry ---------------------------------------------------------
    def _extra_params(self) -> dict[str, tuple[float, float] | float | bool | int]:
        """Each operator's searchable global parameters beyond weights and density: a range or a fixed value."""
        out = {}
        for op in self.ops:
            for p in op.params:
                if p.name in _OWN or p.per_model:
                    continue
                key = f"{op.name}.{p.name}"
                override = self.config.params.get(key, self.config.params.get(p.name))
                if override is not None:
                    out[key] = tuple(override) if isinstance(override, (list, tuple)) else override
                elif p.searchable and p.kind in (int, float):
                    out[key] = p.search_range
        return out

    def _weight_range(self) -> tuple[float, float]:
        return self.config.weight_range or operators.get("ties").param("weights").search_range

    def _density_range(self) -> tuple[float, float]:
        return self.config.density_range or operators.get("ties").param("density").search_range

    def parametrization(self) -> ng.p.Dict:
        lo, hi = self._weight_range()
        dlo, dhi = self._density_range()
        dims: dict[str, Any] = {
            "operator": ng.p.Choice([op.name for op in self.ops]),
            "weights": ng.p.Array(shape=(self.weight_groups, self.n), lower=lo, upper=hi),
            "density": ng.p.Array(shape=(self.density_groups,), lower=dlo, upper=dhi),
            "scope": ng.p.Choice(list(self.config.scopes)),
            "dtype": ng.p.Choice(list(self.config.dtypes)),
        }
        if self.config.layers == "search":
            dims["keep"] = ng.p.Array(shape=(self.num_layers,), lower=0.0, upper=1.0)
        for key, spec in self.extra_params.items():
            if isinstance(spec, tuple):
                dims[key] = ng.p.Scalar(lower=spec[0], upper=spec[1])
        param = ng.p.Dict(**dims)
        param.random_state = np.random.RandomState(self.config.seed)
        return param

    # -- value <-> recipe ------------------------------------------------------------------------
    def decode(self, value: dict[str, Any]) -> Recipe:
        op = operators.get(value["operator"])
        names = {p.name for p in op.params}
        params = {}
        for key, spec in self.extra_params.items():
            op_name, param_name = key.split(".", 1)
            if op_name == op.name:
                params[param_name] = value[key] if isinstance(spec, tuple) else spec
        recipe = {
            "operator": op.name,
            "weights": self._per_slot(np.asarray(value["weights"]), self.weight_groups) if "weights" in names else (),
            "density": self._per_slot(np.asarray(value["density"]), self.density_groups) if "density" in names else (),
            "params": params,
            "scope": value["scope"],
            "layers": self._layers(value),
            "dtype": value["dtype"],
            "anchor": self.config.anchor,
            "seed": self.config.seed,
        }
        return Recipe.from_dict(recipe, "search space")

    def _per_slot(self, values: np.ndarray, groups: int) -> list:
        """Expand group values to one per slot (contiguous groups); one group stays tied."""
        if groups == 1:
            return values[0].tolist() if values.ndim > 1 else [float(values[0])]
        bounds = np.linspace(0, self.num_slots, groups + 1)
        group_of_slot = np.searchsorted(bounds, np.arange(self.num_slots), side="right") - 1
        return [values[g].tolist() if values.ndim > 1 else float(values[g]) for g in group_of_slot]

    def _layers(self, value: dict[str, Any]) -> list[int] | None:
        layers = self.config.layers
        if layers == "all":
            return None
        if layers != "search":
            return list(layers)
        keep = np.asarray(value["keep"])
        kept = [i for i in range(self.num_layers) if keep[i] >= 0.5]
        if len(kept) == self.num_layers:
            return None
        return kept or [int(np.argmax(keep))]  # never drop every layer

    def encode(self, recipe: Recipe) -> dict[str, Any]:
        """A parametrization value that decodes to (nearly) `recipe`, to tell the optimizer about
        recipes it did not propose (known-good seeds, journal replay)."""
        lo, hi = self._weight_range()
        dlo, dhi = self._density_range()
        weights = np.array(recipe.weights[:1] * self.weight_groups if len(recipe.weights) <= 1 else
                           [recipe.weights[int(s)] for s in np.linspace(0, self.num_slots - 1, self.weight_groups)])
        if weights.size == 0:
            weights = np.full((self.weight_groups, self.n), (lo + hi) / 2)
        density = np.array([recipe.density_for(int(s)) or 0.5 for s in np.linspace(0, self.num_slots - 1, self.density_groups)])
        value: dict[str, Any] = {
            "operator": recipe.operator if recipe.operator in self.config.operators else self.config.operators[0],
            "weights": np.clip(weights, lo, hi),
            "density": np.clip(density, dlo, dhi),
            "scope": recipe.scope if recipe.scope in self.config.scopes else self.config.scopes[0],
            "dtype": recipe.dtype if recipe.dtype in self.config.dtypes else self.config.dtypes[0],
        }
        if self.config.layers == "search":
            kept = set(recipe.layers if recipe.layers is not None else range(self.num_layers))
            value["keep"] = np.array([0.75 if i in kept else 0.25 for i in range(self.num_layers)])
        params = dict(recipe.params)
        for key, spec in self.extra_params.items():
            if isinstance(spec, tuple):
                name = key.split(".", 1)[1]
                value[key] = float(np.clip(params.get(name, (spec[0] + spec[1]) / 2), *spec))
        return value
