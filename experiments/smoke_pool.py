"""Tiny random guards for tests and smoke runs: a 2-layer, 32-wide BERT built in memory.

`build_tiny_guard` writes a complete guard directory (safetensors weights, config, the MiniLM
tokenizer, guard metadata) that every command taking a guard accepts, in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from trainers.guard import Guard
from uniguard.assets import default_base_model_dir

TINY_MAX_LENGTH = 128


def tiny_bert_config(num_layers: int = 2, hidden: int = 32) -> BertConfig:
    return BertConfig(
        vocab_size=30522,  # the MiniLM (bert-base-uncased) vocabulary, so the real tokenizer works
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=TINY_MAX_LENGTH,
        num_labels=2,
        id2label={0: "allowed", 1: "violates"},
        label2id={"allowed": 0, "violates": 1},
    )


def tiny_classifier(seed: int, num_layers: int = 2, hidden: int = 32) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(num_layers, hidden)).eval()


def perturbed(model: BertForSequenceClassification, seed: int, scale: float = 0.02) -> BertForSequenceClassification:
    """A copy of `model` plus a seeded Gaussian task vector: a stand-in for a fine-tuned candidate."""
    clone = BertForSequenceClassification(model.config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for (name, src), dst in zip(model.state_dict().items(), clone.state_dict().values()):
            noise = torch.randn(src.shape, generator=generator) * scale if src.is_floating_point() else 0
            dst.copy_(src + noise)
    return clone


def save_tiny_guard(model: BertForSequenceClassification, out_dir: str | Path, policies: list[str] | None = None) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(default_base_model_dir())
    guard = Guard(model=model, tokenizer=tokenizer, max_length=TINY_MAX_LENGTH, meta={"policies": policies or []})
    guard.save(out_dir)
    return Path(out_dir)
