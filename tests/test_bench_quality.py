"""bench_quality's error table and real-traffic metrics on hand-made scores."""

import numpy as np

from experiments.bench_quality import dev_metrics, per_source


def test_the_error_table_counts_misses_and_false_alarms_per_source_and_label_most_errors_first():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    flagged = np.array([True, False, False, True, False, True, True])
    sources = ["garak", "garak", "pyrit", "garak", "pool", "pool", "pool"]
    table = per_source(labels, flagged, sources)
    assert list(table)[0] == "pool [allowed]"  # 2 false alarms of 3
    assert table["pool [allowed]"] == {"n": 3, "flagged": 0.667, "errors": 2}
    assert table["garak [violating]"] == {"n": 2, "flagged": 0.5, "errors": 1}
    assert table["garak [allowed]"] == {"n": 1, "flagged": 1.0, "errors": 1}
    assert table["pyrit [violating]"] == {"n": 1, "flagged": 0.0, "errors": 1}


def test_dev_metrics_reads_the_benign_pool_rate_and_per_language_recall_at_the_threshold():
    labels = np.array([1, 1, 0, 0, 0])
    scores = np.array([0.9, 0.2, 0.8, 0.1, 0.3])
    in_pool = np.array([False, False, True, True, False])
    out = dev_metrics(labels, scores, 0.5, in_pool, ["de", "en", "en", "en", "en"], ["a", "b", "pool", "pool", "c"])
    assert out["fpr_benign_pool"] == 0.5 and out["recall"] == 0.5
    assert out["recall_per_language"] == {"de": 1.0, "en": 0.0}
    assert out["per_source"]["pool [allowed]"]["errors"] == 1
