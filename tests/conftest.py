"""Shared fixtures: tiny random guards built in memory (2 layers, 32 wide), in seconds."""

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_pool_dirs(tmp_path_factory):
    """A base and three candidate guards (base + seeded task vectors), as guard directories."""
    from experiments.smoke_pool import perturbed, save_tiny_guard, tiny_classifier

    root = tmp_path_factory.mktemp("tiny_pool")
    base = tiny_classifier(seed=0)
    base_dir = save_tiny_guard(base, root / "base")
    candidates = [save_tiny_guard(perturbed(base, seed=i + 1), root / f"guard_{i}") for i in range(3)]
    return base_dir, candidates


@pytest.fixture(scope="session")
def _smoke_search_once(tmp_path_factory):
    """One real (tiny) 4-recipe search run on the smoke pool, made once per test session."""
    from pathlib import Path

    import ray

    from engine.config import load_search_config, with_compute
    from engine.search import run_search
    from experiments.smoke_pool import build_smoke_pool

    root = tmp_path_factory.mktemp("smoke_search")
    config_path = Path(__file__).parents[1] / "experiments" / "configs" / "smoke_search.yaml"
    pool = build_smoke_pool(root / "pool")
    try:
        # float32: tests export its points to fp32 ONNX and compare them with the search's own scores
        config = with_compute(load_search_config(config_path, pool), None, "float32")
        run_search(config, root / "run", budget=4, workers=1, progress=False)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    return root / "run"


@pytest.fixture
def smoke_search_run(_smoke_search_once, tmp_path):
    """A private copy of the smoke search run (tests add variants and exports to it)."""
    import shutil

    return shutil.copytree(_smoke_search_once, tmp_path / "run")


def pytest_sessionfinish(session, exitstatus):
    """Stop what the tests left running (Ray, Ray Serve) while the interpreter is still whole."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            if "ray.serve" in sys.modules:
                sys.modules["ray.serve"].shutdown()
            ray.shutdown()
    session.config._uniguard_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with pytest's own status, without the interpreter's final teardown.

    A CI run once passed every test and then died with SIGSEGV (exit 139) while Python tore down
    torch, onnxruntime, tokenizers and Ray's native threads at exit; a crash there says nothing
    about the code under test but fails the run. Reports are written by now, and the status is
    pytest's (a failing test still fails the run).
    """
    status = getattr(config, "_uniguard_exitstatus", None)
    if status is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
