"""`uniguard serve` and `uniguard export`: putting a guard where the LLM app runs.

Heavy imports (torch, onnxruntime, fastapi) happen inside the commands so `uniguard --help` stays fast.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from uniguard.cli.compute_options import device_option, precision_option
from uniguard.core.errors import UserError


class ExportFormat(str, Enum):
    hf = "hf"
    onnx = "onnx"


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(export)


def serve(
    model: Path = typer.Option(..., help="Guard directory (PyTorch or an ONNX export of one)."),
    policy: list[str] = typer.Option([], help="Default policy (built-in name or YAML path) for requests that name none; repeatable."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000, help="TCP port."),
    max_batch: int = typer.Option(32, help="Most (text, policy) pairs scored in one forward pass."),
    max_wait_ms: float = typer.Option(0.0, help="Extra wait for more pairs before a batch runs (0: batch what queued during the last batch)."),
    max_texts: int = typer.Option(64, help="Most texts per request (413 above)."),
    max_text_chars: int = typer.Option(8192, help="Most characters per text (413 above)."),
    max_policies: int = typer.Option(8, help="Most policies per request (413 above)."),
    max_body_bytes: int = typer.Option(1 << 20, help="Largest request body in bytes (413 above)."),
    threads: Optional[int] = typer.Option(None, help="Intra-op threads for the forward pass (default: the runtime's choice)."),
    read_timeout_s: float = typer.Option(10.0, help="Seconds a client has to send a request's headers and body; slower connections are closed."),
    max_connections: int = typer.Option(512, help="Most concurrent connections and requests (503 above)."),
    device: str = device_option(),
    precision: str = precision_option(),
    address: Optional[str] = typer.Option(None, help="Ray cluster address ('auto', ray://host:port, or 'local'): serve with Ray Serve replicas."),
    replicas: int = typer.Option(1, help="Ray Serve replicas (only with --address)."),
) -> None:
    """Serve a guard over HTTP: GET /healthz, POST /v1/check, OpenAPI schema at /docs and /openapi.json."""
    from uniguard.serving.ray_serve import serve_on_ray
    from uniguard.serving.run import serve as run_uvicorn
    from uniguard.serving.service import ServeSettings

    if replicas < 1:
        raise UserError(f"--replicas must be at least 1, got {replicas}")
    settings = ServeSettings(
        model=str(model), policies=tuple(policy), host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms,
        max_texts=max_texts, max_text_chars=max_text_chars, max_policies=max_policies, max_body_bytes=max_body_bytes,
        threads=threads, read_timeout_s=read_timeout_s, max_connections=max_connections, device=device, precision=precision,
    )
    if address:
        serve_on_ray(settings, address, replicas)
    else:
        run_uvicorn(settings)


def export(
    source: Path = typer.Argument(..., help="A guard directory, an ONNX guard directory (to quantise it), or a search run directory."),
    out: Path = typer.Option(..., help="New directory to write; it must not exist or be empty."),
    format: ExportFormat = typer.Option(ExportFormat.hf, "--format", help="hf: safetensors guard; onnx: ONNX graph for onnxruntime."),
    quantize: Quantize = typer.Option(Quantize.none, help="int8: onnxruntime dynamic quantisation (needs --format onnx)."),
    point: Optional[int] = typer.Option(None, help="Index of the Pareto-front point to export (search run directories only)."),
    add_to_front: bool = typer.Option(False, help="With a run's --point and --format onnx --quantize int8: measure the int8 "
                                      "guard as the search measures merges and add it to the run's Pareto front."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Export a guard (or a Pareto point of a search run) as a Hugging Face or ONNX guard directory."""
    from engine.export import export_guard
    from engine.rundir import RunDir
    from engine.variants import add_variant, check_variant_export
    from trainers.onnx import directory_bytes

    run = RunDir(source)
    from_run = point is not None and run.front_file.is_file()
    if add_to_front and not (from_run and (format.value, quantize.value) == ("onnx", "int8")):
        raise UserError("--add-to-front: needs a search run directory as SOURCE, --point K, --format onnx and --quantize int8")
    if from_run:
        check_variant_export(run, point, format.value, quantize.value)
    written = export_guard(source, out, format.value, quantize.value, point)
    result = {"out": str(written), "format": format.value, "quantize": quantize.value, "size_bytes": directory_bytes(written),
              "files": sorted(p.name for p in written.iterdir())}
    if add_to_front:
        entry = add_variant(run, run.point(point), written)
        result["front"] = entry.model_dump(include={"hash", "f1", "size_bytes", "latency_ms"})
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"wrote {result['out']} ({format.value}, quantize={quantize.value}, {result['size_bytes'] / 1e6:.1f} MB)")
        if add_to_front:
            front = result["front"]
            typer.echo(f"on the front of {source} as {front['hash']}: F1 {front['f1']:.4f}, "
                       f"{front['size_bytes'] / 1e6:.1f} MB, {front['latency_ms']:.2f} ms/example (`uniguard pareto {source}`)")
