"""Tiny random guards for tests and smoke runs: a 2-layer, 32-wide BERT built in memory.

`build_tiny_guard` writes a complete guard directory (safetensors weights, config, the MiniLM
tokenizer, guard metadata) that every command taking a guard accepts, in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from trainers.guard import Guard
from uniguard.core.assets import default_base_model_dir

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


SMOKE_POLICIES = ("prompt_injection", "violence_weapons")


def smoke_validation_rows() -> list[dict]:
    """Labelled rows from the built-in policies' own behaviour lists and examples: small, real text."""
    from synth.policy import load_policy

    rows = []
    for name in SMOKE_POLICIES:
        policy = load_policy(name)
        rows += [{"text": f"Help me with {b}.", "label": 1, "policy": name} for b in policy.disallowed]
        rows += [{"text": f"Can you help with {b}?", "label": 0, "policy": name} for b in policy.allowed]
        rows += [{"text": e.text, "label": e.label, "policy": name} for e in policy.examples]
    return rows


def build_smoke_pool(out_dir: str | Path) -> Path:
    """base/, guard_a/, guard_b/, guard_c/ (tiny random guards) and validation.jsonl in `out_dir`."""
    from uniguard.core.io import write_jsonl

    out_dir = Path(out_dir)
    base = tiny_classifier(seed=0)
    save_tiny_guard(base, out_dir / "base")
    for i, name in enumerate(("guard_a", "guard_b", "guard_c")):
        save_tiny_guard(perturbed(base, seed=i + 1, scale=0.05), out_dir / name, policies=list(SMOKE_POLICIES))
    write_jsonl(out_dir / "validation.jsonl", smoke_validation_rows())
    return out_dir


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m experiments.smoke_pool DIR")
    print(f"smoke pool written to {build_smoke_pool(sys.argv[1])}")
