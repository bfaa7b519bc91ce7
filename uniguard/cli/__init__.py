"""The `uniguard` command line.

One module per command group (`uniguard/cli/*.py`), each adding its commands with `register(app)`;
the commands import the packages they drive inside their bodies, so `uniguard --help` imports no
model code. User errors (`UserError`) print one clear message and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

# Library chatter (weight-loading bars, "newly initialized" notes) would drown uniguard's own
# progress; users can still opt back in by setting these variables themselves.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import typer
from rich.console import Console
from rich.markup import escape

from uniguard.core.errors import UserError

app = typer.Typer(
    name="uniguard",
    help="Evolutionary model merging for small, fast, accurate guardrail classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def _root() -> None:
    """Evolutionary model merging for small, fast, accurate guardrail classifiers."""


from uniguard.cli import deploy, guards, ops, pipelines, search, synthesis  # noqa: E402

for _group in (ops, search, synthesis, guards, deploy, pipelines):
    _group.register(app)


def main() -> None:
    try:
        app()
    except UserError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
