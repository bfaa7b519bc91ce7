"""Merge operators as plug-ins: one registry, a decorator, typed parameters.

    import operators
    operators.available()                       # ['breadcrumbs', ..., 'ties']
    merged = operators.get("ties")(base, [a, b, c], weights=[1, 1, 1], density=0.5)

Register your own with `@operators.merge_operator(name, params=[operators.Param(...)])`, or ship it
in a package that declares an entry point in the `uniguard.operators` group.
"""

from operators.registry import ENTRY_POINT_GROUP, MergeOperator, Param, available, get, merge_operator

# Importing the built-in modules registers their operators.
from operators import averaging as _averaging  # noqa: E402,F401
from operators import task_arithmetic as _task_arithmetic  # noqa: E402,F401

__all__ = ["ENTRY_POINT_GROUP", "MergeOperator", "Param", "available", "get", "merge_operator"]
