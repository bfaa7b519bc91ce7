"""Guard quality on real traffic: guards trained only on `uniguard synth` data, measured on the real dev sets.

    python -m experiments.bench_quality [--policies prompt_injection violence_weapons] [--n 400]
        [--epochs 2] [--threshold-rule f1|balanced|fpr:0.03] [--multitask] [--set KEY=VALUE ...]
        [--no-everyday] [--out experiments/results/quality] [--keep DIR]

For each policy: template data from the policy YAML (the only training input), a single-policy
MiniLM guard (and with --multitask one MultiTaskGuard over all the policies), and TF-IDF + logistic
regression on the same data with the same threshold rule. Each is scored on the policy's real dev set
(`uniguard devset`, which includes the real benign pool): F1, precision, recall, the false-positive
rate on all negatives and on the benign pool alone, AUPRC, recall at 1% and 3% FPR, recall per
language (guessed from function words where rows name none), and the errors per source of the real rows. The dev sets measure only:
nothing here trains, calibrates or selects on them. JSON goes to OUT/bench_quality.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from synth.cross_policy import DEFAULT_CROSS_SHARE


def synth_data(policies: list[str], n: int, seed: int, out: Path, cross_policy_share: float) -> Path:
    from synth.generate import BackendSpec, SynthSettings, run_synthesis
    from synth.policy import load_policies

    run_synthesis(load_policies(policies), BackendSpec("template"),
                  SynthSettings(n=n, seed=seed, cross_policy_share=cross_policy_share), out)
    return out


def dev_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, in_pool: np.ndarray, langs: list[str],
                sources: list[str] | None = None) -> dict:
    from trainers.metrics import evaluate_scores, recall_at_fpr

    out = evaluate_scores(labels, scores, threshold)
    pool = in_pool & (labels == 0)
    out["fpr_benign_pool"] = float(np.mean(scores[pool] >= threshold)) if pool.any() else float("nan")
    out["recall_at_3pct_fpr"] = recall_at_fpr(labels, scores, 0.03)
    positives = labels == 1
    out["recall_per_language"] = {lang: float(np.mean(scores[positives & (np.array(langs) == lang)] >= threshold))
                                  for lang in sorted(set(np.array(langs)[positives]))}
    if sources is not None:  # the error table: which real sources the guard gets wrong
        out["per_source"] = per_source(labels, scores >= threshold, sources)
    return out


def per_source(labels: np.ndarray, flagged: np.ndarray, sources: list[str]) -> dict:
    """{source: {n, label, flagged rate, errors}} per (source, label), most errors first."""
    table = {}
    names = np.array(sources)
    for source in sorted(set(sources)):
        for label in (0, 1):
            rows = (names == source) & (labels == label)
            if rows.any():
                wrong = int(np.sum(flagged[rows] != bool(label)))
                table[f"{source} [{'violating' if label else 'allowed'}]"] = {
                    "n": int(rows.sum()), "flagged": round(float(np.mean(flagged[rows])), 3), "errors": wrong}
    return dict(sorted(table.items(), key=lambda item: -item[1]["errors"]))


def score_devset(scorer, policy, rows: list[dict], pool_texts: set[str]) -> dict:
    """Dev metrics of one guard on one policy's dev set. The offline dev sets name no language, so a
    row's language is guessed from its function words (`synth.traffic.guess_lang`: coarse, English by default)."""
    from synth.policy import load_policy
    from synth.traffic import guess_lang

    p = load_policy(policy)
    scores = np.asarray(scorer.score([r["text"] for r in rows], p), dtype=np.float64)
    return dev_metrics(np.array([r["label"] for r in rows]), scores, scorer.threshold(p), np.array([r["text"] in pool_texts for r in rows]),
                       [r.get("lang") or guess_lang(r["text"]) for r in rows], [r.get("source") or "unknown" for r in rows])


def run(policies: list[str], n: int, epochs: int, rule: str, multitask: bool, seed: int, work: Path, options: dict,
        cross_policy_share: float = DEFAULT_CROSS_SHARE, with_everyday: bool = True, specialist_options: dict | None = None) -> dict:
    from fitness.devsets import benign_pool, load_devset
    from trainers.baselines import TfidfBaseline
    from trainers.data import everyday_rows, load_splits, only_policies, resolve_policies
    from trainers.guard import Guard
    from trainers.training import make_config, train_guard

    data = synth_data(policies, n, seed, work / "data", cross_policy_share)
    splits = load_splits([data])
    dev = {p: [r for r in load_devset(p, seed) if r["policy"] == p] for p in policies}
    everyday = everyday_rows(splits["validation"], rule) if with_everyday else []  # calibration rows, as the quickstart passes them
    guards: dict[str, dict[str, object]] = {"single": {}, "tfidf": {}}
    speed: dict[str, float] = {}

    def train_single(p: str, out_dir: Path, **extra):
        """One policy's guard at the policy's recipe, as the quickstart trains it; `extra` overrides options."""
        resolved = resolve_policies([p], [p])
        config = make_config(list(resolved.values()), epochs=epochs, threshold_rule=rule, seed=seed, **{**options, **extra})
        return train_guard(config, only_policies(splits["train"], [p]), only_policies(splits["validation"], [p]), resolved,
                           out_dir, progress=False, everyday=everyday)

    for p in policies:
        result = train_single(p, work / p)
        guards["single"][p] = Guard.load(result.out_dir)
        speed[p] = result.examples_per_second
        guards["tfidf"][p] = TfidfBaseline(threshold_rule=rule, everyday=with_everyday).fit(
            only_policies(splits["train"], [p]), splits["validation"])
    if multitask:
        resolved = resolve_policies(policies, policies)
        config = make_config(list(resolved.values()), kind="multitask", epochs=epochs, threshold_rule=rule, seed=seed, **options)
        result = train_guard(config, splits["train"], splits["validation"], resolved, work / "multitask", progress=False,
                             everyday=everyday)
        shared = Guard.load(result.out_dir)
        guards["multitask"] = {p: shared for p in policies}
        speed["multitask"] = result.examples_per_second
        if specialist_options is not None:  # one-policy guards fine-tuned further from MultiTaskGuard's weights
            guards["specialist"] = {p: Guard.load(train_single(p, work / f"specialist_{p}", base_model=str(result.out_dir),
                                                               **specialist_options).out_dir) for p in policies}
    pool_texts = {r["text"] for r in benign_pool(seed)}
    report = {kind: {p: score_devset(scorer, p, dev[p], pool_texts) for p, scorer in by_policy.items()} for kind, by_policy in guards.items()}
    report["train_examples_per_second"] = speed
    report["dev_rows"] = {p: {"n": len(rows), "positives": sum(r["label"] for r in rows)} for p, rows in dev.items()}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", nargs="+", default=["prompt_injection", "violence_weapons"])
    parser.add_argument("--n", type=int, default=400, help="template samples per policy")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threshold-rule", default="f1")
    parser.add_argument("--multitask", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cross-policy-share", type=float, default=DEFAULT_CROSS_SHARE,
                        help="injection policies reuse this share of other policies' rows (0: off; synth.cross_policy)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training option for every guard (a TrainConfig field, e.g. length_buckets=false); repeatable")
    parser.add_argument("--no-everyday", dest="everyday", action="store_false",
                        help="calibrate fpr thresholds on each policy's own validation rows only, without the other policies' everyday rows")
    parser.add_argument("--specialists", action="append", default=None, metavar="KEY=VALUE", nargs="?", const="",
                        help="with --multitask: also one-policy guards fine-tuned from MultiTaskGuard, with these training options")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/quality"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the data and guards in this (new) directory")
    args = parser.parse_args()
    options = dict(item.split("=", 1) for item in args.set)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        report = run(args.policies, args.n, args.epochs, args.threshold_rule, args.multitask, args.seed, work, options,
                     args.cross_policy_share, args.everyday,
                     None if args.specialists is None else dict(item.split("=", 1) for item in args.specialists if item))
    report["args"] = {k: str(v) for k, v in vars(args).items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_quality.json").write_text(json.dumps(report, indent=2))
    columns = ("f1", "precision", "recall", "fpr", "fpr_benign_pool", "auprc", "recall_at_1pct_fpr", "recall_at_3pct_fpr")
    print("guard     policy              " + " ".join(f"{c[:10]:>10}" for c in columns))
    for kind in ("single", "multitask", "specialist", "tfidf"):
        for policy, m in report.get(kind, {}).items():
            print(f"{kind:<9} {policy:<19} " + " ".join(f"{m[c]:>10.3f}" for c in columns))
    for kind in ("single", "multitask", "specialist", "tfidf"):
        for policy, m in report.get(kind, {}).items():
            worst = list(m["per_source"].items())[:4]
            print(f"{kind} {policy}, most errors: " + "; ".join(f"{name} {v['errors']}/{v['n']}" for name, v in worst))
    print("training examples/s: " + ", ".join(f"{k} {v:.1f}" for k, v in report["train_examples_per_second"].items()))
    print(f"details: {args.out / 'bench_quality.json'}")


if __name__ == "__main__":
    main()
