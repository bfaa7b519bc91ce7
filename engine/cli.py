"""Commands of the engine: `merge` (and, with the search issue, `search`, `pareto`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
import yaml


def register(app: typer.Typer) -> None:
    app.command()(merge)


def merge(
    config: Path = typer.Argument(..., help="A uniguard merge config (base_model, models, recipe) or a mergekit YAML."),
    out: Path = typer.Option(..., "--out", help="Output Hugging Face model directory."),
    mergekit_yaml: Path = typer.Option(None, help="Also write the equivalent mergekit YAML here (where mergekit can express it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Merge candidate guards with one recipe and write a Hugging Face guard directory."""
    from engine.merge import write_merged_model
    from engine.merge_config import load_merge_config, to_mergekit
    from engine.pool import ModelPool
    from uniguard.io import atomic_write_text

    merge_config = load_merge_config(config)
    start = time.perf_counter()
    pool = ModelPool.load(merge_config.base_model, list(merge_config.models))
    loaded = time.perf_counter()
    write_merged_model(pool, merge_config.recipe, out)
    done = time.perf_counter()
    if mergekit_yaml is not None:
        atomic_write_text(mergekit_yaml, yaml.safe_dump(to_mergekit(merge_config), sort_keys=False))
    result = {
        "out": str(out),
        "operator": merge_config.recipe.operator,
        "recipe_hash": merge_config.recipe.hash,
        "size_bytes": (out / "model.safetensors").stat().st_size,
        "load_seconds": round(loaded - start, 3),
        "merge_and_write_seconds": round(done - loaded, 3),
    }
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"merged {len(merge_config.models)} models with {result['operator']} -> {out} "
                   f"({result['size_bytes'] / 1e6:.1f} MB, load {result['load_seconds']}s, merge+write {result['merge_and_write_seconds']}s)")
