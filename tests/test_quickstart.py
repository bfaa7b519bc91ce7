"""End to end: `uniguard quickstart --fast` on the offline models, then a cached rerun."""

import json
import subprocess
import sys

import pytest

from engine.journal import JournalEntry
from experiments.quickstart import _check_same_plan, compact_member
from uniguard.core.errors import UserError


@pytest.mark.integration
@pytest.mark.timeout(1800)  # the whole pipeline twice: longer than the suite's per-test limit, bounded by its own timeouts
def test_quickstart_fast_runs_the_whole_pipeline_and_caches_every_stage(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "uniguard", "quickstart", "--fast", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, first.stderr[-3000:]
    report = (out / "report.md").read_text()
    for model in ("MultiTaskGuard", "uniform average", "TIES defaults", "UniGuard (searched)", "UniGuard int8 (ONNX)", "TF-IDF", "LLM judge"):
        assert model in report
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # latency: warmed, repeated, reported with its spread
    timed = [r for r in json.loads((out / "stages" / "evaluate.json").read_text())["result"].values() if "latency_ms" in r]
    assert timed and all(len(r["latency_spread_ms"]) == 2 for r in timed)
    spread = timed[0]["latency_spread_ms"]
    assert "10th-90th percentile" in report and f"({spread[0]:.1f}-{spread[1]:.1f})" in report
    front = json.loads((out / "search" / "pareto.json").read_text())["points"]
    assert front and all(0.0 <= p["f1"] <= 1.0 for p in front)
    variants = (out / "search" / "variants.jsonl").read_text()
    assert '"format": "onnx-int8"' in variants  # the int8 guard was measured as a point of the search's front
    for name in ("uniguard", "uniform_average", "ties_defaults"):
        meta = json.loads((out / "exports" / name / "uniguard.json").read_text())
        assert meta["thresholds"], name  # calibrated thresholds travel with the exported guard
        assert meta["calibration"]["rule"] == "fpr" and meta["calibration"]["target_fpr"] == 0.03, name
    # one threshold rule for every model in the report: the guards' calibration and the search's
    assert json.loads((out / "guards" / "multitask" / "uniguard.json").read_text())["training"]["threshold_rule"] == "fpr:0.03"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert again.stderr.count("[cached]") >= 7 and "[start ] train" not in again.stderr
    # another plan in the same OUT would mix its guards with these: refused before any stage runs
    other = subprocess.run([sys.executable, "-m", "uniguard", "quickstart", "--out", str(out), "--base", "multilingual-e5-small-q4"],
                           capture_output=True, text=True, timeout=300)
    assert other.returncode != 0 and "another plan" in other.stderr and "base_model" in other.stderr and "fast" in other.stderr
    assert "[start ]" not in other.stderr


def test_a_quickstart_out_keeps_the_plan_that_made_it(tmp_path):
    _check_same_plan(tmp_path, {"n": 80, "policies": ("a", "b"), "base_model": None})
    _check_same_plan(tmp_path, {"n": 80, "policies": ("a", "b"), "base_model": None})  # the same plan resumes
    with pytest.raises(UserError, match=r"another plan \(base_model: None there\)"):
        _check_same_plan(tmp_path, {"n": 80, "policies": ["a", "b"], "base_model": "multilingual-e5-small-q4"})


def test_the_compact_uniguard_is_the_smallest_front_member_within_the_f1_budget():
    def entry(name, f1, size):
        return JournalEntry(hash=name, recipe={}, f1=f1, size_bytes=size, latency_ms=1.0, per_policy={}, thresholds={})

    uniguard = entry("full", 0.94, 90)
    front = [entry("tiny", 0.10, 20), entry("small", 0.90, 40), entry("mid", 0.92, 60), uniguard]
    assert compact_member(front, uniguard).hash == "small"  # 0.04 below; "tiny" is a size point, not a guard
    assert compact_member(front, uniguard, budget=0.03).hash == "mid"
    assert compact_member(front, uniguard, budget=0.01) is None  # only UniGuard itself is that good


def test_the_pool_base_is_the_checkpoint_the_candidates_were_fine_tuned_from():
    from dataclasses import replace

    from experiments.quickstart import PLANS, pool_base
    from uniguard.core.assets import default_base_model_dir

    guards = {"prompt_injection": "g/pi", "multitask": "g/mtg"}
    assert pool_base(PLANS["default"], guards) == "g/mtg"  # specialists of MultiTaskGuard
    assert pool_base(replace(PLANS["default"], singles_from_multitask=False), guards) == str(default_base_model_dir())
