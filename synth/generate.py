"""From policies to train/validation/test files: the synthesis pipeline.

Per policy: template seeds (every behaviour x style, balanced and deduplicated) -> optionally
paraphrased or freshly written by a chat backend (answers cached, so a rerun resumes) -> checked for
faithfulness -> self-reflection by the backend as judge -> rows. Then across policies: exact and near
dedup, stratified disjoint splits, report.json. Policies are independent until the global dedup, so
they fan out over Ray workers when an address is given.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from synth.backends import LocalChat, OpenAIChat, Sampling
from synth.cache import AnswerCache, cache_key
from synth.cross_policy import DEFAULT_CROSS_SHARE, add_cross_policy_rows
from synth.dedup import Deduper
from synth.policy import Policy
from synth.prompts import (LANGUAGE_NAMES, clean_answer, judge_messages, max_words_for, paraphrase_messages, parse_yes_no,
                           translate_messages, write_messages)
from synth.reflection import ReflectionStats, reflect
from synth.report import build_report
from synth.samples import Sample
from synth.splits import SPLIT_NAMES, behaviour_split, stratified_split
from synth.templates import content_words, template_samples
from synth.traffic import STRUCTURAL_STYLES, is_traffic, kind_shares_for
from uniguard.core.errors import UserError
from uniguard.core.io import write_json, write_jsonl

BackendName = Literal["template", "local", "openai"]
CACHE_DIRNAME = ".synth_cache"
# Styles whose surface form is the point (encodings, code-mixing, pasted documents with or without an
# injected line, fake markers): a paraphrase would erase it.
_KEEP_VERBATIM_STYLES = frozenset({"obfuscated", "non_english"}) | STRUCTURAL_STYLES


@dataclass(frozen=True)
class BackendSpec:
    """Everything needed to build a backend, picklable so Ray workers build their own."""

    name: BackendName = "template"
    model: str | None = None
    base_url: str = "http://localhost:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    retries: int = 4
    concurrency: int = 8
    batch_size: int = 16
    threads: int | None = None

    def build(self) -> LocalChat | OpenAIChat | None:
        if self.name == "template":
            return None
        if self.name == "local":
            return LocalChat(self.model, batch_size=self.batch_size, threads=self.threads)
        if self.name == "openai":
            if not self.model:
                raise UserError("--backend openai needs --model (the model name the endpoint serves)")
            return OpenAIChat(self.base_url, self.model, api_key_env=self.api_key_env, timeout=self.timeout,
                              retries=self.retries, concurrency=self.concurrency)
        raise UserError(f"--backend {self.name!r}: choose local, openai or template")


@dataclass(frozen=True)
class SynthSettings:
    n: int = 400  # samples per policy before dedup and splitting
    seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_by: Literal["row", "behaviour"] = "row"  # behaviour: validation/test hold behaviours training never shows
    kind_shares: dict | None = None  # None: per policy type (synth.traffic.kind_shares_for)
    rewrite_fraction: float = 0.5  # share of template seeds a model paraphrases
    write_fraction: float = 0.0  # share a model writes afresh from the behaviour alone
    translate: bool = False  # have the model translate code-mixed non-English seeds fully
    reflect: bool = True  # judge samples with the backend (model backends only)
    reflect_mode: Literal["drop", "relabel"] = "drop"
    unsure_band: tuple[float, float] = (0.2, 0.8)
    near_threshold: float = 0.7
    max_tokens: int = 64
    temperature: float = 0.8
    cross_policy_share: float = DEFAULT_CROSS_SHARE  # injection policies reuse other policies' rows (synth.cross_policy)

    def validate(self) -> None:
        if self.n < 1:
            raise UserError(f"--n {self.n}: need at least 1 sample per policy")
        for flag, value in (("--rewrite-fraction", self.rewrite_fraction), ("--write-fraction", self.write_fraction)):
            if not 0.0 <= value <= 1.0:
                raise UserError(f"{flag} {value}: must be between 0 and 1")
        if self.rewrite_fraction + self.write_fraction > 1.0:
            raise UserError("--rewrite-fraction plus --write-fraction must not exceed 1")
        if not 0.0 < self.near_threshold <= 1.0:
            raise UserError(f"--near-dup {self.near_threshold}: must be in (0, 1]")
        if self.cross_policy_share < 0:
            raise UserError(f"--cross-policy-share {self.cross_policy_share}: must be 0 (off) or more")


@dataclass
class PolicyResult:
    samples: list[Sample]
    stats: dict


Progress = Callable[[str, int, int], None]  # (policy, done, total)


def _unit_interval(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _action(sample: Sample, index: int, policy: Policy, settings: SynthSettings) -> str:
    """keep | paraphrase | write | translate, fixed by the seed so a resumed run asks the same questions."""
    if (settings.translate and sample.style == "non_english" and sample.lang in LANGUAGE_NAMES and sample.behaviour
            and not is_traffic(sample)):  # realistic-traffic non-English samples are already fully in one language
        return "translate"
    u = _unit_interval(settings.seed, policy.name, index, sample.text)
    if u < settings.write_fraction and sample.behaviour:
        return "write"
    if u < settings.write_fraction + settings.rewrite_fraction and sample.style not in _KEEP_VERBATIM_STYLES:
        return "paraphrase"
    return "keep"


def _faithful(answer: str, source: str) -> bool:
    """The model kept the topic: it shares content words with what it was asked to rewrite."""
    wanted = content_words(source)
    return not wanted or len(content_words(answer) & wanted) >= max(1, round(0.25 * len(wanted)))


def _ask(backend, conversations: list[list[dict]], sampling: Sampling, cache: AnswerCache, tag: str,
         progress: Progress | None, policy_name: str) -> list[str]:
    """Answers for conversations, from the cache where possible; new answers are cached as they come."""
    keys = [cache_key(tag, backend.fingerprint, c, asdict(sampling)) for c in conversations]
    missing = [i for i, key in enumerate(keys) if key not in cache]
    done = len(conversations) - len(missing)
    if progress:
        progress(policy_name, done, len(conversations))
    if missing:
        def on_answer(position: int, answer: str) -> None:
            nonlocal done
            cache.put_many({keys[missing[position]]: answer})
            done += 1
            if progress:
                progress(policy_name, done, len(conversations))

        backend.complete([conversations[i] for i in missing], sampling, on_answer)
    return [cache.get(key) or "" for key in keys]


def _judge_scores(backend, samples: list[Sample], policy: Policy, cache: AnswerCache, progress: Progress | None) -> list[float]:
    conversations = [judge_messages(s.text, policy) for s in samples]
    if isinstance(backend, LocalChat):
        keys = [cache_key("judge-p", backend.fingerprint, c) for c in conversations]
        missing = [i for i, key in enumerate(keys) if key not in cache]
        if missing:
            scores = backend.yes_probability([conversations[i] for i in missing])
            cache.put_many({keys[i]: repr(score) for i, score in zip(missing, scores)})
        return [float(cache.get(key)) for key in keys]
    answers = _ask(backend, conversations, Sampling(max_tokens=3, temperature=0.0), cache, "judge", progress, f"{policy.name} (judge)")
    return [parse_yes_no(a) for a in answers]


def synthesize_policy(policy: Policy, spec: BackendSpec, settings: SynthSettings, cache_path: Path | None,
                      deduper: Deduper | None = None, progress: Progress | None = None) -> PolicyResult:
    settings.validate()
    deduper = deduper or Deduper(settings.near_threshold)
    started = time.perf_counter()
    exact_before, near_before = deduper.exact_dropped, deduper.near_dropped
    shares = settings.kind_shares or kind_shares_for(policy)
    seeds, shortfall = template_samples(policy, settings.n, settings.seed, shares, deduper)
    stats: dict = {"template_seeds": len(seeds), "shortfall": shortfall,
                   "selection_dedup": {"exact": deduper.exact_dropped - exact_before, "near": deduper.near_dropped - near_before}}
    backend = spec.build()
    if backend is None:
        if progress:
            progress(policy.name, len(seeds), len(seeds))
        stats["seconds"] = round(time.perf_counter() - started, 3)
        stats["reflection"] = {"skipped": "template labels hold by construction; reflection needs a model backend"}
        return PolicyResult(seeds, stats)

    cache = AnswerCache(cache_path)
    stats["cached_answers_at_start"] = cache.loaded
    samples, model_stats = _rewrite_with_model(backend, policy, seeds, settings, cache, progress)
    stats.update(model_stats)
    if settings.reflect:
        scores = _judge_scores(backend, samples, policy, cache, progress)
        samples, reflection = reflect(samples, scores, mode=settings.reflect_mode, unsure_band=settings.unsure_band)
        stats["reflection"] = reflection.to_dict()
    else:
        stats["reflection"] = {"skipped": "--no-reflect"}
    stats["seconds"] = round(time.perf_counter() - started, 3)
    return PolicyResult(samples, stats)


def _rewrite_with_model(backend, policy: Policy, seeds: list[Sample], settings: SynthSettings, cache: AnswerCache,
                        progress: Progress | None) -> tuple[list[Sample], dict]:
    actions = [_action(s, i, policy, settings) for i, s in enumerate(seeds)]
    todo = [i for i, action in enumerate(actions) if action != "keep"]
    ask = {"write": write_messages, "paraphrase": paraphrase_messages, "translate": translate_messages}
    conversations = [ask[actions[i]](seeds[i]) for i in todo]
    sampling = Sampling(max_tokens=settings.max_tokens, temperature=settings.temperature, seed=settings.seed)
    answers = _ask(backend, conversations, sampling, cache, "generate", progress, policy.name)
    outcome: Counter = Counter()
    samples = list(seeds)
    for i, answer in zip(todo, answers):
        seed = seeds[i]
        text = clean_answer(answer, max_words=max_words_for(seed.style))
        source_text = seed.behaviour if actions[i] == "write" else seed.text
        if text is None:
            outcome[f"{actions[i]}_unusable"] += 1  # empty, refusal or rambling: keep the template
        elif actions[i] != "translate" and not _faithful(text, source_text):  # other language: no shared words
            outcome[f"{actions[i]}_off_topic"] += 1
        else:
            outcome[f"{actions[i]}_used"] += 1
            samples[i] = seed.with_text(text, backend.kind)
    return samples, {"model_requests": len(todo), "model_outcomes": dict(sorted(outcome.items()))}


# --------------------------------------------------------------------------------------- the driver
def _synthesize_remote(policy_json: dict, spec: BackendSpec, settings: SynthSettings, cache_path: str | None):
    result = synthesize_policy(Policy.model_validate(policy_json), spec, settings, Path(cache_path) if cache_path else None)
    return [s.to_row() | {"group": s.group} for s in result.samples], result.stats


def _fan_out_over_ray(policies: list[Policy], spec: BackendSpec, settings: SynthSettings, cache_dir: Path,
                      address: str, progress: Progress | None) -> list[PolicyResult]:
    import ray

    try:
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False,
                 include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UserError(f"--address {address!r}: could not connect to Ray ({exc}); start a cluster with `ray start --head` or pass --address local") from None
    task = ray.remote(max_retries=2)(_synthesize_remote)
    refs = [task.remote(p.model_dump(mode="json"), spec, settings, str(cache_dir / f"{p.name}.jsonl")) for p in policies]
    results = []
    for policy, ref in zip(policies, refs):
        try:
            rows, stats = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, UserError):  # show the worker's user error as if it happened here
                raise exc.cause from None
            raise
        results.append(PolicyResult([Sample.from_row(r) for r in rows], stats))
        if progress:
            progress(policy.name, len(rows), len(rows))
    return results


def run_synthesis(policies: list[Policy], spec: BackendSpec, settings: SynthSettings, out_dir: Path, *,
                  address: str | None = None, progress: Progress | None = None) -> dict:
    """Generate, dedup, split and write `out_dir/{train,validation,test}.jsonl` and `report.json`."""
    settings.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a directory; choose another path")
    cache_dir = out_dir / CACHE_DIRNAME
    started = time.perf_counter()
    if address:
        results = _fan_out_over_ray(policies, spec, settings, cache_dir, address, progress)
    else:
        # Each policy selects with its own deduper, exactly as a Ray worker does, so the data does not
        # depend on where it was made; the global dedup below removes cross-policy copies.
        results = [synthesize_policy(p, spec, settings, cache_dir / f"{p.name}.jsonl", None, progress) for p in policies]
    seconds = time.perf_counter() - started

    deduper = Deduper(settings.near_threshold)
    rows = [s.to_row() for result in results for s in result.samples if deduper.offer(s.text)]
    split = behaviour_split if settings.split_by == "behaviour" else stratified_split
    splits = split(rows, settings.fractions, settings.seed)
    cross_policy = add_cross_policy_rows(splits, policies, settings.seed, settings.cross_policy_share)
    for name in SPLIT_NAMES:
        write_jsonl(out_dir / f"{name}.jsonl", splits[name])

    reflection = ReflectionStats()
    for result in results:
        if "judged" in result.stats.get("reflection", {}):
            r = result.stats["reflection"]
            reflection.add(ReflectionStats(r["judged"], r["agreed"], r["unsure"], r["dropped"], r["relabelled"], Counter(r["disagreements_by_kind"])))
    generated = sum(len(r.samples) for r in results)
    report = build_report(
        splits,
        settings={"policies": [p.name for p in policies], "backend": asdict(spec), **_settings_dict(settings), "address": address},
        generation={"seconds": round(seconds, 3), "samples_per_second": round(generated / seconds, 2) if seconds else None,
                    "per_policy": {p.name: r.stats for p, r in zip(policies, results)}},
        reflection=reflection.to_dict() if reflection.judged else {"skipped": "no model judge for this backend or --no-reflect"},
        dedup={"selection_exact_dropped": sum(r.stats["selection_dedup"]["exact"] for r in results),
               "selection_near_dropped": sum(r.stats["selection_dedup"]["near"] for r in results),
               "final_exact_dropped": deduper.exact_dropped, "final_near_dropped": deduper.near_dropped,
               "near_threshold": settings.near_threshold, "method": "normalised exact match + word-trigram Jaccard"},
        cross_policy=cross_policy,
    )
    write_json(out_dir / "report.json", report)
    return report


def _settings_dict(settings: SynthSettings) -> dict:
    data = asdict(settings)
    data["fractions"] = list(settings.fractions)
    data["unsure_band"] = list(settings.unsure_band)
    return data
