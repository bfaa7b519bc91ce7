"""Fitness: honest halves, racing against the front, size and latency of tiny merges."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from engine import Recipe
from engine.merge import write_merged_model
from engine.pool import ModelPool
from fitness.data import build_eval_set
from fitness.evaluator import Evaluator, FitnessSettings, dominated
from synth.policy import load_policy
from trainers.data import Example


def _examples(policy, n_pos=12, n_neg=14):
    return ([Example(f"attack plan number {i}", 1, policy) for i in range(n_pos)]
            + [Example(f"kill the python process {i}", 0, policy) for i in range(n_neg)])


@pytest.fixture(scope="module")
def setup(tiny_pool_dirs):
    base, candidates = tiny_pool_dirs
    pool = ModelPool.load(base, candidates)
    tokenizer = AutoTokenizer.from_pretrained(candidates[0])
    policies = {name: load_policy(name) for name in ("violence_weapons", "prompt_injection")}
    examples = _examples("violence_weapons") + _examples("prompt_injection", 9, 9)
    return pool, tokenizer, build_eval_set(examples, policies, tokenizer, max_length=64, seed=3)


def test_halves_are_disjoint_stratified_and_prefixes_stay_stratified(setup):
    _, _, eval_set = setup
    data = {p.name: p for p in eval_set.policies}["violence_weapons"]
    assert len(data.calibration) + len(data.scoring) == 26
    assert data.calibration.labels.sum() == 6 and data.scoring.labels.sum() == 6
    cal_ids = {tuple(x) for x in data.calibration.features["input_ids"]}
    assert not cal_ids & {tuple(x) for x in data.scoring.features["input_ids"]}
    half = data.prefix(0.5)
    assert 0.3 <= half.scoring.labels.mean() <= 0.7


def test_evaluation_reads_quality_size_and_latency(setup, tmp_path):
    pool, tokenizer, eval_set = setup
    evaluator = Evaluator(pool, eval_set, tokenizer, FitnessSettings(racing=(0.5, 1.0), latency_repeats=2))
    recipe = Recipe(operator="ties", weights=[1, 1, 1], density=0.5, layers=(1,), dtype="float16")
    result = evaluator.evaluate(recipe)
    assert 0.0 <= result.f1 <= 1.0 and set(result.per_policy) == {"violence_weapons", "prompt_injection"}
    assert not result.raced_out and result.forwards == result.full_forwards == eval_set.size
    written = write_merged_model(pool, recipe, tmp_path / "m")
    assert result.size_bytes == (written / "model.safetensors").stat().st_size
    assert result.latency_ms > 0


def test_racing_stops_candidates_the_front_dominates_and_saves_forwards(setup):
    pool, tokenizer, eval_set = setup
    evaluator = Evaluator(pool, eval_set, tokenizer, FitnessSettings(racing=(0.25, 0.5, 1.0), latency_repeats=1))
    unbeatable = [(1.0, 1, 0.0)]  # F1 1 at 1 byte and no latency
    result = evaluator.evaluate(Recipe(operator="linear", weights=[1, 0, 0]), unbeatable)
    assert result.raced_out and result.fraction == 0.25
    assert result.forwards < 0.5 * result.full_forwards


def test_dominance():
    front = [(0.8, 100, 1.0)]
    assert dominated(0.7, 100, 1.0, front)
    assert not dominated(0.8, 100, 1.0, front)  # equal is not dominated
    assert not dominated(0.7, 50, 1.0, front)  # smaller
