"""Open any guard directory: PyTorch (safetensors) or ONNX, behind the one `Guard` scoring API."""

from __future__ import annotations

from pathlib import Path

import torch

from trainers.compute import Compute
from trainers.guard import Guard
from trainers.onnx import OnnxGuard, is_onnx_guard_dir


def load_guard(path: str | Path, threads: int | None = None, compute: Compute | None = None) -> Guard:
    """Open a guard directory: a PyTorch (safetensors) guard or an ONNX export of one. `compute`: the
    device and precision a PyTorch guard scores in (None: the auto choice, see `Guard.load`; ONNX
    guards run on onnxruntime)."""
    if is_onnx_guard_dir(path):
        return OnnxGuard.load(path, threads=threads)
    if threads:
        torch.set_num_threads(threads)
    return Guard.load(path, compute)
