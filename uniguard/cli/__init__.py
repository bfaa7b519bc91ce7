"""The `uniguard` command line.

One module per command group (`uniguard/cli/*.py`), each adding its commands with `register(app)`;
the commands import the packages they drive inside their bodies, so `uniguard --help` imports no
model code. User errors (`UserError`) print one clear message and exit with status 2; anything
else is a bug: one line naming it and exit 1, or the traceback with `--debug` / UNIGUARD_DEBUG=1.
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

DEBUG_ENV = "UNIGUARD_DEBUG"
_debug = False  # --debug of the current run, read by main() once the command has failed


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help=f"Show the full traceback of an unexpected error (or set {DEBUG_ENV}=1)."),
) -> None:
    """Evolutionary model merging for small, fast, accurate guardrail classifiers."""
    global _debug
    _debug = debug


from uniguard.cli import deploy, guards, ops, pipelines, search, synthesis  # noqa: E402

for _group in (ops, search, synthesis, guards, deploy, pipelines):
    _group.register(app)


def main() -> None:
    global _debug
    _debug = False
    try:
        app()  # typer reports bad flags and arguments itself (exit 2); other exceptions reach us
    except UserError as exc:
        _print_error(str(exc))
        sys.exit(2)
    except Exception as exc:
        if _debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        _print_error(f"{type(exc).__name__}: {exc} (this is a bug; rerun with --debug for the traceback)")
        sys.exit(1)


def _print_error(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
