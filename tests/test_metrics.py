"""Metric functions against hand-computed cases, with scikit-learn as an independent oracle."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_curve

from trainers.metrics import (
    auprc,
    best_threshold,
    binary_metrics,
    confusion_counts,
    evaluate_scores,
    json_safe,
    macro_average,
    per_policy_metrics,
    recall_at_fpr,
)

# Ranked high to low: + + - + - -
LABELS = [1, 1, 0, 1, 0, 0]
SCORES = [0.9, 0.8, 0.7, 0.6, 0.3, 0.1]


def test_binary_metrics_hand_computed():
    m = binary_metrics(LABELS, SCORES, threshold=0.5)  # flags the top four: tp=3 fp=1 tn=2 fn=0
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"], m["n_positive"]) == (3, 1, 2, 0, 6, 3)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(6 / 7)
    assert m["fpr"] == pytest.approx(1 / 3)
    assert m["accuracy"] == pytest.approx(5 / 6)


def test_threshold_is_inclusive():
    m = binary_metrics(LABELS, SCORES, threshold=0.8)  # 0.8 itself is flagged
    assert (m["tp"], m["fp"]) == (2, 0)


def test_zero_division_conventions():
    m = binary_metrics([0, 0, 1], [0.1, 0.2, 0.3], threshold=0.9)  # nothing flagged
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["fpr"] == 0.0
    assert binary_metrics([1, 1], [0.9, 0.1], 0.5)["fpr"] == 0.0  # no negatives


def test_auprc_hand_computed():
    # recall steps of 1/3 at precisions 1, 1, 3/4 -> (1 + 1 + 0.75) / 3
    assert auprc(LABELS, SCORES) == pytest.approx(2.75 / 3)


def test_auprc_groups_tied_scores():
    labels, scores = [1, 0, 1, 0], [0.5, 0.5, 0.2, 0.1]
    # tie at 0.5 flags one + and one - together: step 1/2 at precision 1/2, then 1/2 at 2/3
    assert auprc(labels, scores) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert auprc(labels, scores) == pytest.approx(average_precision_score(labels, scores))


def test_auprc_undefined_with_one_class():
    assert math.isnan(auprc([0, 0, 0], [0.1, 0.5, 0.9]))
    assert math.isnan(auprc([1, 1], [0.1, 0.5]))


def test_recall_at_fpr_hand_computed():
    assert recall_at_fpr(LABELS, SCORES, 0.01) == pytest.approx(2 / 3)  # no false positive allowed
    assert recall_at_fpr(LABELS, SCORES, 0.34) == pytest.approx(1.0)  # one of three negatives allowed
    # the top score is a negative: no threshold reaches FPR 0 with any recall
    assert recall_at_fpr([0, 1, 1, 0], [0.9, 0.8, 0.7, 0.1], 0.01) == 0.0


def test_best_threshold_hand_computed():
    threshold, f1 = best_threshold(LABELS, SCORES)
    # F1 by cut: 0.9->2/4, 0.8->4/5, 0.7->4/6, 0.6->6/7, 0.3->6/8, 0.1->6/9; best cut 0.6, next lower 0.3
    assert f1 == pytest.approx(6 / 7)
    assert threshold == pytest.approx(0.45)
    assert binary_metrics(LABELS, SCORES, threshold)["f1"] == pytest.approx(f1)


def test_best_threshold_prefers_higher_threshold_on_ties():
    # cuts at 0.9 (tp1 fp0 -> F1 2/3) and 0.1 (tp2 fp2 -> F1 4/6): equal F1, keep the higher cut
    threshold, f1 = best_threshold([1, 0, 0, 1], [0.9, 0.5, 0.4, 0.1])
    assert f1 == pytest.approx(2 / 3)
    assert 0.5 < threshold <= 0.9


def test_best_threshold_without_positives_flags_nothing():
    threshold, f1 = best_threshold([0, 0], [0.2, 0.7])
    assert f1 == 0.0 and threshold > 0.7


def test_best_threshold_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 50)
        y[0] = 1
        s = np.round(rng.random(50), 2)  # rounding makes ties
        threshold, f1 = best_threshold(y, s)
        brute = max(f1_score(y, s >= t, zero_division=0) for t in np.unique(s))
        assert f1 == pytest.approx(brute)
        assert f1_score(y, s >= threshold, zero_division=0) == pytest.approx(f1)


def test_balanced_threshold_hand_computed():
    threshold, j = best_threshold(LABELS, SCORES, rule="balanced")
    # TPR - FPR by cut: 0.9->1/3, 0.8->2/3, 0.7->1/3, 0.6->2/3, 0.3->1/3, 0.1->0; tie kept at the higher cut 0.8
    assert j == pytest.approx(2 / 3)
    assert threshold == pytest.approx(0.75)


def test_balanced_threshold_ignores_the_class_mix_f1_does_not():
    labels = [1, 1, 0, 1, 0, 0, 1, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    many_positives = (labels + [l for l in labels if l] * 4, scores + [s for l, s in zip(labels, scores) if l] * 4)
    assert best_threshold(*many_positives, rule="balanced")[0] == pytest.approx(best_threshold(labels, scores, rule="balanced")[0])
    # with 20 of 24 rows violating, F1 is best when everything at or above 0.3 is flagged
    assert best_threshold(*many_positives)[0] < best_threshold(labels, scores)[0]


def test_balanced_threshold_matches_roc_curve_on_random_data():
    rng = np.random.default_rng(2)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        y[:2] = (0, 1)
        s = np.round(rng.random(60), 2)
        threshold, j = best_threshold(y, s, rule="balanced")
        fpr, tpr, _ = roc_curve(y, s)
        assert j == pytest.approx(np.max(tpr - fpr))
        flagged = s >= threshold
        assert flagged[y == 1].mean() - flagged[y == 0].mean() == pytest.approx(j)


def test_fpr_threshold_hand_computed():
    labels = [1, 0, 1, 0, 1, 0, 0, 0, 0, 0]  # 7 benign rows
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    # cut -> (tp, fp): 0.95 (1, 0), 0.9 (1, 1), 0.8 (2, 1), 0.7 (2, 2), 0.6 (3, 2), 0.5 (3, 3), ...
    assert best_threshold(labels, scores, "fpr:0") == (pytest.approx(0.925), pytest.approx(1 / 3))
    assert best_threshold(labels, scores, "fpr:0.15") == (pytest.approx(0.75), pytest.approx(2 / 3))  # fp <= 1.05
    assert best_threshold(labels, scores, "fpr:0.3") == (pytest.approx(0.55), pytest.approx(1.0))  # fp <= 2.1
    assert best_threshold(labels, scores, f"fpr:{2 / 7}")[0] == pytest.approx(0.55)  # exactly on target
    # the top score benign and no budget: flag nothing
    threshold, recall = best_threshold([0, 1], [0.9, 0.5], "fpr:0")
    assert threshold > 0.9 and recall == 0.0


def test_fpr_threshold_is_the_lowest_within_the_target_on_random_data():
    rng = np.random.default_rng(3)
    for target in (0.0, 0.01, 0.05, 0.2):
        y = rng.integers(0, 2, 300)
        s = np.round(rng.random(300), 3)
        threshold, recall = best_threshold(y, s, f"fpr:{target}")
        fpr = lambda t: np.mean(s[y == 0] >= t)
        assert fpr(threshold) <= target + 1e-12
        assert recall == pytest.approx(np.mean(s[y == 1] >= threshold))
        lower = s[s < threshold]
        assert lower.size == 0 or fpr(lower.max()) > target  # one more score flagged would break the target


def test_threshold_rules_parse():
    from trainers.metrics import ThresholdRule, parse_threshold_rule

    assert parse_threshold_rule("fpr:0.03") == ThresholdRule("fpr", 0.03)
    assert parse_threshold_rule("fpr:0.03").to_dict() == {"rule": "fpr", "target_fpr": 0.03}
    assert parse_threshold_rule("balanced").to_dict() == {"rule": "balanced"}
    for bad in ("fpr", "fpr:", "fpr:x", "fpr:1", "fpr:-0.1", "f1:0.2", "balanced:"):
        with pytest.raises(ValueError):
            parse_threshold_rule(bad)


def test_unknown_threshold_rule_is_named():
    with pytest.raises(ValueError, match="'accuracy'.*f1, balanced"):
        best_threshold(LABELS, SCORES, rule="accuracy")


def test_against_sklearn_on_random_data():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = rng.random(200)
    m = binary_metrics(y, s, 0.3)
    assert m["precision"] == pytest.approx(precision_score(y, s >= 0.3))
    assert m["recall"] == pytest.approx(recall_score(y, s >= 0.3))
    assert m["f1"] == pytest.approx(f1_score(y, s >= 0.3))
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s))


def test_confusion_counts_and_input_checks():
    c = confusion_counts([1, 0, 1, 0], [1, 1, 0, 0])
    assert (c.tp, c.fp, c.fn, c.tn, c.n) == (1, 1, 1, 1, 4)
    with pytest.raises(ValueError, match="length"):
        binary_metrics([1, 0], [0.5])
    with pytest.raises(ValueError, match="0 or 1"):
        binary_metrics([2, 0], [0.5, 0.5])


def test_per_policy_and_macro():
    labels = LABELS + [1, 0]
    scores = SCORES + [0.2, 0.4]
    policies = ["a"] * 6 + ["b"] * 2
    result = per_policy_metrics(labels, scores, policies, {"a": 0.5, "b": 0.1})
    a, b = result["per_policy"]["a"], result["per_policy"]["b"]
    assert a["f1"] == pytest.approx(6 / 7)
    assert (b["tp"], b["fp"]) == (1, 1)  # both flagged at threshold 0.1
    assert b["f1"] == pytest.approx(2 / 3)
    assert b["auprc"] == pytest.approx(0.5)  # the negative outranks the positive
    macro = result["macro"]
    assert macro["f1"] == pytest.approx((6 / 7 + 2 / 3) / 2)
    assert macro["n"] == 8 and macro["tp"] == 4 and macro["n_policies"] == 2


def test_macro_ignores_undefined_ranking_metrics():
    defined = evaluate_scores([1, 0], [0.9, 0.1])
    undefined = evaluate_scores([0, 0], [0.9, 0.1])
    macro = macro_average([defined, undefined])
    assert macro["auprc"] == pytest.approx(1.0)
    assert macro["f1"] == pytest.approx(0.5)  # f1 is defined (0) for the all-negative policy


def test_json_safe_replaces_nan():
    out = json_safe({"a": math.nan, "b": [1.0, math.inf], "c": np.float32(0.5)})
    assert json.loads(json.dumps(out)) == {"a": None, "b": [1.0, None], "c": 0.5}
