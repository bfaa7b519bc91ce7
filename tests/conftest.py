"""Shared fixtures: tiny random guards built in memory (2 layers, 32 wide), in seconds."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_pool_dirs(tmp_path_factory):
    """A base and three candidate guards (base + seeded task vectors), as guard directories."""
    from experiments.smoke_pool import perturbed, save_tiny_guard, tiny_classifier

    root = tmp_path_factory.mktemp("tiny_pool")
    base = tiny_classifier(seed=0)
    base_dir = save_tiny_guard(base, root / "base")
    candidates = [save_tiny_guard(perturbed(base, seed=i + 1), root / f"guard_{i}") for i in range(3)]
    return base_dir, candidates
