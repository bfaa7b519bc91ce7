"""Deployment variants of a search run's Pareto points, on the same front as the merges.

An int8 ONNX export of a merge is smaller and faster than the merge and a little less accurate, so it
belongs on the run's Pareto front. It is measured with the search's own protocol (the run's
validation data, fitness metric and thresholds chosen on the calibration half and read on the
scoring half; size = bytes of the model file the export wrote; latency = fastest of repeated
forwards at the search's latency batch with the search's thread count) and kept in
RUN/variants.jsonl, which `write_front` reads next to the journal.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from engine.journal import Journal
from uniguard.errors import UserError

VARIANTS_FILE = "variants.jsonl"


def load_variants(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / VARIANTS_FILE
    return Journal(path).entries() if path.is_file() else []


def variant_hash(source_hash: str, fmt: str) -> str:
    return f"{source_hash}+{fmt}"


def front_point(run_dir: str | Path, point: int) -> dict:
    """Point `point` of the run's pareto.json (the caller has checked the run has one)."""
    points = json.loads((Path(run_dir) / "pareto.json").read_text())["points"]
    if not 0 <= point < len(points):
        raise UserError(f"--point {point}: the front of {run_dir} has points 0..{len(points) - 1}; see `uniguard pareto {run_dir}`")
    return points[point]


def check_variant_export(run_dir: Path, point: int, fmt: str, quantize: str) -> None:
    """A variant point can only be exported as what was measured: refuse anything else before merging."""
    chosen = front_point(run_dir, point)
    if chosen.get("format") == "onnx-int8" and (fmt, quantize) != ("onnx", "int8"):
        raise UserError(f"--point {point} of {run_dir} is an int8 ONNX variant (of merge {chosen['variant_of']}); "
                        "export it with --format onnx --quantize int8, or export its source merge's point for another format")


def add_variant(run_dir: str | Path, source: dict, guard_dir: str | Path, fmt: str = "onnx-int8") -> dict:
    """Measure the exported `guard_dir` of front point `source` and put it on the run's front."""
    from engine.pareto import write_front

    run_dir = Path(run_dir)
    journal = Journal(run_dir / "journal.jsonl")
    source = journal.get(source.get("variant_of")) or source  # a variant point re-exported: measure against its merge
    store = Journal(run_dir / VARIANTS_FILE)
    entry = store.get(variant_hash(source["hash"], fmt)) or measure_variant(run_dir, source, guard_dir, fmt)
    store.append(entry)
    _use_thresholds(guard_dir, entry["thresholds"])
    write_front(run_dir, journal.entries())
    return entry


def _use_thresholds(guard_dir: str | Path, thresholds: dict[str, float]) -> None:
    """The variant's own calibrated thresholds go with it: int8 scores differ a little from the merge's."""
    from trainers.guard import GUARD_META_FILE
    from uniguard.io import write_json

    meta_file = Path(guard_dir) / GUARD_META_FILE
    write_json(meta_file, {**json.loads(meta_file.read_text()), "thresholds": thresholds})


def measure_variant(run_dir: Path, source: dict, guard_dir: str | Path, fmt: str) -> dict:
    from engine.search import load_search_config
    from fitness.data import build_eval_set
    from fitness.registry import get_metric
    from trainers.data import load_rows, policy_names, resolve_policies
    from trainers.onnx_export import ONNX_FILE, load_guard, score_features

    config = load_search_config(run_dir / "search.yaml")
    settings = config.fitness
    guard = load_guard(guard_dir, threads=settings.threads)
    examples = load_rows(config.data.validation)
    names = list(config.data.policies) or policy_names(examples)
    eval_set = build_eval_set(examples, resolve_policies(names, names), guard.tokenizer, settings.max_length or guard.max_length, settings.seed)
    metric = get_metric(settings.metric)
    results = {}
    for data in eval_set.policies:
        calibration = score_features(guard, data.calibration.features, settings.batch_size)
        scoring = score_features(guard, data.scoring.features, settings.batch_size)
        results[data.name] = metric(data.calibration.labels, calibration, data.scoring.labels, scoring)
    per_policy = {name: r.value for name, r in results.items()}
    return {
        "hash": variant_hash(source["hash"], fmt), "variant_of": source["hash"], "format": fmt,
        "label": f"{source.get('label') or source['hash'][:8]} {fmt}", "recipe": source["recipe"],
        "f1": float(np.mean(list(per_policy.values()))), "per_policy": per_policy,
        "thresholds": {name: r.threshold for name, r in results.items()},
        "size_bytes": (Path(guard_dir) / ONNX_FILE).stat().st_size,
        "latency_ms": _latency_ms(guard, eval_set.policies[0].scoring.features, settings.latency_batch, settings.latency_repeats),
        "forwards": eval_set.size, "full_forwards": eval_set.size, "raced_out": False,
    }


def _latency_ms(guard, features: dict, batch: int, repeats: int) -> float:
    """Milliseconds per example, fastest of `repeats` (the least disturbed by other load), as the search times merges."""
    from trainers.onnx_export import score_features

    sample = {k: v[:batch] for k, v in features.items()}
    n = len(sample["input_ids"])
    score_features(guard, sample, batch)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        score_features(guard, sample, batch)
        times.append(time.perf_counter() - started)
    return 1000 * min(times) / n
