"""TensorRT engines: profile shapes everywhere; engine build and parity only where TensorRT and a GPU exist."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from urbangen.export.tensorrt import profile_shapes


def test_profile_shapes_scale_latents_and_keep_scalars_fixed():
    onnx_shapes = {"sample": (-1, 4, -1, -1), "timestep": (1,), "cond": (-1, 20, -1, -1), "domain": (1,)}
    shapes = profile_shapes(onnx_shapes, (512, 1024), factor=8, batch=(1, 4, 8))
    assert shapes["sample"] == ((1, 4, 64, 128), (4, 4, 64, 128), (8, 4, 64, 128))
    assert shapes["cond"] == ((1, 20, 512, 1024), (4, 20, 512, 1024), (8, 20, 512, 1024))
    assert shapes["timestep"] == ((1,), (1,), (1,)) and shapes["domain"] == ((1,), (1,), (1,))
    static = profile_shapes({"latents": (-1, 4, -1, -1)}, (512, 1024), factor=8, batch=(2, 2, 2))
    assert static["latents"] == ((2, 4, 64, 128),) * 3


@pytest.fixture
def trt_bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    pytest.importorskip("tensorrt")
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    return bundle


def _inputs(batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 19, (batch, 32, 64)).astype(np.uint8), np.full((batch, 32, 64), 20.0, np.float32)


@pytest.mark.gpu
@pytest.mark.parametrize(("precision", "max_levels"), [("fp32", 2), ("fp16", 12)])
def test_dynamic_engine_matches_torch(trt_bundle: Path, precision: str, max_levels: int):
    import json

    from urbangen.export.bundle import export_generator
    from urbangen.export.runtime import RuntimeConfig, load_runtime

    records = export_generator(trt_bundle, trt_bundle, "tensorrt", precision=precision, max_batch=4)
    engine = records["tensorrt"]["engines"]["denoise"]
    assert engine["precision"] == precision and engine["profile"]["sample"][2][0] == 4
    assert json.loads((trt_bundle / "tensorrt" / "export.json").read_text())["static"] is False
    labels, depth = _inputs(3)
    kwargs = {"depth": depth, "steps": 3, "guidance": 2.0}
    reference = load_runtime(trt_bundle, RuntimeConfig(backend="torch", device="cuda")).generate(
        labels, [1, 2, 3], **kwargs
    )
    engine_out = load_runtime(trt_bundle, RuntimeConfig(backend="tensorrt", device="cuda")).generate(
        labels, [1, 2, 3], **kwargs
    )
    assert engine_out.shape == reference.shape == (3, 32, 64, 3)
    assert np.abs(engine_out.astype(int) - reference.astype(int)).max() <= max_levels


@pytest.mark.gpu
def test_static_engine_replays_as_cuda_graph(trt_bundle: Path):
    from urbangen.export.bundle import export_generator
    from urbangen.export.runtime import RuntimeConfig, load_runtime

    records = export_generator(trt_bundle, trt_bundle, "tensorrt", precision="fp16", static_batch=2)
    assert records["tensorrt"]["static"] is True
    runtime = load_runtime(trt_bundle, RuntimeConfig(backend="tensorrt", device="cuda", cuda_graph=True))
    labels, depth = _inputs(2)
    first = runtime.generate(labels, [5, 6], depth=depth, steps=3)
    again = runtime.generate(labels, [5, 6], depth=depth, steps=3)  # replayed graph, new inputs copied in
    other = runtime.generate(labels, [5, 7], depth=depth, steps=3)
    assert np.array_equal(first, again)
    assert np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])
    reference = load_runtime(trt_bundle, RuntimeConfig(device="cuda")).generate(labels, [5, 6], depth=depth, steps=3)
    assert np.abs(first.astype(int) - reference.astype(int)).max() <= 12
