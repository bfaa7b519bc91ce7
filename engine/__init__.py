"""The search engine: model pools, recipes, merging, the Ray search, run directories and exports."""

from engine.recipe import Recipe

__all__ = ["Recipe"]
