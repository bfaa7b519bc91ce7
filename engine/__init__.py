"""The search engine: model pools, recipes, merging, the Ray search and Pareto exports."""

from engine.recipe import Recipe


def export_point(run_dir, point, out_dir):
    """Export Pareto point `point` of a search run as a Hugging Face guard (see engine.export)."""
    from engine.export import export_point as _export_point

    return _export_point(run_dir, point, out_dir)


__all__ = ["Recipe", "export_point"]
