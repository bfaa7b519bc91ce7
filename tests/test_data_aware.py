"""RegMean and Fisher merging end to end on tiny guards: the pool's statistics, the operators, search and export."""

import json
import pickle
from dataclasses import replace

import pytest
import torch
import yaml
from safetensors.torch import load_file

import operators
from engine import Recipe
from engine.config import load_search_config
from engine.merge import merge_state_dict
from engine.pool import ModelPool
from engine.space import SearchSpace, SpaceConfig
from engine.statistics import Batch, calibration_batches, candidate_policies, gram_statistics
from fitness.data import EvalSet, PolicyData
from operators.data_aware import RIDGE, regmean
from uniguard.core.errors import UserError

DATA_AWARE = ("regmean", "fisher")


def _config(tmp_path, pool_dir, operator_names=DATA_AWARE):
    raw = yaml.safe_load(open("experiments/configs/smoke_search.yaml"))
    raw["space"]["operators"] = list(operator_names)
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(raw))
    return load_search_config(tmp_path / "search.yaml", pool_dir=pool_dir)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke pool prepared for a search whose space lists both data-aware operators."""
    from engine.search import prepare
    from experiments.smoke_pool import build_smoke_pool

    root = tmp_path_factory.mktemp("data_aware")
    config = _config(root, build_smoke_pool(root / "pool"))
    return config, prepare(config)


def _tokenizer(pool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(pool.candidate_dirs[0])


class _Projection(torch.nn.Module):
    """Token ids -> fixed 2-d vectors -> one linear layer: its input rows are known by hand."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding.from_pretrained(torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [9.0, 9.0]]))
        self.proj = torch.nn.Linear(2, 3)

    def forward(self, input_ids, attention_mask):
        return self.proj(self.embed(input_ids))


def test_gram_by_hand_excludes_padding():
    # tokens 1, 2 (and 1 again) are data; token 3 sits under a zero attention mask, as padding does
    batch = Batch({"input_ids": torch.tensor([[1, 2], [1, 3]]), "attention_mask": torch.tensor([[1, 1], [1, 0]])},
                  torch.tensor([0, 1]))
    grams = gram_statistics(_Projection(), [batch], {"proj.weight"})
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [1.0, 2.0]])
    assert set(grams) == {"proj.weight"}
    assert torch.allclose(grams["proj.weight"], x.T @ x / 3)  # [[11, 1], [1, 9]] / 3


def test_statistics_cover_every_linear_weight_and_every_parameter(smoke):
    _, setup = smoke
    pool, stats = setup.pool, setup.pool.data_statistics
    n = pool.num_candidates
    linear = {name for name in pool.task_vectors if name.endswith(".weight") and pool.task_vectors[name].dim() == 3
              and "embeddings" not in name}
    assert set(stats.grams) == linear  # q, k, v, attention output, FFN in/out per layer, pooler, classifier
    for name, gram in stats.grams.items():
        width = pool.task_vectors[name].shape[2]
        assert gram.shape == (n, width, width) and torch.allclose(gram, gram.transpose(1, 2))
    assert set(stats.fishers) == set(pool.task_vectors)  # every tensor of a BERT classifier is a parameter
    for name, fisher in stats.fishers.items():
        assert fisher.shape == pool.task_vectors[name].shape and (fisher >= 0).all()
    assert pool.statistics("bert.encoder.layer.0.attention.self.query.bias").gram is None  # biases: no Gram
    shipped = pickle.loads(pickle.dumps(pool))  # as Ray ships the pool to its workers
    name = "bert.encoder.layer.1.output.dense.weight"
    assert torch.equal(shipped.statistics(name).gram, pool.statistics(name).gram)


def test_grams_read_only_the_calibration_half(smoke):
    _, setup = smoke
    swapped = EvalSet([replace(p, scoring=other.scoring) for p, other in
                       zip(setup.eval_set.policies, setup.eval_set.policies[::-1])])
    assert swapped.policies[0].scoring is setup.eval_set.policies[1].scoring  # each policy scored on the other's rows
    recomputed = _fresh_pool(setup.pool)
    recomputed.compute_statistics(swapped, _tokenizer(recomputed), ["gram"], batch_size=16)
    for name, gram in setup.pool.data_statistics.grams.items():
        assert torch.allclose(recomputed.data_statistics.grams[name], gram, atol=1e-6), name
    # and the calibration half does move them
    moved = _fresh_pool(setup.pool)
    half = [PolicyData(p.name, p.scoring, p.calibration) for p in setup.eval_set.policies]
    moved.compute_statistics(EvalSet(half), _tokenizer(moved), ["gram"], batch_size=16)
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    assert not torch.allclose(moved.data_statistics.grams[name], setup.pool.data_statistics.grams[name])


def _fresh_pool(pool: ModelPool) -> ModelPool:
    return ModelPool.load(pool.base_dir, pool.candidate_dirs, pool.names)


def test_each_candidate_sees_its_own_policies_and_a_multitask_guard_all(smoke, tmp_path):
    _, setup = smoke
    eval_set = setup.eval_set
    names = [p.name for p in eval_set.policies]
    single = tmp_path / "single"
    single.mkdir()
    (single / "uniguard.json").write_text(json.dumps({"policies": [names[1]]}))
    assert candidate_policies(single, eval_set) == [names[1]]
    assert candidate_policies(tmp_path, eval_set) == names  # no metadata: scored on all, sees all
    rows = sum(len(b.labels) for b in calibration_batches(eval_set, [names[1]], _tokenizer(setup.pool), 4))
    assert rows == len(eval_set.policies[1].calibration)


def test_regmean_recipe_is_the_regmean_math_per_linear_weight(smoke):
    _, setup = smoke
    pool = setup.pool
    merged = merge_state_dict(pool, Recipe(operator="regmean", params={"alpha": 0.9}))
    for name, gram in pool.data_statistics.grams.items():
        # the operator's ridge, (r / N) I on each Gram with r = RIDGE x the mean diagonal of sum_i G_i
        gram = gram.double()
        ridge = RIDGE * torch.diagonal(gram.sum(0)).mean() / len(gram)
        expected = regmean(pool.task_vectors[name].double(), gram + ridge * torch.eye(gram.shape[1]), alpha=0.9)
        assert torch.allclose(merged[name], pool.base[name] + expected.float(), atol=1e-5), name
    bias = "bert.encoder.layer.1.output.dense.bias"  # no Gram: the plain average, as the paper does
    assert torch.allclose(merged[bias], pool.base[bias] + pool.task_vectors[bias].mean(0), atol=1e-6)


def test_fisher_recipe_weights_each_entry_by_its_fisher(smoke):
    _, setup = smoke
    pool = setup.pool
    weights = [1.0, 0.5, 0.25]
    merged = merge_state_dict(pool, Recipe(operator="fisher", weights=weights))
    name = "bert.encoder.layer.0.attention.output.dense.weight"
    f = pool.data_statistics.fishers[name].clamp_min(1e-8) * torch.tensor(weights)[:, None, None]
    candidates = torch.stack([pool.candidate(i, name) for i in range(3)])
    assert torch.allclose(merged[name], (f * candidates).sum(0) / f.sum(0), atol=1e-5)


@pytest.mark.parametrize("name", DATA_AWARE)
def test_identical_candidates_merge_to_that_candidate(tiny_pool_dirs, smoke, name):
    base, candidates = tiny_pool_dirs
    pool = ModelPool.load(base, [candidates[0]] * 3)
    _, setup = smoke
    pool.compute_statistics(setup.eval_set.prefix(0.25), _tokenizer(pool), operators.get(name).uses_statistics)
    merged = merge_state_dict(pool, Recipe(operator=name))
    original = load_file(candidates[0] / "model.safetensors")
    for tensor, value in merged.items():
        assert torch.allclose(value, original[tensor], atol=1e-5), tensor


def test_statistics_are_computed_once_per_pool_not_per_recipe(tiny_pool_dirs, smoke, monkeypatch):
    import engine.pool

    calls = []
    for kind, compute in dict(engine.pool._STATISTICS).items():
        monkeypatch.setitem(engine.pool._STATISTICS, kind, lambda *a, _c=compute, _k=kind: calls.append(_k) or _c(*a))
    base, candidates = tiny_pool_dirs
    pool = ModelPool.load(base, candidates)
    data, tokenizer = smoke[1].eval_set.prefix(0.25), _tokenizer(pool)  # a quarter: counting calls needs no more
    for alpha in (0.5, 0.9):
        pool.compute_statistics(data, tokenizer, ["gram"])
        merge_state_dict(pool, Recipe(operator="regmean", params={"alpha": alpha}))
    assert calls == ["gram"] * 3  # one pass per candidate
    pool.compute_statistics(data, tokenizer, ["gram", "fisher"])  # only what is missing
    merge_state_dict(pool, Recipe(operator="fisher", weights=[1.0, 0.2, 0.4]))
    assert calls == ["gram"] * 3 + ["fisher"] * 3


def test_a_pool_without_statistics_refuses_a_data_aware_merge_naming_the_fix(tiny_pool_dirs):
    base, candidates = tiny_pool_dirs
    pool = ModelPool.load(base, candidates)
    with pytest.raises(UserError, match="'regmean'.*Gram matrices.*uniguard export RUN_DIR --point K"):
        merge_state_dict(pool, Recipe(operator="regmean"))
    with pytest.raises(UserError, match="'fisher'.*Fisher"):
        merge_state_dict(pool, Recipe(operator="fisher"))


def test_uniguard_merge_refuses_a_data_aware_recipe_naming_the_fix(tiny_pool_dirs, tmp_path):
    from typer.testing import CliRunner

    from uniguard.cli import app

    base, candidates = tiny_pool_dirs
    config = tmp_path / "merge.yaml"
    config.write_text(yaml.safe_dump({"base_model": str(base), "models": [str(c) for c in candidates],
                                      "recipe": {"operator": "regmean", "params": {"alpha": 0.9}}}))
    result = CliRunner().invoke(app, ["merge", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and isinstance(result.exception, UserError)  # main() prints it, no traceback
    assert "'regmean'" in str(result.exception) and "uniguard export RUN_DIR --point K" in str(result.exception)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_search_space_decodes_to_the_data_aware_operators_and_merges_them(smoke):
    _, setup = smoke
    pool = setup.pool
    space = SearchSpace(SpaceConfig(operators=DATA_AWARE), pool.num_candidates, pool.num_layers)
    assert space.extra_params == {"regmean.alpha": (0.0, 1.0)}  # fisher's only parameter is the weights
    param, seen = space.parametrization(), set()
    for _ in range(12):
        recipe = space.decode(param.sample().value)
        seen.add(recipe.operator)
        assert recipe.operator != "regmean" or ("alpha" in dict(recipe.params) and not recipe.weights)
        assert all(torch.isfinite(t).all() for t in merge_state_dict(pool, recipe).values())
    assert seen == set(DATA_AWARE)
    recipe = Recipe(operator="regmean", params={"alpha": 0.7})
    assert space.decode(space.encode(recipe)) == recipe


def test_a_search_runs_export_reproduces_the_data_aware_merge(smoke, tmp_path):
    from engine.export import export_entry
    from engine.journal import JournalEntry
    from engine.rundir import RunDir

    config, setup = smoke
    config = config.model_copy(update={"fitness": config.fitness.model_copy(update={"threshold_rule": "fpr:0.05"})})
    RunDir(tmp_path / "run").pin(config)
    recipe = Recipe(operator="regmean", params={"alpha": 0.8})
    entry = JournalEntry(hash=recipe.hash, recipe=recipe.to_dict(), f1=0.5, size_bytes=1, latency_ms=1.0,
                         per_policy={"prompt_injection": 0.5, "violence_weapons": 0.5},
                         thresholds={"prompt_injection": 0.5, "violence_weapons": 0.5})
    out = export_entry(tmp_path / "run", entry, tmp_path / "out")  # loads the pool afresh: no statistics yet
    exported = load_file(out / "model.safetensors")
    for name, value in merge_state_dict(setup.pool, recipe).items():
        assert torch.allclose(exported[name], value, atol=1e-6), name
    # the thresholds ship with the rule the search placed them by
    calibration = json.loads((out / "uniguard.json").read_text())["calibration"]
    assert calibration["rule"] == "fpr" and calibration["target_fpr"] == 0.05 and calibration["metric"] == "guard_f1"
    assert "`fpr:0.05` rule" in (out / "README.md").read_text()


@pytest.mark.parametrize("recipe", [Recipe(operator="regmean", params={"alpha": 0.6}), Recipe(operator="fisher", weights=[1.0, 0.3, 0.6])])
def test_merging_into_a_models_parameters_gives_the_same_weights(smoke, recipe):
    """The search merges each recipe into one model's parameters (engine/worker.py): same weights as a fresh merge."""
    pool = smoke[1].pool
    into = {name: torch.zeros_like(t) for name, t in pool.base.items()}
    merge_state_dict(pool, recipe, into=into)
    for name, expected in merge_state_dict(pool, recipe).items():
        assert torch.equal(into[name], expected), name


def test_a_fitness_worker_scores_a_data_aware_recipe(smoke):
    """What each Ray worker does with the pool it was shipped: merge the recipe, score it on the scoring half."""
    from engine.worker import RecipeScorer

    config, setup = smoke
    settings = config.fitness.model_copy(update={"racing": (1.0,), "device": "cpu", "precision": "float32"})
    scorer = RecipeScorer(setup.pool, setup.eval_set, _tokenizer(setup.pool), settings)
    for recipe in (Recipe(operator="regmean"), Recipe(operator="fisher", weights=[1.0, 1.0, 1.0])):
        evaluation = scorer.evaluate(recipe)
        assert 0.0 <= evaluation.f1 <= 1.0 and not evaluation.raced_out
