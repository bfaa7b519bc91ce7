"""The merge-operator registry.

An operator is a plain function over tensors, registered with a decorator that declares its typed
parameters. The declaration is the single source of truth for validation (`MergeOperator.validate`)
and for the search space the engine derives (`MergeOperator.params`). Third-party operators arrive
through the `uniguard.operators` entry-point group and register themselves on import.

Call shape (DESIGN.md): `operators.get(name)(base, tensors, **params)` where `tensors` are the
candidates' full weights. Operators declared with `inputs="deltas"` are written over task vectors
(candidate - base), stacked into one (N, *shape) tensor; `__call__` converts, and the model pool
calls `apply` with its precomputed task vectors and their cached `TaskVectorContext` (magnitude
indexes, row ranks, per-task SVDs) so nothing is recomputed per recipe. Operators declared with
`uses_depth=True` also receive the tensor's relative depth in the network (`depth=`, 0 = embeddings
and the first encoder layer, 1 = the last layer and the head; engine/layout.py computes it), for
depth-dependent scaling such as LiNeS. Operators declared with `uses_statistics=("gram",)` (or
`"fisher"`) also receive `statistics=`, the tensor's per-candidate data statistics (an
`operators.data_aware.TensorStatistics`), which the engine computes once per pool from calibration
data (RegMean, Fisher merging).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

if TYPE_CHECKING:
    import torch

from uniguard.core.errors import UserError

ENTRY_POINT_GROUP = "uniguard.operators"
# Data statistics an operator may need per candidate: the Gram matrix of each linear layer's inputs
# (RegMean) or the diagonal Fisher of every tensor (Fisher merging); the engine computes only those
# the operators of a search need, since the Fisher costs a backward pass per batch.
StatisticKind = Literal["gram", "fisher"]


@dataclass(frozen=True)
class Param:
    """One operator parameter.

    `per_model` parameters are lists with one value per candidate (`weights`); the others are
    scalars. `low`/`high` bound numeric values (inclusive); `search` narrows the range the engine
    explores; `searchable` marks parameters the engine may tune (seeds and switches are not).
    """

    name: str
    kind: type = float
    default: Any = None
    low: float | None = None
    high: float | None = None
    per_model: bool = False
    searchable: bool = True
    help: str = ""
    search: tuple[float, float] | None = None  # the range the engine searches, when narrower than [low, high]

    @property
    def search_range(self) -> tuple[float, float]:
        return self.search if self.search is not None else (float(self.low), float(self.high))

    def check(self, operator: str, value: Any) -> Any:
        values = value if self.per_model else [value]
        checked = [self._check_one(operator, v) for v in values]
        return checked if self.per_model else checked[0]

    def _check_one(self, operator: str, value: Any) -> Any:
        where = f"operator {operator!r}, parameter {self.name!r}"
        if self.kind is bool:
            if not isinstance(value, bool):
                raise UserError(f"{where}: expected true or false, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{where}: must be finite, got {value!r}")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise UserError(f"{where}: {value!r} is outside its range [{self.low}, {self.high}]; pick a value inside it")
        return int(value) if self.kind is int else float(value)


@dataclass(frozen=True)
class MergeOperator:
    """A registered operator: the function plus what the engine and validators need to know."""

    name: str
    fn: Callable[..., torch.Tensor]
    params: tuple[Param, ...]
    inputs: Literal["weights", "deltas"]
    needs_base: bool
    min_models: int = 1
    max_models: int | None = None
    uses_context: bool = False  # receives `context=` (magnitude indexes, row ranks cached by the pool)
    writes_out: bool = False  # accepts `out=`: writes the result into a given float32 tensor
    uses_depth: bool = False  # receives `depth=` in [0, 1]: where the tensor sits between input and head
    uses_statistics: tuple[StatisticKind, ...] = ()  # receives `statistics=`: per-candidate data statistics
    reference: str = ""
    doc: str = field(default="", compare=False)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def validate(self, n_models: int, params: dict[str, Any]) -> dict[str, Any]:
        """Check names, types, ranges and list lengths; return params with defaults filled in."""
        if n_models < self.min_models or (self.max_models is not None and n_models > self.max_models):
            expected = f"exactly {self.min_models}" if self.min_models == self.max_models else f"at least {self.min_models}"
            raise UserError(f"operator {self.name!r} merges {expected} candidate models, got {n_models}")
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UserError(
                f"operator {self.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(known)) or 'no parameters'}"
            )
        out: dict[str, Any] = {}
        for p in self.params:
            value = params.get(p.name, p.default)
            if p.per_model:
                value = _per_model_list(self.name, p, value, n_models)
            out[p.name] = p.check(self.name, value)
        return out

    def __call__(self, base: torch.Tensor | None, tensors: Sequence[torch.Tensor], **params: Any) -> torch.Tensor:
        """Merge full candidate weights (the public call shape); validates parameters."""
        import torch
        tensors = list(tensors)
        if not tensors:
            raise UserError(f"operator {self.name!r}: no candidate tensors given")
        if self.needs_base and base is None:
            raise UserError(f"operator {self.name!r} needs a base tensor (task vectors are candidate - base)")
        for i, t in enumerate(tensors):
            if t.shape != tensors[0].shape or (base is not None and t.shape != base.shape):
                raise UserError(f"operator {self.name!r}: tensor {i} has shape {tuple(t.shape)}, expected {tuple(tensors[0].shape)}")
        depth = params.pop("depth", None) if self.uses_depth else None
        if self.uses_depth and depth is None:
            raise UserError(f"operator {self.name!r} scales by depth: pass depth= (0 = first layer, 1 = last layer)")
        statistics = params.pop("statistics", None) if self.uses_statistics else None
        if self.uses_statistics and statistics is None:
            raise UserError(f"operator {self.name!r} weighs candidates by data statistics: pass statistics= "
                            f"(an operators.data_aware.TensorStatistics with {' and '.join(self.uses_statistics)})")
        checked = self.validate(len(tensors), params)
        base32 = None if base is None else base.float()
        if self.inputs == "deltas":
            # an operator that needs no base is written over task vectors from any reference point
            base32 = tensors[0].float() if base32 is None else base32
            inputs = torch.stack([t.float() for t in tensors]) - base32
        else:
            inputs = [t.float() for t in tensors]
        out = self.apply(base32, inputs, checked, depth=depth, statistics=statistics)
        return out.to(tensors[0].dtype)

    def apply(self, base: torch.Tensor | None, inputs, params: dict[str, Any], context: Any = None,
              out: torch.Tensor | None = None, depth: float | None = None, statistics: Any = None) -> torch.Tensor:
        """Fast path for validated params: `inputs` are stacked task vectors or a list of weights,
        as `self.inputs` says; `context` is the pool's cached TaskVectorContext for this tensor.
        `out` (float32, contiguous, the result's shape) receives the result and is returned: operators
        that write it directly spare a fresh allocation, whose first-touch page faults cost a
        memory-speed merge more than the merge itself. `depth`: the tensor's relative depth, passed on
        to operators declared `uses_depth`. `statistics`: the tensor's per-candidate data statistics
        (`operators.data_aware.TensorStatistics`), passed on to operators declared `uses_statistics`."""
        if self.uses_context:
            params = {**params, "context": context}
        if self.uses_depth:
            if depth is None or not 0.0 <= depth <= 1.0:
                raise ValueError(f"operator {self.name!r}: needs depth in [0, 1], got {depth!r}")
            params = {**params, "depth": float(depth)}
        if self.uses_statistics:
            if statistics is None:
                raise ValueError(f"operator {self.name!r}: needs statistics= ({', '.join(self.uses_statistics)}), got None")
            params = {**params, "statistics": statistics}
        if out is None:
            return self.fn(base, inputs, **params)
        if self.writes_out:
            return self.fn(base, inputs, **params, out=out)
        return out.copy_(self.fn(base, inputs, **params))


def check_out(out: "torch.Tensor", shape: Sequence[int], what: str = "out") -> "torch.Tensor":
    """`out` as `apply` and the kernels need it: float32, contiguous, the result's shape (the kernels
    write through a flat view, unchecked, so a wrong one would write past its end)."""
    import torch

    if out.dtype != torch.float32 or tuple(out.shape) != tuple(shape) or not out.is_contiguous():
        raise ValueError(f"{what}: need a contiguous float32 tensor of shape {tuple(shape)}, "
                         f"got {out.dtype} {tuple(out.shape)} (contiguous: {out.is_contiguous()})")
    return out


def _per_model_list(operator: str, p: Param, value: Any, n_models: int) -> list:
    if value is None:
        raise UserError(f"operator {operator!r}: parameter {p.name!r} is required (one value per candidate model)")
    if not isinstance(value, (list, tuple)):
        return [value] * n_models
    if len(value) != n_models:
        raise UserError(f"operator {operator!r}: {p.name!r} has {len(value)} values for {n_models} candidate models; give one per model")
    return list(value)


_REGISTRY: dict[str, MergeOperator] = {}
_entry_points_loaded = False


def merge_operator(
    name: str,
    *,
    params: Sequence[Param] = (),
    inputs: Literal["weights", "deltas"] = "deltas",
    needs_base: bool = True,
    min_models: int = 1,
    max_models: int | None = None,
    uses_context: bool = False,
    uses_depth: bool = False,
    uses_statistics: Sequence[StatisticKind] = (),
    reference: str = "",
) -> Callable[[Callable[..., torch.Tensor]], MergeOperator]:
    """Register `fn(base, inputs, **params)` as operator `name` and return the registered operator."""

    def register(fn: Callable[..., torch.Tensor]) -> MergeOperator:
        if name in _REGISTRY:
            raise ValueError(f"merge operator {name!r} is registered twice ({_REGISTRY[name].fn.__module__} and {fn.__module__})")
        op = MergeOperator(
            name=name,
            writes_out="out" in inspect.signature(fn).parameters,
            fn=fn,
            params=tuple(params),
            inputs=inputs,
            needs_base=needs_base,
            min_models=min_models,
            max_models=max_models,
            uses_context=uses_context,
            uses_depth=uses_depth,
            uses_statistics=tuple(uses_statistics),
            reference=reference,
            doc=(fn.__doc__ or "").strip(),
        )
        _REGISTRY[name] = op
        return op

    return register


BUILTIN_MODULES = ("operators.task_arithmetic", "operators.averaging", "operators.spectral", "operators.lines",
                   "operators.data_aware")


def _load_entry_points() -> None:
    """Import the built-in operator modules and third-party entry points once; importing registers."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for module in BUILTIN_MODULES:
        import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def get(name: str) -> MergeOperator:
    _load_entry_points()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown merge operator {name!r}; available: {', '.join(available())}") from None


def available() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)
