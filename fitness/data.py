"""Validation data for the search, tokenised once and split for honest threshold selection.

Per policy, examples are shuffled once (seeded, stratified by label) and dealt alternately into a
calibration half (the decision threshold is chosen there) and a scoring half (F1 is read there),
so the search is not rewarded for fitting the threshold to the examples it is scored on. Racing
evaluates growing prefixes of both halves; prefixes of a stratified deal stay stratified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from synth.policy import Policy
from trainers.data import Example, everyday_rows
from trainers.metrics import DEFAULT_THRESHOLD_RULE
from trainers.guard import encode_pairs
from uniguard.core.errors import UserError

Features = dict[str, list[list[int]]]  # unpadded token ids (and token type ids) per example


@dataclass
class Half:
    labels: np.ndarray
    features: Features

    def __len__(self) -> int:
        return len(self.labels)

    def prefix(self, n: int) -> "Half":
        return Half(self.labels[:n], {k: v[:n] for k, v in self.features.items()})


@dataclass
class PolicyData:
    name: str
    calibration: Half
    scoring: Half

    def prefix(self, fraction: float) -> "PolicyData":
        def take(half: Half) -> Half:
            return half.prefix(max(2, int(np.ceil(fraction * len(half)))))

        return PolicyData(self.name, take(self.calibration), take(self.scoring))

    @property
    def size(self) -> int:
        return len(self.calibration) + len(self.scoring)


@dataclass
class EvalSet:
    policies: list[PolicyData]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.policies)

    def prefix(self, fraction: float) -> "EvalSet":
        return self if fraction >= 1 else EvalSet([p.prefix(fraction) for p in self.policies])


def build_eval_set(examples: Sequence[Example], policies: dict[str, Policy], tokenizer, max_length: int, seed: int = 0,
                   threshold_rule: str = DEFAULT_THRESHOLD_RULE) -> EvalSet:
    """Tokenise validation examples per policy and deal them into calibration and scoring halves.

    Under a false-positive target each calibration half also takes the other policies' everyday rows
    (`trainers.data.everyday_rows`) as benign rows, as training's calibration does, up to as many as
    its own benign rows (so at most twice them, and the scoring half is untouched)."""
    rng = np.random.default_rng(seed)
    everyday = everyday_rows(examples, threshold_rule)
    out = []
    for name, policy in sorted(policies.items()):
        rows = [e for e in examples if e.policy == name]
        labels = np.array([e.label for e in rows])
        if len(rows) < 8 or labels.min() == labels.max():
            raise UserError(
                f"validation data for policy {name!r}: {len(rows)} examples with labels {sorted(set(labels.tolist()))}; "
                "the search needs at least 8 examples of both labels per policy (4 per half) to choose a threshold and read F1"
            )
        by_label = [rng.permutation(np.flatnonzero(labels == label)) for label in (0, 1)]
        halves = [[rows[i] for idx in by_label for i in idx[half::2]] for half in (0, 1)]  # each label dealt alternately
        others = [e for e in everyday if e.policy != name]
        n_extra = min(len(others), sum(e.label == 0 for e in halves[0]))
        halves[0] += [others[i] for i in rng.choice(len(others), n_extra, replace=False)] if n_extra else []
        out.append(PolicyData(name, *(_half(half, policy, tokenizer, max_length, rng) for half in halves)))
    return EvalSet(out)


def _half(rows: list[Example], policy: Policy, tokenizer, max_length: int, rng: np.random.Generator) -> Half:
    labels = np.array([e.label for e in rows])
    order = _interleaved([rng.permutation(np.flatnonzero(labels == label)) for label in (0, 1)])
    return Half(labels[order], encode_pairs(tokenizer, policy.instruction, [rows[i].text for i in order], max_length))


def _interleaved(indices_by_label: list[np.ndarray]) -> np.ndarray:
    """Merge per-label index lists by relative position, so any prefix keeps the label ratio."""
    keyed = sorted(((rank + 0.5) / len(idx), int(i)) for idx in indices_by_label for rank, i in enumerate(idx))
    return np.array([i for _, i in keyed], dtype=np.int64)
