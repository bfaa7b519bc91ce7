"""The guard runtime: one model type for every guard in the project.

A guard is an encoder sequence classifier reading (policy instruction, user text) as a text pair
and returning P(violation) from a two-way head (label 1 = violates). Single-policy guards,
MultiTaskGuard and merged UniGuard candidates are all `Guard`s. Per-policy decision thresholds
(calibrated on validation data) are saved next to the weights in `uniguard.json`. Scoring reads a
text too long for one pair as overlapping windows, each with the whole instruction, and takes the max.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from synth.policy import Policy, load_policy
from trainers.compute import Compute, resolve_compute
from uniguard.core.errors import NonFiniteScore, UserError
from uniguard.core.io import read_json, write_json

GUARD_META_FILE = "uniguard.json"
DEFAULT_MAX_LENGTH = 256
log = logging.getLogger("uniguard.guard")


@dataclass(frozen=True)
class Windows:
    """(instruction, text) rows for scoring: a text that fits is one row, a longer one a row per window.

    Rows are in text order and `text_index[row]` names the row's text, so every runtime scores rows
    with the one scoring loop and `text_scores` turns row scores into text scores.
    """

    features: dict[str, list[list[int]]]
    text_index: list[int]
    n_texts: int

    def text_scores(self, row_scores: np.ndarray) -> np.ndarray:
        """A text's score is the max over its windows: a violation anywhere in it flags the whole text."""
        row_scores = np.asarray(row_scores, dtype=np.float32)
        if row_scores.shape != (len(self.text_index),):
            raise ValueError(f"{row_scores.shape[0]} row scores for {len(self.text_index)} rows")
        if len(self.text_index) == self.n_texts:  # every text is one row (the common case): nothing to reduce
            return row_scores
        scores = np.full(self.n_texts, -np.inf, dtype=np.float32)
        np.maximum.at(scores, np.asarray(self.text_index), row_scores)
        return scores

    @staticmethod
    def concat(parts: Sequence["Windows"]) -> "Windows":
        """Several encodings as one, texts numbered on (part 0's texts, then part 1's, ...)."""
        features: dict[str, list[list[int]]] = {}
        text_index: list[int] = []
        offset = 0
        for part in parts:
            for k, v in part.features.items():
                features.setdefault(k, []).extend(v)
            text_index.extend(i + offset for i in part.text_index)
            offset += part.n_texts
        return Windows(features, text_index, offset)


@dataclass(frozen=True)
class Verdict:
    """The result of checking one text against one policy."""

    policy: str
    score: float
    violates: bool


def check_model_dir(path: str | Path) -> Path:
    """Validate that `path` is a loadable Hugging Face model directory with safetensors weights."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: model directory not found; pass a directory written by `uniguard train` or `uniguard merge`")
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: no config.json; this is not a Hugging Face model directory")
    if not any(path.glob("*.safetensors")):
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        if pickled:
            raise UserError(
                f"{path}: only pickle weights ({', '.join(pickled)}); uniguard never unpickles model files. "
                "Convert them to model.safetensors with a trusted tool first"
            )
        raise UserError(f"{path}: no model.safetensors; the directory holds no weights")
    return path


def load_classifier(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load model and tokenizer from a checked directory: safetensors only, no remote code.
    Refuses what would load but score wrongly: non-finite weights, a missing or mismatched tokenizer."""
    path = check_model_dir(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if model.config.num_labels != 2:
        raise UserError(f"{path}: a guard needs a 2-label head (0 = allowed, 1 = violates), got {model.config.num_labels} labels")
    _check_finite_weights(path, model)
    _check_tokenizer(path, tokenizer, model.get_input_embeddings().weight.shape[0])
    return model.eval(), tokenizer


# Without tokenizer files, AutoTokenizer builds a tokenizer of only the special tokens (5 for BERT)
# and every word becomes [UNK]; a real vocabulary is thousands of tokens.
MIN_VOCAB_SIZE = 100
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _check_finite_weights(path: Path, model: PreTrainedModel) -> None:
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{path}: weight {name} holds NaN or infinite values, so every score would be NaN; "
                            "re-export, re-merge or retrain this guard (with a lower --lr if training diverged)")


def _check_tokenizer(path: Path, tokenizer: PreTrainedTokenizerBase, embedding_rows: int) -> None:
    size = len(tokenizer)
    if size < MIN_VOCAB_SIZE:
        missing = [name for name in TOKENIZER_FILES if not (path / name).is_file()]
        raise UserError(f"{path}: no usable tokenizer (a {size}-token vocabulary; missing {', '.join(missing) or 'nothing'}); "
                        "copy the tokenizer files of the model it was trained from into this directory")
    if size > embedding_rows:
        raise UserError(f"{path}: the tokenizer has {size} tokens but the model only {embedding_rows} input embeddings; "
                        "the tokenizer belongs to another model: copy the right tokenizer files into this directory")


@dataclass
class Guard:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    max_length: int = DEFAULT_MAX_LENGTH
    meta: dict = field(default_factory=dict)
    compute: Compute = field(default_factory=Compute)
    _pairs: "PairEncoder | None" = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path, compute: Compute | None = None) -> "Guard":
        """Open a guard directory. `compute`: device and precision; None = the auto device and the
        precision its thresholds were calibrated in (`calibration.precision` in uniguard.json; auto
        where the guard does not say), so scores and thresholds agree."""
        model, tokenizer = load_classifier(path)
        meta_path = Path(path) / GUARD_META_FILE
        meta = read_json(meta_path, f"re-export the guard or delete {GUARD_META_FILE} (thresholds fall back to 0.5)") if meta_path.is_file() else {}
        return cls(
            model=model,
            tokenizer=tokenizer,
            thresholds={k: float(v) for k, v in meta.get("thresholds", {}).items()},
            default_threshold=float(meta.get("default_threshold", 0.5)),
            max_length=int(meta.get("max_length", DEFAULT_MAX_LENGTH)),
            meta=meta,
        ).to(compute or resolve_compute("auto", meta.get("calibration", {}).get("precision", "auto")))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        meta = dict(self.meta)
        meta.update(thresholds=self.thresholds, default_threshold=self.default_threshold, max_length=self.max_length)
        write_json(path / GUARD_META_FILE, meta)

    def threshold(self, policy: Policy) -> float:
        return self.thresholds.get(policy.name, self.default_threshold)

    def encode(self, texts: Sequence[str], policy: Policy) -> dict[str, list[list[int]]]:
        """One unpadded (instruction, text) row per text, the user text truncated, never the policy
        (training and fitness read one row per labelled text); scoring uses `encode_windows`."""
        return self._encoder().encode(policy, texts, windows=False).features

    def encode_windows(self, texts: Sequence[str], policy: Policy) -> Windows:
        """Rows for scoring: a text too long for one pair is split into overlapping windows, each
        paired with the whole policy instruction, so nothing in a long text goes unread."""
        return self._encoder().encode(policy, texts, windows=True)

    def _encoder(self) -> "PairEncoder":
        if self._pairs is None or self._pairs.tokenizer is not self.tokenizer or self._pairs.max_length != self.max_length:
            self._pairs = PairEncoder(self.tokenizer, self.max_length)
        return self._pairs

    def score(self, texts: Sequence[str], policy: Policy | str, batch_size: int = 64) -> np.ndarray:
        """P(violation) for each text under `policy`, in input order: the max over a long text's windows."""
        policy = load_policy(policy) if isinstance(policy, str) else policy
        texts = list(texts)
        if not texts:
            return np.zeros(0, dtype=np.float32)
        windows = self.encode_windows(texts, policy)
        return windows.text_scores(self.score_features(windows.features, batch_size))

    def score_features(self, features: dict[str, list[list[int]]], batch_size: int = 64) -> np.ndarray:
        """P(violation) for pre-tokenised features (see `score_batches`)."""
        return score_batches(self.tokenizer, features, batch_size, self.violation_probs)

    def violation_probs(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """P(violation) for one padded batch; the one method a runtime (PyTorch, ONNX) provides."""
        return torch_violation_probs(self.model, batch, self.compute)

    def to(self, compute: Compute) -> "Guard":
        """Score on `compute`'s device and precision from now on. Weights are held in float32 (a merge
        stored as float16 / bfloat16 is upcast): autocast computes in `compute.precision` from float32
        weights, and a float16 layer norm next to autocast's bfloat16 activations would not run."""
        self.model.to(device=compute.device, dtype=torch.float32)
        self.compute = compute
        return self

    def check(self, texts: Sequence[str] | str, policy: Policy | str) -> list[Verdict]:
        policy = load_policy(policy) if isinstance(policy, str) else policy
        texts = [texts] if isinstance(texts, str) else list(texts)
        threshold = self.threshold(policy)
        return [Verdict(policy.name, float(s), bool(s >= threshold)) for s in self.score(texts, policy)]


MIN_TEXT_TOKENS = 8


def check_instruction_fits(tokenizer: PreTrainedTokenizerBase, policy: Policy, max_length: int) -> None:
    """The policy instruction is never truncated, so it must leave room for the user text."""
    n = len(tokenizer(policy.instruction)["input_ids"])
    if n + MIN_TEXT_TOKENS > max_length:
        raise UserError(
            f"policy {policy.name!r}: its instruction is {n} tokens, too long for this guard's max_length={max_length} "
            f"(at least {MIN_TEXT_TOKENS} tokens must remain for the text); shorten the policy description"
        )


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase, instruction: str, texts: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH
) -> dict[str, list[list[int]]]:
    """Tokenise (instruction, text) pairs without padding, one truncated row per text; keeps
    token_type_ids where the model uses them."""
    return tokenizer_rows(tokenizer, instruction, texts, max_length, windows=False).features


def window_overlap(room: int) -> int:
    """Tokens two neighbouring windows share: half a window, so any span up to half a window long
    (an injected instruction) lies whole inside some window, at twice the forward passes of no overlap."""
    return room // 2


def tokenizer_rows(
    tokenizer: PreTrainedTokenizerBase, instruction: str, texts: Sequence[str], max_length: int, windows: bool
) -> Windows:
    """(instruction, text) rows by the tokenizer itself: one truncated row per text, or with `windows`
    its overflow windows (`window_overlap` tokens shared) of every text too long for one row."""
    extra = {}
    if windows:
        room = max_length - len(tokenizer(instruction, add_special_tokens=False)["input_ids"]) - tokenizer.num_special_tokens_to_add(pair=True)
        extra = {"stride": window_overlap(room), "return_overflowing_tokens": True}
    encoded = tokenizer([instruction] * len(texts), list(texts), truncation="only_second", max_length=max_length, **extra)
    text_index = encoded.get("overflow_to_sample_mapping")
    if text_index is None:
        if windows:  # only fast tokenizers map overflow windows back to their texts
            log.warning("%s is a slow tokenizer: long texts are truncated, not scored in windows", type(tokenizer).__name__)
        text_index = list(range(len(texts)))
    features = {k: v for k, v in encoded.items() if k not in _NOT_FEATURES}
    return Windows(features, list(text_index), len(texts))


# what a tokenizer call returns besides model inputs (the mask is rebuilt when a batch is padded)
_NOT_FEATURES = ("attention_mask", "overflow_to_sample_mapping", "overflowing_tokens", "num_truncated_tokens")


MAX_CACHED_INSTRUCTIONS = 256


class PairEncoder:
    """`encode_pairs` with each policy instruction tokenised once instead of once per call.

    A policy instruction is a few hundred characters and the same for every text; the fast
    tokenizer's normaliser keeps per-character alignments, so normalising it twice (once for the
    fits check, once in the pair) was most of a short request's tokenisation (measured 0.5 ms of
    0.67 ms for one 13-token prompt). The pair is joined by the tokenizer's own post-processor, as
    the tokenizer joins it itself, and the first use of each instruction is checked against
    `encode_pairs`; a tokenizer for which the two differ (or a slow one) keeps using `encode_pairs`.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length
        self._backend = _private_backend(tokenizer)
        self._instructions: dict[str, object | None] = {}  # instruction -> its Encoding, None: use encode_pairs
        self._keys = [k for k in tokenizer.model_input_names if k != "attention_mask"]

    def encode(self, policy: Policy, texts: Sequence[str], *, windows: bool) -> Windows:
        """Rows of (instruction, text) pairs: with `windows`, every window of a long text (see
        `tokenizer_rows`); without, one row per text with the text truncated."""
        instruction = policy.instruction
        if instruction not in self._instructions:
            check_instruction_fits(self.tokenizer, policy, self.max_length)
            if len(self._instructions) >= MAX_CACHED_INSTRUCTIONS:  # clients may send any number of inline policies
                del self._instructions[next(iter(self._instructions))]
            self._instructions[instruction] = self._cacheable(instruction, list(texts)[:1])
        first = self._instructions[instruction]
        if first is None:
            return tokenizer_rows(self.tokenizer, instruction, texts, self.max_length, windows)
        return self._join(first, texts, windows)

    def _cacheable(self, instruction: str, sample: list[str]):
        if self._backend is None or not set(self._keys) <= {"input_ids", "token_type_ids"}:
            return None
        first = self._backend.encode(instruction, add_special_tokens=False)
        sample = sample or ["a sample text"]
        joined = self._join(first, sample, windows=False).features
        return first if joined == encode_pairs(self.tokenizer, instruction, sample, self.max_length) else None

    def _join(self, first, texts: Sequence[str], windows: bool) -> Windows:
        room = self.max_length - len(first.ids) - self._backend.num_special_tokens_to_add(True)
        overlap = window_overlap(room) if windows else 0
        features: dict[str, list[list[int]]] = {k: [] for k in self._keys}
        text_index: list[int] = []
        for i, second in enumerate(self._backend.encode_batch(list(texts), add_special_tokens=False)):
            parts = [second]
            if len(second.ids) > room:  # "only_second": the text loses its tail (or is cut into windows), the policy nothing
                second.truncate(room, overlap)  # the tail's windows become `overflowing`, as in the tokenizer's own call
                parts += second.overflowing if windows else []
            # each window joined on its own: the pair's own `overflowing` rows carry type id 0 for the text
            # (tokenizers 0.23), where the tokenizer's own call gives 1
            for part in parts:
                row = self._backend.post_process(first, part, add_special_tokens=True)
                features["input_ids"].append(row.ids)
                if "token_type_ids" in features:
                    features["token_type_ids"].append(row.type_ids)
                text_index.append(i)
        return Windows(features, text_index, len(texts))


def _private_backend(tokenizer: PreTrainedTokenizerBase):
    """A copy of a fast tokenizer's Rust backend with no truncation or padding of its own.

    `transformers` sets truncation and padding on the shared backend at every call, so the shared
    one's state depends on the last caller; the copy's never changes.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    private = Tokenizer.from_str(backend.to_str())
    private.no_truncation()
    private.no_padding()
    return private


def score_batches(
    tokenizer: PreTrainedTokenizerBase, features: dict[str, list[list[int]]], batch_size: int, probs_of,
    finite: bool = True,
) -> np.ndarray:
    """The one scoring loop of every runtime: length-sorted batches padded per batch, scored by
    `probs_of(padded numpy batch)`, returned in input order. A NaN score compares False with every
    threshold, i.e. "allowed", so with `finite` (the default) any non-finite score raises `NonFiniteScore`."""
    lengths = [len(ids) for ids in features["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    scores = np.empty(len(lengths), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        scores[idx] = probs_of(tokenizer.pad({k: [v[i] for i in idx] for k, v in features.items()}, return_tensors="np"))
    bad = np.flatnonzero(~np.isfinite(scores))
    if finite and bad.size:
        raise NonFiniteScore(f"input {int(bad[0])} ({bad.size} of {len(scores)} in all) got a NaN or infinite score, so no "
                             "verdict can be given; the guard's weights overflow or are corrupt: re-export, re-merge (float32) or retrain it")
    return scores


def torch_violation_probs(model: PreTrainedModel, batch, compute: Compute = Compute()) -> np.ndarray:
    with torch.inference_mode(), compute.autocast():
        logits = model(**{k: torch.as_tensor(v).to(compute.device) for k, v in batch.items()}).logits
    return torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()


def score_token_ids(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, features: dict[str, list[list[int]]], batch_size: int = 64,
    compute: Compute = Compute(), finite: bool = True,
) -> np.ndarray:
    """P(label 1) of a bare PyTorch classifier (training, fitness) for pre-tokenised features."""
    return score_batches(tokenizer, features, batch_size, lambda batch: torch_violation_probs(model, batch, compute), finite)
