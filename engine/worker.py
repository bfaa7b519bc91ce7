"""The Ray fitness worker: holds the pool and tokenised validation data, evaluates recipes."""

from __future__ import annotations

from engine.recipe import Recipe
from fitness.evaluator import Evaluator, FitnessSettings


class FitnessWorker:
    def __init__(self, pool, eval_set, tokenizer_dir: str, settings: FitnessSettings):
        import torch
        from transformers import AutoTokenizer

        torch.set_num_threads(settings.threads)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
        self.evaluator = Evaluator(pool, eval_set, tokenizer, settings)

    def evaluate(self, recipe: dict, front: list, latencies: dict | None = None) -> dict:
        evaluation = self.evaluator.evaluate(Recipe.from_dict(recipe), front, latencies)
        result = evaluation.to_dict()
        result.pop("recipe_hash")
        result["scores"] = evaluation.scores  # for paired racing against this recipe; not journaled
        return result


def start_workers(ray, setup: dict, settings: FitnessSettings, count: int) -> list:
    """Start `count` actors; the pool and data go through the object store once (put once, shared)."""
    if "refs" not in setup:
        setup["refs"] = (ray.put(setup["pool"]), ray.put(setup["eval_set"]))
    pool_ref, data_ref = setup["refs"]
    remote = ray.remote(num_cpus=settings.threads, max_restarts=0)(FitnessWorker)
    return [remote.remote(pool_ref, data_ref, setup["tokenizer_dir"], settings) for _ in range(count)]
