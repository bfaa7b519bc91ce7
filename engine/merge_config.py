"""Merge configuration files: uniguard's own format and mergekit's, in both directions.

uniguard format (paths relative to the file):

    base_model: base/                 # a model directory or hub id; "minilm" = the offline MiniLM
    models: [guard_a/, guard_b/]
    recipe: {operator: ties, weights: [1, 1], density: 0.5, params: {lambda_: 1.0}}

mergekit format: `merge_method`, `base_model`, `models[].model`, `models[].parameters.{weight,
density, ...}`, `parameters`, `dtype`, for every method both tools implement. mergekit's per-model
density becomes uniguard's single density (they must agree), its `lambda` becomes `lambda_`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import operators
from engine.recipe import Recipe
from uniguard.core.errors import UserError
from uniguard.core.io import read_yaml_mapping

# Methods with the same name and meaning in both tools.
SHARED_METHODS = (
    "linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs",
    "breadcrumbs_ties", "della", "della_linear", "slerp", "karcher", "model_stock",
)
_PER_MODEL_GLOBALS = ("density", "gamma", "epsilon")  # per model in mergekit, global in uniguard
_RENAMED = {"lambda": "lambda_"}
_IGNORED = {"int8_mask"}  # mergekit memory switch, no effect on the result


@dataclass(frozen=True)
class MergeConfig:
    base_model: str
    models: tuple[str, ...]
    recipe: Recipe


_MERGEKIT_KEYS = ("merge_method", "base_model", "models", "parameters", "dtype")
_MERGEKIT_MODEL_KEYS = ("model", "parameters")
_MERGEKIT_MODEL_PARAMS = ("weight", *_PER_MODEL_GLOBALS)


def load_merge_config(path: str | Path) -> MergeConfig:
    path = Path(path)
    raw = read_yaml_mapping(path, "merge config (uniguard: base_model/models/recipe; mergekit: merge_method/models)")
    config = _from_mergekit(raw, path) if "merge_method" in raw else _from_uniguard(raw, path)
    _check_weights_sum(config.recipe, path)
    return MergeConfig(_resolve(config.base_model, path), tuple(_resolve(m, path) for m in config.models), config.recipe)


def _resolve(model: str, config_path: Path) -> str:
    """Relative model paths are relative to the config file; other strings are hub ids or aliases."""
    candidate = config_path.resolve().parent / model
    return str(candidate) if not Path(model).is_absolute() and candidate.exists() else model


def _from_uniguard(raw: dict, path: Path) -> MergeConfig:
    unknown = sorted(set(raw) - {"base_model", "models", "recipe"})
    if unknown:
        raise UserError(f"{path}: unknown field(s) {', '.join(unknown)}; a uniguard merge config has base_model, models, recipe")
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise UserError(f"{path}: `models` must be a non-empty list of model directories")
    models = [m["model"] if isinstance(m, dict) and "model" in m else m for m in models]
    if not all(isinstance(m, str) for m in models):
        raise UserError(f"{path}: each entry of `models` must be a path (or a mapping with `model:`)")
    base = raw.get("base_model")
    if not isinstance(base, str):
        raise UserError(f"{path}: `base_model` is required: the encoder the candidates were fine-tuned from (e.g. minilm)")
    return MergeConfig(base, tuple(models), Recipe.from_dict(raw.get("recipe", {}), f"{path}: recipe"))


def _check_keys(keys, allowed: tuple[str, ...], where: str) -> None:
    """A misspelt key would otherwise be ignored and the merge silently use a default."""
    unknown = sorted(str(k) for k in keys if k not in allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _from_mergekit(raw: dict, path: Path) -> MergeConfig:
    method = raw["merge_method"]
    if method not in SHARED_METHODS:
        raise UserError(f"{path}: merge_method {method!r} is not one uniguard implements; use one of {', '.join(SHARED_METHODS)}")
    if "slices" in raw:
        raise UserError(f"{path}: mergekit `slices` are not supported; list whole models under `models:` (use recipe `layers` to drop layers)")
    _check_keys(raw, _MERGEKIT_KEYS, str(path))
    entries = raw.get("models") or []
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and isinstance(e.get("model"), str) for e in entries):
        raise UserError(f"{path}: `models` must be a list of mappings with a `model:` path")
    for i, entry in enumerate(entries):
        _check_keys(entry, _MERGEKIT_MODEL_KEYS, f"{path}: models[{i}]")
        if not isinstance(entry.get("parameters") or {}, dict):
            raise UserError(f"{path}: models[{i}].parameters must be a mapping such as {{weight: 1.0, density: 0.5}}")
        _check_keys(entry.get("parameters") or {}, _MERGEKIT_MODEL_PARAMS, f"{path}: models[{i}].parameters")
    if not isinstance(raw.get("parameters") or {}, dict):
        raise UserError(f"{path}: `parameters` must be a mapping of global parameters such as {{normalize: true}}")
    base = raw.get("base_model")
    if base is not None and not isinstance(base, str):
        raise UserError(f"{path}: `base_model` must be a model path or hub id, got {type(base).__name__}")
    if base is None and method != "slerp" and operators.get(method).needs_base:
        raise UserError(f"{path}: merge_method {method} needs `base_model` (task vectors are model - base); "
                        "add the model the candidates were fine-tuned from")
    models = [e["model"] for e in entries]
    if method == "slerp":  # mergekit interpolates from base_model (t = 0) to the other model (t = 1)
        others = [m for m in models if m != base]
        if base is None or len(others) != 1:
            raise UserError(f"{path}: slerp needs base_model plus exactly one other model")
        models = [base, others[0]]
        entries = [{"model": base}] + [e for e in entries if e["model"] != base]
    else:
        entries = [e for e in entries if e["model"] != base]
        models = [e["model"] for e in entries]
    base = base or models[0]  # methods without a base (linear, karcher) still need a layout reference
    per_model = [e.get("parameters") or {} for e in entries]
    params = {_RENAMED.get(k, k): v for k, v in (raw.get("parameters") or {}).items() if k not in _IGNORED}
    recipe: dict[str, Any] = {"operator": method, "dtype": _dtype(raw.get("dtype"), path)}
    if any("weight" in p for p in per_model):
        recipe["weights"] = [_scalar(p.get("weight", 1.0), "weight", path) for p in per_model]
    for name in _PER_MODEL_GLOBALS:
        value = _one_value(name, per_model, params.pop(name, None), path)
        if value is not None and name == "density":
            recipe["density"] = value
        elif value is not None:
            params[name] = value
    recipe["params"] = params
    return MergeConfig(base, tuple(models), Recipe.from_dict(recipe, str(path)))


def _check_weights_sum(recipe: Recipe, path: Path) -> None:
    """A linear merge divides by the weights' sum; at 0 it would write an all-zero model."""
    if recipe.operator == "linear" and any(abs(sum(row)) < 1e-8 for row in recipe.weights):
        raise UserError(f"{path}: linear merge weights sum to 0, which writes an all-zero model; "
                        "give weights with a non-zero (usually positive) sum")


def _one_value(name: str, per_model: list[dict], global_value: Any, path: Path) -> Any:
    """mergekit allows a value per model; uniguard needs them to agree."""
    values = {_scalar(p[name], name, path) for p in per_model if name in p}
    if global_value is not None:
        values.add(_scalar(global_value, name, path))
    if len(values) > 1:
        raise UserError(f"{path}: models have different {name} values {sorted(values)}; uniguard uses one {name} for all models")
    return values.pop() if values else None


def _scalar(value: Any, name: str, path: Path) -> float:
    if isinstance(value, (list, dict)):
        raise UserError(f"{path}: {name} is a gradient or filter-wise value; uniguard reads only plain numbers from mergekit configs")
    return value


def _dtype(value: Any, path: Path) -> str:
    if value is None:
        return "float32"
    if value not in ("float32", "float16", "bfloat16"):
        raise UserError(f"{path}: dtype {value!r} is not supported; use float32, float16 or bfloat16")
    return value


def to_mergekit(config: MergeConfig) -> dict[str, Any]:
    """The mergekit YAML for a merge, or a UserError naming the recipe field mergekit cannot express."""
    r = config.recipe
    if r.operator not in SHARED_METHODS:
        raise UserError(f"operator {r.operator!r} has no mergekit equivalent")
    for field_name, inexpressible in (
        ("weights", len(r.weights) > 1), ("density", len(r.density) > 1), ("scope", r.scope != "all"),
        ("layers", r.layers is not None),
    ):
        if inexpressible:
            raise UserError(f"recipe {field_name} {getattr(r, field_name)!r} cannot be expressed in a mergekit config (per-layer values, scope and layer dropping are uniguard-only)")
    params = {("lambda" if k == "lambda_" else k): v for k, v in r.params}
    if r.operator == "slerp":
        return {"merge_method": "slerp", "base_model": config.models[0], "models": [{"model": m} for m in config.models],
                "parameters": params, "dtype": r.dtype}
    per_model: list[dict[str, Any]] = [{} for _ in config.models]
    weights = r.weights_for(0)
    for i, entry in enumerate(per_model):
        if weights is not None:
            entry["weight"] = weights[i]
        if r.density:
            entry["density"] = r.density[0]
        for name in ("gamma", "epsilon"):
            if name in params:
                entry[name] = params[name]
    params = {k: v for k, v in params.items() if k not in ("gamma", "epsilon")}
    doc: dict[str, Any] = {"merge_method": r.operator, "models": [{"model": m, "parameters": p} for m, p in zip(config.models, per_model)]}
    if r.operator not in ("linear", "karcher"):
        doc["base_model"] = config.base_model
    doc.update(parameters=params, dtype=r.dtype)
    return doc
