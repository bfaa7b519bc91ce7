"""Where each tensor of an encoder classifier sits: layer index and block kind.

One table of name patterns covers the BERT family (BERT, RoBERTa / XLM-R, DistilBERT, ELECTRA,
DeBERTa-v2). Merge scope, per-layer recipe values and layer dropping all read this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from uniguard.core.errors import UserError


class BlockKind(str, Enum):
    embeddings = "embeddings"
    attention = "attention"
    feed_forward = "feed_forward"
    norm = "norm"
    head = "head"


Sublayer = Literal["attention", "ffn"]
Scope = Literal["attention", "ffn", "all_but_head", "all"]

_LAYER = r"(?:^|\.)(?:encoder|transformer)\.layer\.(\d+)\."
# (pattern, kind, sublayer); first match wins, so specific patterns come first.
LAYOUT_PATTERNS: tuple[tuple[re.Pattern, BlockKind, Sublayer | None], ...] = tuple(
    (re.compile(p), kind, sub)
    for p, kind, sub in [
        (_LAYER + r"attention\.(?:.*\.)?LayerNorm\.", BlockKind.norm, "attention"),  # BERT / RoBERTa / ELECTRA
        (_LAYER + r"sa_layer_norm\.", BlockKind.norm, "attention"),  # DistilBERT
        (_LAYER + r"output\.LayerNorm\.", BlockKind.norm, "ffn"),
        (_LAYER + r"output_layer_norm\.", BlockKind.norm, "ffn"),  # DistilBERT
        (_LAYER + r"attention\.", BlockKind.attention, "attention"),
        (_LAYER + r"(?:intermediate|output|ffn)\.", BlockKind.feed_forward, "ffn"),
        (r"(?:^|\.)embeddings\.(?:.*\.)?LayerNorm\.", BlockKind.norm, None),
        (r"(?:^|\.)(?:embeddings|embeddings_project)\.", BlockKind.embeddings, None),
        (r"(?:^|\.)encoder\.(?:rel_embeddings|LayerNorm)\.", BlockKind.embeddings, None),  # DeBERTa-v2
        (r"(?:^|\.)(?:pooler|classifier|pre_classifier)\.", BlockKind.head, None),
    ]
)
_LAYER_INDEX = re.compile(_LAYER)


@dataclass(frozen=True)
class TensorRole:
    kind: BlockKind
    layer: int | None  # encoder layer index; None for embeddings and head
    sublayer: Sublayer | None

    def in_scope(self, scope: Scope) -> bool:
        if scope == "all":
            return True
        if scope == "all_but_head":
            return self.kind is not BlockKind.head
        return self.sublayer == scope

    def slot(self, num_layers: int) -> int:
        """Index into per-layer recipe values: 0 = embeddings, 1..L = layers, L + 1 = head."""
        if self.layer is not None:
            return self.layer + 1
        return num_layers + 1 if self.kind is BlockKind.head else 0

    def depth(self, num_layers: int) -> float:
        """Relative depth in [0, 1] for depth-scaled operators (LiNeS): encoder layer l of L at
        l / (L - 1), the embeddings with the first layer at 0, the head with the last at 1 (a
        one-layer encoder's layer at 0). Counted in the pool's layers, before any are dropped."""
        if self.layer is not None:
            return self.layer / (num_layers - 1) if num_layers > 1 else 0.0
        return 1.0 if self.kind is BlockKind.head else 0.0


def tensor_role(name: str) -> TensorRole:
    for pattern, kind, sublayer in LAYOUT_PATTERNS:
        if pattern.search(name):
            match = _LAYER_INDEX.search(name)
            return TensorRole(kind, int(match.group(1)) if match else None, sublayer)
    raise UserError(
        f"tensor {name!r}: not a known part of a BERT-family encoder classifier "
        "(BERT, RoBERTa/XLM-R, DistilBERT, ELECTRA, DeBERTa-v2); uniguard cannot place it in a layer"
    )


def renumber_layer(name: str, new_index: int) -> str:
    """`bert.encoder.layer.4.x` -> `bert.encoder.layer.<new_index>.x` (for dropped layers)."""
    return _LAYER_INDEX.sub(lambda m: m.group(0).replace(f"layer.{m.group(1)}.", f"layer.{new_index}."), name, count=1)
