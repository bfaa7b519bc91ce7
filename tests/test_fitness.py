"""Fitness: honest halves, racing against the front, size and latency of tiny merges."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from engine import Recipe
from engine.merge import write_merged_model
from engine.pool import ModelPool
from fitness.data import EvalSet, Half, PolicyData, build_eval_set
from engine.front import is_dominated
from engine.worker import RecipeScorer
from fitness.evaluator import FitnessSettings
from fitness.racing import Rival, beaten, bootstrap_draws, enough_examples
from fitness.registry import get_metric
from synth.policy import load_policy
from trainers.data import Example
from trainers.guard import encode_pairs


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


def test_other_policies_everyday_rows_join_each_calibration_half_only_and_capped(setup):
    _, tokenizer, _ = setup
    policies = {name: load_policy(name) for name in ("violence_weapons", "prompt_injection")}
    everyday = [Example(f"what a lovely sunny day {i}", 0, "prompt_injection", kind="out_of_domain") for i in range(20)]
    examples = _examples("violence_weapons") + _examples("prompt_injection", 9, 9) + everyday
    data = {p.name: p for p in build_eval_set(examples, policies, tokenizer, max_length=64, seed=3).policies}
    violence, injection = data["violence_weapons"], data["prompt_injection"]
    assert len(violence.scoring) == 13 and violence.scoring.labels.sum() == 6  # the scoring half is its own rows only
    assert len(violence.calibration) == 13 + 7 and violence.calibration.labels.sum() == 6  # + as many everyday rows as its 7 benign
    everyday_ids = {tuple(x) for x in encode_pairs(tokenizer, policies["violence_weapons"].instruction, [e.text for e in everyday], 64)["input_ids"]}
    assert sum(tuple(x) in everyday_ids for x in violence.calibration.features["input_ids"]) == 7
    assert len(injection.calibration) + len(injection.scoring) == 18 + 20  # its own everyday rows are its own data, dealt to both halves
    assert violence.prefix(0.5).calibration.labels.sum() == 3  # racing's prefixes keep the calibration half's label mix
    f1_rule = {p.name: p for p in build_eval_set(examples, policies, tokenizer, max_length=64, seed=3, threshold_rule="f1").policies}
    assert len(f1_rule["violence_weapons"].calibration) == 13  # an F1-best threshold would move with the class mix: none


def test_evaluation_reads_quality_size_and_latency(setup, tmp_path):
    pool, tokenizer, eval_set = setup
    evaluator = RecipeScorer(pool, eval_set, tokenizer, FitnessSettings(racing=(0.5, 1.0), latency_repeats=2))
    recipe = Recipe(operator="ties", weights=[1, 1, 1], density=0.5, layers=(1,), dtype="float16")
    result = evaluator.evaluate(recipe)
    assert 0.0 <= result.f1 <= 1.0 and set(result.per_policy) == {"violence_weapons", "prompt_injection"}
    assert not result.raced_out and result.forwards == result.full_forwards == eval_set.size
    written = write_merged_model(pool, recipe, tmp_path / "m")
    assert result.size_bytes == (written / "model.safetensors").stat().st_size
    assert result.latency_ms > 0


def test_racing_stops_candidates_the_front_dominates_and_saves_forwards(setup):
    pool, tokenizer, eval_set = setup
    # tiny data, so a looser bound: this tests the mechanics; the bound's tests are below
    settings = FitnessSettings(racing=(0.25, 0.5, 1.0), latency_repeats=1, race_min_examples=2, race_z=2.0)
    evaluator = RecipeScorer(pool, eval_set, tokenizer, settings)
    unbeatable = [(1.0, 1, 0.0)]  # F1 1 at 1 byte and no latency
    result = evaluator.evaluate(Recipe(operator="linear", weights=[1, 0, 0]), unbeatable)
    assert result.raced_out and result.fraction == 0.25
    assert result.forwards < 0.5 * result.full_forwards


def test_dominance():
    front = [(0.8, 100, 1.0)]
    assert is_dominated((0.7, 100, 1.0), front)
    assert not is_dominated((0.8, 100, 1.0), front)  # equal is not dominated
    assert not is_dominated((0.7, 50, 1.0), front)  # smaller


def test_complete_evaluations_carry_scores_outside_the_journal_and_reuse_a_known_latency(setup):
    pool, tokenizer, eval_set = setup
    evaluator = RecipeScorer(pool, eval_set, tokenizer, FitnessSettings(racing=(1.0,), latency_repeats=1))
    recipe = Recipe(operator="linear", weights=[1, 1, 0], layers=(0,))
    result = evaluator.evaluate(recipe, latencies={"1xfloat32": 123.0})
    assert result.shape == "1xfloat32" and result.latency_ms == 123.0  # measured by another worker first
    assert [len(cal) + len(sco) for cal, sco in result.scores] == [p.size for p in eval_set.policies]
    assert "scores" not in result.to_dict()


def test_a_bfloat16_scorer_scores_each_new_merge_not_a_stale_copy(setup):
    """A bfloat16 worker reuses one model per shape, each merge written into it: after one recipe, the
    next recipe's scores equal a fresh scorer's for it, differ from the first recipe's, and stay within
    bfloat16 rounding of float32."""
    pool, tokenizer, eval_set = setup
    first, second = Recipe(operator="linear", weights=[1, 0, 0]), Recipe(operator="linear", weights=[0, 0, 1])

    def scores(precision, *recipes):
        scorer = RecipeScorer(pool, eval_set, tokenizer, FitnessSettings(racing=(1.0,), latency_repeats=1, precision=precision))
        results = [scorer.evaluate(r) for r in recipes]
        return [np.concatenate([np.concatenate(halves) for halves in r.scores]) for r in results]

    after_first, reused = scores("bfloat16", first, second)
    (fresh,) = scores("bfloat16", second)
    (exact,) = scores("float32", second)
    np.testing.assert_array_equal(reused, fresh)
    assert np.abs(reused - after_first).max() > 1e-3
    assert np.abs(reused - exact).max() < 0.02


# -- racing bound on synthetic scores (no model) ----------------------------------------------------

def _eval_set(labels_per_policy):
    """An EvalSet of given labels, halves dealt alternately (features unused by the racing bound)."""
    def half(labels):
        return Half(np.asarray(labels), {"input_ids": [[0]] * len(labels)})

    return EvalSet([PolicyData(f"p{i}", half(y[0::2]), half(y[1::2])) for i, y in enumerate(labels_per_policy)])


def _scores_for(eval_set, fn):
    return [(fn(p.calibration.labels), fn(p.scoring.labels)) for p in eval_set.policies]


def _race(eval_set, fraction, mine, front, replicates=200, z=FitnessSettings().race_z):
    prefix = eval_set.prefix(fraction)
    draws = bootstrap_draws(prefix, replicates, seed=0)
    return beaten(get_metric("guard_f1"), prefix, eval_set.size, mine, 100, 1.0, front, draws, z)


def test_paired_racing_stops_a_merge_that_errs_where_the_front_point_does_and_more():
    rng = np.random.default_rng(0)
    eval_set = _eval_set([rng.permutation([0] * 120 + [1] * 80) for _ in range(3)])
    noise = {}

    def rival(labels):  # separates most examples; the same example noise for both models
        key = (len(labels), int(labels.sum()), labels.tobytes())
        noise.setdefault(key, rng.normal(0, 0.35, len(labels)))
        return labels + noise[key]

    def worse(labels):  # the rival's scores with a fifth of the positives pushed down
        s = rival(labels).copy()
        s[np.flatnonzero(labels == 1)[::5]] -= 1.0
        return s

    mine, theirs = _scores_for(eval_set, worse), _scores_for(eval_set, rival)
    full = get_metric("guard_f1")
    rival_f1 = float(np.mean([full(p.calibration.labels, c, p.scoring.labels, s).value
                              for p, (c, s) in zip(eval_set.policies, theirs)]))
    assert _race(eval_set, 0.5, mine, [Rival(rival_f1, 100, 1.0, theirs)])  # paired: stopped at half the data
    assert _race(eval_set, 0.5, mine, [Rival(rival_f1, 100, 1.0)])  # unpaired (journal replay) as well
    assert not _race(eval_set, 0.5, theirs, [Rival(rival_f1, 100, 1.0, theirs)])  # equal is never beaten
    assert not _race(eval_set, 0.5, mine, [Rival(rival_f1, 101, 1.0, theirs)])  # a larger point cannot beat it


def test_racing_rarely_stops_a_candidate_that_is_better_on_the_full_data():
    """The bound's soundness: over random validation sets where the candidate's full-data F1 beats
    the front point's, a stop at a quarter of the data stays rare: about 2.3% expected at 2 standard
    errors, about 0.1% at the default 3."""
    rng = np.random.default_rng(1)
    metric, stopped, trials = get_metric("guard_f1"), {2.0: 0, 3.0: 0}, 0
    while trials < 60:
        eval_set = _eval_set([rng.permutation([0] * 60 + [1] * 40)])
        mine = _scores_for(eval_set, lambda y: y + rng.normal(0, 0.5, len(y)))
        theirs = _scores_for(eval_set, lambda y: y + rng.normal(0, 0.5, len(y)))
        value = lambda s: metric(eval_set.policies[0].calibration.labels, s[0][0], eval_set.policies[0].scoring.labels, s[0][1]).value  # noqa: E731
        if value(mine) < value(theirs):
            continue  # only candidates that would reach the front count
        trials += 1
        for z in stopped:
            stopped[z] += _race(eval_set, 0.25, mine, [Rival(value(theirs), 100, 1.0, theirs)], replicates=100, z=z)
    assert stopped[2.0] <= 6 and stopped[3.0] <= 1


def test_rungs_too_small_for_a_bootstrap_never_stop():
    eval_set = _eval_set([np.array([0, 1] * 20)])
    assert not enough_examples(eval_set.prefix(0.125), 8) and enough_examples(eval_set.prefix(1.0), 8)
