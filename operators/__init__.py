"""Merge operators as plug-ins: one registry, a decorator, typed parameters.

    import operators
    operators.available()                       # ['breadcrumbs', ..., 'ties']
    merged = operators.get("ties")(base, [a, b, c], weights=[1, 1, 1], density=0.5)

Register your own with `@operators.merge_operator(name, params=[operators.Param(...)])`, or ship it
in a package that declares an entry point in the `uniguard.operators` group.
"""

from operators.registry import ENTRY_POINT_GROUP, MergeOperator, Param, available, check_out, get, merge_operator

# The built-in operators (operators.task_arithmetic, .averaging, .spectral, .lines, .data_aware) register on
# first use of get() / available(), so importing this package stays light (no torch, no numba).

__all__ = ["ENTRY_POINT_GROUP", "MergeOperator", "Param", "available", "check_out", "get", "merge_operator"]
