"""Model pool, recipes and merging of tiny guards into loadable Hugging Face directories."""

import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification
from typer.testing import CliRunner

from engine import Recipe
from engine.layout import BlockKind, tensor_role
from engine.merge import merge_state_dict, write_merged_model
from engine.merge_config import load_merge_config, to_mergekit
from engine.pool import ModelPool
from uniguard.cli import app
from uniguard.core.errors import UserError


@pytest.fixture(scope="module")
def pool(tiny_pool_dirs):
    base, candidates = tiny_pool_dirs
    return ModelPool.load(base, candidates)


def _logits(model_dir, input_ids):
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.mark.parametrize("name,kind,layer", [
    ("bert.encoder.layer.3.attention.self.query.weight", BlockKind.attention, 3),
    ("roberta.encoder.layer.0.output.LayerNorm.bias", BlockKind.norm, 0),
    ("distilbert.transformer.layer.5.ffn.lin1.weight", BlockKind.feed_forward, 5),
    ("distilbert.transformer.layer.2.sa_layer_norm.weight", BlockKind.norm, 2),
    ("electra.embeddings_project.weight", BlockKind.embeddings, None),
    ("classifier.out_proj.weight", BlockKind.head, None),
    ("distilbert.embeddings.LayerNorm.weight", BlockKind.norm, None),
])
def test_layout_table_places_bert_family_tensors(name, kind, layer):
    role = tensor_role(name)
    assert (role.kind, role.layer) == (kind, layer)


def test_layout_rejects_unknown_tensors_by_name():
    with pytest.raises(UserError, match="model.layers.0.mlp.up_proj.weight"):
        tensor_role("model.layers.0.mlp.up_proj.weight")


def test_pool_holds_task_vectors_and_layer_roles(pool, tiny_pool_dirs):
    _, candidates = tiny_pool_dirs
    assert pool.num_candidates == 3 and pool.num_layers == 2 and pool.num_slots == 4
    original = load_file(candidates[1] / "model.safetensors")
    name = "bert.encoder.layer.1.intermediate.dense.weight"
    assert torch.allclose(pool.candidate(1, name), original[name], atol=1e-6)
    assert pool.roles[name].slot(pool.num_layers) == 2


def test_recipe_is_canonical_hashable_and_round_trips_yaml():
    a = Recipe(operator="ties", weights=[[1, 1, 1], [1, 1, 1]], density=[0.5, 0.5], params={"lambda_": 1.0})
    b = Recipe(operator="ties", weights=[1.0, 1.0, 1.0], density=0.5, params={"lambda_": 1.0000000001})
    assert a == b and a.hash == b.hash and len({a, b}) == 1
    assert Recipe.from_dict(yaml.safe_load(a.to_yaml())) == a
    assert Recipe(operator="ties", density=0.4).hash != a.hash
    # values the operator ignores do not make a different recipe
    assert Recipe(operator="slerp", density=0.3, params={"t": 0.2}) == Recipe(operator="slerp", params={"t": 0.2})


def test_recipe_errors_name_the_field():
    with pytest.raises(UserError, match="scope"):
        Recipe.from_dict({"operator": "ties", "scope": "mlp"}, "r.yaml")
    with pytest.raises(UserError, match="not global parameters"):
        Recipe.from_dict({"operator": "ties", "params": {"t": 0.5}}, "r.yaml")


def test_recipe_is_checked_against_the_pool(pool):
    with pytest.raises(UserError, match="3 per-layer values for a model with 2 layers"):
        merge_state_dict(pool, Recipe(operator="ties", density=[0.5, 0.4, 0.3]))
    with pytest.raises(UserError, match="layers 0..1"):
        merge_state_dict(pool, Recipe(operator="ties", layers=(0, 5)))
    with pytest.raises(UserError, match="2 values for 3 candidate"):
        merge_state_dict(pool, Recipe(operator="ties", weights=[1, 1]))


def test_one_hot_linear_recipe_reproduces_that_candidate(pool, tiny_pool_dirs, tmp_path):
    _, candidates = tiny_pool_dirs
    out = write_merged_model(pool, Recipe(operator="linear", weights=[0, 1, 0]), tmp_path / "m")
    ids = torch.tensor([[101, 2054, 2003, 1037, 3231, 102]])
    assert torch.allclose(_logits(out, ids), _logits(candidates[1], ids), atol=1e-5)


def test_per_layer_weights_apply_per_slot(pool):
    # slot 0 embeddings from candidate 2, layers 0-1 from candidate 0, head from candidate 1
    recipe = Recipe(operator="linear", weights=[[0, 0, 1], [1, 0, 0], [1, 0, 0], [0, 1, 0]])
    state = merge_state_dict(pool, recipe)
    for name, source in [("bert.embeddings.word_embeddings.weight", 2), ("bert.encoder.layer.1.output.dense.weight", 0),
                         ("classifier.weight", 1)]:
        assert torch.allclose(state[name], pool.candidate(source, name), atol=1e-6)


def test_scope_merges_only_attention_and_takes_the_rest_from_the_anchor(pool):
    state = merge_state_dict(pool, Recipe(operator="linear", weights=[1, 1, 1], scope="attention", anchor=2))
    ffn = "bert.encoder.layer.0.intermediate.dense.weight"
    attention = "bert.encoder.layer.0.attention.self.key.weight"
    assert torch.equal(state[ffn], pool.candidate(2, ffn))
    mean = sum(pool.candidate(i, attention) for i in range(3)) / 3
    assert torch.allclose(state[attention], mean, atol=1e-6)


def test_dropped_layers_give_a_smaller_loadable_model(pool, tmp_path):
    full = write_merged_model(pool, Recipe(operator="ties", weights=[1, 1, 1], density=0.5), tmp_path / "full")
    half = write_merged_model(pool, Recipe(operator="ties", weights=[1, 1, 1], density=0.5, layers=(1,), dtype="float16"),
                              tmp_path / "half")
    model = AutoModelForSequenceClassification.from_pretrained(half)
    assert model.config.num_hidden_layers == 1
    full_state, half_state = load_file(full / "model.safetensors"), load_file(half / "model.safetensors")
    # old layer 1 is new layer 0
    assert torch.allclose(half_state["bert.encoder.layer.0.output.dense.weight"].float(),
                          full_state["bert.encoder.layer.1.output.dense.weight"], atol=1e-2)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    assert (half / "tokenizer.json").is_file() and (half / "uniguard.json").is_file()


def test_same_recipe_same_weights(pool):
    recipe = Recipe(operator="dare_ties", weights=[1, 1, 1], density=0.3, seed=5)
    first, second = merge_state_dict(pool, recipe), merge_state_dict(pool, recipe)
    assert all(torch.equal(first[k], second[k]) for k in first)


def _copy_guard(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_mismatched_models_name_the_tensor_and_both_files(tiny_pool_dirs, tmp_path):
    base, candidates = tiny_pool_dirs
    odd = _copy_guard(candidates[1], tmp_path / "odd")
    state = load_file(odd / "model.safetensors")
    state["classifier.weight"] = torch.zeros(2, 16)
    save_file(state, str(odd / "model.safetensors"))
    with pytest.raises(UserError, match=r"classifier\.weight.*guard_0.*odd"):
        ModelPool.load(base, [candidates[0], odd])


def test_nan_weights_in_a_candidate_are_rejected(tiny_pool_dirs, tmp_path):
    base, candidates = tiny_pool_dirs
    bad = _copy_guard(candidates[0], tmp_path / "nan")
    state = load_file(bad / "model.safetensors")
    state["bert.pooler.dense.bias"][3] = float("nan")
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(UserError, match=r"nan.*bert\.pooler\.dense\.bias.*NaN or inf"):
        ModelPool.load(base, [bad, candidates[1]])


def test_missing_and_pickle_only_model_dirs_are_rejected(tiny_pool_dirs, tmp_path):
    base, candidates = tiny_pool_dirs
    with pytest.raises(UserError, match="not found"):
        ModelPool.load(base, [tmp_path / "nowhere"])
    pickled = _copy_guard(candidates[0], tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(UserError, match="only pickle weights.*never unpickles"):
        ModelPool.load(base, [pickled])


def test_bare_encoder_base_is_aligned_and_the_head_is_measured_from_the_candidates_mean(tiny_pool_dirs, tmp_path):
    _, candidates = tiny_pool_dirs
    bare = tmp_path / "bare"
    bare.mkdir()
    state = load_file(candidates[0] / "model.safetensors")
    save_file({k.removeprefix("bert."): v for k, v in state.items() if k.startswith("bert.") and "pooler" not in k},
              str(bare / "model.safetensors"))
    shutil.copy(candidates[0] / "config.json", bare / "config.json")
    pool = ModelPool.load(bare, candidates)
    assert "classifier.weight" in pool.filled_from_candidates
    head = sum(pool.candidate(i, "classifier.weight") for i in range(3)) / 3
    assert torch.allclose(pool.base["classifier.weight"], head, atol=1e-6)


def _write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_merge_cli_accepts_uniguard_and_mergekit_configs_with_the_same_result(tiny_pool_dirs, tmp_path):
    base, candidates = tiny_pool_dirs
    ours = _write_yaml(tmp_path / "ours.yaml", {
        "base_model": str(base), "models": [str(c) for c in candidates],
        "recipe": {"operator": "ties", "weights": [1.0, 0.5, 0.7], "density": 0.5},
    })
    theirs = _write_yaml(tmp_path / "theirs.yaml", {
        "merge_method": "ties", "base_model": str(base),
        "models": [{"model": str(c), "parameters": {"weight": w, "density": 0.5}} for c, w in zip(candidates, [1.0, 0.5, 0.7])],
        "parameters": {"normalize": True}, "dtype": "float32",
    })
    runner = CliRunner()
    for config, out in ((ours, "a"), (theirs, "b")):
        result = runner.invoke(app, ["merge", str(config), "--out", str(tmp_path / out), "--json"])
        assert result.exit_code == 0, result.output
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_recipe_exports_to_mergekit_only_where_it_can_be_expressed(tiny_pool_dirs, tmp_path):
    base, candidates = tiny_pool_dirs
    config_path = _write_yaml(tmp_path / "c.yaml", {
        "base_model": str(base), "models": [str(c) for c in candidates],
        "recipe": {"operator": "della", "weights": [1, 1, 1], "density": 0.5, "params": {"epsilon": 0.1, "lambda_": 0.9}},
    })
    doc = to_mergekit(load_merge_config(config_path))
    assert doc["merge_method"] == "della" and doc["parameters"]["lambda"] == 0.9
    assert doc["models"][0]["parameters"] == {"weight": 1.0, "density": 0.5, "epsilon": 0.1}
    round_trip = load_merge_config(_write_yaml(tmp_path / "mk.yaml", doc))
    assert round_trip.recipe == load_merge_config(config_path).recipe
    layered = _write_yaml(tmp_path / "l.yaml", {"base_model": str(base), "models": [str(c) for c in candidates],
                                                 "recipe": {"operator": "ties", "layers": [0]}})
    with pytest.raises(UserError, match="layers.*cannot be expressed"):
        to_mergekit(load_merge_config(layered))


def test_merge_cli_reports_bad_configs_without_a_traceback(tmp_path):
    bad = _write_yaml(tmp_path / "bad.yaml", {"merge_method": "passthrough", "models": [{"model": "x"}]})
    result = CliRunner().invoke(app, ["merge", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError) and "passthrough" in str(result.exception)


@pytest.mark.parametrize("recipe", [
    Recipe(operator="ties", weights=[1, 0.5, 0.8], density=0.4, scope="attention", anchor=1),
    Recipe(operator="della", weights=[1, 1, 1], density=0.5, seed=3, dtype="bfloat16"),
    Recipe(operator="linear", weights=[1, 2, 3], layers=(1,), dtype="float16"),  # no `out=`: copied in
])
def test_merging_into_a_models_parameters_gives_the_same_weights(pool, recipe):
    """The search merges into one model's state dict: same values as a fresh merge (rounded through the
    recipe's dtype), written into the parameters' own storage."""
    from engine.merge import merged_config

    model = AutoModelForSequenceClassification.from_config(merged_config(pool, recipe))
    weights = model.state_dict()
    pointers = {name: t.data_ptr() for name, t in weights.items()}
    into = merge_state_dict(pool, recipe, into=weights)
    fresh = merge_state_dict(pool, recipe)
    params = dict(model.named_parameters())
    for name, expected in fresh.items():
        assert into[name].data_ptr() == pointers[name]
        assert torch.equal(into[name], expected.float()), name
        if name in params:
            assert torch.equal(params[name].detach(), expected.float()), name


def test_merging_into_a_wrong_destination_is_refused(pool):
    name = "bert.encoder.layer.0.output.dense.weight"
    weights = {k: v.clone() for k, v in merge_state_dict(pool, Recipe(operator="ties", weights=[1, 1, 1])).items()}
    weights[name] = weights[name].t()  # wrong shape
    with pytest.raises(ValueError, match=name):
        merge_state_dict(pool, Recipe(operator="ties", weights=[1, 1, 1]), into=weights)


def test_a_candidate_as_the_pool_base_has_a_zero_task_vector_and_merges_stay_exact(tiny_pool_dirs, tmp_path):
    # specialists fine-tuned from MultiTaskGuard are measured against it: it is the base and a candidate
    _, candidates = tiny_pool_dirs
    pool = ModelPool.load(candidates[0], candidates)
    assert pool.filled_from_candidates == [] and all(float(t[0].abs().max()) == 0 for t in pool.task_vectors.values())
    ids = torch.tensor([[101, 2054, 2003, 1037, 3231, 102]])
    for i in (0, 2):
        one_hot = [1.0 if j == i else 0.0 for j in range(3)]
        out = write_merged_model(pool, Recipe(operator="linear", weights=one_hot), tmp_path / f"m{i}")
        assert torch.allclose(_logits(out, ids), _logits(candidates[i], ids), atol=1e-5)
    ties = merge_state_dict(pool, Recipe(operator="ties", weights=[1.0, 1.0, 1.0], density=0.5))
    assert all(torch.isfinite(t).all() for t in ties.values())
