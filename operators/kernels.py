"""The fused generalised-task-arithmetic kernels (numba).

One pass over memory per merge: each entry is read once from every task vector, kept or dropped by
its candidate's keep rule, weighted, sign-elected and summed, and the result is written once. Eager
torch would make a dozen passes (abs, compare, mask, stack, sign, sum, ...) and be memory-bound
many times over.

`rule_sum` (plain sum) and `rule_elect` (TIES sign election) run every keep rule: a magnitude band,
optionally a random drop with a constant keep probability (DARE) or one that rises with the entry's
magnitude rank (DELLA). Per-model values arrive as tuples, so numba compiles one version per model
count and rule kind, unrolls the model loop and vectorises over entries; the branches of rule kinds
a call does not use are pruned at compile time (threshold-only rules compile without the RNG).

They stay single-threaded: one thread reaches about the single-thread copy rate for threshold rules
(about half of it with a random drop: the RNG is arithmetic), the search already runs one merge per
core, and a parallel loop on a busy core waits for its slowest thread. Measured on one core, 3
models: over 23M entries DARE-TIES 97 ms (1515 ms on the block-wise parallel kernel this replaced);
over 4M entries DELLA 31 ms (252 ms), TIES 7 ms.

No fastmath: the result is exactly the float32 steps as written, on any CPU (with FMA contraction
it would depend on the CPU having FMA). Entry indices in the hot loops are unsigned on purpose:
numba wraps negative indices, and with a signed index whose sign LLVM cannot prove that select
stays in the loop and blocks vectorisation (measured: 4x slower, 32 ms vs 7.8 ms for a 3-model
TIES over 4M entries on one core).

Randomness is counter-based (SplitMix64 of seed, candidate, entry index), so a random drop is
deterministic given the seed and independent of how the work is split.
"""

from __future__ import annotations

import numba as nb
import numpy as np

RANK_SCALE = 65535.0  # row ranks are stored as uint16: rank / (width - 1) * RANK_SCALE
MIN_KEEP_PROBABILITY = 1e-3
RANDOM_SPAN = 2.0**53  # random draws are 53-bit integers; a uniform is draw / RANDOM_SPAN


@nb.njit(inline="always")
def _random_bits(seed: np.uint64, stream: np.uint64, index: np.uint64) -> np.uint64:
    """53 uniform random bits for one entry of one candidate (SplitMix64 of the three)."""
    z = seed * np.uint64(0x9E3779B97F4A7C15) + stream * np.uint64(0xD1B54A32D192ED03) + index
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return z >> np.uint64(11)


@nb.njit(inline="always")
def _uniform(seed: np.uint64, stream: np.uint64, index: np.uint64) -> float:
    return float(_random_bits(seed, stream, index)) * (1.0 / RANDOM_SPAN)


@nb.njit(inline="always")
def _kept(d, e, i, scale, lo, hi, drop, ranked):
    """scale_i * d if d passes candidate i's rule, else 0.

    `drop` is None (threshold rules: the branches below are pruned when the kernel compiles, so no
    RNG runs) or (seed, keep_below): the entry also survives a random drop when its 53 random bits
    fall below keep_below_i (= ceil(p * 2**53): the same draws as `_uniform(...) < p`, compared as
    integers and so vectorised). `ranked` is None or (ranks, prob, slope, rescale) for DELLA, whose
    keep probability p = prob_i + slope_i * rank / RANK_SCALE varies per entry (then keep_below is
    unused): survivors are rescaled by 1 / p, clipped to MIN_KEEP_PROBABILITY; p >= 1 keeps as is."""
    # a select, not a multiply by float masks: fewer vector instructions (12% faster on MiniLM), and
    # the same values (only a dropped entry's zero may now be +0 where the multiply gave -0).
    # float32 casts of per-model values are loop-invariant: LLVM hoists them out of the entry loop.
    m = abs(d)
    keep = (m >= np.float32(lo[i])) & (m < np.float32(hi[i]))
    if drop is None:
        return np.float32(scale[i]) * d if keep else np.float32(0.0)
    seed, keep_below = drop
    if ranked is None:
        keep = keep & (_random_bits(seed, np.uint64(i), e) < keep_below[i])
        return np.float32(scale[i]) * d if keep else np.float32(0.0)
    ranks, prob, slope, rescale = ranked
    p = prob[i] + slope[i] * (ranks[i, e] / RANK_SCALE)
    certain = p >= 1.0
    p = max(p, MIN_KEEP_PROBABILITY)
    keep = keep & (certain | (_uniform(seed, np.uint64(i), e) < p))
    value = d if certain or not rescale else d / p
    return np.float32(scale[i] * value) if keep else np.float32(0.0)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def rule_sum(base, deltas, scale, lo, hi, drop, ranked, total_scale, out):  # pragma: no cover - compiled
    """out = base + total_scale * sum_i scale_i * delta_i * [delta_i passes rule i], all in float32;
    scale, lo, hi: tuples, one value per model; drop, ranked: see `_kept`."""
    for e in range(np.uint64(out.shape[0])):
        total = np.float32(0.0)
        for i in range(len(scale)):
            total += _kept(deltas[i, e], e, i, scale, lo, hi, drop, ranked)
        out[e] = base[e] + total_scale * total


@nb.njit(cache=True, nogil=True, error_model="numpy")
def rule_elect(base, deltas, scale, weights, lo, hi, drop, ranked, by_count, normalize, lam, out):  # pragma: no cover - compiled
    """As `rule_sum`, keeping only values that agree with the elected sign (by summed mass, or by
    count); `normalize` divides by the weight that agreed."""
    one = np.float32(1.0)
    for e in range(np.uint64(out.shape[0])):
        total = np.float32(0.0)
        votes = np.float32(0.0)
        for i in range(len(scale)):
            kept = _kept(deltas[i, e], e, i, scale, lo, hi, drop, ranked)
            total += kept
            votes += np.float32(kept > 0) - np.float32(kept < 0)
        sign = one if (votes if by_count else total) >= 0 else -one
        merged = np.float32(0.0)
        divisor = np.float32(0.0)
        for i in range(len(scale)):  # recomputing kept is cheaper than storing it: it is in registers
            kept = _kept(deltas[i, e], e, i, scale, lo, hi, drop, ranked)
            agrees = kept * sign > 0  # zeros never agree
            merged += kept if agrees else np.float32(0.0)
            divisor += np.float32(weights[i]) if agrees else np.float32(0.0)
        if normalize:
            merged /= divisor if divisor != 0.0 else one
        out[e] = base[e] + lam * merged
