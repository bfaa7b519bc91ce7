"""`uniguard classify`, `uniguard eval`, `uniguard train {single,multitask}`, `uniguard baseline`, `uniguard devset`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from uniguard.errors import UserError

train_app = typer.Typer(help="Fine-tune guards: one policy (single) or many at once (multitask, MultiTaskGuard).", no_args_is_help=True)


def _print_json(obj) -> None:
    from trainers.metrics import json_safe

    typer.echo(json.dumps(json_safe(obj), indent=2, ensure_ascii=False))


def _fmt(value) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:.3f}"
    return str(value)


def print_metrics_table(report: dict, title: str) -> None:
    columns = ("f1", "precision", "recall", "fpr", "auprc", "recall_at_1pct_fpr", "threshold", "tp", "fp", "tn", "fn", "n")
    table = Table(title=title)
    table.add_column("policy")
    for c in columns:
        table.add_column(c, justify="right")
    for name, m in report["per_policy"].items():
        table.add_row(name, *(_fmt(m.get(c, "")) for c in columns))
    if len(report["per_policy"]) > 1:
        table.add_row("[bold]macro[/]", *(_fmt(report["macro"].get(c, "")) for c in columns))
    _console().print(table)


def _console() -> Console:
    # rich falls back to 80 columns off a terminal, which squeezes the metric table unreadably
    console = Console()
    return console if console.is_terminal else Console(width=160)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def classify(
    texts: List[str] = typer.Argument(..., help="Texts to check."),
    model: Path = typer.Option(..., "--model", help="Guard directory (from `uniguard train` or `uniguard merge`)."),
    policy: List[str] = typer.Option(..., "--policy", help="Built-in policy name or policy YAML; repeat for several."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per text and policy."),
) -> None:
    """Score texts against policies with a guard: P(violation) and the verdict at the guard's threshold."""
    from synth.policy import load_policies
    from trainers.guard import Guard

    _quiet_transformers()
    guard = Guard.load(model)
    results = []
    for p in load_policies(policy):
        for text, verdict in zip(texts, guard.check(texts, p)):
            results.append(
                {"text": text, "policy": verdict.policy, "score": verdict.score, "violates": verdict.violates,
                 "threshold": guard.threshold(p)}
            )
    if as_json:
        _print_json(results)
        return
    table = Table()
    for c in ("policy", "score", "verdict", "text"):
        table.add_column(c)
    for r in results:
        verdict = "[red]violates[/]" if r["violates"] else "[green]allowed[/]"
        table.add_row(r["policy"], f"{r['score']:.3f}", verdict, r["text"][:80])
    _console().print(table)


def eval_command(
    model: Path = typer.Option(..., "--model", help="Guard directory to evaluate."),
    data: Path = typer.Option(..., "--data", help="Labelled JSON Lines file (text, label, policy)."),
    policy: List[str] = typer.Option(
        [], "--policy", help="Evaluate only these policies (names or YAML files; a YAML overrides the built-in text)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: macro metrics at top level, plus per_policy and macro."),
) -> None:
    """F1, precision, recall, FPR, AUPRC, recall at 1% FPR and confusion counts, per policy and macro."""
    from synth.policy import load_policies
    from trainers.data import load_rows, only_policies, policy_names, resolve_policies
    from trainers.evaluate import evaluate
    from trainers.guard import Guard

    examples = load_rows(data)
    if policy:
        wanted = [p.name for p in load_policies(policy)]
        available = policy_names(examples)
        examples = only_policies(examples, wanted)
        if not examples:
            raise UserError(f"{data}: no rows for policy {', '.join(wanted)}; the file has {', '.join(available) or 'no rows'}")
    if not examples:
        raise UserError(f"{data}: no rows to evaluate; the file is empty")
    policies = resolve_policies(policy_names(examples), policy)
    _quiet_transformers()
    report = evaluate(Guard.load(model), examples, policies)
    report = {**report["macro"], **report, "model": str(model), "data": str(data)}
    if as_json:
        _print_json(report)
    else:
        print_metrics_table(report, f"{model} on {data}")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
    app.command("eval")(eval_command)
