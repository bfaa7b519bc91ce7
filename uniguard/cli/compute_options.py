"""`--device` and `--precision`, shared by every command that runs a model (train, search, eval, classify, serve)."""

from __future__ import annotations

import typer


def device_option():
    return typer.Option("auto", "--device", help="auto | cpu | cuda: where the model runs (auto: a GPU when visible).")


def precision_option():
    return typer.Option("auto", "--precision", help="auto | float32 | bfloat16: bfloat16 autocast over float32 weights "
                        "(auto: bfloat16 where the CPU has AMX / AVX-512 bf16 units or the GPU supports it).")


def guard_on(path, device: str, precision: str, threads: int | None = None):
    """Open a guard directory (PyTorch or ONNX) and place a PyTorch one on the chosen device and precision."""
    from trainers.compute import resolve_compute
    from trainers.runtime import load_guard

    return load_guard(path, threads=threads, compute=resolve_compute(device, precision))
