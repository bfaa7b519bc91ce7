"""Merge operators on small tensors: hand-computed values and defining properties."""

import sys
import textwrap

import pytest
import torch

import operators
from operators import registry
from operators.data_aware import TensorStatistics
from operators.sparsify import MagnitudeIndex, magnitude_band, magnitude_topk, random_drop, ranked_random_drop
from operators.task_arithmetic import generalized_task_arithmetic, sparsified
from uniguard.core.errors import UserError

SEEDED = ["dare_linear", "dare_ties", "della", "della_linear"]
DENSITY_OPS = ["ties", "breadcrumbs", "breadcrumbs_ties", *SEEDED]


def _triple(seed=0, shape=(16, 24)):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g)
    return base, [base + 0.1 * torch.randn(shape, generator=g) for _ in range(3)]


def test_registry_lists_every_required_operator():
    required = {"linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties",
                "della", "della_linear", "slerp", "karcher", "model_stock"}
    assert required <= set(operators.available())


def test_linear_is_the_normalised_weighted_average():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([5.0, -2.0])
    out = operators.get("linear")(None, [a, b], weights=[1.0, 3.0])
    assert torch.allclose(out, torch.tensor([4.0, -1.0]))


def test_task_arithmetic_scales_weighted_task_vectors_by_lambda():
    base = torch.tensor([1.0, 1.0])
    a, b = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 3.0])  # deltas (1, 0) and (0, 2)
    out = operators.get("task_arithmetic")(base, [a, b], weights=[2.0, 0.5], lambda_=0.5)
    assert torch.allclose(out, torch.tensor([1.0 + 0.5 * 2.0, 1.0 + 0.5 * 1.0]))


def test_ties_trims_elects_and_averages_agreeing_entries():
    base = torch.zeros(4)
    a = torch.tensor([3.0, -1.0, 0.1, 2.0])
    b = torch.tensor([1.0, 2.0, -0.2, -4.0])
    # density 0.5: a keeps {3, 2}, b keeps {2, -4}. Signs: e0 +, e1 + (only b), e3: 2 - 4 < 0 -> minus.
    out = operators.get("ties")(base, [a, b], weights=[1.0, 1.0], density=0.5)
    assert torch.allclose(out, torch.tensor([3.0, 2.0, 0.0, -4.0]))


def test_breadcrumbs_keeps_a_magnitude_band():
    delta = torch.arange(1.0, 11.0)  # magnitudes 1..10
    kept = sparsified(delta, magnitude_band(MagnitudeIndex.build(delta), density=0.5, gamma=0.1))
    # drop the top 10% (10) and the bottom 40%
    assert kept.nonzero().flatten().tolist() == [4, 5, 6, 7, 8]


def test_magnitude_topk_keeps_exactly_the_density_fraction():
    delta = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    index = MagnitudeIndex.build(delta)
    for density in (0.01, 0.2, 0.5, 0.731):
        kept = sparsified(delta, magnitude_topk(index, density))
        assert int((kept != 0).sum()) == int(density * 1000)
        assert kept.abs().max() == delta.abs().max()


def test_large_tensor_index_resolves_densities_to_table_steps():
    delta = torch.randn(300, 200, generator=torch.Generator().manual_seed(2))  # 60k entries: table mode
    index = MagnitudeIndex.build(delta)
    assert len(index.table) == 1000
    for density in (0.1, 0.5, 0.9):  # three decimals: exact counts
        assert int((sparsified(delta, magnitude_topk(index, density)) != 0).sum()) == int(density * delta.numel())
    kept = int((sparsified(delta, magnitude_topk(index, 0.12345)) != 0).sum())
    assert int(0.123 * 60000) <= kept <= int(0.12345 * 60000)


def test_slerp_endpoints_and_norm_preserving_midpoint():
    a = torch.tensor([1.0, 0.0])
    b = torch.tensor([0.0, 1.0])
    op = operators.get("slerp")
    assert torch.allclose(op(None, [a, b], t=0.0), a)
    assert torch.allclose(op(None, [a, b], t=1.0), b)
    mid = op(None, [a, b], t=0.5)
    assert torch.allclose(mid, torch.tensor([2**-0.5, 2**-0.5]))  # on the circle, unlike lerp


def test_karcher_of_two_equals_slerp_midpoint():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    out = operators.get("karcher")(None, [a, b], weights=[1.0, 1.0], max_iter=50, tol=1e-9)
    assert torch.allclose(out, operators.get("slerp")(None, [a, b], t=0.5), atol=1e-5)


def test_model_stock_orthogonal_task_vectors_fall_back_to_base_and_parallel_to_average():
    base = torch.zeros(2)
    orthogonal = operators.get("model_stock")(base, [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])])
    assert torch.allclose(orthogonal, base)  # cos = 0 -> t = 0
    parallel = operators.get("model_stock")(base, [torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])])
    assert torch.allclose(parallel, torch.tensor([1.5, 1.5]))  # cos = 1 -> t = 1, the average


# the spectral merges reshape the spectrum by definition (tests/test_operators_new.py checks them)
@pytest.mark.parametrize("name", sorted(set(operators.available()) - {"slerp", "tsv", "iso_c", "iso_cts"}))
def test_identical_candidates_merge_to_themselves(name):
    base, (cand, *_) = _triple()
    n = 3
    op = operators.get(name)
    params = {p.name: p.default for p in op.params if not p.per_model}
    if op.uses_depth:  # LiNeS: scale 1 at every depth
        params.update(alpha=1.0, beta=1.0, depth=0.5)
    if op.uses_statistics:  # RegMean, Fisher: any statistics (each candidate its own)
        x = torch.randn(3, 40, cand.shape[1], generator=torch.Generator().manual_seed(1))
        params["statistics"] = TensorStatistics(gram=x.transpose(1, 2) @ x / 40, fisher=torch.rand(3, *cand.shape))
    if "weights" in {p.name for p in op.params}:
        params["weights"] = [1.0 / n] * n  # unnormalised operators sum weighted task vectors
    if "density" in params:
        params["density"] = 1.0
    out = op(base, [cand] * n, **params)
    assert torch.allclose(out, cand, atol=1e-5)


@pytest.mark.parametrize("name", DENSITY_OPS)
def test_density_one_disables_sparsification(name):
    base, cands = _triple(3)
    op = operators.get(name)
    out = op(base, cands, weights=[0.5, 0.3, 0.2], density=1.0)
    consensus = "ties" in name or name == "della"
    normalize = op.param("normalize").default
    reference = generalized_task_arithmetic(
        base, [c - base for c in cands], [0.5, 0.3, 0.2], consensus="sum" if consensus else None, normalize=normalize
    )
    assert torch.allclose(out, reference, atol=1e-6)


@pytest.mark.parametrize("name", SEEDED)
def test_random_operators_are_deterministic_given_seed(name):
    base, cands = _triple(4)
    op = operators.get(name)
    first = op(base, cands, density=0.4, seed=7)
    assert torch.equal(first, op(base, cands, density=0.4, seed=7))
    assert not torch.equal(first, op(base, cands, density=0.4, seed=8))


def test_dare_rescale_preserves_the_task_vector_in_expectation():
    base, cands = _triple(5, shape=(200, 200))
    ta = operators.get("task_arithmetic")(base, cands, weights=[1, 1, 1])
    draws, density = 20, 0.3
    dare = torch.stack([
        operators.get("dare_linear")(base, cands, weights=[1, 1, 1], density=density, seed=s) for s in range(draws)
    ]).mean(0)
    rel = float((dare - ta).norm() / (ta - base).norm())
    # Unbiased drop-and-rescale: the mean of S draws misses by sqrt((1/p - 1) / S) relative
    # (independent task vectors); without the 1/p rescale it would be biased, off by 1 - p = 0.7.
    expected = ((1 / density - 1) / draws) ** 0.5
    assert abs(rel - expected) < 0.15 * expected


def test_della_keep_probability_rises_with_magnitude_rank():
    delta = torch.arange(1.0, 1001.0).reshape(1, -1)
    rule = ranked_random_drop(0.5, 0.4)
    kept = torch.stack([sparsified(delta, rule, rescale=False, seed=s) != 0 for s in range(50)]).float().mean(0)[0]
    assert kept[:100].mean() < 0.2 and kept[-100:].mean() > 0.8 and abs(kept.mean() - 0.5) < 0.05


def test_dare_drop_is_bernoulli_with_rescale():
    delta = torch.ones(100_000)
    out = sparsified(delta, random_drop(0.3), seed=3)
    assert abs(float((out != 0).float().mean()) - 0.3) < 0.01
    assert torch.allclose(out[out != 0], torch.full_like(out[out != 0], 1 / 0.3))


def _splitmix_uniform(seed: int, stream: int, n: int):
    """The kernels' counter-based draws, recomputed in numpy: SplitMix64 of (seed, candidate, entry)."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(stream) * np.uint64(0xD1B54A32D192ED03)
        z = z + np.arange(n, dtype=np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return ((z ^ (z >> np.uint64(31))) >> np.uint64(11)).astype(np.float64) / 2.0**53


@pytest.mark.parametrize("name,consensus,normalize", [("dare", None, False), ("dare", "sum", True), ("della", "count", False),
                                                      ("della", "sum", True)])
def test_random_drops_match_a_numpy_reference(name, consensus, normalize):
    """The kernel's DARE / DELLA against the definition, in float64 numpy with the same draws: entry e of
    candidate i survives when u(seed, i, e) < p (p per entry from its magnitude rank for DELLA), is
    rescaled by 1 / p, weighted, sign-elected and summed."""
    import numpy as np

    from operators.kernels import RANK_SCALE
    from operators.sparsify import TaskVectorContext

    g = torch.Generator().manual_seed(4)
    base, deltas, weights = torch.randn(40, 251, generator=g), 0.01 * torch.randn(3, 40, 251, generator=g), [1.0, -0.7, 0.6]
    context = TaskVectorContext(deltas)
    rule = random_drop(0.3) if name == "dare" else ranked_random_drop(0.3, 0.2)
    merged = generalized_task_arithmetic(base, deltas, weights, rules=[rule] * 3, consensus=consensus, normalize=normalize,
                                         lambda_=1.3, seed=11, context=context).numpy().reshape(-1)
    d = deltas.double().numpy().reshape(3, -1)
    p = rule.prob + rule.prob_slope * context.ranks.reshape(3, -1).numpy() / RANK_SCALE
    kept = np.stack([np.where(_splitmix_uniform(11, i, d.shape[1]) < p[i], d[i] / p[i], 0.0) for i in range(3)])
    kept *= np.array(weights)[:, None]
    if consensus is None:
        combined = kept.sum(0) / (sum(weights) if normalize else 1.0)
    else:
        sign = np.where((kept.sum(0) if consensus == "sum" else np.sign(kept).sum(0)) >= 0, 1.0, -1.0)
        agree = kept * sign > 0
        combined = (kept * agree).sum(0)
        if normalize:
            divisor = (agree * np.array(weights)[:, None]).sum(0)
            combined = combined / np.where(divisor != 0, divisor, 1.0)
    expected = base.double().numpy().reshape(-1) + 1.3 * combined
    assert np.abs(merged - expected).max() < 1e-5
    assert 0.2 < np.mean(kept != 0) < 0.4  # the drop did happen at about the density


def test_unknown_operator_and_bad_parameters_are_user_errors():
    base, cands = _triple()
    with pytest.raises(UserError, match="unknown merge operator 'tie'.*available"):
        operators.get("tie")
    with pytest.raises(UserError, match="unknown parameter.*densty"):
        operators.get("ties")(base, cands, densty=0.5)
    with pytest.raises(UserError, match="density.*outside its range"):
        operators.get("ties")(base, cands, density=1.5)
    with pytest.raises(UserError, match="2 values for 3 candidate models"):
        operators.get("ties")(base, cands, weights=[1, 1])
    with pytest.raises(UserError, match="must be finite"):
        operators.get("linear")(None, cands, weights=[1, float("nan"), 1])
    with pytest.raises(UserError, match="exactly 2"):
        operators.get("slerp")(None, cands)
    with pytest.raises(UserError, match="needs a base"):
        operators.get("ties")(None, cands)


def test_decorator_registers_a_typed_operator_for_the_search_space():
    @operators.merge_operator("test_scaled_mean", params=[operators.Param("scale", float, default=1.0, low=0, high=2)],
                              inputs="weights", needs_base=False)
    def scaled_mean(base, tensors, *, scale):
        return torch.stack(tensors).mean(0) * scale

    try:
        op = operators.get("test_scaled_mean")
        assert op.param("scale").high == 2
        out = op(None, [torch.ones(2), 3 * torch.ones(2)], scale=0.5)
        assert torch.allclose(out, torch.ones(2))
    finally:
        registry._REGISTRY.pop("test_scaled_mean")


def test_third_party_operators_load_from_entry_points(tmp_path, monkeypatch):
    (tmp_path / "my_ops.py").write_text(textwrap.dedent('''
        import operators
        @operators.merge_operator("plugin_first", inputs="weights", needs_base=False)
        def first(base, tensors):
            return tensors[0]
    '''))
    dist = tmp_path / "my_ops-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-ops\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[uniguard.operators]\nfirst = my_ops\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    try:
        assert "plugin_first" in operators.available()
        assert torch.equal(operators.get("plugin_first")(None, [torch.ones(1)]), torch.ones(1))
    finally:
        registry._REGISTRY.pop("plugin_first", None)
        sys.modules.pop("my_ops", None)
