"""`uniguard synth`: policy-driven synthetic guardrail data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from synth.cross_policy import DEFAULT_CROSS_SHARE


def synth(
    policy: List[str] = typer.Option(..., "--policy", help="Built-in policy name or policy YAML path; repeat for several."),
    out: Path = typer.Option(..., "--out", help="Output directory for train/validation/test.jsonl and report.json."),
    backend: str = typer.Option("local", "--backend", help="local (offline SmolLM2 rewriting templates), openai (any OpenAI-compatible endpoint) or template (deterministic, no model)."),
    n: int = typer.Option(400, "--n", help="Samples per policy before dedup and splitting."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed and settings give the same data."),
    model: Optional[str] = typer.Option(None, "--model", help="local: causal LM directory (default: offline SmolLM2-135M-Instruct); openai: model name."),
    base_url: str = typer.Option("http://localhost:8000/v1", "--base-url", help="openai: endpoint base URL (…/v1)."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="openai: environment variable holding the API key."),
    timeout: float = typer.Option(60.0, "--timeout", help="openai: seconds per request."),
    retries: int = typer.Option(4, "--retries", help="openai: retries per request (timeouts, 429, 5xx)."),
    concurrency: int = typer.Option(8, "--concurrency", help="openai: requests in flight at once."),
    batch_size: int = typer.Option(16, "--batch-size", help="local: prompts per generation batch."),
    rewrite_fraction: float = typer.Option(0.5, "--rewrite-fraction", help="Share of template seeds the model paraphrases."),
    write_fraction: float = typer.Option(0.0, "--write-fraction", help="Share the model writes afresh from the behaviour."),
    translate: Optional[bool] = typer.Option(None, "--translate/--no-translate", help="Have the model translate code-mixed non-English seeds fully (default: on for openai, off for local, whose 135M model translates poorly)."),
    reflect: Optional[bool] = typer.Option(None, "--reflect/--no-reflect", help="Self-reflection: the model re-judges each sample (default: on for openai; off for local, whose 135M judge cannot separate the classes - see experiments/bench_synth.py)."),
    reflect_mode: str = typer.Option("drop", "--reflect-mode", help="drop or relabel confident disagreements."),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="train,validation,test fractions."),
    split_by: str = typer.Option("row", "--split-by", help="row: stratified rows; behaviour: validation and test hold whole behaviours training never shows (tests generalisation, not recall of phrasings)."),
    near_dup: float = typer.Option(0.7, "--near-dup", help="Word-trigram Jaccard at or above which two texts are near duplicates."),
    cross_policy_share: float = typer.Option(DEFAULT_CROSS_SHARE, "--cross-policy-share", help="Injection policies (prompt_injection) also get other policies' rows relabelled by style: jailbreak-framed ones violate, plain ones do not; this share of their own rows per split (0: off)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray address to fan policies out over workers ('local' starts one here)."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout instead of a summary."),
) -> None:
    """Generate labelled synthetic prompts for policies; rerunning the same command resumes from cached model answers."""
    from synth.generate import BackendSpec, SynthSettings, run_synthesis
    from synth.policy import load_policies
    from synth.splits import parse_fractions
    from uniguard.core.errors import UserError

    if backend not in ("local", "openai", "template"):
        raise UserError(f"--backend {backend!r}: choose local, openai or template")
    if reflect_mode not in ("drop", "relabel"):
        raise UserError(f"--reflect-mode {reflect_mode!r}: choose drop or relabel")
    if split_by not in ("row", "behaviour"):
        raise UserError(f"--split-by {split_by!r}: choose row or behaviour")
    policies = load_policies(policy)
    spec = BackendSpec(backend, model, base_url, api_key_env, timeout, retries, concurrency, batch_size)  # type: ignore[arg-type]
    settings = SynthSettings(n=n, seed=seed, fractions=parse_fractions(split), rewrite_fraction=rewrite_fraction,
                             write_fraction=write_fraction, translate=backend == "openai" if translate is None else translate,
                             reflect=backend == "openai" if reflect is None else reflect, reflect_mode=reflect_mode,  # type: ignore[arg-type]
                             near_threshold=near_dup, split_by=split_by, cross_policy_share=cross_policy_share)  # type: ignore[arg-type]
    with _progress(enabled=not as_json) as progress:
        report = run_synthesis(policies, spec, settings, out, address=address, progress=progress)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _print_summary(report, out)


class _progress:
    """A rich progress bar per policy on stderr (a no-op when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._tasks: dict[str, int] = {}

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=Console(stderr=True))
        self._bar.__enter__()
        return self.update

    def update(self, name: str, done: int, total: int) -> None:
        if name not in self._tasks:
            self._tasks[name] = self._bar.add_task(name, total=total)
        self._bar.update(self._tasks[name], completed=done, total=total)

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.__exit__(*exc)
        return False


def _print_summary(report: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from synth.samples import KINDS

    table = Table(title=f"synthetic data in {out}")
    short = {"borderline": "lookalike", "in_domain": "in-dom", "out_of_domain": "other"}
    for column in ("split", "policy", "n", "unsafe", "safe", *KINDS[1:]):
        table.add_column(short.get(column, column), justify="left" if column in ("split", "policy") else "right",
                         overflow="fold")
    for split, counts in report["splits"].items():
        for policy, c in counts["per_policy"].items():
            table.add_row(split, policy, str(c["n"]), str(c["label"].get("1", 0)), str(c["label"].get("0", 0)),
                          *(str(c["kind"].get(kind, 0)) for kind in KINDS[1:]))
    console = Console()
    console.print(table)
    d = report["diversity"]
    console.print(f"distinct-2 {d['distinct_2']:.3f}, mean words {d['mean_words']}, "
                  f"{report['generation']['samples_per_second']} samples/s; report: {out / 'report.json'}")
    for policy, per in d.get("per_policy", {}).items():
        splits = ", ".join(f"{name} {v['distinct_1']:.2f}/{v['distinct_2']:.2f}/{v['distinct_3']:.2f}" for name, v in per["splits"].items())
        console.print(f"  {policy}: distinct-1/2/3 {splits}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
