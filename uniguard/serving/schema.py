"""The HTTP contract of `uniguard serve`: request, response and error bodies (the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from synth.policy import Policy


def _policy_ref_kind(value) -> str:
    return "name" if isinstance(value, str) else "inline"


# a tagged union, so a bad inline policy is reported as `policies.0.inline.<field>` rather than as two failed guesses
PolicyRef = Annotated[
    Union[
        Annotated[str, Field(min_length=1, max_length=200, description="a built-in or server-loaded policy name"), Tag("name")],
        Annotated[Policy, Tag("inline")],
    ],
    Discriminator(_policy_ref_kind),
]


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(description="texts to check (each is paired with every policy)")
    policies: list[PolicyRef] = Field(
        default_factory=list, description="policy names or inline policy objects; empty means the server's default policies"
    )


class PolicyVerdict(BaseModel):
    policy: str
    score: float = Field(description="P(violation)")
    violates: bool
    threshold: float


class TextResult(BaseModel):
    index: int = Field(description="position of the text in the request")
    verdicts: list[PolicyVerdict]


class CheckResponse(BaseModel):
    results: list[TextResult]
    model: str


class Health(BaseModel):
    status: str
    model: str
    format: str
    default_policies: list[str]
    batches_run: int = Field(description="forward passes run so far; fewer than requests means requests were batched together")
    pairs_scored: int


class ErrorBody(BaseModel):
    error: str
    message: str
    limit: str | None = None
