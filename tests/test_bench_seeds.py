"""The soup of experiments/bench_seeds.py: the candidates' mean weights, calibrated like a trained guard."""

import numpy as np
import torch

from engine.pool import load_safetensors
from experiments.bench_seeds import soup
from trainers.data import Example, resolve_policies
from trainers.training import make_config


def test_the_soup_averages_the_guards_and_places_a_threshold_per_policy(tiny_pool_dirs):
    _, candidates = tiny_pool_dirs
    validation = [Example(text=f"message number {i} about {'weapons' if i % 2 else 'gardening'}", label=i % 2, policy=policy)
                  for policy in ("violence_weapons", "self_harm") for i in range(12)]
    config = make_config(kind="multitask", threshold_rule="fpr:0.1")  # max_length None, as the benchmark trains
    merged = soup(candidates, validation, resolve_policies(["violence_weapons", "self_harm"]), config)
    weights = [load_safetensors(c) for c in candidates]
    for name, tensor in merged.model.state_dict().items():
        assert torch.allclose(tensor, sum(w[name].float() for w in weights) / len(weights), atol=1e-6), name
    assert sorted(merged.thresholds) == ["self_harm", "violence_weapons"]
    assert all(np.isfinite(t) for t in merged.thresholds.values())
