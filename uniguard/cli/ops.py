"""`uniguard operators`: list the registered merge operators and their parameters."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    app.command(name="operators")(list_operators)


def list_operators(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List merge operators (built-in and from the `uniguard.operators` entry points) with their parameters."""
    import operators

    rows = []
    for name in operators.available():
        op = operators.get(name)
        rows.append({
            "name": name,
            "inputs": op.inputs,
            "needs_base": op.needs_base,
            "models": [op.min_models, op.max_models],
            "statistics": list(op.uses_statistics),  # data statistics the pool computes for it (regmean, fisher)
            "reference": op.reference,
            "params": [
                {"name": p.name, "type": p.kind.__name__, "default": p.default, "range": [p.low, p.high],
                 "per_model": p.per_model, "searchable": p.searchable}
                for p in op.params
            ],
        })
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("operator", "parameters", "reference")
    for row in rows:
        params = ", ".join(f"{p['name']}{'[]' if p['per_model'] else ''}={p['default']}" for p in row["params"])
        table.add_row(row["name"], params, row["reference"])
    Console().print(table)
