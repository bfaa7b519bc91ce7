"""Export a Pareto point of a search run as a Hugging Face guard with its model card."""

from __future__ import annotations

import json
from pathlib import Path

from engine.recipe import Recipe
from trainers.guard import GUARD_META_FILE
from uniguard.errors import UserError
from uniguard.io import atomic_write_text, write_json


def export_point(run_dir: str | Path, point: int, out_dir: str | Path) -> Path:
    """Merge the recipe of Pareto point `point` and write it with its calibrated thresholds."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    front_file = run_dir / "pareto.json"
    if not front_file.is_file():
        raise UserError(f"{run_dir}: no pareto.json; run `uniguard search ... --out {run_dir}` first")
    points = json.loads(front_file.read_text())["points"]
    if not 0 <= point < len(points):
        raise UserError(f"--point {point}: the front of {run_dir} has points 0..{len(points) - 1}; see `uniguard pareto {run_dir}`")
    return export_entry(run_dir, {**points[point], "point": point}, out_dir)


def export_entry(run_dir: str | Path, entry: dict, out_dir: str | Path, pool=None) -> Path:
    """Merge a journal or front entry's recipe and write it with its calibrated thresholds and card."""
    from engine.merge import write_merged_model
    from engine.pool import ModelPool
    from engine.search import load_search_config

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config = load_search_config(run_dir / "search.yaml")
    pool = pool or ModelPool.load(config.pool.base, list(config.pool.candidates), config.names)
    write_merged_model(pool, Recipe.from_dict(entry["recipe"], f"{run_dir} entry {entry['hash']}"), out_dir)
    meta_file = out_dir / GUARD_META_FILE
    meta = json.loads(meta_file.read_text())
    meta.update(thresholds=entry["thresholds"], policies=sorted(entry["thresholds"]), search_run=str(run_dir),
                point=entry.get("point"), label=entry.get("label"))
    write_json(meta_file, meta)
    atomic_write_text(out_dir / "README.md", _model_card(entry, config.names, run_dir))
    return out_dir


def _where(entry: dict) -> str:
    if entry.get("point") is not None:
        return f", Pareto point {entry['point']}"
    return f" ({entry['label']})" if entry.get("label") else ""


def _model_card(point: dict, names: list[str], run_dir: Path) -> str:
    policies = "\n".join(f"| {name} | {value:.4f} | {point['thresholds'][name]:.4f} |" for name, value in sorted(point["per_policy"].items()))
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [guardrail, uniguard, model-merging]
---
# UniGuard merge {point['hash']}

A guardrail classifier merged by uniguard's evolutionary search (run `{run_dir}`){_where(point)}.
It reads (policy instruction, user text) as a text pair and returns P(violation); the per-policy
thresholds below were chosen on the calibration half of the validation data and are stored in
`uniguard.json`.

- held-out macro F1 (validation scoring half): **{point['f1']:.4f}**
- size: {point['size_bytes'] / 1e6:.2f} MB (`model.safetensors`)
- latency: {point['latency_ms']:.2f} ms per example (measured during the search)
- merged from: {', '.join(names)}

| policy | F1 | threshold |
|---|---|---|
{policies}

## Recipe
```yaml
{json.dumps(point['recipe'], indent=2)}
```
"""
