"""`Recipe`: a small, frozen, hashable description of one merge, relative to a model pool.

Per-layer values are indexed by slot (0 = embeddings, 1..L = encoder layers, L + 1 = head); a
single row or value is tied across all slots (the paper's "k weights" with k = 1). Recipes are
canonicalised on construction (rounded, tied rows collapsed, values the operator ignores dropped),
so equal merges hash equal and the search never evaluates one twice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import operators
from engine.layout import Scope
from uniguard.core.errors import UserError, format_validation_error

Dtype = Literal["float32", "float16", "bfloat16"]
_OWN_FIELDS = ("weights", "density", "seed")  # operator parameters that are recipe fields, not `params`
ROUND = 6  # decimals kept: below any effect on a merge, and makes hashes stable


def _rounded(x: float) -> float:
    return round(float(x), ROUND) + 0.0  # + 0.0 turns -0.0 into 0.0


class Recipe(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    operator: str = "ties"
    weights: tuple[tuple[float, ...], ...] = Field(default=(), description="[slot][candidate]; one row = tied over slots")
    density: tuple[float, ...] = Field(default=(), description="per slot; one value = tied; empty = operator default")
    params: tuple[tuple[str, Any], ...] = Field(default=(), description="other global operator parameters")
    scope: Scope = "all"
    layers: tuple[int, ...] | None = Field(default=None, description="encoder layers kept, in order; None = all")
    anchor: int = Field(default=0, ge=0, description="candidate whose tensors are used outside the merge scope")
    dtype: Dtype = "float32"
    seed: int = Field(default=0, ge=0)

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_as_rows(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (list, tuple)):
            return (tuple(value),)  # a flat list is one row tied over slots
        return value

    @field_validator("density", mode="before")
    @classmethod
    def _density_as_tuple(cls, value: Any) -> Any:
        return (value,) if isinstance(value, (int, float)) else value

    @field_validator("params", mode="before")
    @classmethod
    def _params_as_pairs(cls, value: Any) -> Any:
        return tuple(sorted(value.items())) if isinstance(value, dict) else value

    @field_validator("layers")
    @classmethod
    def _layers_unique(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value) or min(value) < 0):
            raise ValueError("layers must be a non-empty list of distinct layer indices >= 0")
        return value

    @model_validator(mode="after")
    def _canonical(self) -> "Recipe":
        op = operators.get(self.operator)
        names = {p.name for p in op.params}
        weights = tuple(tuple(_rounded(w) for w in row) for row in self.weights) if "weights" in names else ()
        if len(set(weights)) == 1:
            weights = weights[:1]
        density = tuple(_rounded(d) for d in self.density) if "density" in names else ()
        if len(set(density)) == 1:
            density = density[:1]
        params = tuple((k, _rounded(v) if isinstance(v, float) else v) for k, v in self.params)
        unknown = [k for k, _ in params if k not in names or k in _OWN_FIELDS]
        if unknown:
            raise ValueError(
                f"params {unknown} are not global parameters of operator {self.operator!r} "
                f"(weights, density and seed have their own recipe fields); it takes {sorted(names - set(_OWN_FIELDS))}"
            )
        for name, value in (("weights", weights), ("density", density), ("params", params)):
            object.__setattr__(self, name, value)
        return self

    # -- per-slot access -------------------------------------------------------------------
    def weights_for(self, slot: int) -> tuple[float, ...] | None:
        return self.weights[slot if len(self.weights) > 1 else 0] if self.weights else None

    def density_for(self, slot: int) -> float | None:
        return self.density[slot if len(self.density) > 1 else 0] if self.density else None

    def operator_params(self, slot: int) -> dict[str, Any]:
        """Parameters for the operator at `slot` (not yet validated or defaulted)."""
        params = dict(self.params)
        if (w := self.weights_for(slot)) is not None:
            params["weights"] = list(w)
        if (d := self.density_for(slot)) is not None:
            params["density"] = d
        return params

    def check_against(self, num_candidates: int, num_layers: int) -> None:
        """Validate slot counts, candidate counts, layers and anchor against a pool (operator parameters
        are validated per slot where the merge uses them)."""
        num_slots = num_layers + 2
        for field_name, rows in (("weights", self.weights), ("density", self.density)):
            if len(rows) not in (0, 1, num_slots):
                raise UserError(
                    f"recipe {field_name}: {len(rows)} per-layer values for a model with {num_layers} layers; "
                    f"give 1 (tied) or {num_slots} (embeddings, each layer, head)"
                )
        for row in self.weights:
            if len(row) != num_candidates:
                raise UserError(f"recipe weights: a row has {len(row)} values for {num_candidates} candidate models; give one per model")
        if self.layers is not None and max(self.layers) >= num_layers:
            raise UserError(f"recipe layers: {max(self.layers)} does not exist; the model has layers 0..{num_layers - 1}")
        if self.anchor >= num_candidates:
            raise UserError(f"recipe anchor: {self.anchor} is not a candidate index (0..{num_candidates - 1})")

    # -- identity and serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["params"] = dict(self.params)
        return data

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe") -> "Recipe":
        if not isinstance(data, dict):
            raise UserError(f"{source}: a recipe must be a mapping with operator, weights, density, ...")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"{source}: invalid recipe:\n{format_validation_error(exc)}") from None
