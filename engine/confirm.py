"""Confirmation: re-score the front's best recipes on data the search never saw, and choose there.

A search that ranks hundreds of recipes on one validation set rewards the recipe whose noise on that
set was luckiest (the winner's curse): its search F1 overstates what it does on new data. So the
strongest candidates (the front's best by search F1, plus the known-good baselines the search began
with, MultiTaskGuard among them) are scored again, with the search's own protocol (same metric,
calibration/scoring halves, bootstrap standard error), on a confirmation split; UniGuard is the
candidate best *there*. RUN/confirmation.json keeps search and confirmation scores side by side.

The paper's claim is per policy: the merge should be no worse than the best model it fuses on any
policy. So every source model alone (the "<name> alone" baselines, re-scored in full even where the
search's racing stopped them) sets a per-policy reference, and each candidate carries its `shortfall`:
how far its F1 falls below that reference on its worst policy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from pydantic import BaseModel

from engine.front import pareto_front
from engine.journal import JournalEntry
from engine.recipe import Recipe
from engine.rundir import RunDir
from uniguard.core.io import read_json, write_json


class Confirmation(BaseModel):
    hash: str
    label: Optional[str] = None
    recipe: dict
    search_f1: float
    search_f1_se: Optional[float] = None
    confirm_f1: float
    confirm_f1_se: Optional[float] = None
    per_policy: dict[str, float]
    thresholds: dict[str, float]  # chosen on the confirmation data's calibration half
    shortfall: Optional[float] = None  # worst policy's F1 below the best source alone there (<= 0: none below)


def candidates(entries: list[JournalEntry], top: int) -> list[JournalEntry]:
    """The front's `top` best by search F1, then every labelled baseline not already among them (the
    raced-out too: each source alone is the reference on its policy)."""
    best = sorted(pareto_front([e for e in entries if not e.format]), key=lambda e: -e.f1)[:top]
    chosen = {e.hash for e in best}
    return best + [e for e in entries if e.label and not e.format and e.hash not in chosen]


def shortfalls(per_policy: list[tuple[str | None, dict[str, float]]]) -> list[float | None]:
    """For each (label, F1 per policy): its worst policy's gap to the best source alone there (None
    where no source alone was scored)."""
    from engine.search import is_alone

    sources = [f1s for label, f1s in per_policy if is_alone(label)]
    if not sources:
        return [None] * len(per_policy)
    best = {p: max(s.get(p, 0.0) for s in sources) for p in sources[0]}
    return [max(best[p] - f1s.get(p, 0.0) for p in best) for _, f1s in per_policy]


def with_shortfalls(results: list[Confirmation]) -> list[Confirmation]:
    gaps = shortfalls([(c.label, c.per_policy) for c in results])
    return [c.model_copy(update={"shortfall": gap}) for c, gap in zip(results, gaps)]


def confirm(run: RunDir, data: str | Path, top: int = 5) -> list[Confirmation]:
    """Score the candidates on `data` (labelled JSONL the search never used); best first."""
    import torch
    from transformers import AutoTokenizer

    from engine.search import prepare
    from engine.worker import RecipeScorer

    config = run.config()
    setup = prepare(config, data)
    # one process scores every candidate here, not a worker among others: it may use every core
    torch.set_num_threads(max(config.fitness.threads, os.cpu_count() or 1))
    settings = config.fitness.model_copy(update={"racing": (1.0,)})  # every candidate on all the data
    scorer = RecipeScorer(setup.pool, setup.eval_set, AutoTokenizer.from_pretrained(setup.tokenizer_dir), settings)
    results = []
    for entry in candidates(run.entries(), top):
        evaluation = scorer.evaluate(Recipe.from_dict(entry.recipe))
        results.append(Confirmation(hash=entry.hash, label=entry.label, recipe=entry.recipe, search_f1=entry.f1,
                                    search_f1_se=entry.f1_se, confirm_f1=evaluation.f1, confirm_f1_se=evaluation.f1_se,
                                    per_policy=evaluation.per_policy, thresholds=evaluation.thresholds))
    results = sorted(with_shortfalls(results), key=lambda c: -c.confirm_f1)
    write_json(run.confirmation_file, {"data": str(data), "top": top, "candidates": [c.model_dump() for c in results]})
    return results


def load_confirmations(run: RunDir) -> list[Confirmation]:
    """RUN/confirmation.json's candidates, best first; empty where the run has not been confirmed."""
    if not run.confirmation_file.is_file():
        return []
    stored = read_json(run.confirmation_file, f"rerun `uniguard confirm {run.path} --data FILE`")
    return [Confirmation.model_validate(c) for c in stored["candidates"]]
