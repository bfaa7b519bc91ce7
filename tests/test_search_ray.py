"""The search on real Ray: local run + resume, a killed driver, a worker node lost mid-search, workers killed for memory."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray

from engine.config import load_search_config
from engine.search import run_search
from experiments.smoke_pool import build_smoke_pool

CONFIG = Path(__file__).parents[1] / "experiments" / "configs" / "smoke_search.yaml"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return build_smoke_pool(tmp_path_factory.mktemp("smoke"))


def _hashes(run_dir):
    return [json.loads(line)["hash"] for line in (run_dir / "journal.jsonl").read_text().splitlines()]


@pytest.fixture
def no_ray():
    yield
    if ray.is_initialized():
        ray.shutdown()


def test_local_search_writes_front_and_resumes_without_reevaluating(smoke, tmp_path, no_ray):
    config = load_search_config(CONFIG, smoke)
    run = tmp_path / "run"
    entries = run_search(config, run, budget=10, workers=2, progress=False)
    assert len(entries) == 10 and len(set(_hashes(run))) == 10
    labels = {e.label for e in entries if e.label}
    assert {"guard_a alone", "uniform average", "TIES defaults"} <= labels  # known-good recipes go first
    by_shape = {}
    for e in entries:
        by_shape.setdefault(e.shape, set()).add(e.latency_ms)
    assert all(len(v) == 1 for v in by_shape.values())  # the two workers timed the first shape at once
    front = json.loads((run / "pareto.json").read_text())["points"]
    best_baseline = max(e.f1 for e in entries if e.label and not e.raced_out)
    assert max(p["f1"] for p in front) >= best_baseline
    assert (run / "pareto.png").stat().st_size > 10_000 and (run / "pareto.html").is_file()
    again = run_search(config, run, budget=10, workers=2, progress=False)  # same command: nothing new to do
    assert len(again) == 10 and len(_hashes(run)) == 10
    more = run_search(config, run, budget=14, workers=2, progress=False)
    assert len(more) == 14 and len(set(_hashes(run))) == 14


def test_killed_driver_resumes_with_no_duplicates(smoke, tmp_path):
    run = tmp_path / "run"
    # the smoke pool evaluates ~20 recipes/s once warm: a budget this large leaves the kill below seconds to land
    budget = 60
    cmd = [sys.executable, "-m", "uniguard.cli", "search", str(CONFIG), "--pool", str(smoke), "--out", str(run),
           "--budget", str(budget), "--workers", "2", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    journal = run / "journal.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray die at once
    proc.wait()
    killed_at = len(_hashes(run))
    assert 3 <= killed_at < budget
    subprocess.run(["ray", "stop", "--force"], capture_output=True, env={**os.environ, "PATH": str(Path(sys.executable).parent) + ":" + os.environ["PATH"]})
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    hashes = _hashes(run)
    assert len(hashes) == budget and len(set(hashes)) == budget
    assert json.loads(done.stdout)["evaluated"] == budget


def test_search_survives_losing_a_worker_node(smoke, tmp_path, no_ray):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker_node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    run = tmp_path / "run"
    config = load_search_config(CONFIG, smoke)
    result = {}

    def search():
        result["entries"] = run_search(config, run, budget=14, workers=2, address=cluster.address, progress=False)

    thread = threading.Thread(target=search)
    thread.start()
    journal = run / "journal.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 4):
        time.sleep(0.2)
    cluster.remove_node(worker_node)  # a worker dies mid-search, with whatever it was evaluating
    thread.join(timeout=400)
    try:
        assert not thread.is_alive()
        assert len(result["entries"]) == 14 and len(set(_hashes(run))) == 14
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_local_search_starts_its_own_ray_even_when_another_cluster_runs_here():
    """A `ray start` cluster on the machine must not be joined (joining refuses num_cpus): quickstart
    once crashed this way while another Ray ran next to it."""
    import os
    import subprocess
    import sys

    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3})
    try:
        code = ("import ray; from engine.search import _init_ray; _init_ray(ray, None, 1); "
                "print(ray.available_resources().get('CPU'))")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == "1.0"  # its own 1-CPU instance, not the 3-CPU cluster
    finally:
        cluster.shutdown()


def test_confirmation_rescores_the_front_and_the_baselines_on_new_data(smoke_search_run, tmp_path):
    """The confirm step scores the front's best and the known-good baselines on a split the search
    never saw, with the search's protocol; the best there comes first, and a fresh read of the same
    split gives the same numbers."""
    from engine.confirm import confirm, load_confirmations
    from engine.rundir import RunDir
    from engine.search import is_alone

    run = RunDir(smoke_search_run)
    confirmation = Path(run.config().data.validation)  # the smoke pool has one split: same data, so scores match
    results = confirm(run, confirmation, top=2)
    entries = {e.hash: e for e in run.entries()}
    assert {r.hash for r in results} >= {e.hash for e in entries.values() if e.label}  # raced out or not
    assert [r.confirm_f1 for r in results] == sorted((r.confirm_f1 for r in results), reverse=True)
    for r in results:  # same data and protocol as the search: the search's F1 comes back (raced out: on all rows now)
        assert r.confirm_f1_se is not None
        if not entries[r.hash].raced_out:
            assert r.confirm_f1 == pytest.approx(entries[r.hash].f1, abs=1e-6)
    sources = [r.per_policy for r in results if is_alone(r.label)]
    for r in results:  # the worst policy's gap to the best source alone there
        assert r.shortfall == pytest.approx(max(max(s[p] for s in sources) - f1 for p, f1 in r.per_policy.items()))
        assert not is_alone(r.label) or r.shortfall >= 0.0  # no source is above the best source
    assert [c.hash for c in load_confirmations(run)] == [r.hash for r in results]  # stored best first


def test_workers_spread_over_a_two_node_cluster_of_different_sizes(smoke, no_ray):
    """A 1-CPU head and a 2-CPU worker node: three one-thread fitness workers fill both nodes."""
    from ray.cluster_utils import Cluster

    from engine.search import prepare
    from engine.worker import start_workers

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        config = load_search_config(CONFIG, smoke)
        actors = start_workers(ray, prepare(config), config.fitness, 3)
        placements = ray.get([a.placement.remote() for a in actors], timeout=240)
        nodes = {node for node, _ in placements}
        assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]} and len(nodes) == 2
        assert all(device.startswith("cpu/") for _, device in placements)
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_workers_killed_for_lack_of_memory_end_the_search_with_the_cause_and_the_fix(smoke, tmp_path, monkeypatch, no_ray):
    from uniguard.core.errors import UserError

    # a real local Ray whose memory monitor finds the node "out of memory" at once and kills every worker
    monkeypatch.setenv("RAY_memory_usage_threshold", "0.001")
    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "50")
    run = tmp_path / "run"
    with pytest.raises(UserError, match="out of memory; run fewer --workers") as info:
        run_search(load_search_config(CONFIG, smoke), run, budget=6, workers=1, progress=False)
    assert "rerun the same command" in str(info.value)
    assert not (run / "journal.jsonl").exists() or all(_hashes(run))  # whatever finished stays readable
