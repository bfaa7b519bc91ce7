"""Deployment variants (int8 ONNX exports) measured with the search's protocol and put on its front."""

import json

import pytest
from typer.testing import CliRunner

from engine.journal import JournalEntry
from engine.rundir import RunDir
from engine.variants import check_variant_export, measure_variant
from uniguard.cli import app
from uniguard.core.errors import UserError


def _entry(hash_: str, f1: float, size: int, latency: float, **extra) -> JournalEntry:
    recipe = {"operator": "linear", "layers": None, "dtype": "float32", "scope": "all"}
    return JournalEntry(hash=hash_, f1=f1, size_bytes=size, latency_ms=latency, per_policy={"p": f1},
                        thresholds={"p": 0.5}, recipe=recipe, **extra)


def test_a_variant_that_dominates_joins_the_front_and_exports_only_as_what_was_measured(tmp_path):
    merges = [_entry("big", 0.9, 400, 4.0), _entry("small", 0.7, 200, 2.0)]
    run = RunDir(tmp_path)
    run.variants(writable=True).append(_entry("big+onnx-int8", 0.89, 100, 1.5, format="onnx-int8", variant_of="big"))
    points = run.write_front(merges)
    assert [p.hash for p in points] == ["big+onnx-int8", "big"]  # "small" is now dominated by the int8 variant
    assert points[0].format == "onnx-int8" and points[1].format is None
    assert "format" not in json.loads(run.front_file.read_text())["points"][1]
    assert run.png.is_file()
    with pytest.raises(UserError, match="--format onnx --quantize int8"):
        check_variant_export(run, 0, "hf", "none")
    check_variant_export(run, 0, "onnx", "int8")
    check_variant_export(run, 1, "hf", "none")  # an ordinary merge exports in any format


@pytest.mark.integration
def test_int8_export_of_a_search_point_is_measured_like_a_merge_and_added_to_the_front(smoke_search_run, tmp_path):
    from engine.export import export_guard

    run = smoke_search_run
    source = RunDir(run).point(0)
    # The protocol itself: an fp32 ONNX export scores like the merge, so it must reproduce the search's F1.
    fp32 = export_guard(run, tmp_path / "fp32", "onnx", point=0)
    same = measure_variant(RunDir(run), RunDir(run).journal().get(source.hash), fp32, "onnx-fp32")
    assert same.f1 == pytest.approx(source.f1, abs=1e-6)
    assert same.size_bytes == (fp32 / "model.onnx").stat().st_size

    args = ["export", str(run), "--point", "0", "--format", "onnx", "--quantize", "int8", "--add-to-front"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "int8"), "--json"])
    assert result.exit_code == 0, result.output
    added = json.loads(result.output)["front"]
    assert added["hash"] == f"{source.hash}+onnx-int8" and added["size_bytes"] == (tmp_path / "int8" / "model.onnx").stat().st_size
    stored = json.loads((tmp_path / "int8" / "uniguard.json").read_text())["thresholds"]
    assert set(stored) == set(source.thresholds)  # the variant's own calibrated thresholds travel with it
    again = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "int8b")])
    assert again.exit_code == 0, again.output
    assert len(RunDir(run).variants_file.read_text().splitlines()) == 1  # measured once, not appended twice
    refused = CliRunner().invoke(app, ["export", str(tmp_path / "int8"), "--out", str(tmp_path / "x"), "--add-to-front"])
    assert isinstance(refused.exception, UserError) and "--add-to-front" in str(refused.exception)
