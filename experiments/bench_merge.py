"""Merge benchmark: TIES at density 0.5 over the offline MiniLM classifier family (base + 3).

Prints, from one run on this machine:
  * uniguard per-recipe merge in memory (pool loaded and indexed once, as the search uses it), both
    into one model's parameters reused across recipes (what the search does) and into new tensors;
  * uniguard whole process (`uniguard merge CONFIG --out DIR`) and mergekit whole process
    (`mergekit-yaml CONFIG DIR`) on the same YAML;
  * the memory-bandwidth bound: the bytes a merge must move (read base + 3 task vectors, write
    the result) at the copy bandwidth numpy reaches here (one thread, as the merge uses);
  * the same ratio in process CPU time, which other jobs on a shared machine distort less;
  * peak memory of the in-memory merge against the inputs' size.
Goals (DESIGN.md / issue 2): in-memory merge <= 2x the bound, >= 50x faster than mergekit per recipe,
peak memory <= 2x the inputs.

    python -m experiments.bench_merge [--work DIR] [--repeats 5]
    python -m experiments.bench_merge --tiny --work NEW_DIR --repeats 1   # code-path check, seconds

Also timed, per recipe into the search's model and for the first merge (which builds the pool's
caches): DARE-TIES, DELLA, and the spectral / depth-scaled operators TSV, Iso-C, Iso-CTS, LiNeS
(their per-recipe costs are listed at OTHER_OPERATORS).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def build_family(work: Path, tiny: bool = False) -> tuple[Path, list[Path]]:
    """MiniLM as a 2-label classifier (base) and 3 candidates = base + seeded task vectors.
    Merge cost does not depend on how candidates were trained, only on their size. `tiny`: the
    tests' 2-layer, 32-wide BERT instead, to check the script's code path in seconds (numbers meaningless)."""
    from transformers import AutoModelForSequenceClassification

    from experiments.smoke_pool import perturbed, save_tiny_guard, tiny_classifier
    from uniguard.core.assets import default_base_model_dir

    base_dir, candidates = work / "base", [work / f"guard_{i}" for i in range(3)]
    if all((d / "model.safetensors").is_file() for d in [base_dir, *candidates]):
        return base_dir, candidates
    import torch

    torch.manual_seed(0)
    base = (tiny_classifier(seed=0) if tiny else
            AutoModelForSequenceClassification.from_pretrained(default_base_model_dir(), num_labels=2).eval())
    save_tiny_guard(base, base_dir)
    for i, d in enumerate(candidates):
        save_tiny_guard(perturbed(base, seed=i + 1, scale=0.01), d)
    return base_dir, candidates


def write_config(work: Path, base: Path, candidates: list[Path]) -> Path:
    config = {
        "merge_method": "ties",
        "base_model": str(base),
        "models": [{"model": str(c), "parameters": {"weight": 1.0, "density": 0.5}} for c in candidates],
        "parameters": {"normalize": True},
        "dtype": "float32",
    }
    path = work / "ties.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _recipe(operator: str, **fields):
    from engine import Recipe

    return Recipe(operator=operator, **fields)


# name -> the r-th recipe timed for it: each differs from the last, so per-recipe work is not cached away.
# Per-recipe cost, beyond what the pool caches once (each task's SVD of each matrix for TSV):
#   dare_ties, della: one fused pass over memory (the RNG is the arithmetic);
#   tsv (new weights, same rank): one m x Nk x n matmul per matrix (the polar factors are cached per rank;
#     a new rank costs two SVDs of the concatenated bases per matrix);
#   iso_c (new weights): one SVD of the weighted sum per matrix (lambda alone reuses it);
#   iso_cts (new weights): N + 3 SVDs per matrix (sum, residuals, two polar factors);
#   lines (new alpha): the task-arithmetic pass, one scale per layer;
#   regmean (new alpha): one in x in float64 solve per linear weight (the pool sums the candidates'
#     Grams once; computing the Grams is one forward pass per candidate over its calibration rows);
#   fisher (new weights): one pass reading the task vectors and the Fishers (computing the Fishers is
#     a forward and backward pass per calibration batch and candidate, once per pool).
# regmean and fisher are not timed here: they need the pool's statistics from calibration data, and
# this family has none (engine/pool.py ModelPool.compute_statistics).
OTHER_OPERATORS = {
    "dare_ties": lambda r: _recipe("dare_ties", weights=[1, 1, 1], density=0.5, seed=r),
    "della": lambda r: _recipe("della", weights=[1, 1, 1], density=0.5, seed=r),
    "tsv": lambda r: _recipe("tsv", weights=[1.0, 1.0 - 0.05 * r, 0.7]),
    "iso_c": lambda r: _recipe("iso_c", weights=[1.0, 1.0 - 0.05 * r, 0.7]),
    "iso_cts": lambda r: _recipe("iso_cts", weights=[1.0, 1.0 - 0.05 * r, 0.7]),
    "lines": lambda r: _recipe("lines", weights=[1, 1, 1], params={"alpha": 0.2 + 0.05 * r, "beta": 1.0}),
}


def in_memory(base: Path, candidates: list[Path], repeats: int) -> dict:
    """Runs in a fresh process so its peak RSS is the merge's own."""
    import torch

    import operators.kernels  # noqa: F401  (numba import counted in the baseline)
    from engine import Recipe
    from engine.merge import merge_state_dict
    from engine.pool import ModelPool

    from operators.task_arithmetic import generalized_task_arithmetic

    # load the compiled kernel TIES uses here (3 models, sign election), so its JIT memory is in the baseline
    generalized_task_arithmetic(torch.zeros(8), torch.ones(3, 8), [1.0] * 3, consensus="sum", normalize=True)
    copy_buffers = _copy_buffers()  # the bound's own 512 MB, allocated before the baseline so they are not charged to the merge
    rss_before = _current_rss()  # interpreter + torch + numba + kernel, before any model is read
    start = time.perf_counter()
    pool = ModelPool.load(base, candidates)
    loaded = time.perf_counter()
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    first = merge_state_dict(pool, Recipe(operator="ties", weights=[1, 1, 1], density=0.5))  # builds the indexes
    indexed = time.perf_counter()
    tensor_bytes = sum(t.numel() * 4 for t in pool.base.values())
    bytes_moved = tensor_bytes * (pool.num_candidates + 2)  # read base + task vectors, write the result
    del first
    recipes = [Recipe(operator="ties", weights=[1.0, 0.8 + 0.1 * r, 0.6], density=0.5 - 0.01 * r)
               for r in range(repeats)]  # different recipes each time: nothing is cached between them
    fresh = _timed_merges(pool, recipes, bytes_moved, copy_buffers)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the merge's own: base, task vectors, result
    # the search's path: every recipe merged into the same model's parameters (fitness/evaluator.py)
    into = {name: torch.zeros_like(t) for name, t in pool.base.items()}
    in_place = _timed_merges(pool, recipes, bytes_moved, copy_buffers, into=into)
    other_operators, first_merges = {}, {}
    for name, recipe_for in OTHER_OPERATORS.items():  # for the record (the goals are on TIES)
        # the first merge builds what the pool caches for this operator (row ranks, each task's SVD)
        first_merges[name] = _timed(lambda: merge_state_dict(pool, recipe_for(0), into=into))
        other_operators[name] = statistics.median(
            _timed(lambda: merge_state_dict(pool, recipe_for(r + 1), into=into)) for r in range(repeats))
    bounds, cpu_bounds = fresh["bounds"] + in_place["bounds"], fresh["cpu_bounds"] + in_place["cpu_bounds"]
    return {
        "other_operators_into_s": other_operators,
        "other_operators_first_merge_s": first_merges,
        "load_s": loaded - start,
        "first_merge_with_index_build_s": indexed - loaded,
        "merge_s": statistics.median(fresh["times"]),
        "merge_times_s": fresh["times"],
        "merge_into_s": statistics.median(in_place["times"]),
        "bound_s": statistics.median(bounds),
        # CPU seconds of the whole process (every thread): what a loaded machine cannot inflate by
        # descheduling us, though it still shares caches and memory bandwidth
        "merge_cpu_s": statistics.median(fresh["cpu_times"]),
        "merge_into_cpu_s": statistics.median(in_place["cpu_times"]),
        "bound_cpu_s": statistics.median(cpu_bounds),
        "bytes_moved": bytes_moved,
        "model_bytes": tensor_bytes,
        "rss_before_load_bytes": rss_before,
        "peak_rss_bytes": peak_rss,
        "rss_after_load_bytes": rss_loaded,
        "threads": torch.get_num_threads(),
    }


def _timed_merges(pool, recipes, bytes_moved: int, copy_buffers, into=None) -> dict[str, list[float]]:
    """Wall and CPU seconds per merge, each followed by one timed copy for the bound (interleaved, so
    machine load affects both alike)."""
    from engine.merge import merge_state_dict

    timings: dict[str, list[float]] = {"times": [], "cpu_times": [], "bounds": [], "cpu_bounds": []}
    for recipe in recipes:
        t0, c0 = time.perf_counter(), time.process_time()
        state = merge_state_dict(pool, recipe, into=into)
        timings["times"].append(time.perf_counter() - t0)
        timings["cpu_times"].append(time.process_time() - c0)
        del state
        timings["bounds"].append(bytes_moved / copy_bandwidth(*copy_buffers, repeats=1))
        timings["cpu_bounds"].append(bytes_moved / copy_bandwidth(*copy_buffers, repeats=1, clock=time.process_time))
    return timings


def _current_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _copy_buffers(nbytes: int = 256 << 20) -> tuple[np.ndarray, np.ndarray]:
    src = np.ones(nbytes // 4, dtype=np.float32)
    return src, np.zeros_like(src)  # zeros_like touches the pages, so no first-touch faults are timed


def copy_bandwidth(src: np.ndarray, dst: np.ndarray, repeats: int = 5, clock=time.perf_counter) -> float:
    best = min(_timed(lambda: np.copyto(dst, src), clock) for _ in range(repeats))
    return 2 * src.nbytes / best  # bytes read + bytes written per second


def _timed(fn, clock=time.perf_counter) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def whole_process(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "uniguard-bench-merge")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true",
                        help="the tests' tiny BERT in a fresh --work dir, in-memory part only: checks the code path")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    base, candidates = build_family(args.work, tiny=args.tiny)
    if args.child or args.tiny:
        print(json.dumps(in_memory(base, candidates, args.repeats)))
        return

    config = write_config(args.work, base, candidates)
    child = subprocess.run([sys.executable, "-m", "experiments.bench_merge", "--work", str(args.work), "--repeats",
                            str(args.repeats), "--child"], check=True, capture_output=True, text=True)
    mem = json.loads(child.stdout.strip().splitlines()[-1])
    bin_dir = Path(sys.executable).parent
    ours_process = whole_process([str(bin_dir / "uniguard"), "merge", str(config), "--out", str(args.work / "out_uniguard")])
    mergekit_process = whole_process([str(bin_dir / "mergekit-yaml"), str(config), str(args.work / "out_mergekit")])
    bound, bytes_moved = mem["bound_s"], mem["bytes_moved"]
    inputs_bytes = mem["model_bytes"] * (1 + len(candidates))

    rows = [
        ("uniguard merge into the search's model (per recipe)", mem["merge_into_s"]),
        ("uniguard merge into new tensors (per recipe)", mem["merge_s"]),
        *((f"  {name} into the search's model (per recipe)", seconds) for name, seconds in mem["other_operators_into_s"].items()),
        *((f"    {name} first merge incl. the pool's one-time cache", seconds)
          for name, seconds in mem["other_operators_first_merge_s"].items()),
        ("  first merge incl. one-time magnitude index", mem["first_merge_with_index_build_s"]),
        ("  pool load (once)", mem["load_s"]),
        ("uniguard whole process (uniguard merge)", ours_process),
        ("mergekit whole process (mergekit-yaml)", mergekit_process),
        ("bandwidth bound (bytes moved at numpy copy rate)", bound),
    ]
    print(f"TIES density 0.5, MiniLM-L6 classifier family: base + {len(candidates)} candidates, "
          f"{mem['model_bytes'] / 1e6:.1f} MB each (float32), torch threads {mem['threads']}")
    for label, seconds in rows:
        print(f"  {label:<48} {seconds * 1000:9.1f} ms")
    print(f"  copy bandwidth {bytes_moved / bound / 1e9:.2f} GB/s; bytes a merge moves {bytes_moved / 1e6:.0f} MB")
    print("ratios:")
    print(f"  merge into model / bandwidth bound        {mem['merge_into_s'] / bound:7.2f}x   (goal <= 2; both single-threaded)")
    print(f"    same, in process CPU time               {mem['merge_into_cpu_s'] / mem['bound_cpu_s']:7.2f}x   "
          f"({mem['merge_into_cpu_s'] * 1000:.1f} / {mem['bound_cpu_s'] * 1000:.1f} ms; robust to other jobs taking the cores)")
    print(f"  merge into new tensors / bound            {mem['merge_s'] / bound:7.2f}x   "
          f"(CPU time {mem['merge_cpu_s'] / mem['bound_cpu_s']:.2f}x; a fresh allocation's page faults included)")
    print(f"  mergekit process / uniguard per recipe    {mergekit_process / mem['merge_into_s']:7.1f}x   (goal >= 50)")
    print(f"  mergekit process / uniguard process       {mergekit_process / ours_process:7.2f}x")
    merge_memory = mem["peak_rss_bytes"] - mem["rss_before_load_bytes"]
    print(f"  merge peak memory / inputs' size          {merge_memory / inputs_bytes:7.2f}x   (goal <= 2; "
          f"{merge_memory / 1e6:.0f} MB over the {mem['rss_before_load_bytes'] / 1e6:.0f} MB of a process with "
          f"torch loaded; inputs {inputs_bytes / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
