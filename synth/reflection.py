"""Self-reflection (paper: SDG): the generator re-judges its own samples against the policy.

A judge returns P(violation) per text. Confident disagreements with the intended label are dropped
(default) or relabelled; texts the judge is unsure about keep their label. Every decision is counted
so report.json says how much the judge changed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Literal, Sequence

from synth.policy import Policy
from synth.samples import ALLOWED, UNSAFE, Sample

# judge(texts, policy) -> P(violation) per text
Judge = Callable[[Sequence[str], Policy], Sequence[float]]
ReflectMode = Literal["drop", "relabel"]


@dataclass
class ReflectionStats:
    judged: int = 0
    agreed: int = 0
    unsure: int = 0
    dropped: int = 0
    relabelled: int = 0
    disagreements_by_kind: Counter = field(default_factory=Counter)

    def add(self, other: "ReflectionStats") -> None:
        self.judged += other.judged
        self.agreed += other.agreed
        self.unsure += other.unsure
        self.dropped += other.dropped
        self.relabelled += other.relabelled
        self.disagreements_by_kind.update(other.disagreements_by_kind)

    def to_dict(self) -> dict:
        return {"judged": self.judged, "agreed": self.agreed, "unsure": self.unsure, "dropped": self.dropped,
                "relabelled": self.relabelled, "disagreements_by_kind": dict(sorted(self.disagreements_by_kind.items()))}


def reflect(samples: list[Sample], scores: Sequence[float], *, mode: ReflectMode = "drop",
            unsure_band: tuple[float, float] = (0.2, 0.8)) -> tuple[list[Sample], ReflectionStats]:
    """Apply judge scores to samples: keep agreements and unsure ones, drop or relabel the rest."""
    if len(scores) != len(samples):
        raise ValueError(f"judge returned {len(scores)} scores for {len(samples)} samples")
    low, high = unsure_band
    stats = ReflectionStats(judged=len(samples))
    kept: list[Sample] = []
    for sample, score in zip(samples, scores):
        if low < score < high:
            stats.unsure += 1
            kept.append(sample)
            continue
        judged_label = int(score >= high)
        if judged_label == sample.label:
            stats.agreed += 1
            kept.append(sample)
            continue
        stats.disagreements_by_kind[sample.kind] += 1
        if mode == "drop":
            stats.dropped += 1
            continue
        stats.relabelled += 1
        kept.append(replace(
            sample, label=judged_label, kind=UNSAFE if judged_label else ALLOWED,
            rationale=f"{sample.rationale}; relabelled by self-reflection (judge P(violation)={score:.2f})",
        ))
    return kept, stats
