"""`uniguard export`: a guard directory, or a Pareto point of a search run, as an HF or ONNX guard."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from engine.front import FrontPoint
from engine.journal import JournalEntry
from engine.recipe import Recipe
from engine.rundir import RunDir
from trainers.compute import resolve_compute
from trainers.guard import GUARD_META_FILE
from trainers.metrics import parse_threshold_rule
from trainers.model_card import render_card
from trainers.onnx import Quantization, export_guard_dir, export_onnx, write_export_dir
from uniguard.core.errors import UserError
from uniguard.core.io import atomic_write_text, write_json


def export_guard(source: str | Path, out_dir: str | Path, fmt: str = "hf", quantize: Quantization = "none",
                 point: int | None = None) -> Path:
    """A guard dir to HF or ONNX, an fp32 ONNX dir to int8, or a search run's Pareto point to either."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_dir():
        raise UserError(f"{source}: directory not found; pass a guard directory, an ONNX guard directory or a search run directory")
    if RunDir(source).front_file.is_file():
        return _export_run_point(RunDir(source), out_dir, fmt, quantize, point)
    if point is not None:
        raise UserError(f"--point: {source} is a guard directory, not a search run (no pareto.json); drop --point")
    return export_guard_dir(source, out_dir, fmt, quantize)


def _export_run_point(run: RunDir, out_dir: Path, fmt: str, quantize: Quantization, point: int | None) -> Path:
    if point is None:
        raise UserError(f"{run.path}: is a search run; choose a Pareto point with --point K (see {run.front_file})")
    if quantize == "int8" and fmt == "hf":
        raise UserError("--quantize int8 needs --format onnx (int8 weights run on onnxruntime, not in a safetensors guard)")
    if fmt == "hf":
        return write_export_dir(out_dir, lambda tmp: export_point(run.path, point, tmp))
    if out_dir.exists() and any(out_dir.iterdir()):  # refuse before spending a merge on it
        raise UserError(f"{out_dir}: already exists and is not empty; choose a new --out directory or remove it first")
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(export_point(run.path, point, Path(tmp) / "hf"))
        return export_onnx(hf_dir, out_dir, quantize)


def export_point(run_dir: str | Path, point: int, out_dir: str | Path) -> Path:
    """Merge the recipe of Pareto point `point` and write it with its calibrated thresholds."""
    return export_entry(run_dir, RunDir(run_dir).point(point), out_dir)


def export_entry(run_dir: str | Path, entry: JournalEntry | FrontPoint, out_dir: str | Path, pool=None) -> Path:
    """Merge a journal or front entry's recipe and write it with its calibrated thresholds and card."""
    from engine.merge import write_merged_model
    from engine.pool import ModelPool
    from engine.search import add_statistics

    run, out_dir = RunDir(run_dir), Path(out_dir)
    config = run.config()
    pool = pool or ModelPool.load(config.pool.base, list(config.pool.candidates), config.names)
    recipe = Recipe.from_dict(entry.recipe, f"{run.path} entry {entry.hash}")
    add_statistics(pool, config, [recipe.operator])  # a data-aware merge: the statistics the search merged with
    write_merged_model(pool, recipe, out_dir)
    meta_file = out_dir / GUARD_META_FILE
    meta = json.loads(meta_file.read_text())
    meta.update(thresholds=entry.thresholds, policies=sorted(entry.thresholds), search_run=str(run.path),
                point=getattr(entry, "point", None), label=entry.label,
                calibration={**parse_threshold_rule(config.fitness.threshold_rule).to_dict(), "on": "search calibration half",
                             "metric": config.fitness.metric,
                             "precision": resolve_compute(config.fitness.device, config.fitness.precision).precision})
    write_json(meta_file, meta)
    atomic_write_text(out_dir / "README.md", _model_card(entry, config.names, run.path, config.fitness.threshold_rule))
    return out_dir


def _model_card(entry: JournalEntry | FrontPoint, names: list[str], run_dir: Path, rule: str) -> str:
    point = getattr(entry, "point", None)
    where = f", Pareto point {point}" if point is not None else (f" ({entry.label})" if entry.label else "")
    policies = "\n".join(f"| {name} | {value:.4f} | {entry.thresholds[name]:.4f} |" for name, value in sorted(entry.per_policy.items()))
    intro = f"""A guardrail classifier merged by uniguard's evolutionary search (run `{run_dir}`){where}.
It reads (policy instruction, user text) as a text pair and returns P(violation); the per-policy
thresholds below were chosen on the calibration half of the validation data by the `{rule}` rule
and are stored in `uniguard.json`.

- held-out macro F1 (validation scoring half): **{entry.f1:.4f}**
- size: {entry.size_bytes / 1e6:.2f} MB (`model.safetensors`)
- latency: {entry.latency_ms:.2f} ms per example (measured during the search)
- merged from: {', '.join(names)}
"""
    return render_card(f"UniGuard merge {entry.hash}", ["guardrail", "uniguard", "model-merging"], intro, {
        "Per-policy F1 and thresholds": f"| policy | F1 | threshold |\n|---|---|---|\n{policies}\n",
        "Recipe": f"```yaml\n{json.dumps(entry.recipe, indent=2)}\n```\n",
    })
