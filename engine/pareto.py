"""Pareto fronts over (F1 up, size down, latency down), hypervolume, and the front's plots."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from uniguard.io import write_json


def objectives(entry: dict) -> tuple[float, int, float]:
    return entry["f1"], entry["size_bytes"], entry["latency_ms"]


def is_dominated(point: tuple[float, int, float], others: Sequence[tuple[float, int, float]]) -> bool:
    f1, size, latency = point
    return any(
        of >= f1 and os <= size and ol <= latency and (of > f1 or os < size or ol < latency) for of, os, ol in others
    )


def pareto_front(entries: Sequence[dict]) -> list[dict]:
    """Non-dominated entries among those evaluated on the full validation data, smallest first.
    Entries with identical objectives all stay (none dominates the other)."""
    complete = [e for e in entries if not e.get("raced_out")]
    points = [objectives(e) for e in complete]
    front = [e for e, p in zip(complete, points) if not is_dominated(p, points)]
    return sorted(front, key=lambda e: (e["size_bytes"], e["latency_ms"], -e["f1"]))


def hypervolume(entries: Sequence[dict], size_ref: float, latency_ref: float) -> float:
    """Volume dominated by the front in (F1, size / size_ref, latency / latency_ref) space, with
    reference point (0, 1, 1): larger is better; 1.0 would be F1 = 1 at zero size and latency."""
    points = [(e["f1"], e["size_bytes"] / size_ref, e["latency_ms"] / latency_ref) for e in pareto_front(entries)]
    points = [(f, min(s, 1.0), min(l, 1.0)) for f, s, l in points]
    if not points:
        return 0.0
    # Exact 3-D volume on the grid of the points' own coordinates.
    sizes = sorted({s for _, s, _ in points} | {1.0})
    latencies = sorted({l for _, _, l in points} | {1.0})
    volume = 0.0
    for i in range(len(sizes) - 1):
        for j in range(len(latencies) - 1):
            best = max((f for f, s, l in points if s <= sizes[i] and l <= latencies[j]), default=0.0)
            volume += best * (sizes[i + 1] - sizes[i]) * (latencies[j + 1] - latencies[j])
    return volume


def with_variants(run_dir: Path, entries: Sequence[dict]) -> list[dict]:
    """The journal's entries plus the run's measured deployment variants (e.g. int8 ONNX exports)."""
    from engine.variants import load_variants

    return [*entries, *load_variants(run_dir)]


def write_front(run_dir: Path, entries: Sequence[dict]) -> list[dict]:
    """pareto.json (each point: recipe, objectives, hash; a variant also its format), pareto.png and
    interactive pareto.html, over the journal's `entries` and the run's deployment variants."""
    entries = with_variants(run_dir, entries)
    front = pareto_front(entries)
    points = [
        {"point": k, "hash": e["hash"], "label": e.get("label"), "f1": e["f1"], "size_bytes": e["size_bytes"],
         "latency_ms": e["latency_ms"], "per_policy": e["per_policy"], "thresholds": e["thresholds"], "recipe": e["recipe"],
         **({"format": e["format"], "variant_of": e["variant_of"]} if e.get("format") else {})}
        for k, e in enumerate(front)
    ]
    write_json(run_dir / "pareto.json", {"objectives": {"f1": "max", "size_bytes": "min", "latency_ms": "min"},
                                         "evaluated": len(entries), "points": points})
    plot_front(run_dir, entries, front)
    return points


def _labelled(entries: Sequence[dict]) -> list[dict]:
    """The known-good baselines the search evaluated first (variants get their own marker)."""
    return [e for e in entries if e.get("label") and not e.get("format")]


def plot_front(run_dir: Path, entries: Sequence[dict], front: Sequence[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    complete = [e for e in entries if not e.get("raced_out")]
    raced = [e for e in entries if e.get("raced_out")]
    mb = lambda es: [e["size_bytes"] / 1e6 for e in es]  # noqa: E731
    latencies = [e["latency_ms"] for e in complete] or [0.0]
    scatter = ax.scatter(mb(complete), [e["f1"] for e in complete], c=latencies, cmap="viridis", s=22, alpha=0.7,
                         label="evaluated")
    if raced:
        ax.scatter(mb(raced), [e["f1"] for e in raced], marker="x", color="grey", s=14, alpha=0.5, label="raced out (partial F1)")
    ax.plot(mb(front), [e["f1"] for e in front], "-o", color="crimson", lw=1.5, ms=7, mfc="none", label="Pareto front")
    variants = [e for e in entries if e.get("format")]
    if variants:
        ax.scatter(mb(variants), [e["f1"] for e in variants], marker="D", s=60, color="deepskyblue", edgecolor="black",
                   zorder=6, label="deployment variant (e.g. int8 ONNX)")
        for e in variants:
            ax.annotate(e["format"], (e["size_bytes"] / 1e6, e["f1"]), textcoords="offset points", xytext=(6, -10), fontsize=7)
    for e in _labelled(entries):
        ax.scatter([e["size_bytes"] / 1e6], [e["f1"]], marker="*", s=120, color="orange", edgecolor="black", zorder=5)
        text = e["label"] + (" (raced out: partial F1)" if e.get("raced_out") else "")
        ax.annotate(text, (e["size_bytes"] / 1e6, e["f1"]), textcoords="offset points", xytext=(-6, 4),
                    ha="right", fontsize=7)
    fig.colorbar(scatter, ax=ax, label="latency (ms / example)")
    ax.set_xlabel("model size (MB, model.safetensors)")
    ax.set_ylabel("held-out macro F1 (validation scoring half)")
    ax.set_title("uniguard search: F1 vs size (baselines starred)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "pareto.png", dpi=120)
    plt.close(fig)
    _plot_html(run_dir, complete, front)


def _plot_html(run_dir: Path, complete: Sequence[dict], front: Sequence[dict]) -> None:
    import plotly.graph_objects as go

    hover = lambda es: [f"{e.get('label') or e['recipe']['operator']}<br>hash {e['hash']}" for e in es]  # noqa: E731
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[e["size_bytes"] / 1e6 for e in complete], y=[e["f1"] for e in complete], mode="markers", name="evaluated",
        marker={"color": [e["latency_ms"] for e in complete], "colorscale": "Viridis", "showscale": True,
                "colorbar": {"title": "ms/example"}},
        text=hover(complete), hoverinfo="text+x+y",
    ))
    fig.add_trace(go.Scatter(x=[e["size_bytes"] / 1e6 for e in front], y=[e["f1"] for e in front], mode="lines+markers",
                             name="Pareto front", text=hover(front), hoverinfo="text+x+y"))
    fig.update_layout(xaxis_title="model size (MB)", yaxis_title="held-out macro F1", title="uniguard search")
    fig.write_html(run_dir / "pareto.html", include_plotlyjs=True)
