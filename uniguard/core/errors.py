"""User-facing errors.

Raise `UserError` for anything a user can fix (a bad file, field, flag or model directory). The CLI
prints its message without a traceback and exits with status 2. The message must name the input,
say what is wrong and how to fix it.
"""

from __future__ import annotations

from pydantic import ValidationError


class UserError(Exception):
    """An error caused by user input; its message is shown to the user as is."""


class NonFiniteScore(UserError):
    """A guard produced a NaN or infinite score. Raised instead of returning it, because every
    threshold comparison with NaN is False: the text would silently be "allowed" (fail open)."""


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, `field.path: message`, for every pydantic-validated input."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  - {where}: {err['msg']}")
    return "\n".join(lines)
