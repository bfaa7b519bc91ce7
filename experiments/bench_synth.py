"""Synthetic-data benchmark: examples per second per backend on this machine, and the F1 on REAL
development data (fitness.devsets) of a guard trained on each backend's data.

    python -m experiments.bench_synth --out /tmp/bench_synth            # throughput + F1 (slow: trains guards)
    python -m experiments.bench_synth --out /tmp/bench_synth --no-train # throughput only
    python -m experiments.bench_synth --openai-base-url http://host:8000/v1 --openai-model NAME ...

Backends compared (same policies, seed and n):
- template: the deterministic grammar alone (the baseline every ratio is measured against);
- local:    the same template seeds, a share paraphrased by the offline SmolLM2-135M-Instruct;
- openai:   the same, paraphrased by an OpenAI-compatible endpoint (only when one is given: a mock
            server would time nothing real).
Throughput is measured on fresh output directories (no cache); the guards are MultiTaskGuards
(MiniLM, one guard over all benchmarked policies) trained with identical settings, evaluated at
their calibrated thresholds on the dev sets, which no generator has seen.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from synth.generate import BackendSpec, SynthSettings, run_synthesis
from synth.policy import load_policy
from uniguard.core.io import write_json


def _generate(name: str, spec: BackendSpec, settings: SynthSettings, policies, out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)  # time a cold run: no cached answers
    started = time.perf_counter()
    report = run_synthesis(policies, spec, settings, out)
    seconds = time.perf_counter() - started
    n = report["total"]["n"]
    per_policy = report["generation"]["per_policy"]
    outcomes: dict[str, int] = {}
    for stats in per_policy.values():
        for key, value in stats.get("model_outcomes", {}).items():
            outcomes[key] = outcomes.get(key, 0) + value
    model_requests = sum(s.get("model_requests", 0) for s in per_policy.values())
    return {"backend": name, "rows": n, "seconds": round(seconds, 2), "rows_per_second": round(n / seconds, 3),
            "model_requests": model_requests,
            "model_requests_per_second": round(model_requests / seconds, 3) if model_requests else None,
            "model_outcomes": outcomes, "distinct_2": report["diversity"]["distinct_2"], "data": str(out)}


def _judge_quality(policies, n: int, seed: int) -> dict:
    """How well SmolLM2 separates unsafe from safe template samples as a self-reflection judge (AUROC)."""
    from sklearn.metrics import roc_auc_score

    from synth.backends import LocalChat
    from synth.dedup import Deduper
    from synth.prompts import judge_messages
    from synth.samples import DEFAULT_KIND_SHARES
    from synth.templates import template_samples

    chat = LocalChat(batch_size=8)
    labels, scores = [], []
    started = time.perf_counter()
    for policy in policies:
        samples, _ = template_samples(policy, n, seed, DEFAULT_KIND_SHARES, Deduper())
        scores += chat.yes_probability([judge_messages(s.text, policy) for s in samples])
        labels += [s.label for s in samples]
    seconds = time.perf_counter() - started
    return {"judged": len(labels), "auroc": round(float(roc_auc_score(labels, scores)), 4),
            "score_range": [round(min(scores), 3), round(max(scores), 3)], "judged_per_second": round(len(labels) / seconds, 3)}


def _train_and_evaluate(data_dir: Path, policies, out: Path, epochs: int, seed: int) -> dict:
    from trainers.data import load_splits
    from fitness.devsets import load_devset
    from fitness.evaluate import evaluate
    from trainers.guard import Guard
    from trainers.data import Example
    from trainers.training import make_config, train_guard

    splits = load_splits([data_dir])
    named = {p.name: p for p in policies}
    config = make_config(kind="multitask", epochs=epochs, seed=seed, batch_size=16, truncate=True)
    started = time.perf_counter()
    train_guard(config, splits["train"], splits["validation"], named, out, overwrite=True, progress=False)
    train_seconds = time.perf_counter() - started
    guard = Guard.load(out)
    dev = [Example(r["text"], r["label"], r["policy"]) for p in policies for r in load_devset(p.name, seed=0)]
    synthetic_test = evaluate(guard, splits["test"], named)
    real = evaluate(guard, dev, named)
    pick = ("f1", "precision", "recall", "fpr", "auprc", "n")
    return {"train_seconds": round(train_seconds, 1),
            "synthetic_test_macro_f1": round(synthetic_test["macro"]["f1"], 4),
            "dev_macro": {k: round(real["macro"][k], 4) if isinstance(real["macro"][k], float) else real["macro"][k] for k in pick if k in real["macro"]},
            "dev_per_policy": {name: {k: m[k] for k in pick if k in m} for name, m in real["per_policy"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_synth"))
    parser.add_argument("--policies", nargs="+", default=["violence_weapons", "self_harm"])
    parser.add_argument("--n", type=int, default=300, help="samples per policy for every backend")
    parser.add_argument("--rewrite-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--judge-n", type=int, default=24, help="samples per policy for the judge AUROC (0 = skip)")
    parser.add_argument("--no-train", action="store_true", help="throughput only")
    parser.add_argument("--no-local", action="store_true", help="skip the SmolLM2 backend")
    parser.add_argument("--openai-base-url")
    parser.add_argument("--openai-model")
    args = parser.parse_args()

    policies = [load_policy(p) for p in args.policies]
    # Self-reflection is off for the data runs: the judge is measured separately below, and a judge
    # that cannot separate the classes would only drop samples at random.
    settings = SynthSettings(n=args.n, seed=args.seed, rewrite_fraction=args.rewrite_fraction, reflect=False)
    backends = [("template", BackendSpec("template"))]
    if not args.no_local:
        backends.append(("local", BackendSpec("local", batch_size=16)))
    if args.openai_base_url:
        backends.append(("openai", BackendSpec("openai", model=args.openai_model, base_url=args.openai_base_url)))

    results: dict = {"settings": vars(args) | {"out": str(args.out)}, "backends": {}}
    for name, spec in backends:
        print(f"[bench_synth] generating with {name} ...", flush=True)
        results["backends"][name] = _generate(name, spec, settings, policies, args.out / f"data_{name}")
        print(json.dumps(results["backends"][name]), flush=True)
    baseline = results["backends"]["template"]["rows_per_second"]
    for entry in results["backends"].values():
        entry["rows_per_second_vs_template"] = round(entry["rows_per_second"] / baseline, 5)
    if not args.no_local and args.judge_n:
        print("[bench_synth] measuring the SmolLM2 judge ...", flush=True)
        results["smollm2_judge"] = _judge_quality(policies, args.judge_n, args.seed)
        print(json.dumps(results["smollm2_judge"]), flush=True)
    if not args.no_train:
        for name, entry in results["backends"].items():
            print(f"[bench_synth] training a MultiTaskGuard on {name} data ...", flush=True)
            entry["guard"] = _train_and_evaluate(Path(entry["data"]), policies, args.out / f"guard_{name}", args.epochs, args.seed)
            print(json.dumps(entry["guard"]), flush=True)
    write_json(args.out / "bench_synth.json", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
