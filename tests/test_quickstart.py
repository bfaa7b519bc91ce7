"""End to end: `uniguard quickstart --fast` on the offline models, then a cached rerun."""

import json
import subprocess
import sys

import pytest


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
    assert timed and all(r["latency_spread_ms"][0] <= r["latency_ms"] <= r["latency_spread_ms"][1] for r in timed)
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
