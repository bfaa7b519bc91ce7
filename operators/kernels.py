"""The fused generalised-task-arithmetic kernel (numba).

One pass over memory per merge: for each entry, every candidate's task-vector value is read once,
kept or dropped by its candidate's keep rule, weighted, sign-elected and summed in registers, and
the result is written once. Eager torch would make a dozen passes (abs, compare, mask, stack,
sign, sum, ...) and be memory-bound many times over.

Randomness is counter-based (SplitMix64 of seed, candidate, entry index), so a random drop is
deterministic given the seed and independent of thread count and chunking.
"""

from __future__ import annotations

import numba as nb
import numpy as np

CONSENSUS_NONE, CONSENSUS_SUM, CONSENSUS_COUNT = 0, 1, 2
RANK_SCALE = 65535.0  # row ranks are stored as uint16: rank / (width - 1) * RANK_SCALE
MIN_KEEP_PROBABILITY = 1e-3
_CHUNK = 16384  # entries per parallel work item; 16k x 4 candidates x 4 B stays in L2


@nb.njit(inline="always")
def _uniform(seed: np.uint64, stream: np.uint64, index: np.uint64) -> float:
    z = seed * np.uint64(0x9E3779B97F4A7C15) + stream * np.uint64(0xD1B54A32D192ED03) + index
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@nb.njit(parallel=True, cache=True, nogil=True)
def gta_kernel(base, deltas, weights, lo, hi, prob, prob_slope, ranks, use_ranks, rescale, seed, consensus,
               normalize, lam, out):  # pragma: no cover - compiled
    """out = base + lam * combine_i(weights_i * keep_i(deltas_i)), see `generalized_task_arithmetic`."""
    n_models, n = deltas.shape
    weight_sum = 0.0
    for i in range(n_models):
        weight_sum += weights[i]
    if abs(weight_sum) < 1e-8:
        weight_sum = 1.0
    useed = np.uint64(seed)
    for chunk in nb.prange((n + _CHUNK - 1) // _CHUNK):
        kept = np.empty(n_models, np.float64)
        for e in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            total = 0.0
            votes = 0.0
            for i in range(n_models):
                d = np.float64(deltas[i, e])
                x = 0.0
                m = abs(d)
                if m >= lo[i] and m < hi[i]:
                    p = prob[i]
                    if use_ranks:
                        p += prob_slope[i] * (ranks[i, e] / RANK_SCALE)
                    if p >= 1.0:
                        x = d
                    else:
                        p = max(p, MIN_KEEP_PROBABILITY)
                        if _uniform(useed, np.uint64(i), np.uint64(e)) < p:
                            x = d / p if rescale else d
                x *= weights[i]
                kept[i] = x
                total += x
                if x > 0:
                    votes += 1.0
                elif x < 0:
                    votes -= 1.0
            if consensus == CONSENSUS_NONE:
                merged = total
                divisor = weight_sum
            else:
                sign = 1.0 if (total if consensus == CONSENSUS_SUM else votes) >= 0 else -1.0
                merged = 0.0
                divisor = 0.0
                for i in range(n_models):
                    if kept[i] * sign > 0:
                        merged += kept[i]
                        divisor += weights[i]
                if divisor == 0.0:
                    divisor = 1.0
            if normalize:
                merged /= divisor
            out[e] = base[e] + lam * merged
