"""`uniguard classify`, `uniguard eval`, `uniguard train {single,multitask}`, `uniguard baseline`, `uniguard devset`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from trainers.metrics import DEFAULT_THRESHOLD_RULE
from uniguard.cli.compute_options import device_option, guard_on, precision_option
from uniguard.core.errors import UserError


_THRESHOLD_HELP = (
    "How validation sets each policy's threshold: f1 (best F1; drifts low when validation is mostly violating), "
    "balanced (best TPR - FPR, independent of the class mix: fewer false positives on mostly benign traffic) "
    "or fpr:TARGET (the lowest threshold whose false-positive rate on benign rows is at most TARGET, e.g. fpr:0.03)."
)
_BENIGN_HELP = ("JSON Lines of unlabelled benign user traffic (`text` per row) whose texts join the benign validation rows "
                "of every policy for --threshold-rule fpr:TARGET.")
_TRUNCATE_HELP = "Cut texts longer than --max-length (one warning counts them); --no-truncate fails on them instead."


def _threshold_rule(rule: str) -> str:
    """The rule as given, checked here so a typo fails before any model loads."""
    from trainers.metrics import parse_threshold_rule

    try:
        parse_threshold_rule(rule)
    except ValueError as exc:
        raise UserError(f"--threshold-rule: {exc}") from None
    return rule


train_app = typer.Typer(help="Fine-tune guards: one policy (single) or many at once (multitask, MultiTaskGuard).", no_args_is_help=True)


def _print_json(obj) -> None:
    from trainers.metrics import json_safe

    typer.echo(json.dumps(json_safe(obj), indent=2, ensure_ascii=False))


def _fmt(value) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:.3f}"
    return str(value)


def print_metrics_table(report: dict, title: str, group: str = "policy") -> None:
    columns = ("f1", "precision", "recall", "fpr", "auprc", "recall_at_1pct_fpr", "threshold", "tp", "fp", "tn", "fn", "n")
    table = Table(title=title)
    table.add_column(group)
    for c in columns:
        table.add_column(c, justify="right")
    for name, m in report["per_policy"].items():
        table.add_row(name, *(_fmt(m.get(c, "")) for c in columns))
    if len(report["per_policy"]) > 1:
        table.add_row("[bold]macro[/]", *(_fmt(report["macro"].get(c, "")) for c in columns))
    _console().print(table)


def print_language_tables(report: dict, title: str) -> None:
    """One table per policy of its metrics by language, where the rows named their language."""
    from trainers.metrics import macro_average

    for name, by_lang in report.get("per_language", {}).items():
        print_metrics_table({"per_policy": by_lang, "macro": macro_average(by_lang.values())}, f"{title}: {name} by language", "lang")


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
    device: str = device_option(),
    precision: str = precision_option(),
) -> None:
    """Score texts against policies with a guard: P(violation) and the verdict at the guard's threshold."""
    from synth.policy import load_policies

    _quiet_transformers()
    guard = guard_on(model, device, precision)
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
    device: str = device_option(),
    precision: str = precision_option(),
) -> None:
    """F1, precision, recall, FPR, AUPRC, recall at 1% FPR and confusion counts, per policy and macro."""
    from synth.policy import load_policies
    from trainers.data import load_rows, only_policies, policy_names, resolve_policies
    from fitness.evaluate import evaluate

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
    report = evaluate(guard_on(model, device, precision), examples, policies)
    report = {**report["macro"], **report, "model": str(model), "data": str(data)}
    if as_json:
        _print_json(report)
    else:
        print_metrics_table(report, f"{model} on {data}")
        print_language_tables(report, f"{model} on {data}")


def _train_options(
    kind: str, data: List[Path], out: Path, policy: List[str], base: Optional[str], epochs: int, batch_size: int,
    learning_rate: Optional[float], head_lr_multiplier: float, max_length: int, mlm_weight: float, adv_weight: float, adv_epsilon: float, patience: int,
    threshold_rule: str, eval_every: Optional[int], seed: int, truncate: bool, overwrite: bool, as_json: bool,
    benign: Optional[Path] = None, device: str = "auto", precision: str = "auto", freeze_word_embeddings: Optional[bool] = None,
) -> None:
    from trainers.data import everyday_rows, load_benign_texts, load_splits, only_policies, policy_names, resolve_policies
    from trainers.training import make_config, train_guard

    options = dict(
        kind=kind, base_model=base, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        head_lr_multiplier=head_lr_multiplier,
        max_length=max_length, mlm_weight=mlm_weight, adv_weight=adv_weight, adv_epsilon=adv_epsilon,
        patience=patience, threshold_rule=_threshold_rule(threshold_rule), eval_every=eval_every, seed=seed, truncate=truncate,
        device=device, precision=precision, freeze_word_embeddings=freeze_word_embeddings,
    )
    make_config(**options)  # bad options fail before any data is read
    benign_texts = load_benign_texts(benign) if benign is not None else []
    splits = load_splits(data)
    everyday = everyday_rows(splits["validation"], options["threshold_rule"])  # every policy's, before --policy keeps its own only
    names = policy_names(splits["train"])
    if policy:
        from synth.policy import load_policies

        wanted = [p.name for p in load_policies(policy)]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise UserError(
                f"{', '.join(str(d) for d in data)}: no training rows for policy {', '.join(missing)}; "
                f"the data has {', '.join(names) or 'no rows'}"
            )
        splits = {k: only_policies(v, wanted) for k, v in splits.items()}
    policies = resolve_policies(policy_names(splits["train"]), policy)
    config = make_config(list(policies.values()), **options)
    _quiet_transformers()
    result = train_guard(
        config, splits["train"], splits["validation"], policies, out, test=splits["test"],
        overwrite=overwrite, progress=True,  # tqdm writes to stderr, so --json output stays clean
        benign=benign_texts, everyday=everyday,
    )
    summary = {
        "out": str(result.out_dir), "thresholds": result.thresholds, "validation": result.validation,
        "test": result.test, "train_examples_per_second": result.examples_per_second,
        "resumed_from_step": result.resumed_from_step, "warnings": result.warnings,
    }
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        _print_json(summary)
        return
    if result.resumed_from_step:
        typer.echo(f"resumed from step {result.resumed_from_step}")
    print_metrics_table(result.validation, "validation (thresholds calibrated here)")
    if result.test:
        print_metrics_table(result.test, "test")
    typer.echo(f"saved guard to {result.out_dir} ({result.examples_per_second:.1f} training examples/s)")


_BASE_HELP = ("Base encoder: HF directory or hub id (default: offline MiniLM; multilingual-e5-small-q4 for the offline multilingual encoder), "
              "or a trained guard to fine-tune further (a specialist of MultiTaskGuard, as the quickstart trains its single guards).")
_LR_HELP = ("Peak AdamW learning rate (linear warm-up and decay); default 5e-5, 2e-4 for a guard of injection-style policies "
            "alone (prompt_injection) and for multilingual-e5-small-q4; 5e-5 from a trained guard.")
_FREEZE_HELP = "Keep the token embeddings as the base has them (default: the base's recipe; frozen for multilingual-e5-small-q4 only)."
_DATA_HELP = "Data directory with train.jsonl and validation.jsonl (test.jsonl optional), e.g. from `uniguard synth`."


@train_app.command("single")
def train_single(
    data: Path = typer.Option(..., "--data", help=_DATA_HELP),
    policy: str = typer.Option(..., "--policy", help="The policy to train on: a built-in name or a policy YAML."),
    out: Path = typer.Option(..., "--out", help="Where to write the guard (HF directory + uniguard.json + README.md)."),
    base: Optional[str] = typer.Option(None, "--base", help=_BASE_HELP),
    epochs: int = typer.Option(3, help="Passes over the training data."),
    batch_size: int = typer.Option(16, help="Examples per optimizer step."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help=_LR_HELP),
    freeze_word_embeddings: Optional[bool] = typer.Option(None, "--freeze-word-embeddings/--train-word-embeddings", help=_FREEZE_HELP),
    head_lr_multiplier: float = typer.Option(10.0, help="Learning-rate factor for the pooler and classification head."),
    max_length: Optional[int] = typer.Option(None, help="Token limit for instruction + text (default 256, capped at the base model's position limit)."),
    mlm_weight: float = typer.Option(0.0, help="Weight of the masked-LM term (0 = off)."),
    adv_weight: float = typer.Option(0.0, help="Weight of the adversarial embedding term (0 = off)."),
    adv_epsilon: float = typer.Option(1.0, help="L2 radius of the adversarial embedding perturbation."),
    patience: int = typer.Option(2, help="Stop after this many evaluations without validation-F1 gain."),
    threshold_rule: str = typer.Option(DEFAULT_THRESHOLD_RULE, help=_THRESHOLD_HELP),
    benign: Optional[Path] = typer.Option(None, "--benign", help=_BENIGN_HELP),
    eval_every: Optional[int] = typer.Option(None, help="Steps between validations (default: once per epoch)."),
    seed: int = typer.Option(0, help="Seed for head initialisation, shuffling, dropout and masking."),
    truncate: bool = typer.Option(True, "--truncate/--no-truncate", help=_TRUNCATE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing guard or checkpoint in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (progress goes to stderr)."),
    device: str = device_option(),
    precision: str = precision_option(),
) -> None:
    """Fine-tune a single-policy guard. Rerun the same command after an interruption to resume."""
    _train_options("single", [data], out, [policy], base, epochs, batch_size, learning_rate, head_lr_multiplier, max_length, mlm_weight,
                   adv_weight, adv_epsilon, patience, threshold_rule, eval_every, seed, truncate, overwrite, as_json, benign,
                   device, precision, freeze_word_embeddings)


@train_app.command("multitask")
def train_multitask(
    data: List[Path] = typer.Option(..., "--data", help=_DATA_HELP + " Repeat to combine several."),
    out: Path = typer.Option(..., "--out", help="Where to write the guard."),
    policy: List[str] = typer.Option([], "--policy", help="Train only these policies (names or YAML); default: all in the data."),
    base: Optional[str] = typer.Option(None, "--base", help=_BASE_HELP),
    epochs: int = typer.Option(3, help="Passes over the training data."),
    batch_size: int = typer.Option(16, help="Examples per optimizer step."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help=_LR_HELP),
    freeze_word_embeddings: Optional[bool] = typer.Option(None, "--freeze-word-embeddings/--train-word-embeddings", help=_FREEZE_HELP),
    head_lr_multiplier: float = typer.Option(10.0, help="Learning-rate factor for the pooler and classification head."),
    max_length: Optional[int] = typer.Option(None, help="Token limit for instruction + text (default 256, capped at the base model's position limit)."),
    mlm_weight: float = typer.Option(0.0, help="Weight of the masked-LM term on the instruction-augmented input (0 = off)."),
    adv_weight: float = typer.Option(0.0, help="Weight of the adversarial embedding term (0 = off)."),
    adv_epsilon: float = typer.Option(1.0, help="L2 radius of the adversarial embedding perturbation."),
    patience: int = typer.Option(2, help="Stop after this many evaluations without validation macro-F1 gain."),
    threshold_rule: str = typer.Option(DEFAULT_THRESHOLD_RULE, help=_THRESHOLD_HELP),
    benign: Optional[Path] = typer.Option(None, "--benign", help=_BENIGN_HELP),
    eval_every: Optional[int] = typer.Option(None, help="Steps between validations (default: once per epoch)."),
    seed: int = typer.Option(0, help="Seed for head initialisation, shuffling, dropout and masking."),
    truncate: bool = typer.Option(True, "--truncate/--no-truncate", help=_TRUNCATE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing guard or checkpoint in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (progress goes to stderr)."),
    device: str = device_option(),
    precision: str = precision_option(),
) -> None:
    """Train MultiTaskGuard: one guard on all policies at once, each policy's text as the instruction."""
    _train_options("multitask", data, out, policy, base, epochs, batch_size, learning_rate, head_lr_multiplier, max_length, mlm_weight,
                   adv_weight, adv_epsilon, patience, threshold_rule, eval_every, seed, truncate, overwrite, as_json, benign,
                   device, precision, freeze_word_embeddings)


devset_app = typer.Typer(help="Real development sets (offline, from installed wheels) and public hub benchmarks.", no_args_is_help=True)


@devset_app.command("list")
def devset_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The offline dev sets (policy, what is in them) and the hub benchmark loaders."""
    from fitness.benchmarks import BENCHMARKS
    from fitness.devsets import DEVSETS

    listing = {
        "devsets": {n: {"policy": d.policy, "description": d.description} for n, d in sorted(DEVSETS.items())},
        "hub_benchmarks": {n: {"hub_id": b.hub_id, "config": b.config, "split": b.split, "note": b.note} for n, b in sorted(BENCHMARKS.items())},
    }
    if as_json:
        _print_json(listing)
        return
    table = Table(title="offline dev sets")
    for c in ("name", "policy", "contents"):
        table.add_column(c)
    for n, d in listing["devsets"].items():
        table.add_row(n, d["policy"], d["description"])
    _console().print(table)
    table = Table(title="hub benchmarks (need network, or --data-files with a local copy)")
    for c in ("name", "hub id", "config", "split"):
        table.add_column(c)
    for n, b in listing["hub_benchmarks"].items():
        table.add_row(n, b["hub_id"], str(b["config"] or ""), b["split"])
    _console().print(table)


@devset_app.command("export")
def devset_export(
    names: List[str] = typer.Argument(..., help="Dev set names (see `uniguard devset list`), or `all`."),
    out: Path = typer.Option(..., "--out", help="JSON Lines file to write (text, label, policy, source)."),
    seed: int = typer.Option(0, help="Seed for the sampled parts and the faker-filled templates."),
) -> None:
    """Write offline dev sets as JSON Lines for `uniguard eval --data`."""
    from fitness.devsets import devset_names, load_devset
    from uniguard.core.io import write_jsonl

    chosen = devset_names() if names == ["all"] else names
    rows = [row for name in chosen for row in load_devset(name, seed)]
    write_jsonl(out, rows)
    typer.echo(f"wrote {len(rows)} rows ({sum(r['label'] for r in rows)} violating) to {out}")


@devset_app.command("hub")
def devset_hub(
    name: str = typer.Argument(..., help="Benchmark name (see `uniguard devset list`)."),
    out: Path = typer.Option(..., "--out", help="JSON Lines file to write."),
    data_files: Optional[str] = typer.Option(None, "--data-files", help="Local copy in the published format instead of the hub."),
    split: Optional[str] = typer.Option(None, help="Hub split(s), `+`-joined (default: the benchmark's evaluation split)."),
) -> None:
    """Convert a public hub benchmark to uniguard rows mapped to the built-in policies."""
    from fitness.benchmarks import load_benchmark
    from uniguard.core.io import write_jsonl

    rows = load_benchmark(name, data_files=data_files, split=split)
    write_jsonl(out, rows)
    typer.echo(f"wrote {len(rows)} rows to {out}")


baseline_app = typer.Typer(help="Baselines evaluated like guards: TF-IDF + logistic regression, zero-shot LLM judge.", no_args_is_help=True)


def _eval_files(data: List[Path], eval_files: List[Path]) -> List[Path]:
    files = list(eval_files) or [d / "test.jsonl" for d in data]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{', '.join(missing)}: not found; pass labelled JSON Lines files with --eval")
    return files


def _report_baseline(scorer, files: List[Path], name: str, as_json: bool, limit: Optional[int], seed: int) -> None:
    import random

    from trainers.data import load_rows, policy_names, resolve_policies
    from fitness.evaluate import evaluate

    results = {}
    for path in files:
        examples = load_rows(path)
        if limit is not None and len(examples) > limit:
            # a stratified-by-nothing but seeded subsample: the judge is slow on CPU
            examples = random.Random(seed).sample(examples, limit)
        report = evaluate(scorer, examples, resolve_policies(policy_names(examples)))
        results[str(path)] = {**report["macro"], **report}
    if as_json:
        _print_json({"baseline": name, "results": results})
        return
    for path, report in results.items():
        print_metrics_table(report, f"{name} on {path}")
        print_language_tables(report, f"{name} on {path}")


@baseline_app.command("tfidf")
def baseline_tfidf(
    data: List[Path] = typer.Option(..., "--data", help=_DATA_HELP + " Trains on train.jsonl, calibrates on validation.jsonl."),
    eval_files: List[Path] = typer.Option([], "--eval", help="Labelled files to evaluate on (default: each DATA/test.jsonl)."),
    threshold_rule: str = typer.Option(DEFAULT_THRESHOLD_RULE, help=_THRESHOLD_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """TF-IDF (word + char n-grams) + logistic regression per policy, trained on the same synthetic data."""
    from trainers.baselines import TfidfBaseline
    from trainers.data import load_splits

    splits = load_splits(data)
    scorer = TfidfBaseline(threshold_rule=_threshold_rule(threshold_rule)).fit(splits["train"], splits["validation"])
    _report_baseline(scorer, _eval_files(data, eval_files), "tfidf", as_json, None, 0)


@baseline_app.command("judge")
def baseline_judge(
    eval_files: List[Path] = typer.Option(..., "--eval", help="Labelled files to evaluate on."),
    model: Optional[str] = typer.Option(None, "--model", help="Causal LM directory (default: offline SmolLM2-135M-Instruct)."),
    calibrate_on: Optional[Path] = typer.Option(None, "--calibrate-on", help="Data directory whose validation.jsonl sets thresholds (default: 0.5)."),
    threshold_rule: str = typer.Option("f1", help=_THRESHOLD_HELP + " Used with --calibrate-on."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate a seeded random subset of at most this many rows per file."),
    seed: int = typer.Option(0, help="Seed of the --limit subsample."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Zero-shot LLM judge: P(Yes) that the text violates the policy, from the offline SmolLM2."""
    from trainers.baselines import LLMJudge
    from trainers.data import load_split, policy_names, resolve_policies

    _quiet_transformers()
    judge = LLMJudge(model=model, threshold_rule=_threshold_rule(threshold_rule))
    if calibrate_on is not None:
        validation = load_split(calibrate_on, "validation")
        judge.calibrate(validation, resolve_policies(policy_names(validation)))
    _report_baseline(judge, _eval_files([], eval_files), "llm-judge", as_json, limit, seed)


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
    app.command("eval")(eval_command)
    app.add_typer(train_app, name="train")
    app.add_typer(devset_app, name="devset")
    app.add_typer(baseline_app, name="baseline")
