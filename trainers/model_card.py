"""The README.md model card written into every trained guard directory."""

from __future__ import annotations

from pathlib import Path

from uniguard.core.io import atomic_write_text

_METRICS = ("f1", "precision", "recall", "fpr", "auprc", "recall_at_1pct_fpr", "n")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.3f}"
    return str(value)


def metrics_table(report: dict | None) -> str:
    if not report:
        return "_no data_\n"
    lines = ["| policy | " + " | ".join(_METRICS) + " |", "|---" * (len(_METRICS) + 1) + "|"]
    rows = list(report["per_policy"].items())
    if len(rows) > 1:
        rows.append(("**macro**", report["macro"]))
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(_cell(m.get(k)) for k in _METRICS) + " |")
    return "\n".join(lines) + "\n"


def write_model_card(out_dir: str | Path, meta: dict, thresholds: dict[str, float]) -> None:
    training = meta["training"]
    kind = "MultiTaskGuard (all policies, policy text as instruction)" if meta["kind"] == "multitask" else "single-policy guard"
    sizes = meta["data_sizes"]
    size_lines = "\n".join(
        f"| {p} | " + " | ".join(
            f"{sizes[s].get(p, {}).get('violates', 0)} / {sizes[s].get(p, {}).get('allowed', 0)}" for s in ("train", "validation", "test")
        ) + " |"
        for p in meta["policies"]
    )
    hyper = "\n".join(f"| {k} | {v} |" for k, v in training.items())
    threshold_lines = "\n".join(f"| {p} | {t:.4f} |" for p, t in sorted(thresholds.items()))
    eps = meta.get("train_examples_per_second")
    warning_lines = "".join(f"- **Warning:** {w}\n" for w in meta.get("warnings", []))
    intro = f"""A {kind} trained by `uniguard train {meta["kind"]}`. It is an encoder sequence classifier that reads the pair
(`Instruct: <policy description>`, user text) and outputs P(violation) from a two-way head
(label 1 = violates). Load it with `uniguard.load_guard(DIR)` (applies the thresholds below) or with
`AutoModelForSequenceClassification.from_pretrained(DIR)`.

- Base model: {meta["base_model"]}
- Policies: {", ".join(meta["policies"])}
- Best checkpoint: step {meta["best_step"]}{" (stopped early)" if meta["stopped_early"] else ""}
- Training speed: {_cell(eps)} examples/s
{warning_lines}"""
    text = render_card(f"uniguard guard: {', '.join(meta['policies'])}", ["guardrail", "uniguard"], intro, {
        "Data (violates / allowed)": f"| policy | train | validation | test |\n|---|---|---|---|\n{size_lines}\n",
        "Decision thresholds (calibrated on validation)": f"| policy | threshold |\n|---|---|\n{threshold_lines}\n",
        "Validation metrics (at the calibrated thresholds; optimistic: the thresholds were chosen here)": metrics_table(meta["validation_metrics"]),
        "Test metrics (held-out split, thresholds from validation)": metrics_table(meta["test_metrics"]),
        "Hyperparameters": f"| option | value |\n|---|---|\n{hyper}\n",
        "Limitations": "Trained on synthetic, policy-driven data; scores on real traffic can differ. Check it on data like your own\n"
                       "with `uniguard eval --model DIR --data FILE.jsonl` before relying on it, and recalibrate thresholds if needed.\n",
    })
    atomic_write_text(Path(out_dir) / "README.md", text)


def render_card(title: str, tags: list[str], intro: str, sections: dict[str, str]) -> str:
    """The one model-card layout (Hub front matter, title, intro, `## heading` sections) of every guard
    uniguard writes: trained guards here, merges in `engine.export`."""
    body = "".join(f"\n## {heading}\n{text.rstrip()}\n" for heading, text in sections.items())
    return (f"---\nlibrary_name: transformers\npipeline_tag: text-classification\ntags: [{', '.join(tags)}]\n---\n"
            f"# {title}\n\n{intro.rstrip()}\n{body}")
