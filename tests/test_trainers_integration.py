"""Integration: a real MiniLM guard trained on a small synthetic set, next to TF-IDF on the same test split.

Measured finding (README, "Guards and evaluation"): at the budget a 2-core CI machine allows (about a
hundred examples, three epochs), MiniLM does NOT beat TF-IDF on the template backend's test split —
template data is lexically regular and TF-IDF is near perfect on it. So this test checks what holds and
matters for the pipeline: the real encoder learns the task well above chance through `uniguard train`,
the saved guard reproduces the metrics training reported, and both scorers are compared on the same split
(printed, for the record). The comparison itself is an experiment, not a test: experiments/guard_results.py.

Issue #4 asked for a test asserting the win. Over 5 data seeds with whole behaviours held out
(`python -m experiments.guard_vs_tfidf --seeds 0,1,2,3,4 --n 300 --split 0.4,0.2,0.4 --split-by behaviour`,
~120 test rows each) MiniLM beat TF-IDF on 2/5 seeds in F1 and 3/5 in AUPRC at max_length 128, 4/5 and 1/5
at 256 (means 0.72-0.75 F1 for both): still a coin flip, so asserting a win would be asserting noise.
"""

import pytest
from typer.testing import CliRunner

from trainers.baselines import TfidfBaseline
from trainers.data import load_splits, only_policies, resolve_policies
from trainers.evaluate import evaluate
from trainers.guard import Guard
from trainers.training import make_config, train_guard
from uniguard.cli import app

POLICY = "prompt_injection"


@pytest.mark.integration
def test_minilm_guard_learns_on_synthetic_data(tmp_path):
    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["synth", "--policy", POLICY, "--backend", "template", "--n", "150", "--seed", "3", "--out", str(data)])
    assert result.exit_code == 0, result.output
    splits = {k: only_policies(v, [POLICY]) for k, v in load_splits([data], test_required=True).items()}
    policies = resolve_policies([POLICY])

    config = make_config(epochs=3, learning_rate=1.5e-4, max_length=128, truncate=True, batch_size=8, patience=3, seed=0)
    trained = train_guard(config, splits["train"], splits["validation"], policies, tmp_path / "guard", test=splits["test"], progress=False)
    guard_report = evaluate(Guard.load(tmp_path / "guard"), splits["test"], policies)["macro"]
    assert guard_report["f1"] == pytest.approx(trained.test["macro"]["f1"])  # the saved guard is the selected one

    tfidf_report = evaluate(TfidfBaseline().fit(splits["train"], splits["validation"]), splits["test"], policies)["macro"]
    print(f"MiniLM F1 {guard_report['f1']:.3f} AUPRC {guard_report['auprc']:.3f}; "
          f"TF-IDF F1 {tfidf_report['f1']:.3f} AUPRC {tfidf_report['auprc']:.3f}; n_test={guard_report['n']}")
    assert guard_report["auprc"] > 0.7  # chance is the positive rate, about 0.5
