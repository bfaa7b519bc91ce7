"""The Ray fitness worker: holds the pool and tokenised validation data, merges and scores recipes.

The worker owns what is engine business: one model per shape, each recipe merged straight into that
model's parameters, and the exported size. `fitness.Evaluator` then scores the model it is handed.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from transformers import AutoModelForSequenceClassification

from engine.merge import DTYPES, merge_state_dict, merged_config, merged_names
from engine.pool import ModelPool
from engine.recipe import Recipe
from fitness.data import EvalSet
from fitness.evaluator import Evaluation, Evaluator, FitnessSettings
from trainers.compute import CompiledForward, Compute, linears_in_bfloat16, resolve_compute
from trainers.guard import score_token_ids


def shape_key(recipe: Recipe, num_layers: int) -> str:
    """What size and latency depend on: the number of layers kept and the dtype."""
    return f"{len(recipe.layers) if recipe.layers is not None else num_layers}x{recipe.dtype}"


def _unscorable_as_allowed(scores: np.ndarray) -> np.ndarray:
    """A merge that overflows (NaN scores) is a bad candidate, not a failed search: its NaN scores
    count as "never flags", so it earns no F1 for them and ranks low instead of stopping the run."""
    return np.nan_to_num(scores, nan=0.0)


class RecipeScorer:
    """Merges recipes into reusable models and has the evaluator score them (in a worker or in-process)."""

    def __init__(self, pool: ModelPool, eval_set: EvalSet, tokenizer, settings: FitnessSettings):
        self.pool, self.tokenizer, self.settings = pool, tokenizer, settings
        self.compute = resolve_compute(settings.device, settings.precision)
        self.evaluator = Evaluator(eval_set, settings)
        self._models: dict[int, tuple[torch.nn.Module, dict[str, torch.Tensor]]] = {}
        self._copies: dict[int, torch.nn.Module] = {}
        self._compiled: dict[int, CompiledForward] = {}
        self._sizes: dict[str, int] = {}

    def evaluate(self, recipe: Recipe, front=(), latencies: dict[str, float] | None = None) -> Evaluation:

        model, weights = self._model(recipe)
        started = time.perf_counter()
        state = merge_state_dict(self.pool, recipe, into=weights)  # straight into the model's parameters
        merge_s = time.perf_counter() - started
        shape = shape_key(recipe, self.pool.num_layers)
        size = self._size(state, recipe, shape)
        model = self._forward(recipe, self._scoring_copy(recipe, model))
        batch, compute = self.settings.batch_size, self.compute

        def score(features):
            return _unscorable_as_allowed(score_token_ids(model, self.tokenizer, features, batch, compute, finite=False))

        evaluation = self.evaluator.evaluate(score, size, shape, front, latencies)
        evaluation.timings["merge_s"] = merge_s
        evaluation.seconds += merge_s
        return evaluation

    def _layers(self, recipe: Recipe) -> int:
        """The merged model's layer count: the key of every per-shape model a worker keeps."""
        return len(recipe.layers) if recipe.layers is not None else self.pool.num_layers

    def _model(self, recipe: Recipe) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        """One model per layer count, reused for every recipe of that shape, with its state dict: tensors
        sharing the parameters' storage, so a merge written into them is the model's new weights."""
        num_layers = self._layers(recipe)
        if num_layers not in self._models:
            model = AutoModelForSequenceClassification.from_config(merged_config(self.pool, recipe)).eval()
            weights = model.state_dict()
            expected = set(merged_names(self.pool, recipe).values())
            if set(weights) != expected:  # what load_state_dict(strict=True) would refuse
                raise RuntimeError(f"the merged model's tensors do not match the pool's: "
                                   f"missing {sorted(expected - set(weights))[:3]}, unexpected {sorted(set(weights) - expected)[:3]}")
            self._models[num_layers] = model, weights
        return self._models[num_layers]

    def _scoring_copy(self, recipe: Recipe, model: torch.nn.Module) -> torch.nn.Module:
        """The merged model as it is scored. A float32 CPU worker scores the merged model itself; any other
        keeps a resident copy per shape, refreshed from each merge by one load_state_dict: on the scoring
        device (the merge kernels run on the CPU), and under bfloat16 with its Linear weights stored in
        bfloat16, the cast autocast would otherwise repeat on every batch, made once per recipe (the same
        values: layer norms and embeddings stay float32, as under autocast)."""
        if self.compute == Compute("cpu", "float32"):
            return model
        key = self._layers(recipe)
        if key not in self._copies:
            resident = copy.deepcopy(model).to(self.compute.device)
            self._copies[key] = linears_in_bfloat16(resident) if self.compute.precision == "bfloat16" else resident
        else:
            self._copies[key].load_state_dict(model.state_dict())
        return self._copies[key]

    def _forward(self, recipe: Recipe, model: torch.nn.Module):
        """What scores the merged model: its forward compiled once per shape (`fitness.compile`), else the model."""
        if not self.settings.compile:
            return model
        key = self._layers(recipe)
        if key not in self._compiled:
            self._compiled[key] = CompiledForward(model)
        return self._compiled[key]

    def _size(self, state: dict[str, torch.Tensor], recipe: Recipe, shape: str) -> int:
        """Bytes of the model.safetensors `export` writes; depends only on layers kept and dtype."""
        if shape not in self._sizes:
            in_dtype = {name: t.to(DTYPES[recipe.dtype]) for name, t in state.items()}
            self._sizes[shape] = len(safetensors_bytes(in_dtype, metadata={"format": "pt", "uniguard_recipe": recipe.hash}))
        return self._sizes[shape]


class FitnessWorker:
    def __init__(self, pool, eval_set, tokenizer_dir: str, settings: FitnessSettings):
        from transformers import AutoTokenizer

        torch.set_num_threads(settings.threads)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
        self.scorer = RecipeScorer(pool, eval_set, tokenizer, settings)

    def placement(self) -> tuple[str, str]:
        """(Ray node id, device) this worker runs on: where the scheduler put it, for logs and tests."""
        import ray

        return ray.get_runtime_context().get_node_id(), self.scorer.compute.describe()

    def evaluate(self, recipe: dict, front: list, latencies: dict | None = None) -> dict:
        evaluation = self.scorer.evaluate(Recipe.from_dict(recipe), front, latencies)
        return {**evaluation.to_dict(), "scores": evaluation.scores}  # scores: for paired racing; not journaled


@dataclass
class WorkerSetup:
    """What every worker holds: loaded once in the driver, shared through Ray's object store."""

    pool: ModelPool
    eval_set: EvalSet
    tokenizer_dir: str
    size_ref: float  # float32 bytes of the base: the loss's size unit
    refs: tuple | None = None  # object-store references, once put
    num_gpus: float = 0.0  # each worker's GPU share (gpus_per_worker), fixed when the search starts


def start_workers(ray, setup: WorkerSetup, settings: FitnessSettings, count: int) -> list:
    """Start `count` actors; the pool and data go through the object store once (put once, shared)."""
    if setup.refs is None:
        setup.refs = (ray.put(setup.pool), ray.put(setup.eval_set))
    pool_ref, data_ref = setup.refs
    remote = ray.remote(num_cpus=settings.threads, num_gpus=setup.num_gpus, max_restarts=0)(FitnessWorker)
    return [remote.remote(pool_ref, data_ref, setup.tokenizer_dir, settings) for _ in range(count)]


def gpus_per_worker(ray, settings: FitnessSettings, workers: int) -> float:
    """The GPU share a worker asks Ray for: the configured one, else 1/workers where the cluster has
    GPUs and the device allows them (workers then share the GPUs), else 0 (CPU workers)."""
    if settings.device == "cpu":
        return 0.0
    if settings.gpus_per_worker is not None:
        return settings.gpus_per_worker
    gpus = ray.cluster_resources().get("GPU", 0)
    return min(1.0, gpus / workers) if gpus else 0.0
