"""Per-candidate data statistics for the data-aware merges (RegMean's Grams, Fisher merging's Fishers).

Computed from a candidate model and the calibration half of the fitness data (never the scoring
half, which would let the merge see the data that scores it); `ModelPool.compute_statistics` runs
them once per pool. Keys are state-dict tensor names: a linear layer's Gram under its `*.weight`,
a parameter's Fisher under its own name. operators/data_aware.py says what each merge does with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fitness.data import EvalSet
from trainers.guard import GUARD_META_FILE
from uniguard.core.io import read_json


@dataclass(frozen=True)
class Batch:
    inputs: dict[str, torch.Tensor]  # padded per batch, with attention_mask
    labels: torch.Tensor


def candidate_policies(candidate_dir: Path, eval_set: EvalSet) -> list[str]:
    """The data's policies a candidate is a guard for, from its uniguard.json: a single-policy guard
    sees its own policy's rows; a MultiTaskGuard, or a guard that names none of these policies (no
    metadata), sees all of them, as the fitness data scores every merge on all of them."""
    meta_file = Path(candidate_dir) / GUARD_META_FILE
    meta = read_json(meta_file, "re-save or retrain that guard") if meta_file.is_file() else {}
    listed = set(meta.get("policies", []))
    names = [p.name for p in eval_set.policies]
    own = [name for name in names if name in listed]
    return own or names


def calibration_batches(eval_set: EvalSet, policies: Collection[str], tokenizer, batch_size: int) -> list[Batch]:
    """The calibration-half rows of `policies` (tokenised with each policy's instruction, as the fitness
    data holds them), length-sorted and padded per batch so padding stays small."""
    ids, types, labels = [], [], []
    for data in eval_set.policies:
        if data.name in policies:
            half = data.calibration
            ids += half.features["input_ids"]
            types += half.features.get("token_type_ids", [None] * len(half))
            labels += half.labels.tolist()
    order = np.argsort([len(row) for row in ids], kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        features = {"input_ids": [ids[i] for i in idx]}
        if types and types[0] is not None:
            features["token_type_ids"] = [types[i] for i in idx]
        padded = tokenizer.pad(features, return_tensors="pt")
        batches.append(Batch(dict(padded), torch.tensor([labels[i] for i in idx])))
    return batches


def gram_statistics(model: torch.nn.Module, batches: Sequence[Batch], names: Collection[str]) -> dict[str, torch.Tensor]:
    """Per nn.Linear whose `*.weight` is in `names`: X^T X / n over the n input rows it saw, a row per
    non-padding token (padding is excluded through the attention mask: its activations are not data),
    or per example where the layer reads one vector per example (pooler, classifier head)."""
    layers = {f"{prefix}.weight": module for prefix, module in model.named_modules()
              if isinstance(module, torch.nn.Linear) and f"{prefix}.weight" in names}
    sums = {name: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for name, m in layers.items()}
    rows = dict.fromkeys(layers, 0)
    mask: list[torch.Tensor] = []  # the current batch's attention mask, for the hooks

    def hook(name):
        def record(_module, args):
            x = args[0]
            if x.dim() == 3 and x.shape[:2] == mask[0].shape:
                x = x[mask[0]]
            x = x.reshape(-1, x.shape[-1]).double()
            sums[name] += x.T @ x
            rows[name] += x.shape[0]
        return record

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in layers.items()]
    try:
        with torch.inference_mode():
            for batch in batches:
                mask[:] = [batch.inputs["attention_mask"].bool()]
                model(**batch.inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: (sums[name] / max(rows[name], 1)).float() for name in layers}


def fisher_statistics(model: torch.nn.Module, batches: Sequence[Batch], names: Collection[str]) -> dict[str, torch.Tensor]:
    """Per parameter in `names`: the diagonal empirical Fisher, the mean over batches of the squared
    gradient of the cross-entropy loss on the labels (dropout off: the Fisher of the model that is merged)."""
    params = {name: p for name, p in model.named_parameters() if name in names and p.is_floating_point()}
    sums = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    for batch in batches:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(**batch.inputs).logits.float(), batch.labels).backward()
        for name, p in params.items():
            if p.grad is not None:
                sums[name] += p.grad.float() ** 2
    model.zero_grad(set_to_none=True)
    return {name: s / max(len(batches), 1) for name, s in sums.items()}
