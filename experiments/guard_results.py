"""The README results table: single guards, MultiTaskGuard (with loss ablations) and baselines, scored on
synthetic test splits and on the real offline dev sets, all through `uniguard` commands.

    python -m experiments.guard_results --out RUN_DIR [--policies a,b,c] [--n 300] [--train-per-policy 100]
                                        [--epochs 2] [--devset-rows 200] [--judge-rows 40]

Every number comes from a command run here (listed in RUN_DIR/commands.txt); results land in
RUN_DIR/results.json and RUN_DIR/results.md. Rerunning skips finished guards (train resumes).
The settings default to what fits a 2-core CPU in about an hour; raise them where you have more.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

from uniguard.core.io import read_jsonl, write_json, write_jsonl

UG = [sys.executable, "-m", "uniguard"]


def run(cmd: list[str], log: Path) -> dict | None:
    with open(log, "a") as f:
        f.write(shlex.join(cmd) + "\n")
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-3000:]}")
    print(f"[{time.time() - started:6.0f}s] {shlex.join(cmd[2:])[:150]}", flush=True)
    out = proc.stdout
    return json.loads(out[out.index("{"):]) if "{" in out else None


def subsample(rows: list[dict], k: int, seed: int = 0) -> list[dict]:
    """Seeded subsample that keeps the class balance of the full set."""
    if len(rows) <= k:
        return rows
    rng = random.Random(seed)
    pos = [r for r in rows if r["label"] == 1]
    neg = [r for r in rows if r["label"] == 0]
    k_pos = max(1, round(k * len(pos) / len(rows)))
    return rng.sample(pos, k_pos) + rng.sample(neg, k - k_pos)


def prepare_data(args, out: Path, log: Path) -> tuple[Path, dict[str, Path]]:
    """Synthetic data (template backend), per-policy training subsets, and real dev-set files."""
    full = out / "synth"
    if not (full / "test.jsonl").is_file():
        run(UG + ["synth", *sum((["--policy", p] for p in args.policies), []), "--backend", "template",
                  "--n", str(args.n), "--seed", str(args.seed), "--out", str(full)], log)
    data = out / "data"
    if not (data / "train.jsonl").is_file():
        train = read_jsonl(full / "train.jsonl")
        capped = []
        for p in args.policies:
            capped += subsample([r for r in train if r["policy"] == p], args.train_per_policy, args.seed)
        data.mkdir(parents=True, exist_ok=True)
        write_jsonl(data / "train.jsonl", capped)
        for split in ("validation", "test"):
            write_jsonl(data / f"{split}.jsonl", read_jsonl(full / f"{split}.jsonl"))
    devsets = {}
    for p in args.policies:
        path = out / "devsets" / f"{p}.jsonl"
        if not path.is_file():
            from fitness.devsets import load_devset

            write_jsonl(path, subsample(load_devset(p, args.seed), args.devset_rows, args.seed))
        devsets[p] = path
    return data, devsets


def train(name: str, kind: str, data: Path, out: Path, args, log: Path, extra: list[str] = (), policy: str | None = None) -> Path:
    guard = out / "guards" / name
    if (guard / "uniguard.json").is_file() and not (guard / "checkpoint").exists():
        return guard
    cmd = UG + ["train", kind, "--data", str(data), "--out", str(guard), "--epochs", str(args.epochs),
                "--lr", str(args.lr), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--truncate", "--seed", str(args.seed),
                "--json", *extra]
    if policy:
        cmd += ["--policy", policy]
    run(cmd, log)
    return guard


def evaluate(guard: Path, files: dict[str, Path], log: Path, policy: str | None = None) -> dict:
    only = ["--policy", policy] if policy else []
    return {name: run(UG + ["eval", "--model", str(guard), "--data", str(f), "--json", *only], log) for name, f in files.items()}


def _multitask(key, extra, data, out, args, log, test_files, results, save) -> None:
    if key in results:
        return
    name = "multitask_" + key.split("(")[1].rstrip(")").replace("+", "_").lower()
    guard = train(name, "multitask", data, out, args, log, extra)
    results[key] = {"kind": "multitask", "policies": args.policies, "eval": evaluate(guard, test_files, log)}
    save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--policies", default="prompt_injection,violence_weapons,pii_disclosure")
    parser.add_argument("--n", type=int, default=300, help="synthetic samples per policy before dedup/splitting")
    parser.add_argument("--train-per-policy", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1.5e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--devset-rows", type=int, default=200)
    parser.add_argument("--judge-rows", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ablation", action="store_true")
    args = parser.parse_args()
    args.policies = args.policies.split(",")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.txt"
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}

    def save():
        write_json(results_path, results)
        (out / "results.md").write_text(markdown(results, args))

    data, devsets = prepare_data(args, out, log)
    test_files = {"synthetic test": data / "test.jsonl", **{f"dev: {p}": f for p, f in devsets.items()}}

    for p in args.policies:
        key = f"single guard ({p})"
        if key not in results:
            guard = train(f"single_{p}", "single", data, out, args, log, policy=p)
            files = {"synthetic test": test_files["synthetic test"], f"dev: {p}": devsets[p]}
            results[key] = {"kind": "single", "policies": [p], "eval": evaluate(guard, files, log, policy=p)}
            save()
    train_multitask = lambda key, extra: _multitask(key, extra, data, out, args, log, test_files, results, save)  # noqa: E731
    train_multitask("MultiTaskGuard (CE)", [])
    if "TF-IDF + LR" not in results:
        cmd = UG + ["baseline", "tfidf", "--data", str(data), "--json", *sum((["--eval", str(f)] for f in test_files.values()), [])]
        by_file = run(cmd, log)["results"]
        results["TF-IDF + LR"] = {"kind": "baseline", "eval": {n: by_file[str(f)] for n, f in test_files.items()}}
        save()
    if args.judge_rows and "SmolLM2-135M judge (zero-shot)" not in results:
        cmd = UG + ["baseline", "judge", "--limit", str(args.judge_rows), "--json", *sum((["--eval", str(f)] for f in test_files.values()), [])]
        by_file = run(cmd, log)["results"]
        results["SmolLM2-135M judge (zero-shot)"] = {"kind": "baseline", "eval": {n: by_file[str(f)] for n, f in test_files.items()},
                                                     "note": f"seeded subsample of {args.judge_rows} rows per file"}
        save()
    if not args.skip_ablation:  # last: the costliest runs, and the table is useful without them
        train_multitask("MultiTaskGuard (CE+MLM)", ["--mlm-weight", "0.1"])
        train_multitask("MultiTaskGuard (CE+adv)", ["--adv-weight", "0.5"])
    save()
    print((out / "results.md").read_text())


def _cell(report: dict | None, policy: str) -> str:
    m = (report or {}).get("per_policy", {}).get(policy)
    if not m:
        return "–"
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    return f"{fmt(m.get('f1'))} / {fmt(m.get('auprc'))}"


def markdown(results: dict, args) -> str:
    """One column per (policy, split): F1 at the model's threshold / AUPRC; n per column in the header."""
    columns = [(p, "synthetic test") for p in args.policies] + [(p, f"dev: {p}") for p in args.policies]
    sizes = {}
    for r in results.values():
        for p, f in columns:
            m = r["eval"].get(f, {}).get("per_policy", {}).get(p)
            if m:
                sizes.setdefault((p, f), m["n"])  # the first full-set row; subsampled rows say so in their name
    header = [f"{p} {'synth' if f == 'synthetic test' else 'real dev'} (n={sizes.get((p, f), '?')})" for p, f in columns]
    lines = ["| model (F1 / AUPRC) | " + " | ".join(header) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(_cell(r["eval"].get(f), p) for p, f in columns) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
