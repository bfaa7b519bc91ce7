"""MiniLM guard vs TF-IDF + LR on template data over several data seeds (the integration test's question).

    python -m experiments.guard_vs_tfidf --seeds 0,1,2,3,4 [--policy prompt_injection] [--n 150]
        [--split 0.8,0.1,0.1] [--split-by row] [--epochs 3] [--lr 5e-5] [--set KEY=VALUE ...]
        [--devset-rows 0] [--out RUN_DIR]

Per seed: `uniguard synth --backend template`, train a MiniLM guard in-process (trainers.training), fit
TF-IDF on the same train/validation rows, score both on the test split (and, with --devset-rows, on a
seeded class-balanced subsample of the policy's real offline dev set) at thresholds calibrated on
validation. Prints one JSON line per seed and a summary (means, wins) at the end. Each line also has,
per benign kind of test row (allowed, borderline look-alikes, ...), the chance that a violating row
scores above a row of that kind (ROC AUC of `unsafe` against the kind): which benign texts a model
confuses with violations, free of the threshold.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--policy", default="prompt_injection")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--split", default="0.8,0.1,0.1")
    ap.add_argument("--split-by", default="row")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-5, help="the trainer's default")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=None, help="default: the trainer's (256, capped at the model's limit)")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="extra TrainConfig field KEY=VALUE")
    ap.add_argument("--devset-rows", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from trainers.baselines import TfidfBaseline
    from trainers.data import Example, load_splits, only_policies, resolve_policies
    from fitness.evaluate import evaluate, score_examples
    from trainers.guard import Guard
    from trainers.training import make_config, train_guard

    out = Path(args.out or tempfile.mkdtemp(prefix="guard_vs_tfidf_"))
    out.mkdir(parents=True, exist_ok=True)
    policies = resolve_policies([args.policy])
    extra = dict(kv.split("=", 1) for kv in args.set)
    config = make_config(epochs=args.epochs, learning_rate=args.lr, max_length=args.max_length, truncate=True,
                         batch_size=args.batch_size, patience=3, seed=args.train_seed,
                         **{k: parse_value(v) for k, v in extra.items()})
    dev = None
    if args.devset_rows:
        from experiments.guard_results import subsample
        from fitness.devsets import load_devset

        dev = [Example(r["text"], r["label"], r["policy"]) for r in subsample(load_devset(args.policy, 0), args.devset_rows, 0)]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        data = out / f"data_s{seed}"
        if not (data / "test.jsonl").is_file():
            subprocess.run([sys.executable, "-m", "uniguard", "synth", "--policy", args.policy, "--backend", "template",
                            "--n", str(args.n), "--seed", str(seed), "--split", args.split, "--split-by", args.split_by,
                            "--out", str(data)], check=True, capture_output=True)
        splits = {k: only_policies(v, [args.policy]) for k, v in load_splits([data], test_required=True).items()}
        guard_dir = out / f"guard_s{seed}"
        started = time.time()
        trained = train_guard(config, splits["train"], splits["validation"], policies, guard_dir, test=splits["test"],
                              progress=False, overwrite=True)
        seconds = time.time() - started
        guard = Guard.load(guard_dir)
        tfidf = TfidfBaseline(threshold_rule=config.threshold_rule).fit(splits["train"], splits["validation"])
        row = {"seed": seed, "n_train": len(splits["train"]), "n_test": len(splits["test"]), "train_s": round(seconds, 1),
               "best_step": trained.history and max(trained.history, key=lambda h: h["val_f1"])["step"]}
        kinds = [json.loads(line).get("kind", "") for line in (data / "test.jsonl").open()]  # load_splits keeps file order
        for name, scorer in (("minilm", guard), ("tfidf", tfidf)):
            m = evaluate(scorer, splits["test"], policies)["macro"]
            row[f"{name}_f1"], row[f"{name}_auprc"] = round(m["f1"], 4), round(m["auprc"], 4)
            scores = score_examples(scorer, splits["test"], policies)
            for kind in sorted(set(kinds) - {"unsafe"}):
                pair = [i for i, k in enumerate(kinds) if k in (kind, "unsafe")]
                row[f"{name}_auc_vs_{kind}"] = round(roc_auc_score([kinds[i] == "unsafe" for i in pair], scores[pair]), 4)
            if dev is not None:
                d = evaluate(scorer, dev, policies)["macro"]
                row[f"{name}_dev_f1"], row[f"{name}_dev_auprc"] = round(d["f1"], 4), round(d["auprc"], 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = sorted({k for r in rows for k in r if k.startswith(("minilm", "tfidf"))})  # a seed may lack a kind of row
    means = {k: round(sum(r[k] for r in rows if k in r) / sum(k in r for r in rows), 4) for k in keys}
    summary = {"config": {**vars(args), **config.model_dump()}, "mean": means}
    for metric in ("f1", "auprc", "dev_f1", "dev_auprc"):
        if f"minilm_{metric}" in rows[0]:
            summary[f"minilm_wins_{metric}"] = sum(r[f"minilm_{metric}"] > r[f"tfidf_{metric}"] for r in rows)
            summary[f"min_margin_{metric}"] = round(min(r[f"minilm_{metric}"] - r[f"tfidf_{metric}"] for r in rows), 4)
    (out / "summary.json").write_text(json.dumps({"rows": rows, **summary}, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))


if __name__ == "__main__":
    main()
