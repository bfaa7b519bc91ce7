"""Guardrail policies: the schema, YAML loading with clear errors, and the built-in library.

A policy is the paper's tuple (name, description, disallowed, allowed, examples). Every guard reads
(policy instruction, user text) as a text pair, so `Policy.instruction` is the one place that
decides how a policy is shown to a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from uniguard.core.errors import UserError, format_validation_error
from uniguard.core.io import read_yaml_mapping

BUILTIN_DIR = Path(__file__).parent / "policies"


class PolicyExample(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str = Field(min_length=1)
    label: Literal[0, 1] = Field(description="1 = violates the policy, 0 = allowed")


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", description="short id: lowercase letters, digits, _ or -")
    description: str = Field(min_length=10)
    disallowed: tuple[str, ...] = Field(min_length=1)
    allowed: tuple[str, ...] = ()
    examples: tuple[PolicyExample, ...] = ()

    @field_validator("disallowed", "allowed")
    @classmethod
    def _no_blank_behaviours(cls, items: tuple[str, ...]) -> tuple[str, ...]:
        items = tuple(item.strip() for item in items)
        if any(not item for item in items):
            raise ValueError("behaviours must be non-empty strings")
        return items

    @property
    def instruction(self) -> str:
        """The task instruction paired with every user text (paper: `Instruct: <policy>`)."""
        return f"Instruct: {self.description.strip()}"


def builtin_policy_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_policy(name_or_path: str | Path) -> Policy:
    """Load a built-in policy by name or a policy YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return _load_policy_file(path)
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if builtin.is_file():
        return _load_policy_file(builtin)
    raise UserError(
        f"policy {str(name_or_path)!r}: not a built-in policy name nor an existing YAML file; "
        f"use one of {', '.join(builtin_policy_names())} or a path to a policy .yaml"
    )


def load_policies(names_or_paths: list[str] | tuple[str, ...]) -> list[Policy]:
    policies = [load_policy(p) for p in names_or_paths]
    names = [p.name for p in policies]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"policy names must be unique, got {', '.join(duplicates)} more than once; rename one")
    return policies


def _load_policy_file(path: Path) -> Policy:
    raw = read_yaml_mapping(path, "policy (name, description, disallowed, allowed)")
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: invalid policy:\n{format_validation_error(exc)}") from None
