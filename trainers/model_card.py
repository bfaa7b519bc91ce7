"""The README.md model card written into every trained guard directory."""

from __future__ import annotations

from pathlib import Path

from uniguard.io import atomic_write_text

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
    text = f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [guardrail, uniguard]
---
# uniguard guard: {", ".join(meta["policies"])}

A {kind} trained by `uniguard train {meta["kind"]}`. It is an encoder sequence classifier that reads the pair
(`Instruct: <policy description>`, user text) and outputs P(violation) from a two-way head
(label 1 = violates). Load it with `trainers.guard.Guard.load(DIR)` (applies the thresholds below) or with
`AutoModelForSequenceClassification.from_pretrained(DIR)`.

- Base model: {meta["base_model"]}
- Policies: {", ".join(meta["policies"])}
- Best checkpoint: step {meta["best_step"]}{" (stopped early)" if meta["stopped_early"] else ""}
- Training speed: {_cell(eps)} examples/s
{warning_lines}
## Data (violates / allowed)
| policy | train | validation | test |
|---|---|---|---|
{size_lines}

## Decision thresholds (calibrated for best F1 on validation)
| policy | threshold |
|---|---|
{threshold_lines}

## Validation metrics (at the calibrated thresholds; optimistic: the thresholds were chosen here)
{metrics_table(meta["validation_metrics"])}
## Test metrics (held-out split, thresholds from validation)
{metrics_table(meta["test_metrics"])}
## Hyperparameters
| option | value |
|---|---|
{hyper}

## Limitations
Trained on synthetic, policy-driven data; scores on real traffic can differ. Check it on data like your own
with `uniguard eval --model DIR --data FILE.jsonl` before relying on it, and recalibrate thresholds if needed.
"""
    atomic_write_text(Path(out_dir) / "README.md", text)
