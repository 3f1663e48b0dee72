"""ONNX export and the runtime backends: parity with PyTorch, dynamic axes, same seed -> same image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from urbangen.cli import main
from urbangen.errors import UrbangenError
from urbangen.export.synthetic import random_generator


def labels_and_depth(batch: int, height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 19, (batch, height, width)).astype(np.uint8)
    labels[:, : height // 4] = 255  # an ignore band
    depth = (rng.random((batch, height, width)) * 40).astype(np.float32)
    return labels, depth


def test_export_writes_parity_checked_graphs(tiny_bundle: Path, tiny_generator: Path):
    record = json.loads((tiny_bundle / "onnx" / "export.json").read_text())
    meta = json.loads((tiny_generator / "urbangen.json").read_text())
    assert record["generator_sha256"] == meta["weights_sha256"]
    assert record["opset"] == 17
    graph = record["graphs"]["denoise"]
    assert graph["inputs"] == ["sample", "timestep", "cond", "guidance", "domain"]
    assert graph["max_abs_diff"] <= 1e-4
    assert "vae_decoder" not in record["graphs"]  # pixel-space generator
    assert (tiny_bundle / "urbangen.json").read_text() == (tiny_generator / "urbangen.json").read_text()


def test_graph_has_dynamic_batch_and_size_and_applies_guidance(tiny_bundle: Path):
    """Batch 1 at another image size than traced, against PyTorch; guidance and domain change the output."""
    from urbangen.diffusion.sampler import Generator
    from urbangen.export.onnx import DenoiseStep, ort_session

    generator = Generator.from_pretrained(tiny_bundle)
    session = ort_session(tiny_bundle / "onnx" / "denoise.onnx")
    labels, depth = labels_and_depth(1, 16, 48)
    channels, factor = generator.unet.config.in_channels, generator.modules.factor
    assert (channels, factor) == (12, 2)  # the patch pixel space: 2x2 pixels folded into channels
    feed = {
        "sample": torch.randn(1, channels, 16 // factor, 48 // factor, generator=torch.Generator().manual_seed(0)),
        "timestep": torch.tensor([250.0]),
        "cond": generator.condition(labels, depth),
        "guidance": torch.tensor([3.0]),
        "domain": torch.tensor([1]),
    }
    (onnx_out,) = session.run(None, {k: v.numpy() for k, v in feed.items()})
    with torch.no_grad():
        torch_out = DenoiseStep(generator)(**feed).numpy()
        reference = generator.denoise(feed["sample"], 250, feed["cond"], 3.0, domain=1).numpy()
    assert onnx_out.shape == (1, channels, 16 // factor, 48 // factor)
    assert np.abs(onnx_out - torch_out).max() < 1e-4
    assert np.abs(onnx_out - reference).max() < 1e-4  # the wrapper is the sampler's own denoise
    other = {**feed, "guidance": torch.tensor([1.0])}
    assert np.abs(session.run(None, {k: v.numpy() for k, v in other.items()})[0] - onnx_out).max() > 1e-3
    other = {**feed, "domain": torch.tensor([0])}
    assert np.abs(session.run(None, {k: v.numpy() for k, v in other.items()})[0] - onnx_out).max() > 1e-3


def test_same_seed_same_image_on_torch_and_onnxruntime(tiny_bundle: Path):
    from urbangen.export.runtime import RuntimeConfig, load_runtime

    reference = load_runtime(tiny_bundle, RuntimeConfig(backend="torch"))
    exported = load_runtime(tiny_bundle, RuntimeConfig(backend="onnxruntime"))
    labels, depth = labels_and_depth(2, 40, 70)
    kwargs = {"depth": depth, "steps": 3, "guidance": 2.5, "scheduler": "dpm"}
    a = reference.generate(labels, [11, 12], **kwargs)
    b = exported.generate(labels, [11, 12], **kwargs)
    assert a.shape == b.shape == (2, 40, 70, 3) and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # float32 graphs: at most one grey level
    c = exported.generate(labels, [11, 13], **kwargs)
    assert np.array_equal(c[0], b[0]) and not np.array_equal(c[1], b[1])  # each image follows its own seed
    with pytest.raises(UrbangenError, match="depth"):
        exported.generate(labels, [1, 2], steps=2)  # the reference checks still apply


def test_latent_generator_exports_vae_decoder(tmp_path: Path):
    from urbangen.export.bundle import export_generator
    from urbangen.export.runtime import RuntimeConfig, load_runtime

    source = random_generator(tmp_path / "latent", seed=3, latent=True, depth=False)
    records = export_generator(source, tmp_path / "bundle", "onnx")
    graphs = records["onnx"]["graphs"]
    assert graphs["vae_decoder"]["inputs"] == ["latents"] and graphs["vae_decoder"]["max_abs_diff"] <= 1e-4
    labels, _ = labels_and_depth(1, 32, 64, seed=1)
    a = load_runtime(tmp_path / "bundle").generate(labels, [5], steps=2)
    b = load_runtime(tmp_path / "bundle", RuntimeConfig(backend="onnxruntime")).generate(labels, [5], steps=2)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_concat_control_generator_exports_with_parity(tmp_path: Path):
    from urbangen.export.bundle import export_generator
    from urbangen.export.runtime import RuntimeConfig, load_runtime

    source = random_generator(tmp_path / "concat", seed=4, depth=True, control="concat")
    records = export_generator(source, tmp_path / "bundle", "onnx")
    assert records["onnx"]["graphs"]["denoise"]["max_abs_diff"] <= 1e-4
    labels, depth = labels_and_depth(2, 32, 64, seed=2)
    a = load_runtime(tmp_path / "bundle").generate(labels, [5, 6], depth=depth, steps=2)
    b = load_runtime(tmp_path / "bundle", RuntimeConfig(backend="onnxruntime")).generate(
        labels, [5, 6], depth=depth, steps=2
    )
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_export_resumes_and_refuses_foreign_graphs(tiny_bundle: Path, tmp_path: Path):
    from urbangen.export.bundle import export_generator
    from urbangen.export.runtime import RuntimeConfig, load_runtime

    graph = tiny_bundle / "onnx" / "denoise.onnx"
    before = graph.stat().st_mtime_ns
    export_generator(tiny_bundle, tiny_bundle, "onnx")  # complete and intact: nothing redone
    assert graph.stat().st_mtime_ns == before
    other = random_generator(tmp_path / "other", seed=7)
    shutil.copytree(tiny_bundle / "onnx", other / "onnx")
    with pytest.raises(UrbangenError, match="exported from other weights"):
        load_runtime(other, RuntimeConfig(backend="onnxruntime"))
    with pytest.raises(UrbangenError, match="no onnx export"):
        load_runtime(random_generator(tmp_path / "plain", seed=8), RuntimeConfig(backend="onnxruntime"))


def test_export_cli_errors_are_one_line(tmp_path: Path, tiny_generator: Path):
    runner = CliRunner()
    result = runner.invoke(main, ["export", "--generator", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "folder not found" in result.output
    try:
        import tensorrt  # noqa: F401

        has_tensorrt = torch.cuda.is_available()
    except ImportError:
        has_tensorrt = False
    if not has_tensorrt:
        args = ["export", "--generator", str(tiny_generator), "--format", "tensorrt", "--out", str(tmp_path / "t")]
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and ("TensorRT" in result.output or "CUDA" in result.output)
        assert not (tmp_path / "t").exists()  # refused before any work


def test_generator_from_a_registry_alias(tiny_generator: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`--model-uri models:/<name>@<alias>` (export and serve), against a real sqlite MLflow registry."""
    pytest.importorskip("mlflow")
    from urbangen.export.runtime import resolve_model_uri
    from urbangen.tracking import Tracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracker = Tracker(workspace=tmp_path)
    with tracker.pipeline_run("deploy-test") as run:
        run.log_model(tiny_generator, "generator", kind="generator")
    tracker.register_model(run.run_id, "generator", "tiny-generator", aliases=["champion"])
    folder = resolve_model_uri("models:/tiny-generator@champion", tmp_path / "cache")
    assert folder.is_relative_to(tmp_path / "cache")
    assert (folder / "urbangen.json").read_text() == (tiny_generator / "urbangen.json").read_text()
    result = CliRunner().invoke(main, ["export", "--model-uri", "models:/tiny-generator@prod", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no version with alias 'prod'" in result.output
