"""The study runner: config checks, the tables' arithmetic, and a whole two-seed study on tiny guards."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.smoke_pool import save_tiny_guard, tiny_classifier
from experiments.study import StudyConfig, dev_score, load_study_config, meets_paper_bar, q3, run_study, synthetic_score
from uniguard.core.errors import UserError


def test_config_rejects_held_out_policies_outside_the_study_or_all_of_them(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"policies": ["prompt_injection", "self_harm"], "held_out": ["hate_speech"]}))
    with pytest.raises(UserError, match="hate_speech.*not in policies"):
        load_study_config(path)
    path.write_text(yaml.safe_dump({"policies": ["prompt_injection", "self_harm"], "held_out": ["prompt_injection", "self_harm"]}))
    with pytest.raises(UserError, match="at least one"):
        load_study_config(path)
    path.write_text(yaml.safe_dump({"policies": ["prompt_injection", "self_harm"], "held_out": ["self_harm"], "operators": ["tsv", "tvs"]}))
    with pytest.raises(UserError, match=r"unknown merge operators \['tvs'\]"):
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
    assert not any("compute-matched" in v for v in verdicts)  # seeds without it: no row, no verdict
    for seed, result in per_seed.items():  # the compute-matched MultiTaskGuard at 0.8 on test, 0.45 on dev
        result["models"]["MultiTaskGuard, compute-matched"] = _model(0.8, 0.45)
    table, verdicts = q3(per_seed, config)
    assert any(line.startswith("| MultiTaskGuard, compute-matched | 0.800 ± 0.000") for line in table.splitlines())
    assert "compute-matched (as many training steps as the specialists) on synthetic test macro F1 in 1/3 seeds" in verdicts[1]
    assert "compute-matched (as many training steps as the specialists) on mean real-dev F1 in 3/3 seeds" in verdicts[3]


def _per_policy(test: dict[str, float], dev: dict[str, float]) -> dict:
    return {"test": {"macro": {"f1": sum(test.values()) / len(test)}, "per_policy": {p: {"f1": v} for p, v in test.items()}},
            "dev": {p: {"macro": {"f1": v}, "per_policy": {p: {"f1": v}}} for p, v in dev.items()}}


def test_the_paper_bar_needs_every_policy_within_a_point_of_its_best_source_and_two_points_over_multitaskguard():
    policies = ("prompt_injection", "self_harm")
    models = {"single:prompt_injection": _per_policy({"prompt_injection": 0.80, "self_harm": 0.50}, {"prompt_injection": 0.6}),
              "single:self_harm": _per_policy({"prompt_injection": 0.50, "self_harm": 0.90}, {"prompt_injection": 0.5}),
              "MultiTaskGuard": _per_policy({"prompt_injection": 0.78, "self_harm": 0.84}, {"prompt_injection": 0.55})}
    ok = _per_policy({"prompt_injection": 0.795, "self_harm": 0.895}, {"prompt_injection": 0.6})  # 0.005 below on each: allowed
    short = _per_policy({"prompt_injection": 0.95, "self_harm": 0.885}, {"prompt_injection": 0.7})  # 1.5 points below on self_harm
    close = _per_policy({"prompt_injection": 0.80, "self_harm": 0.90}, {"prompt_injection": 0.56})  # dev: only 1 point over MTG
    assert meets_paper_bar(models | {"U": ok}, "U", policies, synthetic_score)
    assert not meets_paper_bar(models | {"U": short}, "U", policies, synthetic_score)
    assert meets_paper_bar(models | {"U": short}, "U", policies, dev_score)  # self_harm has no dev set: skipped, not failed
    assert not meets_paper_bar(models | {"U": close}, "U", policies, dev_score)


@pytest.mark.integration
def test_a_two_seed_study_on_tiny_guards_writes_every_table_and_resumes(tmp_path):
    base = save_tiny_guard(tiny_classifier(0), tmp_path / "tiny_base")
    config = StudyConfig(policies=("prompt_injection", "violence_weapons"), held_out=("violence_weapons",), seeds=(0, 1),
                         base_model=str(base), n=60, budget=7, workers=1, devset_rows=12, judge_rows=0,
                         fitness_n=80, operators=("linear", "ties", "tsv", "regmean"))
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
        # searched on their own scoring data, UniGuard chosen on the confirmation split
        assert all(0.0 <= s["uniguard_confirm_f1"] <= 1.0 for s in result["searches"].values())
    assert (out / "seed_0" / "search" / "bandit" / "confirmation.json").is_file()
    # the single guards are MultiTaskGuard's specialists, and the pool measures task vectors from it
    mtg = str(out / "seed_0" / "guards" / "multitask")
    assert json.loads((out / "seed_0" / "guards" / "prompt_injection" / "uniguard.json").read_text())["training"]["base_model"] == mtg
    assert yaml.safe_load((out / "seed_0" / "search" / "bandit" / "search.yaml").read_text())["pool"]["base"] == mtg
    # and MultiTaskGuard trained on from itself over every policy is the compute-matched comparison
    matched = json.loads((out / "seed_0" / "guards" / "multitask_matched" / "uniguard.json").read_text())
    assert matched["training"]["base_model"] == mtg and len(matched["policies"]) == 2
    assert all("MultiTaskGuard, compute-matched" in r["models"] for r in stored["per_seed"].values())
    assert "beats MultiTaskGuard, compute-matched" in text
    assert "UniGuard confirmation F1" in text and "is met in" in text
    # each seed has its own synthetic data (and so its own guards): the spread over seeds means something
    assert (out / "seed_0" / "data" / "train.jsonl").read_text() != (out / "seed_1" / "data" / "train.jsonl").read_text()
    (out / "study.md").unlink()
    # an evaluated seed is not rerun: only its evaluation marker is needed to rewrite the tables
    evaluation = (out / "seed_0" / "stages" / "evaluate.json").read_bytes()
    shutil.rmtree(out / "seed_0")
    (out / "seed_0" / "stages").mkdir(parents=True)
    (out / "seed_0" / "stages" / "evaluate.json").write_bytes(evaluation)
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
    confirmed = load_study_config(root / "study_confirmed.yaml")  # issue 18's scale: >= 5 seeds, >= 64 recipes per arm
    assert len(confirmed.seeds) >= 5 and confirmed.budget >= 64 and confirmed.fitness_n > 0
    assert {"tsv", "iso_c", "iso_cts", "lines", "regmean", "fisher"} <= set(confirmed.operators)
    specialists = load_study_config(root / "study_specialists.yaml")  # the same study, the single guards as specialists
    assert specialists.model_dump(exclude={"singles_from_multitask"}) == confirmed.model_dump(exclude={"singles_from_multitask"})
    assert specialists.singles_from_multitask and not confirmed.singles_from_multitask
