"""Open any guard directory: PyTorch (safetensors) or ONNX, behind the one `Guard` scoring API."""

from __future__ import annotations

from pathlib import Path

import torch

from trainers.guard import Guard
from trainers.onnx import OnnxGuard, is_onnx_guard_dir


def load_guard(path: str | Path, threads: int | None = None) -> Guard:
    """Open a guard directory: a PyTorch (safetensors) guard or an ONNX export of one."""
    if is_onnx_guard_dir(path):
        return OnnxGuard.load(path, threads=threads)
    if threads:
        torch.set_num_threads(threads)
    return Guard.load(path)
