"""Where and in what precision tensors are computed: one small record for training, scoring and serving.

`auto` picks CUDA when a GPU is visible, else the CPU; and bfloat16 autocast where the hardware runs
it fast (CUDA with bf16 support; a CPU with AMX or AVX-512 bf16 units, where a MiniLM forward pass
measured 3.7x faster than float32: `python -m experiments.bench_compute`), else float32. Weights stay
float32 (master weights for training, exact merges for the search); autocast runs the matmuls in
bfloat16 and keeps reductions such as softmax and layer norm in float32.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from uniguard.core.errors import UserError

DeviceChoice = Literal["auto", "cpu", "cuda"]
PrecisionChoice = Literal["auto", "float32", "bfloat16"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 bf16 units (Linux /proc/cpuinfo flags); elsewhere assume not."""
    try:
        flags = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@dataclass(frozen=True)
class Compute:
    device: str = "cpu"  # a torch device string: "cpu", "cuda", "cuda:1"
    precision: Literal["float32", "bfloat16"] = "float32"

    @property
    def device_type(self) -> str:
        return torch.device(self.device).type

    def autocast(self):
        """The context every forward (and training step) runs in."""
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def describe(self) -> str:
        return f"{self.device}/{self.precision}"


def resolve_compute(device: str = "auto", precision: str = "auto") -> Compute:
    """The concrete device and precision for a user's choice (`--device`, `--precision`)."""
    if device not in DEVICES:
        raise UserError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu (or auto)")
    if precision == "auto":
        fast = torch.cuda.is_bf16_supported() if device == "cuda" else cpu_has_fast_bf16()
        precision = "bfloat16" if fast else "float32"
    return Compute(device, precision)  # type: ignore[arg-type]


def linears_in_bfloat16(model: torch.nn.Module) -> torch.nn.Module:
    """Store the Linear layers' weights and biases in bfloat16, in place: what bfloat16 autocast casts them
    to on every call, cast once. Only for scoring under autocast (its matmuls then need no cast); layer
    norms, embeddings and everything else stay as they are."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    return model


class CompiledForward:
    """A model's forward compiled once by torch.compile (TorchInductor), for a model whose weights are
    rewritten in place between calls (a search worker merges every recipe into the same parameters):
    the compiled graph reads the parameters at each call, so it scores each new merge without
    recompiling, and dynamic shapes cover every batch size and padded length. Inductor fuses the
    element-wise work (GELU, layer norm, softmax, casts) that is most of a bf16 forward's time once AMX
    runs the matmuls. If compiling fails (no C++ compiler, an unsupported op), it warns once and runs
    the model eagerly: compiling is a speed-up, never a reason for a search to stop."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self._compiled = torch.compile(model, dynamic=True)

    def __call__(self, **inputs):
        if self._compiled is not None:
            try:
                return self._compiled(**inputs)
            except Exception as error:  # noqa: BLE001 - any compiler failure falls back to the same eager model
                warnings.warn(f"torch.compile could not compile the scoring model ({type(error).__name__}: "
                              f"{str(error)[:200]}); scoring eagerly instead (slower, same results)", stacklevel=2)
                self._compiled = None
        return self.model(**inputs)
