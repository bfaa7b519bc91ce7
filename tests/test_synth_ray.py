"""Fan-out of policies over Ray workers gives the same data as a run in one process."""

from __future__ import annotations

import pytest

from synth.generate import BackendSpec, SynthSettings, run_synthesis
from synth.policy import load_policy
from uniguard.core.io import read_jsonl


@pytest.mark.integration
def test_ray_fan_out_matches_a_single_process_run(tmp_path):
    ray = pytest.importorskip("ray")
    policies = [load_policy("hate_harassment"), load_policy("sexual_content")]
    settings = SynthSettings(n=80, seed=7)
    run_synthesis(policies, BackendSpec("template"), settings, tmp_path / "local")
    try:
        report = run_synthesis(policies, BackendSpec("template"), settings, tmp_path / "ray", address="local")
    finally:
        ray.shutdown()
    assert report["settings"]["address"] == "local"
    for split in ("train", "validation", "test"):
        assert read_jsonl(tmp_path / "ray" / f"{split}.jsonl") == read_jsonl(tmp_path / "local" / f"{split}.jsonl")
