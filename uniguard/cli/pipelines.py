"""`uniguard quickstart`: the whole pipeline on the built-in policies with the offline models."""

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def quickstart(
        out: Path = typer.Option(Path("uniguard-out"), help="Directory for data, guards, search run and report."),
        fast: bool = typer.Option(False, help="A few-minute smoke version (3 policies, small data, short search)."),
        base: Optional[str] = typer.Option(None, "--base", help="Base encoder of every guard: HF directory or hub id (default: offline "
                                           "MiniLM; multilingual-e5-small-q4 for the offline multilingual encoder)."),
    ) -> None:
        """Run the whole pipeline: synth -> train -> search -> export -> evaluate -> report.md / report.html."""
        from experiments.quickstart import run_quickstart

        run_quickstart(out, fast=fast, say=lambda line: typer.echo(line, err=True), base_model=base)

    @app.command()
    def study(
        config: Path = typer.Argument(..., help="Study config YAML, e.g. experiments/configs/study.yaml."),
        out: Path = typer.Option(Path("uniguard-study"), help="Directory for every seed's data, guards, searches and the tables."),
        tables_only: bool = typer.Option(False, help="Only rewrite study.md / study.json from the seeds already finished in OUT."),
    ) -> None:
        """The paper's four questions over several seeds: writes OUT/study.md and OUT/study.json."""
        from experiments.study import finished_seeds, load_study_config, run_study, write_study

        settings = load_study_config(config)
        if not tables_only:
            run_study(settings, out, say=lambda line: typer.echo(line, err=True))
            return
        per_seed = finished_seeds(out, settings)
        if not per_seed:
            raise typer.BadParameter(f"no finished seed in {out}; run without --tables-only first", param_hint="--out")
        typer.echo(str(write_study(out, settings, per_seed)))
