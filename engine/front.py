"""Pareto fronts over (F1 up, size down, latency down) and their hypervolume: pure maths on entries."""

from __future__ import annotations

from typing import Optional, Sequence

from pydantic import BaseModel, ConfigDict

from engine.journal import JournalEntry

OBJECTIVES = {"f1": "max", "size_bytes": "min", "latency_ms": "min"}


class FrontPoint(BaseModel):
    """One point of a run's pareto.json: what `export --point K` merges and the thresholds it ships."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    point: int
    hash: str
    label: Optional[str] = None
    f1: float
    f1_se: Optional[float] = None
    ties: list[int] = []  # front points whose F1 is within noise of this one's (see `tied_points`)
    size_bytes: int
    latency_ms: float
    per_policy: dict[str, float]
    thresholds: dict[str, float]
    recipe: dict
    format: Optional[str] = None
    variant_of: Optional[str] = None

    @classmethod
    def of(cls, k: int, entry: JournalEntry, ties: Sequence[int] = ()) -> "FrontPoint":
        return cls(point=k, ties=list(ties), **entry.model_dump(include=set(cls.model_fields) - {"point", "ties"}))


def front_points(front: Sequence[JournalEntry], z: float = 1.0) -> list[FrontPoint]:
    """The front as numbered points, each with the points it ties with: two points tie when their F1
    differ by less than `z` combined standard errors (sqrt(se_a^2 + se_b^2), unpaired, so a tie is
    the cautious call). The front is ordered by size, so a larger point tied with a smaller one buys
    nothing the data can show."""
    def tied(a: JournalEntry, b: JournalEntry) -> bool:
        if a.f1_se is None or b.f1_se is None:
            return False
        return abs(a.f1 - b.f1) < z * (a.f1_se**2 + b.f1_se**2) ** 0.5

    return [FrontPoint.of(k, e, [j for j, other in enumerate(front) if j != k and tied(e, other)]) for k, e in enumerate(front)]


def is_dominated(point: tuple[float, int, float], others: Sequence[tuple[float, int, float]]) -> bool:
    f1, size, latency = point
    return any(
        of >= f1 and os <= size and ol <= latency and (of > f1 or os < size or ol < latency) for of, os, ol, *_ in others
    )


def pareto_front(entries: Sequence[JournalEntry]) -> list[JournalEntry]:
    """Non-dominated entries among those evaluated on the full validation data, smallest first.
    Entries with identical objectives all stay (none dominates the other)."""
    complete = [e for e in entries if not e.raced_out]
    points = [e.objectives for e in complete]
    front = [e for e, p in zip(complete, points) if not is_dominated(p, points)]
    return sorted(front, key=lambda e: (e.size_bytes, e.latency_ms, -e.f1))


def hypervolume(entries: Sequence[JournalEntry], size_ref: float, latency_ref: float) -> float:
    """Volume dominated by the front in (F1, size / size_ref, latency / latency_ref) space, with
    reference point (0, 1, 1): larger is better; 1.0 would be F1 = 1 at zero size and latency."""
    points = [(e.f1, e.size_bytes / size_ref, e.latency_ms / latency_ref) for e in pareto_front(entries)]
    points = [(f, min(s, 1.0), min(l, 1.0)) for f, s, l in points]
    if not points:
        return 0.0
    # Exact 3-D volume on the grid of the points' own coordinates.
    sizes = sorted({s for _, s, _ in points} | {1.0})
    latencies = sorted({l for _, _, l in points} | {1.0})
    volume = 0.0
    for i in range(len(sizes) - 1):
        for j in range(len(latencies) - 1):
            best = max((f for f, s, l in points if s <= sizes[i] and l <= latencies[j]), default=0.0)
            volume += best * (sizes[i + 1] - sizes[i]) * (latencies[j + 1] - latencies[j])
    return volume
