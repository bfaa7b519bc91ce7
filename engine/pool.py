"""The model pool: a base encoder and N candidate guards of one architecture, as task vectors.

Loaded once (safetensors only), checked for mergeability, kept in float32 as base + task vectors
(candidate - base). Magnitude indexes for rank-based sparsifiers are built lazily, once per task
vector, and reused by every recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoConfig, PretrainedConfig

from engine.layout import TensorRole, tensor_role
from operators.sparsify import MagnitudeIndex
from trainers.guard import check_model_dir
from uniguard.assets import resolve_model
from uniguard.errors import UserError


def load_safetensors(model_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model directory's *.safetensors files, in float32."""
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def _check_finite(name: str, tensor: torch.Tensor, model_dir: Path) -> None:
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise UserError(f"{model_dir}: tensor {name!r} contains NaN or inf values; this checkpoint is corrupt, retrain or re-export it")


def _align_base_names(base: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A bare encoder (`embeddings.x`) as base for classifiers (`bert.embeddings.x`): add the prefix."""
    if set(base) & set(reference):
        return base
    for ref_name in reference:
        for base_name in base:
            if ref_name.endswith("." + base_name):
                prefix = ref_name[: -len(base_name)]
                return {prefix + k: v for k, v in base.items()}
    return base


@dataclass
class ModelPool:
    base_dir: Path
    candidate_dirs: list[Path]
    names: list[str]
    config: PretrainedConfig  # of the first candidate: architecture, labels, layer count
    base: dict[str, torch.Tensor]
    deltas: list[dict[str, torch.Tensor]]
    roles: dict[str, TensorRole]
    filled_from_candidates: list[str] = field(default_factory=list)  # tensors the base lacked (e.g. the head)
    _indexes: dict[tuple[int, str], MagnitudeIndex] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, base: str | Path, candidates: list[str | Path], names: list[str] | None = None) -> "ModelPool":
        if not candidates:
            raise UserError("a model pool needs at least one candidate model; list them under `models:`")
        base_dir = check_model_dir(resolve_model(str(base)))
        candidate_dirs = [check_model_dir(resolve_model(str(c))) for c in candidates]
        names = names or [d.name for d in candidate_dirs]
        weights = [load_safetensors(d) for d in candidate_dirs]
        for d, w in zip(candidate_dirs, weights):
            for name, tensor in w.items():
                _check_finite(name, tensor, d)
        _check_mergeable(candidate_dirs, weights)
        base_weights = _align_base_names(load_safetensors(base_dir), weights[0])
        _check_base(base_dir, base_weights, candidate_dirs[0], weights[0])
        filled = sorted(set(weights[0]) - set(base_weights))
        for name in filled:  # the base has no such tensor: measure task vectors from the candidates' mean
            base_weights[name] = torch.stack([w[name].float() for w in weights]).mean(0)
        base32 = {k: base_weights[k].float() for k in weights[0]}
        deltas = [{k: w[k].float() - base32[k] for k in base32} for w in weights]
        roles = {name: tensor_role(name) for name in base32}
        config = AutoConfig.from_pretrained(candidate_dirs[0], trust_remote_code=False)
        return cls(base_dir, candidate_dirs, list(names), config, base32, deltas, roles, filled)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def num_candidates(self) -> int:
        return len(self.deltas)

    @property
    def num_slots(self) -> int:
        """Per-layer recipe values: embeddings, each encoder layer, head."""
        return self.num_layers + 2

    def candidate(self, i: int, name: str) -> torch.Tensor:
        return self.base[name] + self.deltas[i][name]

    def magnitude_index(self, i: int, name: str) -> MagnitudeIndex:
        key = (i, name)
        if key not in self._indexes:
            self._indexes[key] = MagnitudeIndex.build(self.deltas[i][name])
        return self._indexes[key]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.base.values()) * (1 + self.num_candidates)


def _check_mergeable(dirs: list[Path], weights: list[dict[str, torch.Tensor]]) -> None:
    ref_dir, ref = dirs[0], weights[0]
    for d, w in zip(dirs[1:], weights[1:]):
        for name in sorted(set(ref) | set(w)):
            if name not in w or name not in ref:
                present_in, missing_from = (ref_dir, d) if name in ref else (d, ref_dir)
                raise UserError(
                    f"models are not mergeable: tensor {name!r} is in {present_in} but missing from {missing_from}; "
                    "all candidates must share one architecture"
                )
            if w[name].shape != ref[name].shape:
                raise UserError(
                    f"models are not mergeable: tensor {name!r} has shape {tuple(ref[name].shape)} in {ref_dir} "
                    f"but {tuple(w[name].shape)} in {d}; all candidates must share one architecture"
                )


def _check_base(base_dir: Path, base: dict[str, torch.Tensor], ref_dir: Path, ref: dict[str, torch.Tensor]) -> None:
    for name, tensor in base.items():
        if name in ref and tensor.shape != ref[name].shape:
            raise UserError(
                f"base model does not match the candidates: tensor {name!r} has shape {tuple(tensor.shape)} in {base_dir} "
                f"but {tuple(ref[name].shape)} in {ref_dir}; use the encoder the candidates were fine-tuned from"
            )
        _check_finite(name, tensor, base_dir)
    shared = set(base) & set(ref)
    if not shared:
        raise UserError(f"base model {base_dir} shares no tensor names with {ref_dir}; use the encoder the candidates were fine-tuned from")
