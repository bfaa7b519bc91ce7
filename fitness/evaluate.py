"""Evaluate anything that scores (text, policy) pairs on labelled examples, per policy and macro.

A guard, a TF-IDF baseline and an LLM judge all satisfy `Scorer`, so every number in a results
table comes from the same code path, the same thresholds rule and the same metrics.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import numpy as np

from synth.policy import Policy
from trainers.data import Example
from trainers.metrics import per_policy_metrics


class Scorer(Protocol):
    def score(self, texts: Sequence[str], policy: Policy) -> np.ndarray: ...

    def threshold(self, policy: Policy) -> float: ...


def score_examples(scorer: Scorer, examples: Sequence[Example], policies: Mapping[str, Policy]) -> np.ndarray:
    """Scores in input order, one scorer call per policy (so a guard tokenises each instruction once)."""
    scores = np.empty(len(examples), dtype=np.float64)
    by_policy: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_policy.setdefault(e.policy, []).append(i)
    for name, idx in by_policy.items():
        scores[idx] = scorer.score([examples[i].text for i in idx], policies[name])
    return scores


def evaluate(scorer: Scorer, examples: Sequence[Example], policies: Mapping[str, Policy]) -> dict:
    """{"per_policy": {name: metrics}, "macro": metrics} at each policy's stored threshold, plus
    "per_language": {name: {lang: metrics}} when the rows name their language."""
    scores = score_examples(scorer, examples, policies)
    thresholds = {name: scorer.threshold(p) for name, p in policies.items()}
    report = per_policy_metrics([e.label for e in examples], scores, [e.policy for e in examples], thresholds)
    if any(e.lang for e in examples):
        report["per_language"] = per_language_metrics(examples, scores, thresholds)
    return report


def per_language_metrics(examples: Sequence[Example], scores: np.ndarray, thresholds: Mapping[str, float]) -> dict[str, dict]:
    """{policy: {lang: metrics}} at the policy's own threshold (one threshold serves every language);
    rows without a language count as "unknown"."""
    out = {}
    for name in sorted({e.policy for e in examples}):
        idx = [i for i, e in enumerate(examples) if e.policy == name]
        langs = [examples[i].lang or "unknown" for i in idx]
        out[name] = per_policy_metrics([examples[i].label for i in idx], scores[idx], langs, thresholds.get(name, 0.5))["per_policy"]
    return out
