"""Search engine pieces without Ray: space, strategies, journal, Pareto front, fitness racing."""

import json

import numpy as np
import pytest
import yaml

import operators
from engine import Recipe
from engine.config import SearchConfig, load_search_config
from engine.front import front_points, hypervolume, pareto_front
from engine.journal import Journal, JournalEntry
from engine.rundir import RunDir
from engine.search import known_good_recipes
from engine.space import SearchSpace, SpaceConfig
from engine.strategies import StrategyConfig, make_strategy
from fitness.data import EvalSet, Half, PolicyData
from fitness.evaluator import Evaluator, FitnessSettings
from trainers.metrics import best_threshold, binary_metrics
from uniguard.core.errors import UserError


def test_space_is_derived_from_the_operator_registry():
    space = SearchSpace(SpaceConfig(operators=("ties", "della", "slerp")), num_candidates=2, num_layers=4)
    keys = set(space.parametrization().value)
    # every searchable global parameter of every chosen operator, with the registry's search range
    assert {"ties.lambda_", "della.epsilon", "della.lambda_", "slerp.t"} <= keys
    assert space.extra_params["della.epsilon"] == operators.get("della").param("epsilon").search_range
    assert "ties.normalize" not in keys and "della.seed" not in keys  # switches and seeds are not searched


def test_config_can_fix_or_narrow_parameters_and_open_weights_per_layer():
    config = SpaceConfig(operators=("ties",), params={"ties.lambda_": 1.0, "density": [0.3, 0.4]}, weight_groups="per_layer")
    space = SearchSpace(config, num_candidates=3, num_layers=6)
    value = space.parametrization().sample().value
    recipe = space.decode(value)
    assert dict(recipe.params)["lambda_"] == 1.0
    assert np.asarray(value["weights"]).shape == (8, 3)  # embeddings + 6 layers + head
    narrow = SearchSpace(SpaceConfig(operators=("della",), params={"epsilon": [0.01, 0.02]}), 2, 2)
    assert narrow.extra_params["della.epsilon"] == (0.01, 0.02)


def test_encode_then_decode_returns_the_recipe():
    space = SearchSpace(SpaceConfig(operators=("ties", "linear"), layers="search", dtypes=("float32", "float16")), 3, 4)
    recipe = Recipe(operator="ties", weights=[0.2, 0.5, 0.9], density=0.4, params={"lambda_": 1.2}, layers=(0, 2), dtype="float16")
    assert space.decode(space.encode(recipe)) == recipe


def test_searched_layers_never_drop_every_layer():
    space = SearchSpace(SpaceConfig(layers="search"), 2, 3)
    value = dict(space.parametrization().sample().value)
    value["keep"] = np.array([0.1, 0.3, 0.2])
    assert space.decode(value).layers == (1,)


def _synthetic_loss(recipe: Recipe) -> float:
    """A seeded stand-in for -F1: best at weights (1, 0, 0.5), density 0.7, operator ties."""
    weights = np.array(recipe.weights_for(0) or [0.0, 0.0, 0.0])
    density = recipe.density_for(0) if recipe.density_for(0) is not None else 0.0
    penalty = 0.0 if recipe.operator == "ties" else 0.3
    return float(np.abs(weights - [1.0, 0.0, 0.5]).sum() + abs(density - 0.7) + penalty)


@pytest.mark.parametrize("name", ["TwoPointsDE", "CMA", "PSO", "OnePlusOne", "bandit", "random"])
def test_each_strategy_improves_a_seeded_synthetic_objective(name):
    space = SearchSpace(SpaceConfig(operators=("ties", "linear", "task_arithmetic")), num_candidates=3, num_layers=2)
    strategy = make_strategy(StrategyConfig(name=name, seed=1), space, budget=120, workers=1)
    losses = []
    for _ in range(120):
        token, recipe = strategy.ask()
        losses.append(_synthetic_loss(recipe))
        strategy.tell(token, recipe, losses[-1])
    first, last = min(losses[:10]), min(losses)
    assert last < first and last < 0.9 * first, f"{name}: best of first 10 {first:.3f}, best overall {last:.3f}"


def test_strategies_accept_recipes_they_did_not_propose():
    space = SearchSpace(SpaceConfig(operators=("ties", "linear")), 2, 2)
    for name in ("TwoPointsDE", "CMA", "bandit"):
        strategy = make_strategy(StrategyConfig(name=name), space, budget=10, workers=1)
        strategy.tell(None, Recipe(operator="linear", weights=[1.0, 0.0]), -0.8)
        strategy.ask()


def test_meta_optimizers_and_unknown_strategies_are_refused():
    space = SearchSpace(SpaceConfig(), 2, 2)
    with pytest.raises(UserError, match="numpy 2.4"):
        make_strategy(StrategyConfig(name="NGOpt"), space, 10, 1)
    with pytest.raises(UserError, match="unknown strategy 'Evolve'"):
        make_strategy(StrategyConfig(name="Evolve"), space, 10, 1)


def _entry(h, f1, size, latency, raced=False, **extra) -> JournalEntry:
    return JournalEntry(hash=h, recipe={}, f1=f1, size_bytes=size, latency_ms=latency, raced_out=raced, **extra)


def test_journal_tolerates_a_torn_last_line_and_deduplicates(tmp_path):
    path = tmp_path / "journal.jsonl"
    rows = [_entry("a", 0.5, 1, 1.0), _entry("b", 0.6, 1, 1.0), _entry("a", 0.9, 1, 1.0)]
    torn = "".join(json.dumps(r.model_dump()) + "\n" for r in rows) + '{"hash": "c", "f1"'
    path.write_text(torn)
    assert len(Journal(path)) == 2 and path.read_text() == torn  # a reader never rewrites the file
    journal = Journal(path, writable=True)
    assert len(journal) == 2 and journal.get("a").f1 == 0.5
    journal.append(_entry("d", 0.7, 1, 1.0))
    assert [json.loads(line)["hash"] for line in path.read_text().splitlines()] == ["a", "b", "a", "d"]
    assert len(Journal(path)) == 3


def test_a_journal_row_missing_a_field_names_the_file_and_entry(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps(_entry("a", 0.5, 1, 1.0).model_dump()) + "\n" + json.dumps({"hash": "b", "f1": 0.3}) + "\n")
    with pytest.raises(UserError, match=r"(?s)journal\.jsonl: entry 2 is not a journal entry.*size_bytes"):
        Journal(path)


def test_one_writer_per_run_directory(tmp_path):
    run = RunDir(tmp_path)
    with run.writer_lock():
        with pytest.raises(UserError, match="another `uniguard search` is writing"):
            with RunDir(tmp_path).writer_lock():
                pass
    with run.writer_lock():  # released when the first writer ends
        pass


def test_pareto_front_keeps_non_dominated_complete_entries():
    entries = [
        _entry("big_best", 0.9, 100, 2.0),
        _entry("small_ok", 0.8, 50, 1.0),
        _entry("dominated", 0.7, 60, 1.5),
        _entry("raced", 0.99, 10, 0.1, raced=True),  # partial F1 is never on the front
        _entry("fast", 0.6, 100, 0.5),
    ]
    assert [e.hash for e in pareto_front(entries)] == ["small_ok", "fast", "big_best"]


def test_hypervolume_by_hand():
    # one point: F1 0.8 at half size and half latency dominates 0.8 * 0.5 * 0.5 of the unit box
    assert hypervolume([_entry("p", 0.8, 50, 1.0)], size_ref=100, latency_ref=2.0) == pytest.approx(0.2)
    two = [_entry("p", 0.8, 50, 1.0), _entry("q", 0.9, 100, 2.0)]
    assert hypervolume(two, 100, 2.0) == pytest.approx(0.2)  # q at the reference corner adds no volume


def test_search_config_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text(yaml.safe_dump({"pool": {"base": "b", "candidates": ["a"]}, "data": {"validation": "v.jsonl"},
                                   "space": {"operators": ["tie"]}}))
    with pytest.raises(UserError, match="unknown merge operator 'tie'"):
        load_search_config(bad)
    bad.write_text(yaml.safe_dump({"pool": {"base": "b", "candidates": ["a"]}, "data": {"validation": "v.jsonl"},
                                   "fitness": {"racing": [0.5, 0.25]}}))
    with pytest.raises(UserError, match=r"(?s)s\.yaml.*fitness\.racing.*increasing"):
        load_search_config(bad)
    bad.write_text(yaml.safe_dump({"pool": {"base": "b", "candidates": ["x/a", "x/mt"], "multitask": "multitask"},
                                   "data": {"validation": "v.jsonl"}}))
    with pytest.raises(UserError, match=r"(?s)s\.yaml.*pool\.multitask 'multitask' is not a candidate's name.*\['a', 'mt'\]"):
        load_search_config(bad)
    bad.write_text(yaml.safe_dump({"pool": {"base": "b"}, "data": {"validation": "v.jsonl"}}))
    with pytest.raises(UserError, match=r"pool\.candidates"):
        load_search_config(bad)
    with pytest.raises(UserError, match="--pool .*not a directory"):
        load_search_config(tmp_path / "s.yaml", pool_dir=tmp_path / "missing")


def test_known_good_recipes_go_strongest_first():
    """MultiTaskGuard alone and the merges of all candidates lead, so racing can stop the single-policy
    guards (each strong on one policy) against them."""
    pool = {"base": "b", "candidates": ["g/pi", "g/pii", "g/mt"], "multitask": "mt"}
    config = SearchConfig.model_validate({"pool": pool, "data": {"validation": "v.jsonl"}, "space": {"anchor": 2}})
    seeds = known_good_recipes(config, 3)
    assert [label for label, _ in seeds] == ["mt alone (MultiTaskGuard)", "TIES defaults", "uniform average", "pi alone", "pii alone"]
    assert list(seeds[0][1].weights[0]) == [0.0, 0.0, 1.0] and seeds[3][1].anchor == 0
    without = config.model_copy(update={"pool": config.pool.model_copy(update={"multitask": None})})
    assert [label for label, _ in known_good_recipes(without, 3)][:2] == ["TIES defaults", "uniform average"]


def test_one_latency_per_shape_and_scores_held_only_for_the_front(tmp_path):
    from engine.search import _keep_front_scores, _latencies, _shape_latency

    entries = [_entry("a", 0.9, 100, 2.0, shape="6xfloat32"), _entry("b", 0.5, 100, 1.5, shape="6xfloat32"),
               _entry("c", 0.7, 50, 1.0, shape="3xfloat32"), _entry("old", 0.1, 10, 9.0)]  # journal without shapes
    assert _latencies(entries) == {"6xfloat32": 2.0, "3xfloat32": 1.0}  # the first one journaled wins
    late = {"f1": 0.6, "size_bytes": 100, "latency_ms": 1.9, "shape": "6xfloat32", "timings": {"merge_s": 0.1}}
    assert _shape_latency(late, entries) == {**late, "latency_ms": 2.0, "timings": {"merge_s": 0.1, "measured_latency_ms": 1.9}}
    new_shape = {**late, "shape": "2xfloat16"}
    assert _shape_latency(new_shape, entries) == new_shape
    journal = Journal(tmp_path / "journal.jsonl")
    scores = {}
    for e in entries[:2]:
        journal.append(e)
        _keep_front_scores(scores, e.hash, f"scores of {e.hash}", journal)
    journal.append(_entry("d", 0.95, 100, 2.0))
    _keep_front_scores(scores, "d", None, journal)  # a raced-out or replayed point brings no scores
    assert scores == {"b": "scores of b"}  # a left the front (d beats it); b is faster, still on it


def test_search_scores_at_the_guards_own_token_limit_by_default(tmp_path):
    """Without fitness.max_length the search reads instruction + text at the limit the exported merge
    will use (the smallest of the guards', capped at the model's positions), so its thresholds are
    calibrated on what the guard will see."""
    from engine.merge import guards_max_length
    from engine.search import prepare
    from experiments.smoke_pool import TINY_MAX_LENGTH, build_smoke_pool

    pool_dir = build_smoke_pool(tmp_path / "pool")
    raw = yaml.safe_load(open("experiments/configs/smoke_search.yaml"))
    del raw["fitness"]["max_length"]
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(raw))
    config = load_search_config(tmp_path / "search.yaml", pool_dir=pool_dir)
    assert config.fitness.max_length is None

    for name in ("guard_a", "guard_b", "guard_c"):
        meta_file = pool_dir / name / "uniguard.json"
        meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "max_length": 4096}))
    setup = prepare(config)
    assert guards_max_length(setup.pool) == TINY_MAX_LENGTH  # capped at the tiny model's positions
    assert max(_pair_lengths(setup)) > 100  # long pairs stay whole at 128

    meta_file = pool_dir / "guard_b" / "uniguard.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "max_length": 80}))
    assert max(_pair_lengths(prepare(config))) == 80  # the guard with the smallest limit sets it


def _pair_lengths(setup) -> list[int]:
    return [len(ids) for p in setup.eval_set.policies for half in (p.calibration, p.scoring) for ids in half.features["input_ids"]]


def test_a_run_pinned_before_a_setting_existed_still_resumes(tmp_path):
    """Pinned configs compare as configs: a field added later takes its default; a real change is refused."""
    config = SearchConfig.model_validate({"pool": {"base": "b", "candidates": ["a"]}, "data": {"validation": "v.jsonl"}})
    old = config.model_dump(mode="json")
    del old["fitness"]["race_z"]  # as pinned by a uniguard without that setting
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(old))
    RunDir(tmp_path).pin(config)  # resumes
    changed = config.model_copy(update={"fitness": config.fitness.model_copy(update={"race_z": 2.0})})
    with pytest.raises(UserError, match="different config"):
        RunDir(tmp_path).pin(changed)


def test_front_points_tie_within_noise_and_carry_their_standard_error():
    front = [_entry("small", 0.80, 50, 1.0, f1_se=0.02), _entry("mid", 0.82, 80, 1.0, f1_se=0.02),
             _entry("big", 0.95, 100, 1.0, f1_se=0.01), _entry("old", 0.96, 120, 1.0)]  # a journal row without an SE
    points = front_points(front)
    assert [p.ties for p in points] == [[1], [0], [], []]  # 0.02 apart < sqrt(2) * 0.02; 0.13 apart is not
    assert points[0].f1_se == 0.02 and points[3].f1_se is None


def test_complete_evaluations_carry_a_bootstrap_standard_error():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    half = lambda y: Half(y, {"input_ids": [[i] for i in range(len(y))]})  # noqa: E731
    eval_set = EvalSet([PolicyData("p", half(labels), half(labels))])
    noisy = lambda f: np.clip(labels[: len(f["input_ids"])] * 0.6 + rng.random(len(f["input_ids"])) * 0.5, 0, 1)  # noqa: E731
    result = Evaluator(eval_set, FitnessSettings(racing=(1.0,), latency_repeats=1)).evaluate(noisy, 1, "s")
    assert result.f1_se is not None and 0 < result.f1_se < 0.2
    off = Evaluator(eval_set, FitnessSettings(racing=(1.0,), latency_repeats=1, se_replicates=0)).evaluate(noisy, 1, "s")
    assert off.f1_se is None


def test_the_search_places_thresholds_by_its_threshold_rule_and_reads_the_metric_there():
    # calibration: benign scores spread up to 0.8, violating 0.5-0.9; the F1-best threshold sits low, a
    # 10% false-positive target high: the two rules must give different thresholds and different F1
    cal_labels, cal_scores = np.array([0] * 10 + [1] * 10), np.r_[np.linspace(0.0, 0.8, 10), np.linspace(0.5, 0.9, 10)]
    sco_labels, sco_scores = np.array([0] * 10 + [1] * 10), np.r_[np.linspace(0.1, 0.7, 10), np.linspace(0.4, 0.95, 10)]
    by_id = dict(enumerate(np.r_[cal_scores, sco_scores]))
    half = lambda y, start: Half(y, {"input_ids": [[start + i] for i in range(len(y))]})  # noqa: E731
    eval_set = EvalSet([PolicyData("p", half(cal_labels, 0), half(sco_labels, 20))])
    score = lambda f: np.array([by_id[ids[0]] for ids in f["input_ids"]])  # noqa: E731
    results = {}
    for rule in ("f1", "fpr:0.1"):
        settings = FitnessSettings(racing=(1.0,), latency_repeats=1, se_replicates=0, threshold_rule=rule)
        results[rule] = result = Evaluator(eval_set, settings).evaluate(score, 1, "s")
        threshold = best_threshold(cal_labels, cal_scores, rule)[0]
        assert result.thresholds["p"] == pytest.approx(threshold)
        assert result.f1 == pytest.approx(binary_metrics(sco_labels, sco_scores, threshold)["f1"])
    assert results["fpr:0.1"].thresholds["p"] > results["f1"].thresholds["p"]
    assert results["fpr:0.1"].f1 != pytest.approx(results["f1"].f1)
    with pytest.raises(ValueError, match="unknown threshold rule"):
        FitnessSettings(threshold_rule="accuracy")


def test_a_run_pinned_before_threshold_rules_keeps_the_f1_rule_it_ran_with(tmp_path):
    """Its thresholds were placed by F1: export must say so, and resuming under today's default
    (fpr:0.03) would mix two rules in one journal, so it is refused with the setting that resumes it."""
    config = SearchConfig.model_validate({"pool": {"base": "b", "candidates": ["a"]}, "data": {"validation": "v.jsonl"}})
    old = config.model_dump(mode="json")
    del old["fitness"]["threshold_rule"]  # as pinned by a uniguard without that setting
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(old))
    assert config.fitness.threshold_rule == "fpr:0.03" and RunDir(tmp_path).config().fitness.threshold_rule == "f1"
    with pytest.raises(UserError, match="set fitness.threshold_rule: f1 to resume"):
        RunDir(tmp_path).pin(config)
    RunDir(tmp_path).pin(config.model_copy(update={"fitness": config.fitness.model_copy(update={"threshold_rule": "f1"})}))


def test_confirmation_shortfall_is_the_worst_policy_below_the_best_source_alone():
    """Hand-computed: sources A (pii 0.90, pi 0.80) and B (0.70, 0.95) set the reference (0.90, 0.95); a
    merge at (0.92, 0.91) is 0.04 below on its worst policy, A 0.15, B 0.20; a label that is not a source
    alone does not set the reference."""
    from engine.confirm import Confirmation, with_shortfalls

    def candidate(label, pii, pi):
        return Confirmation(hash=label or "merge", label=label, recipe={}, search_f1=0.0, confirm_f1=(pii + pi) / 2,
                            per_policy={"pii": pii, "pi": pi}, thresholds={})

    results = with_shortfalls([candidate(None, 0.92, 0.91), candidate("pii alone", 0.90, 0.80),
                               candidate("multitask alone (MultiTaskGuard)", 0.70, 0.95), candidate("TIES defaults", 0.99, 0.99)])
    assert [round(c.shortfall, 6) for c in results] == [0.04, 0.15, 0.20, -0.04]
    assert with_shortfalls([candidate(None, 0.5, 0.5)])[0].shortfall is None  # no source scored: no reference
