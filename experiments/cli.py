"""`uniguard quickstart`: the whole pipeline on the built-in policies with the offline models."""

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def quickstart(
        out: Path = typer.Option(Path("uniguard-out"), help="Directory for data, guards, search run and report."),
        fast: bool = typer.Option(False, help="A few-minute smoke version (3 policies, small data, short search)."),
    ) -> None:
        """Run the whole pipeline: synth -> train -> search -> export -> evaluate -> report.md / report.html."""
        from experiments.quickstart import run_quickstart

        run_quickstart(out, fast=fast, say=lambda line: typer.echo(line, err=True))
