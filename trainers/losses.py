"""The three MultiTaskGuard loss terms, each usable on its own.

- classification: cross-entropy of the 2-way head on (instruction, text) pairs;
- masked LM: BERT-style token masking on the same instruction-augmented input, predicted by a small
  head tied to the input embeddings (kept only during training; the saved guard is a plain classifier);
- adversarial: the classification loss again, with the word embeddings pushed one normalised gradient
  step (radius `epsilon`) in the direction that hurts most (fast gradient method, Miyato et al. 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> logits through the (shared) input embedding matrix.

    The decoder reuses the model's word embeddings by reference at call time instead of holding a
    tied parameter, so checkpoints have no shared tensors and the head adds only hidden^2 weights.
    """

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(hidden))), word_embeddings, self.bias)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def mask_tokens(
    input_ids: torch.Tensor, special_tokens_mask: torch.Tensor, tokenizer: PreTrainedTokenizerBase, probability: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked inputs, targets with -100 where not masked): of the chosen tokens 80% become [MASK],
    10% a random token, 10% stay. Special and padding tokens are never chosen."""
    targets = input_ids.clone()
    chosen = torch.bernoulli(torch.full(input_ids.shape, probability)).bool() & ~special_tokens_mask.bool()
    targets[~chosen] = -100
    masked = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8)).bool() & chosen
    masked[to_mask] = tokenizer.mask_token_id
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5)).bool() & chosen & ~to_mask
    masked[to_random] = torch.randint(len(tokenizer), input_ids.shape)[to_random]
    return masked, targets


def masked_lm_loss(
    model: PreTrainedModel,
    head: MaskedLMHead,
    batch: dict[str, torch.Tensor],
    special_tokens_mask: torch.Tensor,
    tokenizer: PreTrainedTokenizerBase,
    probability: float,
) -> torch.Tensor:
    masked, targets = mask_tokens(batch["input_ids"], special_tokens_mask, tokenizer, probability)
    if not (targets != -100).any():  # a batch of very short texts can draw no mask at all
        return torch.zeros((), requires_grad=True)
    outputs = model(**{**batch, "input_ids": masked}, output_hidden_states=True)
    chosen = targets != -100
    # project only the masked positions onto the vocabulary: ~15% of the tokens, the costly step
    logits = head(outputs.hidden_states[-1][chosen], model.get_input_embeddings().weight)
    return F.cross_entropy(logits.float(), targets[chosen])


def adversarial_loss(
    model: PreTrainedModel,
    embeddings: torch.Tensor,
    batch: dict[str, torch.Tensor],
    labels: torch.Tensor,
    clean_loss: torch.Tensor,
    epsilon: float,
) -> torch.Tensor:
    """CE on embeddings + epsilon * g/||g|| (g = d clean_loss / d embeddings, normalised per example)."""
    (grad,) = torch.autograd.grad(clean_loss, embeddings, retain_graph=True)
    norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
    delta = (epsilon * grad / norm).detach()
    rest = {k: v for k, v in batch.items() if k != "input_ids"}
    logits = model(inputs_embeds=embeddings + delta, **rest).logits
    return classification_loss(logits, labels)
