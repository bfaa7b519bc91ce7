"""Spectral and depth-scaled operators (TSV-Merge, Iso-C, Iso-CTS, LiNeS): hand-computed values on
small matrices, their defining properties, the pool's caches, the search space and `uniguard merge`."""

import math

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification
from typer.testing import CliRunner

import operators
from engine import Recipe
from engine.merge import merge_state_dict, merged_config
from engine.pool import ModelPool
from engine.space import SearchSpace, SpaceConfig
from operators.sparsify import TaskVectorContext
from operators.spectral import iso_cts_split, tsv_rank
from uniguard.cli import app
from uniguard.core.errors import UserError

NEW = ["tsv", "iso_c", "iso_cts", "lines"]
C8, S8 = math.cos(math.pi / 8), math.sin(math.pi / 8)


def _merge(name, base, deltas, **params):
    if name == "lines":
        params.setdefault("depth", 0.5)
    return operators.get(name)(base, [base + d for d in deltas], **params)


def _random_deltas(n, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), [0.1 * torch.randn(shape, generator=g) for _ in range(n)]


# -- TSV-Merge --------------------------------------------------------------------------------
def test_tsv_orthogonalises_interfering_task_subspaces_by_hand():
    """Task 1 = 2 e1 e1^T, task 2 = 2 u e2^T with u at 45 degrees to e1. Each keeps k = 2 / 2 = 1
    vector; the polar factor of [e1, u] turns the two columns symmetrically apart, to -22.5 and
    67.5 degrees, and V = [e1, e2] is orthogonal already: merged = U_perp diag(2 w1, 2 w2)."""
    base = torch.zeros(2, 2)
    d1 = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    d2 = torch.tensor([[0.0, math.sqrt(2)], [0.0, math.sqrt(2)]])
    u_perp = torch.tensor([[C8, S8], [-S8, C8]])
    out = _merge("tsv", base, [d1, d2], lambda_=1.0)
    assert torch.allclose(out, 2 * u_perp, atol=1e-5)
    weighted = _merge("tsv", base, [d1, d2], weights=[1.0, 0.5], lambda_=0.5)
    assert torch.allclose(weighted, 0.5 * u_perp @ torch.diag(torch.tensor([2.0, 1.0])), atol=1e-5)
    # task arithmetic would give [[2, 1.41], [0, 1.41]]: TSV removed the shared e1 component of task 2
    assert not torch.allclose(out, d1 + d2, atol=1e-2)


def test_tsv_keeps_each_tasks_top_singular_vectors_and_sums_orthogonal_tasks():
    """3x3, tasks in orthogonal subspaces: task 1 = diag(3, 1, 0), task 2 = 2 e3 e3^T. k = 3 // 2 = 1
    each: task 1 keeps only its top vector (3 e1 e1^T), and orthogonal subspaces add unchanged."""
    base = torch.ones(3, 3)
    d1 = torch.diag(torch.tensor([3.0, 1.0, 0.0]))
    d2 = torch.diag(torch.tensor([0.0, 0.0, 2.0]))
    out = _merge("tsv", base, [d1, d2], lambda_=0.5)
    assert torch.allclose(out, base + 0.5 * torch.diag(torch.tensor([3.0, 0.0, 2.0])), atol=1e-5)


def test_tsv_of_one_task_at_full_rank_is_task_arithmetic():
    base, (delta,) = _random_deltas(1, (5, 3))
    out = _merge("tsv", base, [delta], rank=1.0, lambda_=0.7)
    assert torch.allclose(out, base + 0.7 * delta, atol=1e-5)


def test_tsv_of_identical_tasks_is_their_top_k_truncation():
    """Three copies at weight 1: the concatenated bases are rank k, their polar factor is taken on
    that range ((1/sqrt 3) [u u u]), and the merge is the candidate's own top-k (k = 4 // 3 = 1)
    truncation, once, not three times: TSV adds only what the tasks do not share."""
    base, (delta,) = _random_deltas(1, (6, 4), seed=8)
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    k = tsv_rank((6, 4), 3, 1.0)
    out = _merge("tsv", base, [delta] * 3, weights=[1.0] * 3)
    assert k == 1 and torch.allclose(out, base + (u[:, :k] * s[:k]) @ vh[:k], atol=1e-5)


def test_spectral_merges_of_zero_task_vectors_are_the_base():
    base = torch.randn(5, 3, generator=torch.Generator().manual_seed(9))
    for name in ("tsv", "iso_c", "iso_cts"):
        assert torch.equal(_merge(name, base, [torch.zeros(5, 3)] * 2), base), name


def test_tsv_rank_counts():
    assert tsv_rank((384, 1536), 3, 1.0) == 128
    assert tsv_rank((30, 40), 1, 0.3) == 9  # not 8: 0.3 * 30 is 8.999... in floating point
    assert tsv_rank((2, 384), 3, 1.0) == 1  # at least one vector per task


# -- Iso-C and Iso-CTS ------------------------------------------------------------------------
def test_iso_c_flattens_the_spectrum_of_the_sum_by_hand():
    """diag(3, 0) + diag(0, 1) = diag(3, 1): singular values 3 and 1, mean 2, so 2 I (times lambda)."""
    base = torch.zeros(2, 2)
    out = _merge("iso_c", base, [torch.diag(torch.tensor([3.0, 0.0])), torch.diag(torch.tensor([0.0, 1.0]))], lambda_=0.5)
    assert torch.allclose(out, torch.eye(2), atol=1e-6)


def test_iso_cts_keeps_common_and_task_specific_directions_by_hand():
    """4x4, two tasks, common = 0.5: k = 2 common directions, s = 1 per task. The sum diag(8, 2, 1, 1.2)
    gives the common e1, e2; task 1's residual diag(0, 0, 1, 0.5) keeps e3 (1), task 2's
    diag(0, 0, 0, 0.7) keeps e4 (0.7), dropping task 1's 0.5 on e4: mean(8, 2, 1, 0.7) I.
    Iso-C flattens the whole sum instead: mean(8, 2, 1, 1.2) I."""
    base = torch.zeros(4, 4)
    d1 = torch.diag(torch.tensor([5.0, 0.0, 1.0, 0.5]))
    d2 = torch.diag(torch.tensor([3.0, 2.0, 0.0, 0.7]))
    assert iso_cts_split(4, 2, 0.5) == (2, 1)
    cts = _merge("iso_cts", base, [d1, d2], common=0.5, lambda_=1.0)
    assert torch.allclose(cts, (11.7 / 4) * torch.eye(4), atol=1e-5)
    assert torch.allclose(_merge("iso_c", base, [d1, d2], lambda_=1.0), (12.2 / 4) * torch.eye(4), atol=1e-5)


@pytest.mark.parametrize("name,params", [("iso_c", {}), ("iso_cts", {"common": 0.6})])
def test_isotropic_merges_have_equal_singular_values(name, params):
    base, deltas = _random_deltas(3, (12, 7), seed=3)
    sv = torch.linalg.svdvals(_merge(name, base, deltas, lambda_=1.3, **params) - base)
    assert sv.min() > 0 and torch.allclose(sv, sv.mean().expand_as(sv), rtol=1e-4)


def test_iso_cts_with_the_whole_rank_common_is_iso_c():
    base, deltas = _random_deltas(3, (6, 9), seed=4)
    assert iso_cts_split(6, 3, 1.0) == (6, 0)
    assert torch.allclose(_merge("iso_cts", base, deltas, common=1.0), _merge("iso_c", base, deltas), atol=1e-6)


def test_iso_cts_split_gives_the_common_subspace_what_the_even_split_leaves():
    assert iso_cts_split(384, 3, 0.8) == (309, 25)  # 384 - 307 = 77 -> 25 per task, 2 more common
    assert iso_cts_split(2, 3, 0.8) == (2, 0)  # a 2-label head: fewer directions than tasks


# -- LiNeS ------------------------------------------------------------------------------------
def test_lines_scales_the_first_layer_by_alpha_and_the_last_by_beta():
    base = torch.tensor([1.0, -1.0])
    deltas = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])]
    for depth, scale in ((0.0, 0.2), (1.0, 1.4), (0.5, 0.8)):
        out = _merge("lines", base, deltas, weights=[1.0, 0.5], alpha=0.2, beta=1.4, depth=depth)
        assert torch.allclose(out, base + scale * torch.tensor([1.0, 1.0])), depth


def test_lines_needs_a_depth():
    with pytest.raises(UserError, match="depth"):
        operators.get("lines")(torch.zeros(2), [torch.ones(2)])


# -- every new operator ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NEW)
def test_one_dimensional_tensors_fall_back_to_the_average_or_sum_of_task_vectors(name):
    base, deltas = torch.tensor([1.0, 2.0, 3.0]), [torch.tensor([1.0, 0.0, 2.0]), torch.tensor([3.0, 4.0, 0.0])]
    if name == "lines":  # LiNeS is task arithmetic everywhere: the sum, scaled by depth
        expected = base + 1.0 * (deltas[0] + deltas[1])
        out = _merge(name, base, deltas, alpha=1.0, beta=1.0)
    else:  # the papers average non-matrix tensors
        expected = base + 0.5 * (deltas[0] + deltas[1]) / 2
        out = _merge(name, base, deltas, lambda_=0.5)
    assert torch.allclose(out, expected)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_new_operators_are_deterministic_and_keep_shape_and_dtype(name, dtype):
    base, deltas = _random_deltas(3, (9, 5), seed=5)
    base, deltas = base.to(dtype), [d.to(dtype) for d in deltas]
    first, second = _merge(name, base, deltas), _merge(name, base, deltas)
    assert first.shape == base.shape and first.dtype == dtype
    assert torch.equal(first, second) and torch.isfinite(first.float()).all()


def test_iso_c_leaves_an_already_isotropic_task_vector_unchanged():
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(6)))
    base = torch.zeros(5, 5)
    assert torch.allclose(_merge("iso_c", base, [0.3 * q]), 0.3 * q, atol=1e-6)


def test_the_pool_context_caches_svds_so_weights_and_lambda_cost_no_svd(monkeypatch):
    base, deltas = _random_deltas(3, (10, 8), seed=7)
    context = TaskVectorContext(torch.stack(deltas))
    stacked = context.deltas
    calls = []
    svd = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda *a, **k: calls.append(1) or svd(*a, **k))
    tsv, iso_c = operators.get("tsv"), operators.get("iso_c")
    first = tsv.apply(base, stacked, tsv.validate(3, {}), context=context)
    assert len(calls) == 3  # the tasks' SVD (batched) and two polar factors
    again = tsv.apply(base, stacked, tsv.validate(3, {"weights": [0.2, 1.0, 0.5], "lambda_": 0.8}), context=context)
    assert len(calls) == 3 and not torch.equal(first, again)
    tsv.apply(base, stacked, tsv.validate(3, {"rank": 0.5}), context=context)
    assert len(calls) == 5  # a new rank: two new polar factors, the tasks' SVD reused
    iso_c.apply(base, stacked, iso_c.validate(3, {}), context=context)
    iso_c.apply(base, stacked, iso_c.validate(3, {"lambda_": 0.6}), context=context)
    assert len(calls) == 6
    fresh = tsv(base, [base + d for d in deltas], weights=[0.2, 1.0, 0.5], lambda_=0.8)  # no context: same values
    assert torch.allclose(fresh, again, atol=1e-6)


# -- the engine: pool merges, search space, CLI ------------------------------------------------
@pytest.fixture(scope="module")
def pool(tiny_pool_dirs):
    base, candidates = tiny_pool_dirs
    return ModelPool.load(base, candidates)


def test_lines_recipe_is_task_arithmetic_with_per_slot_weights_scaled_by_depth(pool):
    """The tiny pool has 2 layers: embeddings and layer 0 at depth 0 (alpha), layer 1 and head at 1 (beta)."""
    w = [1.0, 0.5, 0.7]
    lines = merge_state_dict(pool, Recipe(operator="lines", weights=w, params={"alpha": 0.3, "beta": 1.2}))
    per_slot = [[0.3 * x for x in w]] * 2 + [[1.2 * x for x in w]] * 2
    ta = merge_state_dict(pool, Recipe(operator="task_arithmetic", weights=per_slot))
    assert lines.keys() == ta.keys()
    for name in lines:
        assert torch.allclose(lines[name], ta[name], atol=1e-6), name


@pytest.mark.parametrize("recipe", [
    Recipe(operator="tsv", weights=[1, 0.5, 0.8], params={"rank": 0.5, "lambda_": 0.9}),
    Recipe(operator="iso_c", weights=[1, 1, 1], dtype="bfloat16"),
    Recipe(operator="iso_cts", weights=[1, 0.5, 1], params={"common": 0.7}, scope="attention", anchor=1),
    Recipe(operator="lines", weights=[1, 1, 1], layers=(1,), dtype="float16"),
])
def test_merging_new_operators_into_a_models_parameters_gives_the_same_weights(pool, recipe):
    model = AutoModelForSequenceClassification.from_config(merged_config(pool, recipe))
    into = merge_state_dict(pool, recipe, into=model.state_dict())
    fresh = merge_state_dict(pool, recipe)
    for name, expected in fresh.items():
        assert torch.equal(into[name], expected.float()), name


def test_search_space_includes_the_new_operators_and_their_parameters(pool):
    space = SearchSpace(SpaceConfig(operators=tuple(NEW)), pool.num_candidates, pool.num_layers)
    assert {"tsv.rank", "tsv.lambda_", "iso_c.lambda_", "iso_cts.common", "iso_cts.lambda_", "lines.alpha",
            "lines.beta"} <= set(space.extra_params)
    param = space.parametrization()
    seen = set()
    for _ in range(24):
        recipe = space.decode(param.sample().value)
        seen.add(recipe.operator)
        merged = merge_state_dict(pool, recipe)
        assert all(torch.isfinite(t.float()).all() for t in merged.values())
    assert seen == set(NEW)


@pytest.mark.parametrize("name,params", [("tsv", {"rank": 0.5}), ("iso_c", {}), ("iso_cts", {"common": 0.8}),
                                         ("lines", {"alpha": 0.4, "beta": 1.1})])
def test_uniguard_merge_with_each_new_operator_writes_a_loadable_model(tiny_pool_dirs, tmp_path, name, params):
    base, candidates = tiny_pool_dirs
    config = tmp_path / "merge.yaml"
    config.write_text(yaml.safe_dump({"base_model": str(base), "models": [str(c) for c in candidates],
                                      "recipe": {"operator": name, "weights": [1.0, 0.6, 0.8], "params": params}}))
    result = CliRunner().invoke(app, ["merge", str(config), "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[101, 2023, 2003, 102]])).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()
    weights = load_file(tmp_path / "out" / "model.safetensors")
    assert any(not torch.equal(weights[k], v) for k, v in load_file(candidates[0] / "model.safetensors").items())


# -- data-aware math (the registered operators' end to end tests: tests/test_data_aware.py) -------
def test_regmean_by_hand():
    from operators.data_aware import regmean

    # diagonal Grams: each input dimension is a Gram-weighted average of the columns
    w = torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]]])
    grams = torch.stack([torch.diag(torch.tensor([1.0, 3.0])), torch.diag(torch.tensor([3.0, 1.0]))])
    assert torch.allclose(regmean(w, grams, alpha=1.0), torch.tensor([[2.5, 0.5]]))
    # a coupled Gram: (sum W_i G_i)(sum G_i)^-1 = [3, 3] [[3, 1], [1, 3]]^-1 = [0.75, 0.75]
    w = torch.tensor([[[1.0, 1.0]], [[0.0, 0.0]]])
    grams = torch.stack([torch.tensor([[2.0, 1.0], [1.0, 2.0]]), torch.eye(2)])
    assert torch.allclose(regmean(w, grams, alpha=1.0), torch.tensor([[0.75, 0.75]]))
    # alpha = 0 drops the coupling: per dimension, 2 * 1 / (2 + 1)
    assert torch.allclose(regmean(w, grams, alpha=0.0), torch.tensor([[2 / 3, 2 / 3]]))


def test_regmean_minimises_the_summed_regression_error_and_averages_under_equal_grams():
    from operators.data_aware import regmean

    g = torch.Generator().manual_seed(10)
    w = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    xs = [torch.randn(20, 5, generator=g, dtype=torch.float64) for _ in range(3)]
    grams = torch.stack([x.T @ x for x in xs])
    merged = regmean(w, grams, alpha=1.0)
    gradient = sum((merged - w[i]) @ grams[i] for i in range(3))  # d/dW of sum_i ||X_i (W - W_i)^T||^2 / 2
    assert gradient.abs().max() < 1e-9
    same = regmean(w, grams[:1].expand(3, 5, 5), alpha=0.5)
    assert torch.allclose(same, w.mean(0))


def test_fisher_merge_by_hand():
    from operators.data_aware import fisher_merge

    tensors = torch.tensor([[1.0, 2.0, 5.0], [3.0, 4.0, 7.0]])
    fishers = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    # entry 0: equal Fisher -> mean; entry 1: only model 2 counts; entry 2: no Fisher -> weighted mean
    assert torch.allclose(fisher_merge(tensors, fishers), torch.tensor([2.0, 4.0, 6.0]))
    assert torch.allclose(fisher_merge(tensors, fishers, model_weights=[3.0, 1.0]), torch.tensor([1.5, 4.0, 5.5]))


def test_data_aware_merges_are_registered_and_declare_the_statistics_they_need():
    assert operators.get("regmean").uses_statistics == ("gram",)
    assert operators.get("fisher").uses_statistics == ("fisher",)
    assert operators.get("regmean").param("alpha").default == 0.9
    with pytest.raises(UserError, match="pass statistics="):
        operators.get("regmean")(torch.zeros(2, 2), [torch.ones(2, 2)] * 2)


def test_an_svd_lapack_cannot_converge_on_falls_back_to_gesvd_and_still_factorises(monkeypatch):
    from operators import spectral

    def fails(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")

    torch.manual_seed(0)
    single, stack = torch.randn(7, 5), torch.randn(3, 4, 6)
    expected = [torch.linalg.svd(a, full_matrices=False) for a in (single, stack)]
    monkeypatch.setattr(spectral.torch.linalg, "svd", fails)
    for a, (_, s_ref, _) in zip((single, stack), expected):
        u, s, vh = spectral.svd(a)
        assert u.dtype == a.dtype and u.shape[:-1] == a.shape[:-1] and vh.shape[-1] == a.shape[-1]
        assert torch.allclose(s, s_ref, atol=1e-5)
        assert torch.allclose(u @ torch.diag_embed(s) @ vh, a, atol=1e-5)
    # an operator that runs through it merges as before
    merged = spectral.isotropic(single)
    assert torch.isfinite(merged).all()
