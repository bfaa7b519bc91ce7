"""Integration: a real MiniLM guard trained on a small synthetic set beats TF-IDF on its own test split.

The set is self_harm template data with whole behaviours held out of training (`--split-by behaviour`):
the test split asks about behaviours the guard never saw, next to benign look-alikes that share their
words ("cutting vegetables", "a safe dose of paracetamol"). Telling those apart needs the words'
context, which bag-of-n-grams does not see. Measured over data seeds 0-9 before this test asserted it
(README, "MiniLM vs TF-IDF"): MiniLM had the higher test AUPRC on 8 of 10 seeds at this test's settings
(mean 0.762 vs 0.667) and on 9 of 10 at lr 1.5e-4 (the tenth a collapsed run, which training now
reports); seed 0, used here, won at both (0.875 and 0.907 vs 0.776). On prompt_injection and
violence_weapons held-out behaviours, and on row splits, the two are a coin flip at this budget: the
claim, and this test, are about unseen self-harm behaviours next to their look-alikes.
AUPRC is asserted because it needs no threshold; F1 also depends on a threshold calibrated on 60
validation rows of yet other behaviours, and is printed for the record.
"""

import pytest
from typer.testing import CliRunner

from trainers.baselines import TfidfBaseline
from trainers.data import load_splits, only_policies, resolve_policies
from fitness.evaluate import evaluate
from trainers.guard import Guard
from trainers.training import make_config, train_guard
from uniguard.cli import app

POLICY = "self_harm"


@pytest.mark.integration
def test_minilm_guard_beats_tfidf_on_held_out_behaviours(tmp_path):
    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["synth", "--policy", POLICY, "--backend", "template", "--n", "300", "--seed", "0",
                                      "--split", "0.4,0.2,0.4", "--split-by", "behaviour", "--out", str(data)])
    assert result.exit_code == 0, result.output
    splits = {k: only_policies(v, [POLICY]) for k, v in load_splits([data], test_required=True).items()}
    policies = resolve_policies([POLICY])

    config = make_config(epochs=3, truncate=True, batch_size=8, patience=3, seed=0)
    trained = train_guard(config, splits["train"], splits["validation"], policies, tmp_path / "guard", test=splits["test"], progress=False)
    assert not [w for w in trained.warnings if "no better than chance" in w]  # not a collapsed run (truncation notes may appear)
    guard_report = evaluate(Guard.load(tmp_path / "guard"), splits["test"], policies)["macro"]
    assert guard_report["f1"] == pytest.approx(trained.test["macro"]["f1"])  # the saved guard is the selected one

    tfidf_report = evaluate(TfidfBaseline().fit(splits["train"], splits["validation"]), splits["test"], policies)["macro"]
    print(f"MiniLM F1 {guard_report['f1']:.3f} AUPRC {guard_report['auprc']:.3f}; "
          f"TF-IDF F1 {tfidf_report['f1']:.3f} AUPRC {tfidf_report['auprc']:.3f}; n_test={guard_report['n']}")
    assert guard_report["auprc"] > tfidf_report["auprc"]
