"""The front's pictures: pareto.png (matplotlib) and an interactive pareto.html (plotly)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from engine.journal import JournalEntry


def _mb(entries: Sequence[JournalEntry]) -> list[float]:
    return [e.size_bytes / 1e6 for e in entries]


def _se(entries: Sequence[JournalEntry]) -> list[float]:
    return [e.f1_se or 0.0 for e in entries]


def _baselines(entries: Sequence[JournalEntry]) -> list[JournalEntry]:
    """The known-good baselines the search evaluated first (variants get their own marker)."""
    return [e for e in entries if e.label and not e.format]


def plot_front(png: Path, html: Path, entries: Sequence[JournalEntry], front: Sequence[JournalEntry]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    complete = [e for e in entries if not e.raced_out]
    raced = [e for e in entries if e.raced_out]
    latencies = [e.latency_ms for e in complete] or [0.0]
    scatter = ax.scatter(_mb(complete), [e.f1 for e in complete], c=latencies, cmap="viridis", s=22, alpha=0.7, label="evaluated")
    ax.errorbar(_mb(complete), [e.f1 for e in complete], yerr=_se(complete), fmt="none", ecolor="grey", alpha=0.35, lw=0.8,
                label="± 1 bootstrap SE")
    if raced:
        ax.scatter(_mb(raced), [e.f1 for e in raced], marker="x", color="grey", s=14, alpha=0.5, label="raced out (partial F1)")
    ax.plot(_mb(front), [e.f1 for e in front], "-o", color="crimson", lw=1.5, ms=7, mfc="none", label="Pareto front")
    variants = [e for e in entries if e.format]
    if variants:
        ax.scatter(_mb(variants), [e.f1 for e in variants], marker="D", s=60, color="deepskyblue", edgecolor="black",
                   zorder=6, label="deployment variant (e.g. int8 ONNX)")
        for e in variants:
            ax.annotate(e.format, (e.size_bytes / 1e6, e.f1), textcoords="offset points", xytext=(6, -10), fontsize=7)
    for e in _baselines(entries):
        ax.scatter([e.size_bytes / 1e6], [e.f1], marker="*", s=120, color="orange", edgecolor="black", zorder=5)
        text = e.label + (" (raced out: partial F1)" if e.raced_out else "")
        ax.annotate(text, (e.size_bytes / 1e6, e.f1), textcoords="offset points", xytext=(-6, 4), ha="right", fontsize=7)
    fig.colorbar(scatter, ax=ax, label="latency (ms / example)")
    ax.set_xlabel("model size (MB, model.safetensors)")
    ax.set_ylabel("held-out macro F1 (validation scoring half)")
    ax.set_title("uniguard search: F1 vs size (baselines starred)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    _plot_html(html, complete, front)


def _hover(entries: Sequence[JournalEntry]) -> list[str]:
    def one(e: JournalEntry) -> str:
        policies = "<br>".join(f"  {name}: {value:.3f}" for name, value in sorted(e.per_policy.items()))
        se = f" ± {e.f1_se:.3f}" if e.f1_se is not None else ""
        return f"{e.label or e.recipe.get('operator')}<br>hash {e.hash}<br>F1 {e.f1:.3f}{se}<br>{e.latency_ms:.2f} ms/example<br>{policies}"

    return [one(e) for e in entries]


def _plot_html(html: Path, complete: Sequence[JournalEntry], front: Sequence[JournalEntry]) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=_mb(complete), y=[e.f1 for e in complete], mode="markers", name="evaluated",
        marker={"color": [e.latency_ms for e in complete], "colorscale": "Viridis", "showscale": True,
                "colorbar": {"title": "ms/example", "x": 1.02}},
        error_y={"type": "data", "array": _se(complete), "thickness": 0.8, "color": "rgba(120,120,120,0.5)"},
        text=_hover(complete), hoverinfo="text+x+y",
    ))
    fig.add_trace(go.Scatter(x=_mb(front), y=[e.f1 for e in front], mode="lines+markers", name="Pareto front",
                             text=_hover(front), hoverinfo="text+x+y"))
    baselines = _baselines(complete)
    if baselines:
        fig.add_trace(go.Scatter(x=_mb(baselines), y=[e.f1 for e in baselines], mode="markers+text", name="baselines",
                                 marker={"symbol": "star", "size": 14, "color": "orange", "line": {"width": 1}},
                                 text=[e.label for e in baselines], textposition="top left",
                                 hovertext=_hover(baselines), hoverinfo="text+x+y"))
    # the legend above the plot area: on the right it covered the colour bar
    fig.update_layout(xaxis_title="model size (MB)", yaxis_title="held-out macro F1", title="uniguard search",
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0})
    fig.write_html(html, include_plotlyjs=True)
