"""The search engine: model pools, recipes, merging (and, with the search issue, the Ray search)."""

from engine.recipe import Recipe

__all__ = ["Recipe"]
