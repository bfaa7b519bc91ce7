"""A quickstart run's guards on the whole real dev sets (the report reads 120-row subsamples of them).

    python -m experiments.whole_devsets QUICKSTART_OUT [--out FILE.json]

Scores the single-policy guards (each on its own policy), MultiTaskGuard and the exported UniGuard
on every dev set whose policy the run trained, with `experiments.bench_quality.score_devset`: F1,
FPR, AUPRC, recall at 1% / 3% FPR, recall per language and errors per source, at each guard's own
thresholds. The dev sets measure only; nothing here calibrates on them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("f1", "recall", "fpr", "auprc", "recall_at_1pct_fpr")


def score_run(run: Path, seed: int = 0) -> dict[str, dict[str, dict]]:
    from experiments.bench_quality import score_devset
    from fitness.devsets import benign_pool, devset_names, load_devset
    from trainers.guard import Guard

    policies = [p for p in devset_names() if (run / "guards" / p).is_dir()]
    pool_texts = {r["text"] for r in benign_pool(seed)}
    shared = {"multitask": Guard.load(run / "guards" / "multitask"), "uniguard": Guard.load(run / "exports" / "uniguard")}
    report: dict[str, dict[str, dict]] = {"single": {}, "multitask": {}, "uniguard": {}}
    for policy in policies:
        rows = [r for r in load_devset(policy, seed) if r["policy"] == policy]
        report["single"][policy] = score_devset(Guard.load(run / "guards" / policy), policy, rows, pool_texts)
        for name, guard in shared.items():
            report[name][policy] = score_devset(guard, policy, rows, pool_texts)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a `uniguard quickstart --out` directory")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default RUN/whole_dev_sets.json)")
    args = parser.parse_args()
    report = score_run(args.run)
    out = args.out or args.run / "whole_dev_sets.json"
    out.write_text(json.dumps(report, indent=2))
    print("guard      policy              " + " ".join(f"{c[:10]:>10}" for c in COLUMNS) + "  recall per language")
    for guard, by_policy in report.items():
        for policy, m in by_policy.items():
            langs = ", ".join(f"{k} {v:.2f}" for k, v in m["recall_per_language"].items())
            print(f"{guard:<10} {policy:<19} " + " ".join(f"{m[c]:>10.3f}" for c in COLUMNS) + f"  {langs}")
        means = {c: sum(m[c] for m in by_policy.values()) / len(by_policy) for c in COLUMNS}
        print(f"{guard:<10} {'mean':<19} " + " ".join(f"{means[c]:>10.3f}" for c in COLUMNS))
    print(f"details: {out}")


if __name__ == "__main__":
    main()
