"""The search driver: an ask/tell loop over Ray fitness workers, journaled and resumable.

Workers (Ray actors) receive the model pool and the tokenised validation data once through the
object store and evaluate recipes; the driver keeps every worker busy with `ray.wait`, appends
each result to the journal before telling the strategy, and on restart replays the journal into
the strategy and never evaluates a journaled recipe again. A worker that dies costs only the
recipe it held, which is resubmitted.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from engine.config import ObjectiveConfig, SearchConfig
from engine.front import pareto_front
from engine.journal import Journal, JournalEntry
from engine.recipe import Recipe
from engine.rundir import RunDir
from engine.space import SearchSpace
from engine.worker import WorkerSetup, gpus_per_worker, start_workers
from engine.strategies import make_strategy
from fitness.data import EvalSet
from fitness.evaluator import FitnessSettings
from uniguard.core.errors import UserError

if TYPE_CHECKING:
    from engine.pool import ModelPool

MAX_ATTEMPTS = 3  # per recipe, across worker deaths
MAX_CONSECUTIVE_REPEATS = 200  # strategy proposals already evaluated, before the space counts as exhausted


@dataclass
class Job:
    """A recipe handed to a worker; resubmitted (attempts + 1) when its worker dies."""

    recipe: Recipe
    token: Any  # the strategy's handle for tell(); None for the known-good seeds
    label: str | None
    attempts: int = 1
    actor: Any = None


def alone_label(name: str) -> str:
    """The known-good seed that is one source model unmerged: the reference on its own policy."""
    return f"{name} alone"


def is_alone(label: str | None) -> bool:
    return bool(label) and label.split(" (")[0].endswith(" alone")


def known_good_recipes(config: SearchConfig, num_candidates: int) -> list[tuple[str, Recipe]]:
    """Evaluated first so the front never starts worse than them: MultiTaskGuard alone, TIES with its
    defaults, the uniform average, then each other candidate alone. The likely strongest go first:
    against them racing can stop a single-policy guard, strong on one policy only, early."""
    names = config.names
    first = [names.index(config.pool.multitask)] if config.pool.multitask else []
    singles = []
    for i in first + [i for i in range(len(names)) if i not in first]:
        one_hot = [1.0 if j == i else 0.0 for j in range(num_candidates)]
        label = alone_label(names[i]) + (" (MultiTaskGuard)" if i in first else "")
        singles.append((label, Recipe(operator="linear", weights=one_hot, anchor=i)))
    merges = [("TIES defaults", Recipe(operator="ties", weights=[1.0] * num_candidates, density=0.5, anchor=config.space.anchor)),
              ("uniform average", Recipe(operator="linear", weights=[1.0] * num_candidates, anchor=config.space.anchor))]
    return singles[: len(first)] + merges + singles[len(first):]


def loss(entry: JournalEntry, size_ref: float, latency_ref: float, objective: ObjectiveConfig) -> float:
    """Scalar loss for single-objective strategies: -F1 plus small size and latency penalties."""
    return (-entry.f1 + objective.size_weight * entry.size_bytes / size_ref
            + objective.latency_weight * entry.latency_ms / max(latency_ref, 1e-9))


def run_search(config: SearchConfig, run_dir: str | Path, budget: int | None = None, workers: int | None = None,
               address: str | None = None, progress: bool = True) -> list[JournalEntry]:
    budget = config.budget if budget is None else _at_least_one("--budget", budget)
    workers = config.workers if workers is None else _at_least_one("--workers", workers)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
    run = RunDir(run_dir)
    with run.writer_lock():
        run.pin(config)
        return _search(config, run, budget, workers, address, progress)


def _at_least_one(option: str, value: int) -> int:
    if value < 1:
        raise UserError(f"{option} {value}: must be at least 1; pass a positive number or leave it out to use the config's")
    return value


CONNECT_TIMEOUT_S = 10


def check_reachable(address: str) -> None:
    """Fail in seconds, naming the address, when nothing listens at a host:port Ray address:
    ray.init would otherwise retry for minutes and end in a traceback."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" and other forms Ray resolves itself
    try:
        socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"--address {address}: cannot connect ({exc.strerror or exc}); check the address (or RAY_ADDRESS) "
                        "and that the Ray head is running (`ray start --head`), or leave --address out for a local Ray") from None


def _search(config: SearchConfig, run: RunDir, budget: int, workers: int, address: str | None, progress: bool) -> list[JournalEntry]:
    import ray
    from tqdm import tqdm

    journal = run.journal(writable=True)
    setup = prepare(config)
    space = SearchSpace(config.space, setup.pool.num_candidates, setup.pool.num_layers)
    strategy = make_strategy(config.strategy, space, budget, workers)
    size_ref = setup.size_ref
    latency_ref = [None]

    def loss_of(entry: JournalEntry) -> float:
        latency_ref[0] = latency_ref[0] or entry.latency_ms
        return loss(entry, size_ref, latency_ref[0], config.objective)

    for entry in journal.entries():  # replay: the strategy learns everything already evaluated
        strategy.tell(None, Recipe.from_dict(entry.recipe), loss_of(entry))
    queue = [(label, recipe) for label, recipe in known_good_recipes(config, space.n) if recipe.hash not in journal]

    _init_ray(ray, address, workers)
    setup.num_gpus = gpus_per_worker(ray, config.fitness, workers)
    actors = start_workers(ray, setup, config.fitness, workers)
    in_flight: dict[Any, Job] = {}
    scores: dict[str, Any] = {}  # per-example scores of front points evaluated in this process (paired racing)
    repeats = 0
    bar = tqdm(total=budget, initial=min(len(journal), budget), desc="search", unit="recipe", disable=not progress)
    try:
        while True:
            while len(in_flight) < len(actors) and len(journal) + len(in_flight) < budget and repeats < MAX_CONSECUTIVE_REPEATS:
                label, token, recipe = _next(queue, strategy)
                if recipe.hash in journal or any(job.recipe.hash == recipe.hash for job in in_flight.values()):
                    repeats += 1
                    done = journal.get(recipe.hash)
                    if done is not None:
                        strategy.tell(token, recipe, loss_of(done))
                    continue
                repeats = 0
                job = Job(recipe, token, label)
                _submit(actors, in_flight, job, journal, scores)
            if not in_flight:
                break
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            job = in_flight.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.OutOfMemoryError) as exc:  # Ray's memory monitor killed the worker
                _replace_dead(ray, actors, job.actor, setup, config.fitness)
                if job.attempts >= MAX_ATTEMPTS or not actors:
                    raise UserError(_lost_workers_message(job, exc, ray)) from None
                job.attempts += 1
                _submit(actors, in_flight, job, journal, scores)
                continue
            recipe_scores = result.pop("scores", None)
            entry = JournalEntry(hash=job.recipe.hash, recipe=job.recipe.to_dict(), label=job.label,
                                 **_shape_latency(result, journal.entries()), attempts=job.attempts, finished_at=time.time())
            journal.append(entry)  # durable before the strategy hears of it
            _keep_front_scores(scores, entry.hash, recipe_scores, journal)
            strategy.tell(job.token, job.recipe, loss_of(entry))
            bar.update(1)
            bar.set_postfix(best_f1=f"{max((e.f1 for e in journal.entries() if not e.raced_out), default=0):.3f}")
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
    run.write_front(journal.entries())
    return journal.entries()


def _next(queue: list[tuple[str, Recipe]], strategy) -> tuple[str | None, Any, Recipe]:
    if queue:
        label, recipe = queue.pop(0)
        return label, None, recipe
    token, recipe = strategy.ask()
    return None, token, recipe


def _submit(actors: list, in_flight: dict, job: Job, journal: Journal, scores: dict) -> None:
    busy = {id(j.actor) for j in in_flight.values()}
    actor = next((a for a in actors if id(a) not in busy), actors[0])
    entries = journal.entries()
    front = [(*e.objectives, scores.get(e.hash)) for e in pareto_front(entries)]
    job.actor = actor
    in_flight[actor.evaluate.remote(job.recipe.to_dict(), front, _latencies(entries))] = job


def _latencies(entries: list[JournalEntry]) -> dict[str, float]:
    """The first latency journaled per shape: every worker then reports the same one for a shape, so
    timing noise between workers neither splits the front nor hides a candidate from racing."""
    first: dict[str, float] = {}
    for e in entries:
        if e.shape:
            first.setdefault(e.shape, e.latency_ms)
    return first


def _shape_latency(result: dict, entries: list[JournalEntry]) -> dict:
    """The result with its shape's first journaled latency. Workers that start together each time a
    new shape before either is journaled; without this the faster reading would put a recipe on the
    front, and out of racing's reach, by timing noise alone. The worker's own reading is kept."""
    first = _latencies(entries).get(result["shape"])
    if first is None or first == result["latency_ms"]:
        return result
    return {**result, "latency_ms": first, "timings": {**result.get("timings", {}), "measured_latency_ms": result["latency_ms"]}}


def _keep_front_scores(scores: dict, recipe_hash: str, recipe_scores, journal: Journal) -> None:
    """Hold per-example scores only while their recipe is on the front (memory stays at front size)."""
    if recipe_scores is not None:
        scores[recipe_hash] = recipe_scores
    on_front = {e.hash for e in pareto_front(journal.entries())}
    for h in [h for h in scores if h not in on_front]:
        del scores[h]


def _lost_workers_message(job: Job, exc: Exception, ray) -> str:
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        cause = ("Ray killed the workers because the node ran out of memory; run fewer --workers, stop other "
                 "memory-heavy jobs on the machine, or give the cluster more memory")
    else:
        cause = f"{exc}; check the Ray cluster's health"
    return (f"recipe {job.recipe.hash} failed on {job.attempts} workers: {cause}. Then rerun the same command: "
            "the search resumes from its journal, which keeps every finished recipe")


def _replace_dead(ray, actors: list, dead, setup: WorkerSetup, fitness: FitnessSettings) -> None:
    """Drop the dead worker; start a replacement only where the cluster has a free CPU for it."""
    if dead in actors:
        actors.remove(dead)
        ray.kill(dead)  # a worker its task was killed in may linger; a dead one ignores this
    if ray.available_resources().get("CPU", 0) >= fitness.threads:
        actors.extend(start_workers(ray, setup, fitness, 1))


def _init_ray(ray, address: str | None, workers: int) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:  # a local Ray, started for this search
        # address="local": a fresh instance even when another Ray runs on this machine (a `ray start`
        # cluster would otherwise be joined, and joining refuses num_cpus)
        ray.init(address="local", num_cpus=workers, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)


def prepare(config: SearchConfig, data: str | Path | None = None) -> WorkerSetup:
    """Load the pool and the validation data (or `data`, e.g. a confirmation split) once in the
    driver, with the data statistics the space's operators need; workers get them by reference."""
    from transformers import AutoTokenizer

    from engine.pool import ModelPool

    pool = ModelPool.load(config.pool.base, list(config.pool.candidates), config.names)
    tokenizer = AutoTokenizer.from_pretrained(pool.candidate_dirs[0], trust_remote_code=False)
    eval_set = fitness_eval_set(config, pool, tokenizer, data)
    add_statistics(pool, config, config.space.operators, tokenizer, None if data else eval_set)
    size_ref = sum(t.numel() * 4 for t in pool.base.values())
    return WorkerSetup(pool, eval_set, str(pool.candidate_dirs[0]), size_ref)


def fitness_eval_set(config: SearchConfig, pool: ModelPool, tokenizer, data: str | Path | None = None) -> EvalSet:
    """The run's validation data (or `data`), tokenised at the fitness token limit and dealt into
    seeded calibration and scoring halves, as the workers score with it."""
    from engine.merge import guards_max_length
    from fitness.data import build_eval_set
    from trainers.data import load_rows, policy_names, resolve_policies

    examples = load_rows(data or config.data.validation)
    names = list(config.data.policies) or policy_names(examples)
    policies = resolve_policies(names, names)
    max_length = config.fitness.max_length or guards_max_length(pool)
    return build_eval_set(examples, policies, tokenizer, max_length, config.fitness.seed, config.fitness.threshold_rule)


def add_statistics(pool: ModelPool, config: SearchConfig, operator_names: Sequence[str], tokenizer=None,
                   validation: EvalSet | None = None) -> None:
    """Compute the data statistics `operator_names` need and the pool lacks (nothing otherwise), always
    from the calibration half of the run's own validation data: a confirmation or an export then
    merges a recipe into the very weights the search scored."""
    import operators

    kinds = pool.missing_statistics(sorted({kind for name in operator_names for kind in operators.get(name).uses_statistics}))
    if not kinds:
        return
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(pool.candidate_dirs[0], trust_remote_code=False)
    validation = validation if validation is not None else fitness_eval_set(config, pool, tokenizer)
    pool.compute_statistics(validation, tokenizer, kinds, config.fitness.batch_size)
