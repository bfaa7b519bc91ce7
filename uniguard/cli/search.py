"""`uniguard merge`, `uniguard search`, `uniguard pareto`: merging guards and searching merge recipes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
import yaml


def register(app: typer.Typer) -> None:
    app.command()(merge)
    app.command()(search)
    app.command()(pareto)
    app.command()(confirm)


def merge(
    config: Path = typer.Argument(..., help="A uniguard merge config (base_model, models, recipe) or a mergekit YAML."),
    out: Path = typer.Option(..., "--out", help="Output Hugging Face model directory."),
    mergekit_yaml: Path = typer.Option(None, help="Also write the equivalent mergekit YAML here (where mergekit can express it)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Merge candidate guards with one recipe and write a Hugging Face guard directory."""
    from engine.merge import check_merge_out, write_merged_model
    from engine.merge_config import load_merge_config, to_mergekit
    from engine.pool import ModelPool
    from uniguard.core.io import atomic_write_text

    merge_config = load_merge_config(config)
    check_merge_out(out, [merge_config.base_model, *merge_config.models])  # before minutes of loading
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


def search(
    config: Path = typer.Argument(..., help="Search config YAML (pool, data, space, strategy, fitness)."),
    out: Path = typer.Option(..., "--out", help="Run directory: journal.jsonl, pareto.json/png/html. Rerun to resume."),
    pool: Path = typer.Option(None, "--pool", help="Directory the config's relative paths resolve against."),
    budget: int = typer.Option(None, help="Total recipes to evaluate (journal included); default from the config."),
    workers: int = typer.Option(None, help="Ray fitness workers; default from the config."),
    address: str = typer.Option(None, help="Ray cluster address (or set RAY_ADDRESS); default: a local Ray."),
    as_json: bool = typer.Option(False, "--json", help="Print the Pareto front as JSON."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda for the fitness workers; default from the config (fitness.device)."),
    precision: Optional[str] = typer.Option(None, help="auto | float32 | bfloat16 for fitness; default from the config (fitness.precision)."),
) -> None:
    """Search merge recipes with Ray workers; keeps a journal and writes the Pareto front."""
    from engine.config import load_search_config, with_compute
    from engine.search import run_search

    search_config = with_compute(load_search_config(config, pool), device, precision)
    entries = run_search(search_config, out, budget, workers, address, progress=not as_json)
    _print_front(out, entries, as_json)


def pareto(
    run_dir: Path = typer.Argument(..., help="A search run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Print a search run's Pareto front and re-plot pareto.png / pareto.html from its journal."""
    from engine.rundir import RunDir

    run = RunDir(run_dir)
    entries = run.entries()
    run.write_front(entries)
    _print_front(run_dir, entries, as_json)


def confirm(
    run_dir: Path = typer.Argument(..., help="A search run directory."),
    data: Path = typer.Option(..., "--data", help="Labelled JSONL the search never used (a confirmation split)."),
    top: int = typer.Option(5, min=1, help="How many of the front's best (by search F1) to re-score; the baselines always are."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Re-score the front's best recipes and the baselines on a confirmation split; the best there is UniGuard."""
    from engine.confirm import confirm as run_confirm
    from engine.rundir import RunDir

    results = run_confirm(RunDir(run_dir), data, top)
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in results]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("rank", "hash", "label", "search F1 ± SE", "confirmation F1 ± SE", "worst policy vs best source",
                  title=f"confirmation of {run_dir} on {data}")
    for k, r in enumerate(results):
        table.add_row(str(k), r.hash[:12], r.label or "", _pm(r.search_f1, r.search_f1_se), _pm(r.confirm_f1, r.confirm_f1_se),
                      _gap(r.shortfall))
    Console().print(table)


def _gap(shortfall: float | None) -> str:
    """A candidate's worst per-policy F1 against the best source alone there: -0.0300 = 3 points below."""
    return "" if shortfall is None else f"{-shortfall:+.4f}"


def _pm(value: float, se: float | None) -> str:
    return f"{value:.4f}" + (f" ± {se:.4f}" if se is not None else "")


def _print_front(run_dir: Path, entries: list, as_json: bool) -> None:
    from engine.front import front_points
    from engine.rundir import RunDir

    run = RunDir(run_dir)
    front = front_points(run.front(entries))
    raced = [e for e in entries if e.raced_out]
    saved = sum(e.full_forwards - e.forwards for e in entries)
    if as_json:
        typer.echo(json.dumps({"run_dir": str(run_dir), "evaluated": len(entries), "raced_out": len(raced), "forwards_saved": saved,
                               "points": [{**p.model_dump(include={"point", "hash", "label", "f1", "f1_se", "ties", "size_bytes", "latency_ms", "recipe"}),
                                           "format": p.format or "hf"} for p in front]}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("point", "F1 ± SE", "ties with", "size MB", "ms/example", "operator", "layers", "dtype", "format", "label",
                  title=f"Pareto front of {run_dir} ({len(entries)} evaluated, {len(raced)} raced out, "
                        f"{saved} example-forwards saved by racing)")
    for p in front:
        r = p.recipe
        table.add_row(str(p.point), _pm(p.f1, p.f1_se), ",".join(map(str, p.ties)) or "-", f"{p.size_bytes / 1e6:.2f}", f"{p.latency_ms:.2f}", r["operator"],
                      "all" if r["layers"] is None else ",".join(map(str, r["layers"])), r["dtype"], p.format or "hf", p.label or "")
    Console().print(table)
    typer.echo(f"points that tie are within one combined standard error of F1: the data cannot rank them. "
               f"plots: {run.png}, {run.html}; export a point with `uniguard export {run_dir} --point K --out DIR`")
