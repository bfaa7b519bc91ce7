"""Guard speed: training examples/s, and inference latency/throughput against a plain transformers pipeline.

    python -m experiments.bench_guard [--model GUARD_DIR] [--texts FILE.jsonl] [--policy NAME] [--json]

Both sides score the same (policy instruction, text) pairs with the same model weights, truncation and
thread count, in the same process, in alternating rounds (so machine load hits both alike):
- guard: `Guard.score` (tokenise once, length-sorted batches, per-batch padding, inference_mode);
- peer:  `transformers.pipeline("text-classification")` fed {"text": instruction, "text_pair": text}.
Latency is per call at batch 1 (p50, p99); throughput is texts/s at batch 64. Training speed is
`uniguard train`'s own loop on a small synthetic set (1 epoch), in examples/s.
Without --model the guard is the offline MiniLM with a fresh 2-way head (speed does not depend on training).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _texts(path: str | None, n: int) -> list[str]:
    if path:
        from uniguard.core.io import read_jsonl

        return [r["text"] for r in read_jsonl(path)][:n]
    from fitness.devsets import benign_pool, load_devset

    rows = load_devset("prompt_injection") + benign_pool()
    rng = np.random.default_rng(0)
    return [rows[i]["text"] for i in rng.permutation(len(rows))[:n]]


def _fresh_guard_dir(out: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainers.guard import Guard
    from uniguard.core.assets import default_base_model_dir

    torch.manual_seed(0)
    base = default_base_model_dir()
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    Guard(model=model, tokenizer=AutoTokenizer.from_pretrained(base), max_length=256).save(out)
    return out


def _pipeline_scores(pipe, instruction: str, texts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    inputs = [{"text": instruction, "text_pair": t} for t in texts]
    outputs = pipe(inputs, batch_size=batch_size, top_k=None, truncation="only_second", max_length=max_length)
    return np.array([next(s["score"] for s in out if s["label"] in ("violates", "LABEL_1")) for out in outputs])


def bench_inference(guard_dir: Path, texts: list[str], policy_name: str, rounds: int) -> dict:
    from transformers import pipeline

    from synth.policy import load_policy
    from trainers.guard import Guard

    guard = Guard.load(guard_dir)
    policy = load_policy(policy_name)
    pipe = pipeline("text-classification", model=guard.model, tokenizer=guard.tokenizer, device=-1)
    n_latency = min(len(texts), 100)

    # agreement first: the two paths must compute the same probabilities
    ours = guard.score(texts[:64], policy, batch_size=64)
    theirs = _pipeline_scores(pipe, policy.instruction, texts[:64], 64, guard.max_length)
    max_diff = float(np.abs(ours - theirs).max())

    lat = {"guard": [], "pipeline": []}
    thr = {"guard": [], "pipeline": []}
    for _ in range(rounds):
        for t in texts[:n_latency]:
            start = time.perf_counter()
            guard.score([t], policy, batch_size=1)
            lat["guard"].append(time.perf_counter() - start)
            start = time.perf_counter()
            _pipeline_scores(pipe, policy.instruction, [t], 1, guard.max_length)
            lat["pipeline"].append(time.perf_counter() - start)
        start = time.perf_counter()
        guard.score(texts, policy, batch_size=64)
        thr["guard"].append(len(texts) / (time.perf_counter() - start))
        start = time.perf_counter()
        _pipeline_scores(pipe, policy.instruction, texts, 64, guard.max_length)
        thr["pipeline"].append(len(texts) / (time.perf_counter() - start))

    def pct(xs, q):
        return float(np.percentile(np.array(xs) * 1000, q))

    result = {"max_abs_score_diff": max_diff, "n_texts": len(texts), "rounds": rounds}
    for side in ("guard", "pipeline"):
        result[side] = {"p50_ms_batch1": pct(lat[side], 50), "p99_ms_batch1": pct(lat[side], 99),
                        "texts_per_s_batch64": statistics.median(thr[side])}
    result["ratio"] = {
        "p50_speedup": result["pipeline"]["p50_ms_batch1"] / result["guard"]["p50_ms_batch1"],
        "p99_speedup": result["pipeline"]["p99_ms_batch1"] / result["guard"]["p99_ms_batch1"],
        "throughput_speedup": result["guard"]["texts_per_s_batch64"] / result["pipeline"]["texts_per_s_batch64"],
    }
    return result


def bench_training(n: int, max_length: int) -> dict:
    from synth.generate import BackendSpec, SynthSettings, run_synthesis
    from synth.policy import load_policy
    from trainers.data import Example
    from trainers.training import make_config, train_guard
    from uniguard.core.io import read_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        run_synthesis([load_policy("prompt_injection")], BackendSpec("template"), SynthSettings(n=n * 2, seed=0), data)
        train = [Example(r["text"], r["label"], r["policy"]) for r in read_jsonl(data / "train.jsonl")][:n]
        val = [Example(r["text"], r["label"], r["policy"]) for r in read_jsonl(data / "validation.jsonl")]
        policies = {"prompt_injection": load_policy("prompt_injection")}
        out = {}
        for label, extra in (("ce", {}), ("ce+mlm+adv", {"mlm_weight": 0.1, "adv_weight": 0.5})):
            config = make_config(epochs=1, batch_size=16, max_length=max_length, truncate=True, **extra)
            result = train_guard(config, train, val, policies, Path(tmp) / label, progress=False)
            out[label] = {"examples_per_s": result.examples_per_second, "n_train": len(train), "max_length": max_length}
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="guard directory (default: MiniLM with a fresh head)")
    parser.add_argument("--texts", help="JSON Lines file with a text field (default: real dev-set prompts)")
    parser.add_argument("--policy", default="prompt_injection")
    parser.add_argument("--n", type=int, default=256, help="texts for the throughput measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-n", type=int, default=96, help="training examples for the training-speed measurement (0 = skip)")
    parser.add_argument("--train-max-length", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        guard_dir = Path(args.model) if args.model else _fresh_guard_dir(Path(tmp) / "guard")
        report = {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()}
        report["inference"] = bench_inference(guard_dir, _texts(args.texts, args.n), args.policy, args.rounds)
    if args.train_n:
        report["training"] = bench_training(args.train_n, args.train_max_length)
    report["load_avg_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    inf = report["inference"]
    print(f"threads={report['threads']} load avg {report['load_avg_start'][0]:.1f} -> {report['load_avg_end'][0]:.1f}; "
          f"max |guard - pipeline| score = {inf['max_abs_score_diff']:.2e}")
    print(f"{'':22}{'guard':>12}{'pipeline':>12}{'ratio':>8}")
    for key, label, ratio in (("p50_ms_batch1", "p50 ms (batch 1)", "p50_speedup"),
                              ("p99_ms_batch1", "p99 ms (batch 1)", "p99_speedup"),
                              ("texts_per_s_batch64", "texts/s (batch 64)", "throughput_speedup")):
        print(f"{label:22}{inf['guard'][key]:12.1f}{inf['pipeline'][key]:12.1f}{inf['ratio'][ratio]:7.2f}x")
    for label, t in report.get("training", {}).items():
        print(f"training {label:12} {t['examples_per_s']:.1f} examples/s ({t['n_train']} examples, max_length {t['max_length']})")


if __name__ == "__main__":
    main()
