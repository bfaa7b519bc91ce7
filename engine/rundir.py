"""A search run directory: the one place that knows its file names.

    RUN/search.yaml      the pinned config (a resumed search must match it)
    RUN/journal.jsonl    every evaluated recipe (engine.journal)
    RUN/variants.jsonl   measured deployment variants of front points (engine.variants)
    RUN/pareto.json      the front (engine.front.FrontPoint per point), pareto.png, pareto.html
    RUN/confirmation.json  the front's best re-scored on data the search never used (engine.confirm)
    RUN/.lock            held by the one search writing the run

Readers (`uniguard pareto`, export, reports) never write the journal; one writer at a time holds the
lock, so a second search on the same directory is refused instead of interleaving rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator, Sequence

import yaml
from pydantic import ValidationError

from engine.config import SearchConfig, load_search_config
from engine.front import OBJECTIVES, FrontPoint, front_points, pareto_front
from engine.journal import Journal, JournalEntry
from uniguard.core.errors import UserError
from uniguard.core.io import atomic_write_text, write_json


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_file(self) -> Path:
        return self.path / "search.yaml"

    @property
    def journal_file(self) -> Path:
        return self.path / "journal.jsonl"

    @property
    def variants_file(self) -> Path:
        return self.path / "variants.jsonl"

    @property
    def front_file(self) -> Path:
        return self.path / "pareto.json"

    @property
    def confirmation_file(self) -> Path:
        return self.path / "confirmation.json"

    @property
    def png(self) -> Path:
        return self.path / "pareto.png"

    @property
    def html(self) -> Path:
        return self.path / "pareto.html"

    def is_run(self) -> bool:
        return self.journal_file.is_file() or self.front_file.is_file()

    def journal(self, writable: bool = False) -> Journal:
        return Journal(self.journal_file, writable=writable)

    def entries(self) -> list[JournalEntry]:
        if not self.journal_file.is_file():
            raise UserError(f"{self.path}: no journal.jsonl; is this a search run directory (uniguard search --out)?")
        return self.journal().entries()

    def variants(self, writable: bool = False) -> Journal:
        return Journal(self.variants_file, writable=writable)

    def config(self) -> SearchConfig:
        return _with_legacy_defaults(load_search_config(self.config_file), yaml.safe_load(self.config_file.read_text()))

    def points(self) -> list[FrontPoint]:
        import json

        if not self.front_file.is_file():
            raise UserError(f"{self.path}: no pareto.json; run `uniguard search ... --out {self.path}` first")
        try:
            return [FrontPoint.model_validate(p) for p in json.loads(self.front_file.read_text())["points"]]
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise UserError(f"{self.front_file}: not a uniguard Pareto front ({type(exc).__name__}); "
                            f"rewrite it from the journal with `uniguard pareto {self.path}`") from None

    def point(self, k: int) -> FrontPoint:
        points = self.points()
        if not 0 <= k < len(points):
            raise UserError(f"--point {k}: the front of {self.path} has points 0..{len(points) - 1}; see `uniguard pareto {self.path}`")
        return points[k]

    def pin(self, config: SearchConfig) -> None:
        """The run directory remembers its config; resuming with a different one is refused. The pinned
        file is compared as a config, not as text, so a setting added to uniguard later (pinned runs lack
        it, and get its default) does not lock an older run out of resuming."""
        if not self.config_file.exists():
            atomic_write_text(self.config_file, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True))
        elif (pinned := self._pinned()) != config:
            rule = (f" (its thresholds are placed by `{pinned.fitness.threshold_rule}`, yours by `{config.fitness.threshold_rule}`: "
                    f"set fitness.threshold_rule: {pinned.fitness.threshold_rule} to resume it)"
                    if pinned is not None and pinned.fitness.threshold_rule != config.fitness.threshold_rule else "")
            raise UserError(f"{self.path} holds a search with a different config ({self.config_file}){rule}; use a new --out "
                            "directory or rerun with the same config to resume")

    def _pinned(self) -> SearchConfig | None:
        try:
            raw = yaml.safe_load(self.config_file.read_text())
            return _with_legacy_defaults(SearchConfig.model_validate(raw), raw)
        except (ValidationError, yaml.YAMLError):
            return None  # a field uniguard no longer has, or a damaged file: not the same config

    def front(self, entries: Sequence[JournalEntry]) -> list[JournalEntry]:
        """The front over the journal's `entries` and the run's measured deployment variants."""
        return pareto_front(self.with_variants(entries))

    def with_variants(self, entries: Sequence[JournalEntry]) -> list[JournalEntry]:
        variants = self.variants().entries() if self.variants_file.is_file() else []
        return [*entries, *variants]

    def write_front(self, entries: Sequence[JournalEntry]) -> list[FrontPoint]:
        """pareto.json, pareto.png and pareto.html over `entries` and the run's deployment variants."""
        from engine.plot import plot_front

        everything = self.with_variants(entries)
        front = pareto_front(everything)
        points = front_points(front)
        write_json(self.front_file, {"objectives": OBJECTIVES, "evaluated": len(everything),
                                     "points": [p.model_dump(mode="json", exclude_none=True) for p in points]})
        plot_front(self.png, self.html, everything, front)
        return points

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive for the life of a search: a second writer fails at once with a clear message."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(f"{self.path}: another `uniguard search` is writing this run directory; wait for it to "
                                "finish (rerunning the same command afterwards resumes) or use a new --out") from None
            yield
        finally:
            os.close(fd)  # closing releases the lock, also when the process is killed


def _with_legacy_defaults(config: SearchConfig, raw) -> SearchConfig:
    """A pinned file holds every setting (it is a full dump), so one it lacks predates the setting: such
    a run ran with the setting's default of that time, not today's. fitness.threshold_rule arrived with
    the default fpr:0.03; runs pinned before it placed their thresholds by F1."""
    fitness = raw.get("fitness") if isinstance(raw, dict) else None
    if isinstance(fitness, dict) and "threshold_rule" not in fitness:
        return config.model_copy(update={"fitness": config.fitness.model_copy(update={"threshold_rule": "f1"})})
    return config
