"""The search config: pool, data, space, strategy, fitness and objective, validated at the edge."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.space import SpaceConfig
from engine.strategies import StrategyConfig
from fitness.evaluator import FitnessSettings
from uniguard.core.errors import UserError, format_validation_error
from uniguard.core.io import read_yaml_mapping


class PoolConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base: str
    candidates: tuple[str, ...] = Field(min_length=1)
    names: tuple[str, ...] | None = None
    multitask: str | None = Field(default=None, description="name of the MultiTaskGuard candidate, if any")


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    validation: str
    policies: tuple[str, ...] = ()


class ObjectiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    size_weight: float = Field(default=0.02, ge=0, description="loss per full-model size, for single-objective strategies")
    latency_weight: float = Field(default=0.02, ge=0)


class SearchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pool: PoolConfig
    data: DataConfig
    space: SpaceConfig = SpaceConfig()
    strategy: StrategyConfig = StrategyConfig()
    fitness: FitnessSettings = FitnessSettings()
    objective: ObjectiveConfig = ObjectiveConfig()
    budget: int = Field(default=48, ge=1)
    workers: int = Field(default=2, ge=1)

    @property
    def names(self) -> list[str]:
        return list(self.pool.names or [Path(c).name for c in self.pool.candidates])

    @model_validator(mode="after")
    def _multitask_is_a_candidate(self) -> "SearchConfig":
        if self.pool.multitask is not None and self.pool.multitask not in self.names:
            raise ValueError(f"pool.multitask {self.pool.multitask!r} is not a candidate's name; "
                             f"use one of {self.names} (pool.names, or the candidates' folder names)")
        return self


def load_search_config(path: str | Path, pool_dir: str | Path | None = None) -> SearchConfig:
    """Read a search YAML; relative paths resolve against `pool_dir` (if given) or the file's folder."""
    path = Path(path)
    if pool_dir is not None and not Path(pool_dir).is_dir():
        raise UserError(f"--pool {pool_dir}: not a directory; build one with `python -m experiments.smoke_pool {pool_dir}`")
    raw = read_yaml_mapping(path, "search config")
    try:
        config = SearchConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: invalid search config:\n{format_validation_error(exc)}") from None
    root = Path(pool_dir) if pool_dir is not None else path.parent
    resolve = lambda p: p if Path(p).is_absolute() or not (root / p).exists() else str((root / p).resolve())  # noqa: E731
    pool = config.pool.model_copy(update={"base": resolve(config.pool.base), "candidates": tuple(resolve(c) for c in config.pool.candidates)})
    data = config.data.model_copy(update={"validation": resolve(config.data.validation)})
    return config.model_copy(update={"pool": pool, "data": data})


def with_compute(config: SearchConfig, device: str | None, precision: str | None) -> SearchConfig:
    """The config with `--device` / `--precision` from the command line, where given, validated as config fields."""
    updates = {k: v for k, v in (("device", device), ("precision", precision)) if v is not None}
    if not updates:
        return config
    try:
        fitness = FitnessSettings.model_validate({**config.fitness.model_dump(), **updates})
    except ValidationError as exc:
        raise UserError(f"--device/--precision: {format_validation_error(exc)}") from None
    return config.model_copy(update={"fitness": fitness})
