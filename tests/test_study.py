"""The study runner: config checks, the tables' arithmetic, and a whole two-seed study on tiny guards."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.smoke_pool import save_tiny_guard, tiny_classifier
from experiments.study import StudyConfig, load_study_config, q3, run_study
from uniguard.core.errors import UserError


def test_config_rejects_held_out_policies_outside_the_study_or_all_of_them(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"policies": ["prompt_injection", "self_harm"], "held_out": ["hate_speech"]}))
    with pytest.raises(UserError, match="hate_speech.*not in policies"):
        load_study_config(path)
    path.write_text(yaml.safe_dump({"policies": ["prompt_injection", "self_harm"], "held_out": ["prompt_injection", "self_harm"]}))
    with pytest.raises(UserError, match="at least one"):
        load_study_config(path)
    config = StudyConfig(policies=("prompt_injection", "self_harm"), held_out=("self_harm",), synth={"name": "template", "modle": "x"})
    with pytest.raises(UserError, match="modle"):
        config.backend()


def _model(test_f1: float, dev_f1: float) -> dict:
    return {"test": {"macro": {"f1": test_f1}, "per_policy": {}}, "dev": {"set": {"macro": {"f1": dev_f1}, "per_policy": {}}},
            "size_bytes": 2e6, "latency_ms": 1.0}


def test_q3_reports_mean_and_std_over_seeds_and_counts_the_seeds_where_the_merge_wins():
    config = StudyConfig(policies=("prompt_injection", "self_harm"), held_out=("self_harm",))
    others = ["single:prompt_injection", "single:self_harm", "MultiTaskGuard", "uniform average", "TIES defaults"]
    per_seed = {}
    for seed, merged in ((0, 0.9), (1, 0.5), (2, 0.7)):  # the other models all score 0.6 on test, 0.4 on dev
        per_seed[seed] = {"models": {m: _model(0.6, 0.4) for m in others} | {"UniGuard (evolutionary)": _model(merged, 0.5)}}
    table, verdicts = q3(per_seed, config)
    row = next(line for line in table.splitlines() if line.startswith("| UniGuard"))
    assert "0.700 ± 0.200" in row and "0.500 ± 0.000" in row and "| 2.0 |" in row
    assert "synthetic test macro F1 in 2/3 seeds" in verdicts[0]
    assert "mean real-dev F1 in 3/3 seeds" in verdicts[1]


@pytest.mark.integration
def test_a_two_seed_study_on_tiny_guards_writes_every_table_and_resumes(tmp_path):
    base = save_tiny_guard(tiny_classifier(0), tmp_path / "tiny_base")
    config = StudyConfig(policies=("prompt_injection", "violence_weapons"), held_out=("violence_weapons",), seeds=(0, 1),
                         base_model=str(base), n=60, budget=7, workers=1, devset_rows=12, judge_rows=0)
    out = tmp_path / "study"
    lines = []
    report = run_study(config, out, say=lines.append)
    text = report.read_text()
    for question in ("Q1.", "Q2.", "Q3.", "Q4."):
        assert question in text
    assert text.count("/2 seeds") >= 10 and "/3 seeds" not in text  # every verdict counts over the 2 seeds run
    assert "MultiTaskGuard trained without violence_weapons" in text
    stored = json.loads((out / "study.json").read_text())
    assert set(stored["per_seed"]) == {"0", "1"}
    for result in stored["per_seed"].values():
        assert {s["evaluations"] for s in result["searches"].values()} == {7}
        assert 0.0 <= result["searches"]["evolutionary"]["hypervolume"] <= 1.0
    # each seed has its own synthetic data (and so its own guards): the spread over seeds means something
    assert (out / "seed_0" / "data" / "train.jsonl").read_text() != (out / "seed_1" / "data" / "train.jsonl").read_text()
    (out / "study.md").unlink()
    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    again = subprocess.run([sys.executable, "-m", "uniguard", "study", str(config_path), "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[start ]" not in again.stderr and (out / "study.md").read_text() == text


def test_the_shipped_study_configs_load():
    root = Path(__file__).parents[1] / "experiments" / "configs"
    small, large = load_study_config(root / "study.yaml"), load_study_config(root / "study_large.yaml")
    assert len(small.seeds) >= 3 and small.judge_rows > 0
    assert large.backend().name == "openai" and large.address == "auto"  # larger scale: only the config differs
