"""Tiny generators built from config (seconds, nothing downloaded) and their exported bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from urbangen.export.synthetic import random_generator


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pixel-space stage-2 generator with a depth channel and 2x2 patches (model input 12 x H/2 x W/2)."""
    return random_generator(tmp_path_factory.mktemp("gen") / "stage2", patch=2)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_generator: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_generator`` exported to ONNX (``urbangen export --format onnx``)."""
    from urbangen.export.bundle import export_generator

    out = tmp_path_factory.mktemp("bundle") / "generator"
    export_generator(tiny_generator, out, "onnx")
    return out
