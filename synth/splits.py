"""Stratified, disjoint train / validation / test splits.

Rows are grouped into strata by (policy, label, kind); each stratum is shuffled with the seed and cut
by the split fractions, so every split keeps the mix of labels and kinds. Rows are deduplicated before
splitting, so no text (nor a near-duplicate of it) appears in two splits.
"""

from __future__ import annotations

import random
from collections import defaultdict

from uniguard.core.errors import UserError

SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def parse_fractions(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1), validated."""
    try:
        parts = tuple(float(part) for part in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise UserError(f"--split {text!r}: give three non-negative fractions for train,validation,test summing to 1, e.g. 0.8,0.1,0.1")
    return parts  # type: ignore[return-value]


def _cut_points(size: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    n_val = round(size * fractions[1])
    n_test = round(size * fractions[2])
    # A stratum of three or more rows gives every non-empty split at least one row, so small kinds
    # (e.g. a handful of in-domain examples) are still evaluated.
    if size >= 3:
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = max(size - n_val - n_test, 0)
    return n_train, n_train + n_val


def stratified_split(rows: list[dict], fractions: tuple[float, float, float], seed: int) -> dict[str, list[dict]]:
    strata: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        strata[(row["policy"], row["label"], row.get("kind", ""))].append(row)
    splits: dict[str, list[dict]] = {name: [] for name in SPLIT_NAMES}
    rng = random.Random(seed)
    for key in sorted(strata, key=str):
        members = strata[key]
        rng.shuffle(members)
        train_end, val_end = _cut_points(len(members), fractions)
        splits["train"].extend(members[:train_end])
        splits["validation"].extend(members[train_end:val_end])
        splits["test"].extend(members[val_end:])
    for name in SPLIT_NAMES:
        rng.shuffle(splits[name])
    return splits


def behaviour_split(rows: list[dict], fractions: tuple[float, float, float], seed: int) -> dict[str, list[dict]]:
    """Validation and test hold behaviours the training split never shows, in any form.

    Per policy, rows are grouped by the behaviour they were written from (its violating requests and
    its benign look-alikes together) and whole groups are dealt to the splits, so a guard is scored
    on generalising to unseen behaviours, not on recognising phrasings it trained on. Each held-out
    split first gets one group with violating and one with allowed rows, so both labels are scored.
    Rows without a behaviour (e.g. the policy's own examples) are groups of one.
    """
    by_policy: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_policy[row["policy"]][row.get("behaviour") or f"row:{row['text']}"].append(row)
    splits: dict[str, list[dict]] = {name: [] for name in SPLIT_NAMES}
    rng = random.Random(seed)
    for policy in sorted(by_policy):
        groups = [by_policy[policy][key] for key in sorted(by_policy[policy])]
        rng.shuffle(groups)
        total = sum(len(g) for g in groups)
        for name, fraction in (("test", fractions[2]), ("validation", fractions[1])):
            splits[name].extend(_take_groups(groups, round(total * fraction)))
        splits["train"].extend(row for group in groups for row in group)
        _check_both_labels(splits, policy, fractions)
    for name in SPLIT_NAMES:
        rng.shuffle(splits[name])
    return splits


def _take_groups(groups: list[list[dict]], target: int) -> list[dict]:
    """Remove and return groups (one with each label first) until `target` rows are taken."""
    taken: list[dict] = []
    for label in (1, 0):
        group = next((g for g in groups if any(r["label"] == label for r in g)), None)
        if group is not None and target > 0:
            groups.remove(group)
            taken.extend(group)
    while groups and len(taken) < target and len(groups) > 1:
        taken.extend(groups.pop())
    return taken


def _check_both_labels(splits: dict[str, list[dict]], policy: str, fractions: tuple[float, float, float]) -> None:
    for name, fraction in zip(SPLIT_NAMES, fractions):
        labels = {r["label"] for r in splits[name] if r["policy"] == policy}
        if fraction > 0 and labels != {0, 1}:
            raise UserError(f"policy {policy!r}: too few behaviours to hold whole behaviours out of training with both labels "
                            f"in every split ({name} has labels {sorted(labels)}); use a larger --n, more behaviours in the "
                            "policy, or --split-by row")
