"""Fine-tune guards: single-policy guards and MultiTaskGuard share one loop.

The loop is plain torch so every piece is visible: seeded shuffles, classification CE plus optional
masked-LM and adversarial terms, model selection and early stopping on validation macro F1 (each
policy at its best-F1 threshold), thresholds calibrated on validation and saved with the guard, and
safetensors checkpoints (weights, optimizer moments, RNG state) that let an interrupted run resume
exactly where it stopped, with the same result as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from synth.policy import Policy
from synth.traffic import is_injection_policy
from trainers.compute import Compute, DeviceChoice, PrecisionChoice, resolve_compute
from trainers.data import Example, check_both_classes, policy_names
from trainers.guard import GUARD_META_FILE, Guard, check_instruction_fits, score_token_ids
from trainers.losses import MaskedLMHead, adversarial_loss, classification_loss, masked_lm_loss
from trainers.metrics import DEFAULT_THRESHOLD_RULE, FPR_RULE, THRESHOLD_RULE_HELP, best_threshold, evaluate_scores, macro_average, parse_threshold_rule
from uniguard.core.assets import resolve_model
from uniguard.core.multilingual import MULTILINGUAL_BASE_MODEL
from uniguard.core.errors import UserError, format_validation_error
from uniguard.core.io import read_json

CHECKPOINT_DIR = "checkpoint"
# The policy instruction is never truncated and takes 41-83 tokens for the built-in policies (MiniLM's
# tokenizer; prompt_injection 61), so a 128-token pair leaves the user text as little as 45 tokens: 28% of
# the real prompt_injection dev prompts were cut, and the jailbreak they carry with them. Pairs are padded
# per length-sorted batch, so short texts cost no more at 256.
DEFAULT_TRAIN_MAX_LENGTH = 256
ID2LABEL = {0: "allowed", 1: "violates"}


class TrainConfig(BaseModel):
    """Hyperparameters of one training run; stored in the guard's uniguard.json and model card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["single", "multitask"] = "single"
    base_model: Optional[str] = Field(None, description="HF directory or hub id; None = the offline MiniLM")
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    head_lr_multiplier: float = Field(
        10.0, gt=0, description="learning-rate factor for the pooler and classification head (new or weakly trained layers)"
    )
    weight_decay: float = Field(0.01, ge=0)
    freeze_word_embeddings: bool = Field(
        False, description="keep the token embedding matrix as the base has it: tokens the synthetic data never shows (most of a "
        "multilingual vocabulary) keep their pretrained place next to those it does, and the optimizer skips the largest matrix "
        "(96M of multilingual-e5-small's 118M weights)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: Optional[int] = Field(
        None, ge=8, description=f"token limit for instruction + text; None = {DEFAULT_TRAIN_MAX_LENGTH}, capped at the base model's position limit"
    )
    truncate: bool = Field(True, description="cut texts longer than max_length (one warning counts them); False: fail on them")
    attention: Literal["auto", "eager", "sdpa"] = Field(
        "auto", description="attention kernel for training: eager (matmul + softmax) or PyTorch's fused SDPA; auto: eager "
        "on the CPU, where SDPA's backward pass is slow, SDPA elsewhere. Saved guards infer with SDPA either way")
    attention_dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout on attention probabilities (the base model's is 0.1): on the CPU its random "
        "masks over every head's attention matrix took a third of a training step; hidden-state dropout stays as configured")
    mlm_weight: float = Field(0.0, ge=0)
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    adv_weight: float = Field(0.0, ge=0)
    adv_epsilon: float = Field(1.0, gt=0)
    patience: int = Field(2, ge=1, description="evaluations without validation-F1 gain before stopping")
    threshold_rule: str = Field(
        DEFAULT_THRESHOLD_RULE, description="how validation sets each policy's threshold: best F1, best TPR - FPR (independent of the class mix), "
        f"or the lowest threshold with FPR <= TARGET on benign rows; {THRESHOLD_RULE_HELP}"
    )
    eval_every: Optional[int] = Field(None, ge=1, description="steps between evaluations; None = once per epoch")
    device: DeviceChoice = Field("auto", description="auto: CUDA when visible, else CPU")
    precision: PrecisionChoice = Field("auto", description="bfloat16 autocast over float32 master weights, or float32; "
                                       "auto: bfloat16 where the hardware runs it fast (AMX / AVX-512 bf16 CPUs, CUDA)")
    length_buckets: bool = Field(True, description="batch examples of similar length together, keeping each batch's class "
                                 "mix (38% fewer padded tokens on prompt_injection's template data); batches are still drawn "
                                 "in a shuffled order")
    checkpoint_every: int = Field(50, ge=1, description="steps between resumable checkpoints")
    seed: int = 0

    @field_validator("threshold_rule")
    @classmethod
    def _known_rule(cls, rule: str) -> str:
        parse_threshold_rule(rule)  # its ValueError names the rule and the choices
        return rule


# Options a base encoder trains best with, used wherever the caller leaves them unset. The offline
# multilingual encoder is twice MiniLM's depth and its 250k-token embedding matrix is 81% of its
# weights: frozen, a step runs ~5x faster, and at MiniLM's 5e-5 one epoch leaves it far from trained
# (docs/guards.md, "A multilingual base encoder").
_E5_RECIPE = {"learning_rate": 2e-4, "freeze_word_embeddings": True}
BASE_RECIPES: dict[str, dict] = {MULTILINGUAL_BASE_MODEL: _E5_RECIPE, "intfloat/multilingual-e5-small": _E5_RECIPE}  # offline copy, hub id
# A guard of injection-style policies alone (prompt_injection) on MiniLM: its template data mixes ~35
# traffic styles, and the 25-50 optimizer steps of one policy's rows at 5e-5 leave it far from trained.
# Measured over 3 seeds (docs/guards.md, "A multilingual base encoder"): real-dev AUPRC 0.687 -> 0.852
# at 25 steps and 0.831 -> 0.869 at 50 (recall at 1% FPR 0.057 -> 0.473, 0.386 -> 0.499); the topic
# policies' one-policy guards lose ranking at 2e-4 (self_harm 0.821 -> 0.648), and MultiTaskGuard over
# five policies (250 steps) gains nothing at 1e-4, so they keep 5e-5.
INJECTION_RECIPE = {"learning_rate": 2e-4}


def recipe_for(base_model: Optional[str], policies: Sequence[Policy] = ()) -> dict:
    """Options a run trains best with where its caller leaves them unset: the base's, else those of its
    policies. A trained guard as the base (a specialist fine-tuned from MultiTaskGuard) continues at the
    default learning rate with its own base encoder's other options: its weights are already trained,
    and the higher rates are for moving an encoder far from its pretrained weights in few steps."""
    if str(base_model) in BASE_RECIPES:
        return BASE_RECIPES[str(base_model)]
    trained = trained_guard_options(base_model)
    if trained is not None:
        return {k: v for k, v in recipe_for(trained.get("base_model")).items() if k != "learning_rate"}
    return INJECTION_RECIPE if policies and all(is_injection_policy(p) for p in policies) else {}


def trained_guard_options(base_model: Optional[str]) -> Optional[dict]:
    """The training options a trained guard's uniguard.json records ({} for a calibrated merge), or None
    where `base_model` is not a trained guard (an encoder directory, a hub id, an uncalibrated model)."""
    path = Path(str(base_model)) / GUARD_META_FILE if base_model is not None else None
    if path is None or not path.is_file():
        return None
    meta = read_json(path, f"delete or repair {path}")
    return meta.get("training", {}) if meta.get("training") or meta.get("thresholds") else None


def make_config(policies: Sequence[Policy] = (), **kwargs) -> TrainConfig:
    """A validated TrainConfig for a guard of `policies`; an option passed as None (left unset) takes
    the recipe (`recipe_for`), else its default."""
    fields = TrainConfig.model_fields
    given = {k: v for k, v in kwargs.items() if v is not None or k not in fields or fields[k].default is None}
    kwargs = {**recipe_for(kwargs.get("base_model"), policies), **given}
    try:
        return TrainConfig(**kwargs)
    except ValidationError as exc:
        raise UserError(f"invalid training options:\n{format_validation_error(exc)}") from None


@dataclass
class Encoded:
    """Tokenised examples, unpadded, in data order."""

    features: dict[str, list[list[int]]]
    labels: np.ndarray
    policies: list[str]
    n_truncated: int = 0  # texts cut to fit max_length

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainState:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_f1: float = -1.0
    best_step: int = -1
    evals_without_gain: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainResult:
    out_dir: Path
    thresholds: dict[str, float]
    validation: dict
    test: Optional[dict]
    history: list[dict]
    examples_per_second: float
    resumed_from_step: int
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- tokenisation and input checks


def encode_examples(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], policies: dict[str, Policy], config: TrainConfig, where: str
) -> Encoded:
    for name in policy_names(examples):
        check_instruction_fits(tokenizer, policies[name], config.max_length)
    instructions = [policies[e.policy].instruction for e in examples]
    texts = [e.text for e in examples]
    full_lengths = [len(ids) for ids in tokenizer(instructions, texts)["input_ids"]]
    too_long = [(n, e.text) for n, e in zip(full_lengths, examples) if n > config.max_length]
    encoded = tokenizer(instructions, texts, truncation="only_second", max_length=config.max_length)
    features = {k: v for k, v in encoded.items() if k != "attention_mask"}
    if too_long and not config.truncate:
        longest, text = max(too_long)
        raise UserError(
            f"{where}: {len(too_long)} of {len(examples)} texts do not fit max_length={config.max_length} tokens with "
            f"the policy instruction (longest {longest}: {text[:60]!r}...); raise --max-length (the model allows "
            f"up to its position limit), shorten those texts, or drop --no-truncate to cut them"
        )
    return Encoded(features, np.array([e.label for e in examples], dtype=np.int64), [e.policy for e in examples], len(too_long))


def truncation_warnings(config: TrainConfig, **encoded: Encoded) -> list[str]:
    """One warning counting the texts cut to fit, per split given as `name=Encoded`."""
    counts = [f"{enc.n_truncated} of {len(enc)} {name} texts" for name, enc in encoded.items() if enc.n_truncated]
    if not counts:
        return []
    return [f"{' and '.join(counts)} do not fit max_length={config.max_length} tokens with the policy instruction and were "
            "truncated for training and validation (scoring reads long texts whole, in windows); raise --max-length to keep "
            "more of them, or pass --no-truncate to fail on them instead"]


def _resolve_max_length(model, config: TrainConfig) -> TrainConfig:
    """The config with its token limit set: the default is capped at the model's position limit, an explicit one checked."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if config.max_length is None:
        return config.model_copy(update={"max_length": min(DEFAULT_TRAIN_MAX_LENGTH, limit or DEFAULT_TRAIN_MAX_LENGTH)})
    if limit is not None and config.max_length > limit:
        raise UserError(f"--max-length {config.max_length} exceeds the base model's position limit {limit}; use at most {limit}")
    return config


# ---------------------------------------------------------------- fingerprint of a run


def run_fingerprint(config: TrainConfig, encoded: Sequence[Encoded], instructions: dict[str, str]) -> str:
    """Hash of everything that determines the result; a checkpoint only resumes the same run."""
    h = hashlib.sha256(config.model_dump_json().encode())
    h.update(json.dumps(instructions, sort_keys=True).encode())
    for enc in encoded:
        h.update(json.dumps(enc.features["input_ids"]).encode())
        h.update(enc.labels.tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- checkpoints (safetensors only)


class _Trainable(nn.Module):
    """Model plus training-only heads, saved and restored as one safetensors file."""

    def __init__(self, model, mlm_head: Optional[MaskedLMHead]):
        super().__init__()
        self.model = model
        self.mlm_head = mlm_head


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors


def _load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def save_checkpoint(out_dir: Path, trainable: _Trainable, optimizer, scheduler, state: TrainState, fingerprint: str) -> None:
    """Write the checkpoint to a fresh directory and swap it in, so a kill leaves a whole one."""
    final = out_dir / CHECKPOINT_DIR
    tmp = out_dir / f".{CHECKPOINT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(trainable, str(tmp / "trainable.safetensors"))
    save_file(_optimizer_tensors(optimizer), str(tmp / "optimizer.safetensors"))
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    if (final / "best.safetensors").is_file():
        os.link(final / "best.safetensors", tmp / "best.safetensors")
    scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    meta = {"fingerprint": fingerprint, "scheduler": scheduler_state, "state": state.__dict__}
    (tmp / "state.json").write_text(json.dumps(meta))
    old = out_dir / f".{CHECKPOINT_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _checkpoint_dir(out_dir: Path) -> Optional[Path]:
    for name in (CHECKPOINT_DIR, f".{CHECKPOINT_DIR}.old"):  # .old survives a kill between the two renames
        if (out_dir / name / "state.json").is_file():
            return out_dir / name
    return None


def load_checkpoint(ckpt: Path, trainable: _Trainable, optimizer, scheduler) -> TrainState:
    """Resume from `ckpt`; a damaged one (truncated file, missing field) is a user error naming it."""
    try:
        load_model(trainable, str(ckpt / "trainable.safetensors"))
        _load_optimizer_tensors(optimizer, load_file(str(ckpt / "optimizer.safetensors")))
        torch.set_rng_state(load_file(str(ckpt / "rng.safetensors"))["torch"])
        meta = _checkpoint_state(ckpt)
        scheduler.load_state_dict({**meta["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
        state = TrainState(**meta["state"])
    except UserError:
        raise
    except Exception as exc:  # safetensors, torch and the records raise many types for a damaged file
        raise UserError(f"{ckpt}: corrupt checkpoint ({type(exc).__name__}: {exc}); {_restart(ckpt)}") from None
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
        group["lr"] = lr  # param-group hyperparameters are not in optimizer.safetensors
    return state


def _restart(ckpt: Path) -> str:
    return f"delete {ckpt} (or pass --overwrite) to restart this training run from the base model"


def _checkpoint_state(ckpt: Path) -> dict:
    meta = read_json(ckpt / "state.json", _restart(ckpt))
    if not isinstance(meta, dict) or not {"fingerprint", "scheduler", "state"} <= set(meta):
        raise UserError(f"{ckpt / 'state.json'}: not a checkpoint state (needs fingerprint, scheduler, state); {_restart(ckpt)}")
    return meta


def save_best(out_dir: Path, model) -> None:
    tmp = out_dir / CHECKPOINT_DIR / ".best.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(tmp))
    tmp.replace(out_dir / CHECKPOINT_DIR / "best.safetensors")


# ---------------------------------------------------------------- validation


def score_encoded(model, tokenizer, enc: Encoded, compute: Compute = Compute(), batch_size: int = 64) -> np.ndarray:
    was_training = model.training
    model.eval()
    scores = score_token_ids(model, tokenizer, enc.features, batch_size, compute)
    model.train(was_training)
    return scores


def calibrate(labels: np.ndarray, scores: np.ndarray, policies: Sequence[str], rule: str = DEFAULT_THRESHOLD_RULE) -> dict[str, float]:
    """Per-policy threshold maximising `rule` (trainers.metrics.best_threshold) on validation."""
    names = np.asarray(policies, dtype=object)
    return {name: best_threshold(labels[names == name], scores[names == name], rule)[0] for name in sorted(set(policies))}


def report(labels: np.ndarray, scores: np.ndarray, policies: Sequence[str], thresholds: dict[str, float]) -> dict:
    names = np.asarray(policies, dtype=object)
    per_policy = {
        name: evaluate_scores(labels[names == name], scores[names == name], thresholds.get(name, 0.5))
        for name in sorted(set(policies))
    }
    return {"per_policy": per_policy, "macro": macro_average(per_policy.values())}


# ---------------------------------------------------------------- the loop


BUCKET_BATCHES = 16  # batches per length bucket: sorted within, so padding shrinks while batches stay mixed


def _batches(lengths: Sequence[int], labels: Sequence[int], batch_size: int, seed: int, epoch: int,
             buckets: bool = True) -> list[np.ndarray]:
    """The epoch's shuffled batches; a pure function of (lengths, labels, seed, epoch) so a resumed run
    skips exactly. With `buckets`, each run of BUCKET_BATCHES batches of the shuffled order is cut into
    batches of similar length, one class at a time: each class's rows are sorted by length and dealt
    out in order, so batch k takes the k-th shortest slice of every class. Batches pad to little more
    than their longest text yet keep the run's class mix, even where length and label correlate."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).numpy()
    if not buckets:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    lengths, labels = np.asarray(lengths), np.asarray(labels)
    batches = []
    for start in range(0, len(order), batch_size * BUCKET_BATCHES):
        chunk = order[start : start + batch_size * BUCKET_BATCHES]
        n = math.ceil(len(chunk) / batch_size)
        by_class = [np.array_split(rows[np.argsort(lengths[rows], kind="stable")], n)
                    for rows in (chunk[labels[chunk] == c] for c in np.unique(labels[chunk]))]
        batches += [np.concatenate([parts[k] for parts in by_class]) for k in range(n)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _collate(tokenizer, enc: Encoded, idx: np.ndarray, device: str = "cpu") -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    batch = tokenizer.pad({k: [v[i] for i in idx] for k, v in enc.features.items()}, return_tensors="pt")
    special = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    for row, i in enumerate(idx):
        ids = enc.features["input_ids"][i]
        special[row, : len(ids)] = torch.tensor(tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True), dtype=torch.bool)
    special |= batch["attention_mask"] == 0
    return {k: v.to(device) for k, v in batch.items()}, torch.as_tensor(enc.labels[idx]).to(device), special.to(device)


def _training_step(model, mlm_head, tokenizer, batch, labels, special, config: TrainConfig) -> dict[str, torch.Tensor]:
    losses = {}
    if config.adv_weight > 0:
        embeddings = model.get_input_embeddings()(batch["input_ids"])
        rest = {k: v for k, v in batch.items() if k != "input_ids"}
        logits = model(inputs_embeds=embeddings, **rest).logits
        losses["ce"] = classification_loss(logits, labels)
        losses["adv"] = adversarial_loss(model, embeddings, batch, labels, losses["ce"], config.adv_epsilon)
    else:
        losses["ce"] = classification_loss(model(**batch).logits, labels)
    if config.mlm_weight > 0:
        losses["mlm"] = masked_lm_loss(model, mlm_head, batch, special, tokenizer, config.mlm_probability)
    _check_finite_losses(losses, config)
    return losses


def _check_finite_losses(losses: dict[str, torch.Tensor], config: TrainConfig) -> None:
    """Stop at the first non-finite loss: a step on it would fill the weights with NaN, and the saved
    guard would score every text NaN (i.e. allow it)."""
    for name, value in losses.items():
        if not bool(torch.isfinite(value.detach()).all()):
            raise UserError(f"training diverged: the {name} loss became {float(value.detach()):g}; rerun with a lower "
                            f"--lr (now {config.learning_rate:g}) and --overwrite")


def training_attention(config: TrainConfig, compute: Compute) -> str:
    """The attention kernel to train with. On the CPU, PyTorch's fused (SDPA flash) attention has a slow
    backward pass: it took 45% of a bf16 training step (torch.profiler, MiniLM, batch 16), and plain
    matmul-softmax attention trained 1.4x faster (attention dropout 0, hidden dropout 0.1). Inference
    keeps SDPA, which is as fast or faster."""
    if config.attention != "auto":
        return config.attention
    return "eager" if compute.device_type == "cpu" else "sdpa"


def train_guard(
    config: TrainConfig,
    train: Sequence[Example],
    validation: Sequence[Example],
    policies: dict[str, Policy],
    out_dir: str | Path,
    test: Sequence[Example] = (),
    overwrite: bool = False,
    progress: bool = True,
    on_step: Optional[Callable[[int, dict], None]] = None,
    benign: Sequence[str] = (),
    everyday: Sequence[Example] = (),
) -> TrainResult:
    """Train, select the best validation-F1 weights, calibrate thresholds, save a guard with a card.

    `on_step(global_step, losses)` runs after every optimizer step (progress hooks; tests use it to
    interrupt a run). Rerunning with the same inputs and `out_dir` resumes from the last checkpoint.
    `benign` (unlabelled benign user texts) join every policy's benign validation rows for the fpr rule;
    so do `everyday` validation rows (`trainers.data.everyday_rows`) for every policy but their own.
    """
    out_dir = Path(out_dir)
    if benign and parse_threshold_rule(config.threshold_rule).name != FPR_RULE:
        raise UserError(f"--benign texts calibrate only the fpr threshold rule, not {config.threshold_rule!r}; "
                        "pass --threshold-rule fpr:TARGET (e.g. fpr:0.03) or drop --benign")
    check_both_classes(train, "training data")
    check_both_classes(validation, "validation data")
    missing = sorted(set(policy_names(validation)) - set(policy_names(train)))
    if missing:
        raise UserError(f"validation data has policies absent from training data: {', '.join(missing)}; regenerate the splits together")
    _prepare_out_dir(out_dir, overwrite)

    base = resolve_model(config.base_model)
    compute = resolve_compute(config.device, config.precision)
    torch.manual_seed(config.seed)  # the new classification head's initialisation
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()},
        use_safetensors=True, trust_remote_code=False, ignore_mismatched_sizes=True,
        attn_implementation=training_attention(config, compute), attention_probs_dropout_prob=config.attention_dropout,
    )
    config = _resolve_max_length(model, config)
    enc_train = encode_examples(tokenizer, train, policies, config, "training data")
    enc_val = encode_examples(tokenizer, validation, policies, config, "validation data")
    length_warnings = truncation_warnings(config, training=enc_train, validation=enc_val)
    instructions = {name: policies[name].instruction for name in policy_names(train)}
    fingerprint = run_fingerprint(config, [enc_train, enc_val], instructions)

    mlm_head = None
    if config.mlm_weight > 0:
        mlm_head = MaskedLMHead(model.config.hidden_size, model.get_input_embeddings().weight.shape[0])
    trainable = _Trainable(model, mlm_head).to(compute.device)
    # fused: one kernel per step over all parameters (measured ~1.2x faster steps than foreach on this CPU)
    optimizer = torch.optim.AdamW(_parameter_groups(trainable, config), weight_decay=config.weight_decay, fused=True)
    batches_per_epoch = math.ceil(len(enc_train) / config.batch_size)
    total_steps = batches_per_epoch * config.epochs
    warmup = int(config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup))
    )

    state = TrainState()
    ckpt = _checkpoint_dir(out_dir)
    if ckpt is not None:
        saved = _checkpoint_state(ckpt)["fingerprint"]
        if saved != fingerprint:
            raise UserError(
                f"{out_dir}: holds a checkpoint of a different run (other data or options); "
                "rerun with the original options to resume, pass --overwrite to start over, or choose another --out"
            )
        state = load_checkpoint(ckpt, trainable, optimizer, scheduler)
    else:
        torch.manual_seed(config.seed)
    resumed_from = state.global_step

    model.train()
    eval_every = config.eval_every or batches_per_epoch
    bar = tqdm(total=total_steps, initial=state.global_step, disable=not progress, desc=f"train {config.kind}", unit="step")
    started, seen = time.perf_counter(), 0
    while state.epoch < config.epochs and not state.stopped_early:
        lengths = [len(ids) for ids in enc_train.features["input_ids"]]
        batches = _batches(lengths, enc_train.labels, config.batch_size, config.seed, state.epoch, config.length_buckets)
        for idx in batches[state.step_in_epoch :]:
            batch, labels, special = _collate(tokenizer, enc_train, idx, compute.device)
            with compute.autocast():
                losses = _training_step(model, mlm_head, tokenizer, batch, labels, special, config)
            total = losses["ce"] + config.mlm_weight * losses.get("mlm", 0.0) + config.adv_weight * losses.get("adv", 0.0)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            nn.utils.clip_grad_norm_(trainable.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            state.step_in_epoch += 1
            state.global_step += 1
            seen += len(idx)
            logged = {k: round(float(v.detach()), 4) for k, v in losses.items()}
            bar.update(1)
            bar.set_postfix(logged)
            if state.step_in_epoch == len(batches):
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            if state.global_step % eval_every == 0 or state.step_in_epoch == 0:
                _evaluate_and_select(model, tokenizer, enc_val, state, config, out_dir, logged)
            if state.stopped_early or state.global_step % config.checkpoint_every == 0 or state.step_in_epoch == 0:
                save_checkpoint(out_dir, trainable, optimizer, scheduler, state, fingerprint)
            if on_step is not None:
                on_step(state.global_step, logged)
            if state.stopped_early:
                break
    bar.close()
    elapsed = time.perf_counter() - started
    model.set_attn_implementation("sdpa")  # calibrate with the kernel saved guards infer with
    return _finish(model, tokenizer, config, policies, enc_val, train, validation, test, state, out_dir,
                   seen / elapsed if elapsed > 0 and seen else float("nan"), resumed_from, benign, everyday, length_warnings)


def _evaluate_and_select(model, tokenizer, enc_val: Encoded, state: TrainState, config: TrainConfig, out_dir: Path, losses: dict) -> None:
    scores = score_encoded(model, tokenizer, enc_val, resolve_compute(config.device, config.precision))
    # checkpoints are compared at their F1-best thresholds (how well they rank), whatever rule the
    # guard's final thresholds are placed by: a false-positive target on a few dozen benign rows moves
    # with single rows and would make the choice of checkpoint noisy
    thresholds = calibrate(enc_val.labels, scores, enc_val.policies, "f1")
    macro = report(enc_val.labels, scores, enc_val.policies, thresholds)["macro"]
    f1 = macro["f1"]
    state.history.append({"step": state.global_step, "epoch": state.epoch, "val_f1": f1, "val_auprc": macro["auprc"], **losses})
    if f1 > state.best_f1:
        state.best_f1, state.best_step, state.evals_without_gain = f1, state.global_step, 0
        save_best(out_dir, model)
    else:
        state.evals_without_gain += 1
        state.stopped_early = state.evals_without_gain >= config.patience


HEAD_MARKERS = ("pooler", "classifier", "score", "mlm_head")


def _parameter_groups(trainable: nn.Module, config: TrainConfig) -> list[dict]:
    """Encoder at the base rate; pooler, head and MLM head faster. Sentence-embedding encoders such as
    all-MiniLM-L6-v2 were trained with mean pooling, so their pooler is barely trained (weight std ~0.009)
    and the new head starts from random: at the encoder's rate they need many more steps than CPU allows."""
    head, body = [], []
    for name, param in trainable.named_parameters():
        if config.freeze_word_embeddings and "word_embeddings" in name:
            param.requires_grad_(False)
            continue
        (head if any(m in name for m in HEAD_MARKERS) else body).append(param)
    return [{"params": body, "lr": config.learning_rate},
            {"params": head, "lr": config.learning_rate * config.head_lr_multiplier}]


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Resume into a checkpointed directory; replace a finished guard only with --overwrite; never
    delete a directory that is not a guard (a mistyped --out must not lose anyone's files)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory; choose another --out")
    has_files = out_dir.is_dir() and any(out_dir.iterdir())
    resumable = _checkpoint_dir(out_dir) is not None
    is_guard = (out_dir / GUARD_META_FILE).is_file() or resumable
    if has_files and not is_guard:
        raise UserError(f"{out_dir}: holds files that are not a uniguard guard; refusing to write there — choose a new or empty --out")
    if has_files and overwrite:
        shutil.rmtree(out_dir)
    elif has_files and not resumable:
        raise UserError(f"{out_dir}: already holds a trained guard; pass --overwrite to replace it, or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)


def _finish(model, tokenizer, config, policies, enc_val, train, validation, test, state, out_dir, examples_per_second, resumed_from,
            benign, everyday, length_warnings) -> TrainResult:
    load_model(model, str(out_dir / CHECKPOINT_DIR / "best.safetensors"))
    model.eval()
    compute = resolve_compute(config.device, config.precision)
    val_scores = score_encoded(model, tokenizer, enc_val, compute)
    scorer = Guard(model=model, tokenizer=tokenizer, max_length=config.max_length, compute=compute)
    cal_labels, cal_scores, cal_policies = with_benign(scorer, enc_val, val_scores, benign, everyday, policies)
    thresholds = calibrate(cal_labels, cal_scores, cal_policies, config.threshold_rule)
    # For a policy it has no threshold for (an instruction-following guard meeting a new policy): the
    # threshold of all its validation data pooled (by the same rule), not 0.5. Measured with the F1 rule on
    # the study's MultiTaskGuards trained without pii_disclosure (3 seeds): its test F1 0.00 / 0.18 / 0.56 at 0.5,
    # 0.67 / 0.67 / 0.67 at the pooled threshold (0.42-0.46), against 0.69-0.74 at its own best.
    default_threshold = best_threshold(cal_labels, cal_scores, config.threshold_rule)[0]
    val_report = report(enc_val.labels, val_scores, enc_val.policies, thresholds)
    warnings = length_warnings + chance_warnings(val_report, config)
    test_report = None
    test = [e for e in test if e.policy in thresholds]
    if test:
        enc_test = encode_examples(tokenizer, test, policies, config.model_copy(update={"truncate": True}), "test data")
        test_report = report(enc_test.labels, score_encoded(model, tokenizer, enc_test, compute), enc_test.policies, thresholds)
    names = sorted(thresholds)
    meta = {
        "kind": config.kind,
        "policies": names,
        "instructions": {n: policies[n].instruction for n in names},
        "base_model": config.base_model or "sentence-transformers/all-MiniLM-L6-v2 (offline copy)",
        "training": config.model_dump(),
        "data_sizes": {"train": _sizes(train), "validation": _sizes(validation), "test": _sizes(test)},
        # the precision the thresholds were calibrated in: Guard.load scores in it by default
        "calibration": {**parse_threshold_rule(config.threshold_rule).to_dict(), "benign_texts": len(benign), "everyday_rows": len(everyday),
                        "precision": compute.precision},
        "validation_metrics": val_report,
        "test_metrics": test_report,
        "best_step": state.best_step,
        "stopped_early": state.stopped_early,
        "history": state.history,
        "train_examples_per_second": examples_per_second,
        "warnings": warnings,
    }
    guard = Guard(model=model, tokenizer=tokenizer, thresholds=thresholds, default_threshold=default_threshold,
                  max_length=config.max_length, meta=meta)
    guard.save(out_dir)
    from trainers.model_card import write_model_card

    write_model_card(out_dir, meta, thresholds)
    shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    return TrainResult(out_dir, thresholds, val_report, test_report, state.history, examples_per_second, resumed_from, warnings)


def with_benign(scorer: Guard, enc_val: Encoded, val_scores: np.ndarray, benign: Sequence[str], everyday: Sequence[Example],
                policies: dict[str, Policy]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Calibration rows: validation plus, as label-0 rows of every validated policy, the benign texts
    and the everyday rows of the other policies (a policy's own are in its validation already).

    The extra texts are scored as the guard scores served traffic (long texts in windows, the max),
    because their false-positive rate is what the fpr rule targets."""
    names = sorted(set(enc_val.policies))
    extra = {name: [*benign, *(e.text for e in everyday if e.policy != name)] for name in names}
    if not any(extra.values()):
        return enc_val.labels, val_scores, enc_val.policies
    scores = np.concatenate([val_scores, *(scorer.score(extra[name], policies[name]) for name in names if extra[name])])
    added = [name for name in names for _ in extra[name]]
    labels = np.concatenate([enc_val.labels, np.zeros(len(added), dtype=enc_val.labels.dtype)])
    return labels, scores, enc_val.policies + added


def chance_warnings(val_report: dict, config: TrainConfig) -> list[str]:
    """Policies whose validation texts the selected weights rank no better than chance.

    Fine-tuning a small encoder on a hundred rows sometimes collapses: every input maps to almost the
    same vector. Seen once in 25 MiniLM runs at lr 1.5e-4 (validation scores 0.265-0.278, AUPRC 0.53
    at a positive rate of 0.60; the [CLS] state's spread over texts 0.007 against the base model's 0.10).
    Selection by validation F1 cannot see it (flagging everything still has an F1), so it is reported.
    """
    warnings = []
    for name, metrics in val_report["per_policy"].items():
        positive_rate = metrics["n_positive"] / metrics["n"]
        if metrics["auprc"] <= positive_rate + 1e-9:  # random scores have AUPRC = the positive rate
            warnings.append(
                f"policy {name!r}: the guard ranks validation texts no better than chance (AUPRC {metrics['auprc']:.3f}, "
                f"positive rate {positive_rate:.3f}), so training collapsed or did not learn; retrain with a lower "
                f"--lr (now {config.learning_rate:g}) or another --seed, and check the policy's labels"
            )
    return warnings


def _sizes(examples: Sequence[Example]) -> dict[str, dict[str, int]]:
    sizes: dict[str, dict[str, int]] = {}
    for e in examples:
        counts = sizes.setdefault(e.policy, {"violates": 0, "allowed": 0})
        counts["violates" if e.label else "allowed"] += 1
    return sizes
