"""Commands of this package; `register` adds them to the `uniguard` app."""

import typer


def register(app: typer.Typer) -> None:
    """No commands yet."""
