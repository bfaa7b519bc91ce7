"""Quality metrics the search maximises, as plug-ins (like merge operators).

A metric reads labels and scores of a policy's calibration half and scoring half and returns the
value to maximise plus the decision threshold it implies. The threshold is placed on the calibration
half by the search's threshold rule (`fitness.threshold_rule`: f1, balanced or fpr:TARGET, as in
training), so the built-in `guard_f1` ranks a recipe by the F1 it has at the threshold it ships with.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

import numpy as np

from trainers.metrics import DEFAULT_THRESHOLD_RULE, auprc, best_threshold, binary_metrics, recall_at_fpr
from uniguard.core.errors import UserError

ENTRY_POINT_GROUP = "uniguard.fitness"


@dataclass(frozen=True)
class PolicyScore:
    value: float  # what the search maximises, in [0, 1]
    threshold: float  # decision threshold chosen on the calibration half


# (calibration labels, calibration scores, scoring labels, scoring scores, threshold rule)
Metric = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str], PolicyScore]
_METRICS: dict[str, Metric] = {}
_loaded_entry_points = False


def fitness_metric(name: str) -> Callable[[Metric], Metric]:
    """Register `fn(calibration_labels, calibration_scores, scoring_labels, scoring_scores, threshold_rule)
    -> PolicyScore`; `threshold_rule` is a `trainers.metrics.best_threshold` rule."""

    def register(fn: Metric) -> Metric:
        if name in _METRICS:
            raise ValueError(f"fitness metric {name!r} is registered twice")
        _METRICS[name] = fn
        return fn

    return register


def get_metric(name: str) -> Metric:
    global _loaded_entry_points
    if not _loaded_entry_points:
        _loaded_entry_points = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()
    if name not in _METRICS:
        raise UserError(f"unknown fitness metric {name!r}; available: {', '.join(sorted(_METRICS))}")
    return _METRICS[name]


@fitness_metric("guard_f1")
def guard_f1(cal_labels, cal_scores, labels, scores, threshold_rule: str = DEFAULT_THRESHOLD_RULE) -> PolicyScore:
    """F1 on the scoring half at the calibration half's threshold."""
    threshold, _ = best_threshold(cal_labels, cal_scores, threshold_rule)
    return PolicyScore(binary_metrics(labels, scores, threshold)["f1"], threshold)


@fitness_metric("auprc")
def guard_auprc(cal_labels, cal_scores, labels, scores, threshold_rule: str = DEFAULT_THRESHOLD_RULE) -> PolicyScore:
    """Area under the precision-recall curve on the scoring half (threshold-free; the threshold is for export)."""
    return PolicyScore(auprc(labels, scores), best_threshold(cal_labels, cal_scores, threshold_rule)[0])


@fitness_metric("recall_at_1pct_fpr")
def guard_recall_at_low_fpr(cal_labels, cal_scores, labels, scores, threshold_rule: str = DEFAULT_THRESHOLD_RULE) -> PolicyScore:
    """Recall on the scoring half at 1% false-positive rate (for strict deployments)."""
    return PolicyScore(recall_at_fpr(labels, scores, 0.01), best_threshold(cal_labels, cal_scores, threshold_rule)[0])
