"""Deployment variants of a search run's Pareto points, on the same front as the merges.

An int8 ONNX export of a merge is smaller and faster than the merge and a little less accurate, so it
belongs on the run's Pareto front. It is measured by the search's own protocol (`fitness.Evaluator`
on the run's validation data, with the run's metric, thresholds chosen on the calibration half and
read on the scoring half, and the same latency rule); size = bytes of the model file the export
wrote. Variants are kept in RUN/variants.jsonl, which the front is drawn over with the journal.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.front import FrontPoint
from engine.journal import JournalEntry
from engine.rundir import RunDir
from uniguard.core.errors import UserError


def variant_hash(source_hash: str, fmt: str) -> str:
    return f"{source_hash}+{fmt}"


def check_variant_export(run: RunDir, point: int, fmt: str, quantize: str) -> None:
    """A variant point can only be exported as what was measured: refuse anything else before merging."""
    chosen = run.point(point)
    if chosen.format == "onnx-int8" and (fmt, quantize) != ("onnx", "int8"):
        raise UserError(f"--point {point} of {run.path} is an int8 ONNX variant (of merge {chosen.variant_of}); "
                        "export it with --format onnx --quantize int8, or export its source merge's point for another format")


def add_variant(run: RunDir, source: FrontPoint, guard_dir: str | Path, fmt: str = "onnx-int8") -> JournalEntry:
    """Measure the exported `guard_dir` of front point `source` and put it on the run's front."""
    journal = run.journal()
    merge = journal.get(source.variant_of) or journal.get(source.hash)  # a re-exported variant: measure against its merge
    if merge is None:
        raise UserError(f"{run.journal_file}: has no entry {source.hash}; the front is out of date, "
                        f"rewrite it with `uniguard pareto {run.path}`")
    store = run.variants(writable=True)
    entry = store.get(variant_hash(merge.hash, fmt)) or measure_variant(run, merge, guard_dir, fmt)
    store.append(entry)
    _use_thresholds(guard_dir, entry.thresholds)
    run.write_front(journal.entries())
    return entry


def _use_thresholds(guard_dir: str | Path, thresholds: dict[str, float]) -> None:
    """The variant's own calibrated thresholds go with it: int8 scores differ a little from the merge's."""
    from trainers.guard import GUARD_META_FILE
    from uniguard.core.io import write_json

    meta_file = Path(guard_dir) / GUARD_META_FILE
    write_json(meta_file, {**json.loads(meta_file.read_text()), "thresholds": thresholds})


def measure_variant(run: RunDir, source: JournalEntry, guard_dir: str | Path, fmt: str) -> JournalEntry:
    from fitness.data import build_eval_set
    from fitness.evaluator import Evaluator
    from trainers.data import load_rows, policy_names, resolve_policies
    from trainers.compute import resolve_compute
    from trainers.onnx import ONNX_FILE
    from trainers.runtime import load_guard

    config = run.config()
    settings = config.fitness
    guard = load_guard(guard_dir, threads=settings.threads, compute=resolve_compute(settings.device, settings.precision))
    examples = load_rows(config.data.validation)
    names = list(config.data.policies) or policy_names(examples)
    eval_set = build_eval_set(examples, resolve_policies(names, names), guard.tokenizer, settings.max_length or guard.max_length, settings.seed,
                              settings.threshold_rule)
    full = settings.model_copy(update={"racing": (1.0,)})  # a variant is measured on all the data
    result = Evaluator(eval_set, full).evaluate(lambda f: guard.score_features(f, settings.batch_size),
                                                (Path(guard_dir) / ONNX_FILE).stat().st_size, f"{source.shape}+{fmt}")
    return JournalEntry(hash=variant_hash(source.hash, fmt), variant_of=source.hash, format=fmt,
                        label=f"{source.label or source.hash[:8]} {fmt}", recipe=source.recipe,
                        **result.to_dict())
