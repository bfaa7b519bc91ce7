"""Guard evaluation metrics: pure functions over numpy arrays.

Conventions (shared by every number uniguard reports):
- `labels` are 0/1 with 1 = violates; `scores` are P(violation); a text is flagged when
  `score >= threshold`.
- A ratio whose denominator is zero is 0.0 (precision with nothing flagged, recall with no positives,
  FPR with no negatives), as scikit-learn's `zero_division=0`; ranking metrics that need both
  classes (AUPRC, recall at a fixed FPR) are `nan` when one class is missing, so an empty class is
  never mistaken for a perfect or a useless guard. `json_safe` turns those nan into None for JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

RATE_METRICS = ("f1", "precision", "recall", "fpr", "accuracy", "auprc", "recall_at_1pct_fpr")
COUNT_METRICS = ("tp", "fp", "tn", "fn", "n", "n_positive")


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def _as_arrays(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if np.isnan(s).any():
        raise ValueError("scores contain nan")
    return y, s


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def confusion_counts(labels, predictions) -> Confusion:
    """Counts of a 0/1 prediction against 0/1 labels."""
    y, p = _as_arrays(labels, predictions)
    p = p.astype(bool)
    pos = y == 1
    return Confusion(
        tp=int(np.sum(p & pos)), fp=int(np.sum(p & ~pos)), tn=int(np.sum(~p & ~pos)), fn=int(np.sum(~p & pos))
    )


def metrics_from_confusion(c: Confusion) -> dict[str, float]:
    precision = _ratio(c.tp, c.tp + c.fp)
    recall = _ratio(c.tp, c.tp + c.fn)
    return {
        "f1": _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
        "precision": precision,
        "recall": recall,
        "fpr": _ratio(c.fp, c.fp + c.tn),
        "accuracy": _ratio(c.tp + c.tn, c.n),
    }


def binary_metrics(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """F1, precision, recall, FPR, accuracy and confusion counts with `score >= threshold` flagged."""
    y, s = _as_arrays(labels, scores)
    c = confusion_counts(y, s >= threshold)
    return {**metrics_from_confusion(c), **asdict(c), "n": c.n, "n_positive": int(y.sum()), "threshold": float(threshold)}


def _ranked_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (tp, fp) when flagging everything at or above each distinct score, high to low."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # last index of each run of equal scores: ties are flagged together or not at all
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = np.cumsum(1 - y_sorted)[last_of_run]
    return tp, fp, s_sorted[last_of_run]


def auprc(labels, scores) -> float:
    """Area under the precision-recall curve as average precision: sum over thresholds of
    (recall step) x precision, with no interpolation (the same definition as scikit-learn)."""
    y, s = _as_arrays(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return math.nan
    tp, fp, _ = _ranked_counts(y, s)
    precision = tp / (tp + fp)
    recall_steps = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(recall_steps * precision))


def recall_at_fpr(labels, scores, max_fpr: float = 0.01) -> float:
    """The highest recall of any threshold whose false-positive rate is at most `max_fpr`."""
    y, s = _as_arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    tp, fp, _ = _ranked_counts(y, s)
    ok = fp / n_neg <= max_fpr
    return float(tp[ok].max() / n_pos) if ok.any() else 0.0


THRESHOLD_RULES = ("f1", "balanced")  # the rules without a parameter; `fpr:TARGET` takes one
FPR_RULE = "fpr"
THRESHOLD_RULE_HELP = "f1, balanced or fpr:TARGET (e.g. fpr:0.03)"
# Where traffic is mostly benign, a guard is deployable only at a low false-positive rate: on the
# quickstart's MultiTaskGuard this rule kept or raised real-dev F1 and cut its real false-positive
# rate by 34-42% against `f1` in two runs (docs/guards.md, Threshold rules). One default for training,
# the search's fitness thresholds and the TF-IDF baseline, so they are compared at one rule.
DEFAULT_THRESHOLD_RULE = "fpr:0.03"


@dataclass(frozen=True)
class ThresholdRule:
    """A parsed threshold rule: `f1`, `balanced`, or `fpr` with its target false-positive rate."""

    name: str
    target_fpr: float | None = None

    def to_dict(self) -> dict:
        return {"rule": self.name, **({"target_fpr": self.target_fpr} if self.name == FPR_RULE else {})}


def parse_threshold_rule(rule: str) -> ThresholdRule:
    """`f1`, `balanced` or `fpr:TARGET` with TARGET a false-positive rate in [0, 1)."""
    if rule in THRESHOLD_RULES:
        return ThresholdRule(rule)
    name, _, target = rule.partition(":")
    if name == FPR_RULE:
        try:
            value = float(target)
        except ValueError:
            value = math.nan
        if 0 <= value < 1:
            return ThresholdRule(FPR_RULE, value)
        raise ValueError(f"threshold rule {rule!r}: the target false-positive rate must be a number in [0, 1), e.g. fpr:0.03")
    raise ValueError(f"unknown threshold rule {rule!r}; use one of {THRESHOLD_RULE_HELP}")


def best_threshold(labels, scores, rule: str = "f1") -> tuple[float, float]:
    """(threshold, objective) maximising `rule` for `score >= threshold` over the observed scores.

    rule "f1": F1 of the violating class. It depends on the class mix: on validation data that is 60%
    violating, flagging everything already scores F1 0.75, so the threshold drifts low.
    rule "balanced": TPR - FPR (Youden's J, equivalently balanced accuracy), which does not depend on
    the class mix; use it when deployment traffic is mostly benign.
    rule "fpr:TARGET": the lowest threshold whose false-positive rate on the benign (label 0) rows is at
    most TARGET; the objective is the recall there. Use it when the false-alarm budget is what is fixed.

    The threshold sits halfway between the lowest flagged score and the next lower one, so a
    held-out score that falls in the gap is not decided by which side of a training point it lands.
    Ties keep the highest threshold (fewer false positives). With no positives the objective is 0
    and the threshold is just above the top score (flag nothing).
    """
    parsed = parse_threshold_rule(rule)
    y, s = _as_arrays(labels, scores)
    if y.size == 0:
        raise ValueError("best_threshold needs at least one example")
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0:
        return float(np.nextafter(s.max(), np.inf)), 0.0
    tp, fp, cut_scores = _ranked_counts(y, s)
    if parsed.name == FPR_RULE:
        return _fpr_threshold(tp / n_pos, fp / n_neg if n_neg else np.zeros_like(fp, dtype=np.float64), cut_scores, parsed.target_fpr)
    objective = 2 * tp / (tp + fp + n_pos) if parsed.name == "f1" else tp / n_pos - (fp / n_neg if n_neg else 0.0)
    # first maximum = highest threshold among ties; the tolerance makes 2/3 - 0 and 1 - 1/3 a tie
    best = int(np.flatnonzero(objective >= objective.max() - 1e-12)[0])
    return _between(cut_scores, best), float(objective[best])


def _fpr_threshold(tpr: np.ndarray, fpr: np.ndarray, cut_scores: np.ndarray, target: float) -> tuple[float, float]:
    """The lowest cut (most recall) whose FPR is at most `target`; FPR only grows as the cut falls."""
    within = np.flatnonzero(fpr <= target + 1e-12)
    if within.size == 0:  # even the top score is a benign row over budget: flag nothing
        return float(np.nextafter(cut_scores[0], np.inf)), 0.0
    best = int(within[-1])
    return _between(cut_scores, best), float(tpr[best])


def _between(cut_scores: np.ndarray, best: int) -> float:
    """Halfway from cut `best` to the next lower observed score (see `best_threshold`)."""
    lower = cut_scores[best + 1] if best + 1 < cut_scores.size else None
    threshold = cut_scores[best]
    if lower is not None and lower < (cut_scores[best] + lower) / 2:  # the midpoint can round onto `lower`
        threshold = (cut_scores[best] + lower) / 2
    return float(threshold)


def evaluate_scores(labels, scores, threshold: float = 0.5) -> dict[str, float]:
    """Every metric uniguard reports for one policy: thresholded ones, AUPRC, recall at 1% FPR."""
    result = binary_metrics(labels, scores, threshold)
    result["auprc"] = auprc(labels, scores)
    result["recall_at_1pct_fpr"] = recall_at_fpr(labels, scores, 0.01)
    return result


def per_policy_metrics(
    labels, scores, policies: Sequence[str], thresholds: Mapping[str, float] | float = 0.5
) -> dict[str, dict]:
    """Metrics for each policy (its own threshold) and their aggregate.

    Returns {"per_policy": {name: metrics}, "macro": metrics}: macro rates are the unweighted mean
    over policies (ignoring nan, i.e. policies where a ranking metric is undefined); macro counts
    are sums.
    """
    y, s = _as_arrays(labels, scores)
    names = np.asarray(list(policies), dtype=object)
    if names.size != y.size:
        raise ValueError(f"policies and labels differ in length: {names.size} vs {y.size}")
    per_policy = {}
    for name in sorted(set(names.tolist())):
        mask = names == name
        t = thresholds if isinstance(thresholds, (int, float)) else thresholds.get(name, 0.5)
        per_policy[name] = evaluate_scores(y[mask], s[mask], float(t))
    return {"per_policy": per_policy, "macro": macro_average(per_policy.values())}


def macro_average(results) -> dict[str, float]:
    """Unweighted mean of rate metrics (nan-aware) and sum of counts over several policies' results."""
    results = list(results)
    macro: dict[str, float] = {}
    for key in RATE_METRICS:
        values = np.array([r[key] for r in results if key in r], dtype=np.float64)
        finite = values[~np.isnan(values)]
        macro[key] = float(finite.mean()) if finite.size else math.nan
    for key in COUNT_METRICS:
        macro[key] = int(sum(r.get(key, 0) for r in results))
    macro["n_policies"] = len(results)
    return macro


def json_safe(obj):
    """Replace nan/inf with None (JSON has no nan) throughout nested dicts and lists."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj
