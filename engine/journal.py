"""The search journal: one typed JSON line per evaluated recipe, appended (and fsynced) before the
optimizer hears of it, so a killed driver loses at most the evaluations still in flight.

Readers never write: only the search that holds the run directory's lock opens a journal for writing,
and only it drops a torn last line (a driver killed mid-write) before appending.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from uniguard.core.errors import UserError, format_validation_error
from uniguard.core.io import append_jsonl, iter_jsonl


class JournalEntry(BaseModel):
    """One evaluated recipe (or a measured deployment variant of one) with its objectives."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    hash: str
    recipe: dict = Field(description="the Recipe's serialised form (engine.recipe.Recipe.to_dict)")
    label: Optional[str] = None  # the known-good seeds: "TIES defaults", "<name> alone", ...
    f1: float  # macro over policies of the fitness metric, on the data fraction read
    f1_se: Optional[float] = None  # bootstrap standard error of f1 (complete evaluations)
    per_policy: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    size_bytes: int
    latency_ms: float
    shape: Optional[str] = None  # layers kept x dtype: what size and latency depend on
    forwards: int = 0
    full_forwards: int = 0
    fraction: float = 1.0
    raced_out: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = {}
    attempts: int = 1
    finished_at: Optional[float] = None
    format: Optional[str] = None  # a deployment variant (e.g. "onnx-int8") of merge `variant_of`
    variant_of: Optional[str] = None

    @property
    def objectives(self) -> tuple[float, int, float]:
        return self.f1, self.size_bytes, self.latency_ms


class Journal:
    def __init__(self, path: str | Path, writable: bool = False):
        self.path = Path(path)
        self._entries: dict[str, JournalEntry] = {}
        if self.path.exists():
            self._load(writable)

    def _load(self, writable: bool) -> None:
        for number, row in enumerate(iter_jsonl(self.path, tolerate_torn_tail=True), start=1):
            try:
                entry = JournalEntry.model_validate(row)
            except ValidationError as exc:
                raise UserError(f"{self.path}: entry {number} is not a journal entry:\n{format_validation_error(exc)}\n"
                                "restore the file from a backup, or delete that line to re-evaluate its recipe") from None
            self._entries.setdefault(entry.hash, entry)
        if writable:
            _drop_torn_tail(self.path)

    def __contains__(self, recipe_hash: str) -> bool:
        return recipe_hash in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, recipe_hash: str | None) -> JournalEntry | None:
        return self._entries.get(recipe_hash) if recipe_hash else None

    def entries(self) -> list[JournalEntry]:
        return list(self._entries.values())

    def append(self, entry: JournalEntry) -> None:
        if entry.hash in self._entries:
            return
        append_jsonl(self.path, entry.model_dump(mode="json"))
        self._entries[entry.hash] = entry


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that is not complete JSON, so the next append starts on a clean line."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    start = data.rfind(b"\n") + 1
    try:
        json.loads(data[start:])
        keep = len(data)  # complete, only its newline is missing
        suffix = b"\n"
    except ValueError:
        keep, suffix = start, b""
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.seek(keep)
        f.write(suffix)
        f.flush()
        os.fsync(f.fileno())
