"""The model pool: a base encoder and N candidate guards of one architecture, as task vectors.

Loaded once (safetensors only), checked for mergeability, kept in float32 as base + task vectors
(candidate - base), stacked per tensor. Magnitude indexes and row ranks for rank-based
sparsifiers are built lazily, once per tensor, and reused by every recipe. The data statistics the
data-aware merges need (RegMean's Grams, Fisher merging's Fishers) are computed once per pool, on
request, from the calibration half of the fitness data (`compute_statistics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig

from engine.layout import TensorRole, tensor_role
from engine.statistics import calibration_batches, candidate_policies, fisher_statistics, gram_statistics
from fitness.data import EvalSet
from operators.data_aware import TensorStatistics
from operators.registry import StatisticKind
from operators.sparsify import TaskVectorContext
from trainers.guard import check_model_dir
from uniguard.core.assets import resolve_model
from uniguard.core.errors import UserError


def load_safetensors(model_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of a model directory's *.safetensors files."""
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def tensor_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes from the safetensors headers, without reading any weights."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            for key in f.keys():
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def _align_base_names(base: dict[str, torch.Tensor], reference: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
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
class PoolStatistics:
    """Per-candidate data statistics, stacked per tensor like the task vectors (candidate order)."""

    grams: dict[str, torch.Tensor] = field(default_factory=dict)  # a linear layer's "*.weight" -> (N, in, in)
    fishers: dict[str, torch.Tensor] = field(default_factory=dict)  # parameter name -> (N, *shape)
    kinds: frozenset[StatisticKind] = frozenset()  # which kinds have been computed


@dataclass
class ModelPool:
    base_dir: Path
    candidate_dirs: list[Path]
    names: list[str]
    config: PretrainedConfig  # of the first candidate: architecture, labels, layer count
    base: dict[str, torch.Tensor]  # float32
    task_vectors: dict[str, torch.Tensor]  # float32, (N, *shape): candidate - base, stacked per tensor
    roles: dict[str, TensorRole]
    filled_from_candidates: list[str] = field(default_factory=list)  # tensors the base lacked (e.g. the head)
    _contexts: dict[str, TaskVectorContext] = field(default_factory=dict, repr=False)
    data_statistics: PoolStatistics = field(default_factory=PoolStatistics, repr=False)

    @classmethod
    def load(cls, base: str | Path, candidates: list[str | Path], names: list[str] | None = None) -> "ModelPool":
        """Load and check the models; peak memory is the base plus the task vectors plus one tensor."""
        if not candidates:
            raise UserError("a model pool needs at least one candidate model; list them under `models:`")
        base_dir = check_model_dir(resolve_model(str(base)))
        candidate_dirs = [check_model_dir(resolve_model(str(c))) for c in candidates]
        shapes = [tensor_shapes(d) for d in candidate_dirs]
        _check_mergeable(candidate_dirs, shapes)
        base_weights = _align_base_names(load_safetensors(base_dir), shapes[0])
        _check_base(base_dir, base_weights, candidate_dirs[0], shapes[0])
        base32 = {name: base_weights[name].float() if name in base_weights else None for name in shapes[0]}
        del base_weights
        task_vectors = {name: torch.empty((len(candidate_dirs), *shape)) for name, shape in shapes[0].items()}
        for i, d in enumerate(candidate_dirs):
            for file in sorted(d.glob("*.safetensors")):
                with safe_open(file, framework="pt") as f:
                    for name in f.keys():
                        tensor = f.get_tensor(name)
                        _check_finite(name, tensor, d)
                        task_vectors[name][i] = tensor
        filled = sorted(name for name, t in base32.items() if t is None)
        for name in filled:  # the base has no such tensor: measure task vectors from the candidates' mean
            base32[name] = task_vectors[name].mean(0)
        for name, stacked in task_vectors.items():
            stacked.sub_(base32[name])
        roles = {name: tensor_role(name) for name in base32}
        config = AutoConfig.from_pretrained(candidate_dirs[0], trust_remote_code=False)
        return cls(base_dir, candidate_dirs, names or [d.name for d in candidate_dirs], config, base32, task_vectors, roles, filled)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def num_candidates(self) -> int:
        return len(self.candidate_dirs)

    @property
    def num_slots(self) -> int:
        """Per-layer recipe values: embeddings, each encoder layer, head."""
        return self.num_layers + 2

    def candidate(self, i: int, name: str, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.add(self.base[name], self.task_vectors[name][i], out=out)

    def context(self, name: str) -> TaskVectorContext:
        """Magnitude indexes and row ranks of one tensor's task vectors, built on first use."""
        if name not in self._contexts:
            self._contexts[name] = TaskVectorContext(self.task_vectors[name])
        return self._contexts[name]

    def statistics(self, name: str) -> TensorStatistics:
        """One tensor's per-candidate data statistics (None where it has none, e.g. a bias's Gram)."""
        return TensorStatistics(gram=self.data_statistics.grams.get(name), fisher=self.data_statistics.fishers.get(name))

    def missing_statistics(self, kinds: Collection[StatisticKind]) -> list[StatisticKind]:
        return [kind for kind in kinds if kind not in self.data_statistics.kinds]

    def compute_statistics(self, eval_set: EvalSet, tokenizer, kinds: Collection[StatisticKind], batch_size: int = 16) -> None:
        """Compute the `kinds` not computed yet, once per pool: each candidate reads the calibration half
        of `eval_set` for its own policies (the scoring half never: it scores the merges)."""
        missing = self.missing_statistics(kinds)
        if not missing:
            return
        per_candidate = []
        for i, candidate_dir in enumerate(self.candidate_dirs):
            own = candidate_policies(candidate_dir, eval_set)
            model, batches = self.candidate_model(i), calibration_batches(eval_set, own, tokenizer, batch_size)
            per_candidate.append({kind: _STATISTICS[kind](model, batches, self.task_vectors.keys()) for kind in missing})
        stats = self.data_statistics
        stacked = {kind: {name: torch.stack([c[kind][name] for c in per_candidate]) for name in per_candidate[0][kind]}
                   for kind in missing}
        self.data_statistics = PoolStatistics(grams={**stats.grams, **stacked.get("gram", {})},
                                              fishers={**stats.fishers, **stacked.get("fisher", {})},
                                              kinds=stats.kinds | set(missing))

    def candidate_model(self, i: int) -> torch.nn.Module:
        """Candidate `i` as a float32 classifier in eval mode (dropout off), from the pool's own weights."""
        model = AutoModelForSequenceClassification.from_config(self.config).eval()
        model.load_state_dict({name: self.candidate(i, name) for name in self.task_vectors}, strict=True)
        return model


_STATISTICS = {"gram": gram_statistics, "fisher": fisher_statistics}


def _check_finite(name: str, tensor: torch.Tensor, model_dir: Path) -> None:
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise UserError(f"{model_dir}: tensor {name!r} contains NaN or inf values; this checkpoint is corrupt, retrain or re-export it")


def _check_mergeable(dirs: list[Path], shapes: list[dict[str, tuple[int, ...]]]) -> None:
    ref_dir, ref = dirs[0], shapes[0]
    for d, w in zip(dirs[1:], shapes[1:]):
        for name in sorted(set(ref) | set(w)):
            if name not in w or name not in ref:
                present_in, missing_from = (ref_dir, d) if name in ref else (d, ref_dir)
                raise UserError(
                    f"models are not mergeable: tensor {name!r} is in {present_in} but missing from {missing_from}; "
                    "all candidates must share one architecture"
                )
            if w[name] != ref[name]:
                raise UserError(
                    f"models are not mergeable: tensor {name!r} has shape {ref[name]} in {ref_dir} "
                    f"but {w[name]} in {d}; all candidates must share one architecture"
                )


def _check_base(base_dir: Path, base: dict[str, torch.Tensor], ref_dir: Path, ref: dict[str, tuple[int, ...]]) -> None:
    for name, tensor in base.items():
        if name in ref and tuple(tensor.shape) != ref[name]:
            raise UserError(
                f"base model does not match the candidates: tensor {name!r} has shape {tuple(tensor.shape)} in {base_dir} "
                f"but {ref[name]} in {ref_dir}; use the encoder the candidates were fine-tuned from"
            )
        _check_finite(name, tensor, base_dir)
    shared = set(base) & set(ref)
    if not shared:
        raise UserError(f"base model {base_dir} shares no tensor names with {ref_dir}; use the encoder the candidates were fine-tuned from")
