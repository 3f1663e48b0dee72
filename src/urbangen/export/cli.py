"""``urbangen export`` and ``urbangen serve``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from urbangen.diffusion.appearance import MODES as CALIBRATION_MODES
from urbangen.errors import UrbangenError

generator_option = click.option(
    "--generator",
    "generator_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Generator folder (adapt's stage2/, or a folder written by `urbangen export`).",
)
model_uri_option = click.option(
    "--model-uri", default=None, help="Instead of --generator: models:/<name>@<alias> (MLflow at MLFLOW_TRACKING_URI)."
)


def _check_source(generator_dir: Path | None, model_uri: str | None) -> None:
    """Exactly one of --generator / --model-uri, well formed, before any slow work."""
    from urbangen.export.runtime import parse_model_uri

    if (generator_dir is None) == (model_uri is None):
        raise UrbangenError("give exactly one of --generator DIR and --model-uri models:/<name>@<alias>")
    if model_uri is not None:
        parse_model_uri(model_uri)
    elif not generator_dir.is_dir():
        raise UrbangenError(f"--generator: folder not found: {generator_dir}")


@click.command()
@generator_option
@model_uri_option
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]), default="onnx", show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Deployable folder: the generator plus onnx/ [and tensorrt/]. May equal --generator.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp16", "bf16", "fp32"]),
    default="fp16",
    show_default=True,
    help="TensorRT engine precision.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="TensorRT: largest batch of the optimisation profile.",
)
@click.option(
    "--static-batch",
    type=click.IntRange(min=1),
    default=None,
    help="TensorRT: build for exactly this batch (enables CUDA-graph replay when serving).",
)
@click.option("--tolerance", type=float, default=None, help="Largest accepted |onnxruntime - torch| (default 1e-4).")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=Path("workspace/registry-cache"),
    show_default=True,
    help="Where --model-uri downloads go.",
)
def export(
    generator_dir: Path | None,
    model_uri: str | None,
    fmt: str,
    out: Path,
    precision: str,
    max_batch: int,
    static_batch: int | None,
    tolerance: float | None,
    cache_dir: Path,
) -> None:
    """Export a generator to ONNX (parity-checked with onnxruntime) or to TensorRT engines."""
    from urbangen.export.bundle import export_generator
    from urbangen.export.runtime import resolve_model_uri

    _check_source(generator_dir, model_uri)
    if model_uri is not None:
        generator_dir = resolve_model_uri(model_uri, cache_dir)
    records = export_generator(generator_dir, out, fmt, precision, max_batch, static_batch, tolerance)
    for name, graph in records["onnx"]["graphs"].items():
        click.echo(f"onnx/{graph['file']}: max |onnxruntime - torch| = {graph['max_abs_diff']:.2e}  ({name})")
    for name, engine in records.get("tensorrt", {}).get("engines", {}).items():
        click.echo(f"tensorrt/{engine['file']}: {engine['precision']}, built in {engine['build_seconds']} s  ({name})")
    click.echo(json.dumps({"out": str(out), "formats": sorted(records)}))


@click.command()
@generator_option
@model_uri_option
@click.option("--name", default="urbangen-generator", show_default=True, help="Model name in the URL paths.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--backend", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="torch", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    default="float32",
    show_default=True,
    help="Torch backend precision.",
)
@click.option(
    "--cuda-graph/--no-cuda-graph", default=False, help="TensorRT: replay static-batch engines as CUDA graphs."
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Most images rendered in one call (concurrent requests are batched).",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="How long the first queued request waits for others to join its batch.",
)
@click.option(
    "--max-side",
    type=click.IntRange(min=8),
    default=2048,
    show_default=True,
    help="Largest accepted label-map side in pixels.",
)
@click.option("--max-steps", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--calibrate",
    type=click.Choice(("auto", *CALIBRATION_MODES)),
    default="auto",
    show_default=True,
    help="Target colour calibration of requests that set none (as `generate.calibrate`; needs the statistics "
    "stage 2 records). auto: the richest the generator can apply (exemplar, else pooled, else none).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=Path("/tmp/urbangen-models"),
    show_default=True,
    help="Where --model-uri downloads go.",
)
def serve(
    generator_dir: Path | None,
    model_uri: str | None,
    name: str,
    host: str,
    port: int,
    backend: str,
    device: str,
    dtype: str,
    cuda_graph: bool,
    max_batch: int,
    max_wait_ms: float,
    max_side: int,
    max_steps: int,
    calibrate: str,
    cache_dir: Path,
) -> None:
    """Serve a generator over KServe's Open Inference Protocol (V2) and V1 JSON with PNGs."""
    _check_source(generator_dir, model_uri)
    # kserve parses sys.argv when imported; keep `urbangen serve`'s own options away from it
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        from urbangen.export.runtime import RuntimeConfig
        from urbangen.export.server import ServeOptions
        from urbangen.export.server import serve as run_server
    finally:
        sys.argv = argv
    options = ServeOptions(
        name=name,
        generator=generator_dir,
        model_uri=model_uri,
        cache_dir=cache_dir,
        runtime=RuntimeConfig(backend=backend, device=device, dtype=dtype, cuda_graph=cuda_graph),
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_side=max_side,
        max_steps=max_steps,
        calibrate=calibrate,
    )
    run_server(options, host, port)
