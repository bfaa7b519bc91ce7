"""Apply a `Recipe` to a `ModelPool`: merged weights in memory, or a Hugging Face guard directory.

Memory-bound by design: the task-arithmetic family runs as one fused kernel that reads each task
vector once and writes the result once (operators/kernels.py); rank statistics come from the pool.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer

import operators
from engine.layout import renumber_layer
from engine.pool import ModelPool
from engine.recipe import Recipe
from trainers.guard import DEFAULT_MAX_LENGTH, GUARD_META_FILE
from trainers.onnx import check_empty_out, write_export_dir
from uniguard.core.errors import UserError
from uniguard.core.io import write_json

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def tensor_seed(recipe_seed: int, name: str) -> int:
    """A per-tensor seed, so random drops do not depend on the order tensors are merged in."""
    return (recipe_seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31 - 1)


def merge_state_dict(pool: ModelPool, recipe: Recipe, into: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The merged model's state dict (layers renumbered when some are dropped), in `recipe.dtype`.

    `into`: float32 tensors under the merged names (e.g. a model's `state_dict()`, which shares the
    parameters' storage) to write the result into instead of new tensors; values are still rounded
    through `recipe.dtype`. A search merges recipe after recipe into one model this way: no
    allocation, no page faults on fresh memory, no copy into the model afterwards."""
    recipe.check_against(pool.num_candidates, pool.num_layers)
    op = operators.get(recipe.operator)
    check_statistics(pool, op)
    validated: dict[int, dict[str, Any]] = {}
    out: dict[str, torch.Tensor] = {}
    for name, out_name in merged_names(pool, recipe).items():
        role = pool.roles[name]
        dest = _destination(into, out_name, pool.base[name])
        if role.in_scope(recipe.scope):
            slot = role.slot(pool.num_layers)
            if slot not in validated:
                validated[slot] = op.validate(pool.num_candidates, recipe.operator_params(slot))
            merged = _merge_tensor(pool, op, name, validated[slot], recipe.seed, dest, role.depth(pool.num_layers))
        else:
            merged = pool.candidate(recipe.anchor, name, out=dest)
        out[out_name] = _in_dtype(merged, DTYPES[recipe.dtype], in_place=dest is not None)
    return out


_STATISTIC_NAMES = {"gram": "the Gram matrices of each linear layer's inputs", "fisher": "the diagonal Fisher of every parameter"}


def check_statistics(pool: ModelPool, op: operators.MergeOperator) -> None:
    """A data-aware operator needs per-candidate statistics the pool computes from calibration data;
    refuse before merging anything when they are missing, naming the ways to get them."""
    missing = pool.missing_statistics(op.uses_statistics)
    if missing:
        needs = " and ".join(_STATISTIC_NAMES[kind] for kind in missing)
        raise UserError(
            f"operator {op.name!r} weighs each candidate by {needs} on calibration data, and this model pool has none "
            "(`uniguard merge` reads no data). Merge it from a search run instead: list it under space.operators and "
            "`uniguard export RUN_DIR --point K --out DIR` computes them from the run's validation data; "
            "in Python, call ModelPool.compute_statistics(eval_set, tokenizer, kinds) first")


def merged_names(pool: ModelPool, recipe: Recipe) -> dict[str, str]:
    """Pool tensor name -> its name in the merged model, for the tensors of the layers kept."""
    kept = list(recipe.layers) if recipe.layers is not None else list(range(pool.num_layers))
    new_index = {old: new for new, old in enumerate(kept)}
    return {name: renumber_layer(name, new_index[role.layer]) if role.layer is not None else name
            for name, role in pool.roles.items() if role.layer is None or role.layer in new_index}


def _destination(into: dict[str, torch.Tensor] | None, name: str, like: torch.Tensor) -> torch.Tensor | None:
    if into is None:
        return None
    if name not in into:
        raise ValueError(f"merge destination {name!r}: missing; `into` needs a tensor for every merged name")
    return operators.check_out(into[name], like.shape, f"merge destination {name!r}")


def _in_dtype(tensor: torch.Tensor, dtype: torch.dtype, in_place: bool) -> torch.Tensor:
    if in_place:  # keep float32 storage, with the values the dtype can hold
        return tensor if dtype == torch.float32 else tensor.copy_(tensor.to(dtype))
    return tensor.to(dtype).contiguous()


def _merge_tensor(pool: ModelPool, op: operators.MergeOperator, name: str, params: dict[str, Any], seed: int,
                  out: torch.Tensor | None, depth: float) -> torch.Tensor:
    if "seed" in params:
        params = {**params, "seed": tensor_seed(seed, name)}
    if op.inputs == "deltas":
        inputs = pool.task_vectors[name]
    else:
        inputs = [pool.candidate(i, name) for i in range(pool.num_candidates)]
    return op.apply(pool.base[name], inputs, params, context=pool.context(name) if op.uses_context else None, out=out,
                    depth=depth if op.uses_depth else None, statistics=pool.statistics(name) if op.uses_statistics else None)


def merged_config(pool: ModelPool, recipe: Recipe):
    config = pool.config.__class__.from_dict(pool.config.to_dict())
    config.num_hidden_layers = len(recipe.layers) if recipe.layers is not None else pool.num_layers
    return config


def check_merge_out(out_dir: str | Path, sources: Iterable[str | Path]) -> None:
    """Refuse an output that is one of the merge's own inputs (it would overwrite them) or not empty."""
    out_dir = Path(out_dir)
    for source in sources:
        if out_dir.resolve() == Path(source).resolve():
            raise UserError(f"{out_dir}: is {source}, one of the models being merged; writing there would overwrite it: "
                            "choose a new --out directory")
    check_empty_out(out_dir)


def write_merged_model(pool: ModelPool, recipe: Recipe, out_dir: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a Hugging Face guard directory: model.safetensors, config, tokenizer, uniguard.json; built in a
    temp dir and renamed into place, so a failed merge leaves nothing half-written."""
    out_dir = Path(out_dir)
    check_merge_out(out_dir, [pool.base_dir, *pool.candidate_dirs])
    return write_export_dir(out_dir, lambda tmp: _write_merged(pool, recipe, tmp, state))


def _write_merged(pool: ModelPool, recipe: Recipe, out_dir: Path, state: dict[str, torch.Tensor] | None) -> None:
    state = state if state is not None else merge_state_dict(pool, recipe)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt", "uniguard_recipe": recipe.hash})
    config = merged_config(pool, recipe)
    config.dtype = recipe.dtype
    config.save_pretrained(out_dir)
    anchor_dir = pool.candidate_dirs[recipe.anchor]
    AutoTokenizer.from_pretrained(anchor_dir, trust_remote_code=False).save_pretrained(out_dir)
    write_json(out_dir / GUARD_META_FILE, _guard_meta(pool, recipe))


def _sources_meta(pool: ModelPool) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for d in pool.candidate_dirs if (p := d / GUARD_META_FILE).is_file()]


def guards_max_length(pool: ModelPool) -> int:
    """The token limit a merge of the pool's guards reads (instruction + text) at: the smallest of the
    guards' own, capped at the model's positions. The search scores at it by default, so thresholds
    are calibrated on the inputs the exported guard will see."""
    limit = min((meta.get("max_length", DEFAULT_MAX_LENGTH) for meta in _sources_meta(pool)), default=DEFAULT_MAX_LENGTH)
    positions = getattr(pool.config, "max_position_embeddings", None)
    return min(limit, positions) if positions else limit


def _guard_meta(pool: ModelPool, recipe: Recipe) -> dict[str, Any]:
    """The recipe and its sources. Thresholds are not inherited: a merge is calibrated on its own
    (by the search's fitness, or `uniguard eval`); until then the default 0.5 applies."""
    sources = _sources_meta(pool)
    return {
        "policies": sorted({name for meta in sources for name in meta.get("policies", [])}),
        "max_length": guards_max_length(pool),
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.hash,
        "merged_from": {"base": str(pool.base_dir), "candidates": [str(d) for d in pool.candidate_dirs]},
    }
