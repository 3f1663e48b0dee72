"""Toy datasets for segmentation tests: small, learnable scenes (sky over buildings over road, with cars)
written in the generated-dataset layout, so they read back through the real ``cityscapes`` reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from urbangen.datasets.writer import DatasetWriter
from urbangen.labels import cityscapes19


def toy_scene(rng: np.random.Generator, h: int = 64, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros((h, w), np.uint8)  # road
    horizon = int(rng.integers(h // 4, h // 2))
    label[:horizon] = 10  # sky
    label[horizon : horizon + h // 4] = 2  # building
    for _ in range(int(rng.integers(1, 4))):
        y, x = int(rng.integers(horizon, h - 8)), int(rng.integers(0, w - 16))
        label[y : y + 8, x : x + 16] = 13  # car
    label[-2:, :4] = 255  # a little ignore
    palette = np.array(cityscapes19().colors, np.float32)
    image = palette[np.minimum(label, 18)] + rng.normal(0, 20, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_toy_dataset(root: Path, n: int = 8, seed: int = 0, split: str = "train", **size) -> Path:
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root, split=split, city="toy")
    for i in range(n):
        image, label = toy_scene(rng, **size)
        writer.write(f"toy_{i:06d}_000000", image, label, {})
    return root


@pytest.fixture(scope="session")
def make_toy():
    """The toy dataset writer, for tests that need their own variant."""
    return make_toy_dataset


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n=8)


@pytest.fixture(scope="session")
def toy_model(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SegFormer trained briefly on the toy scenes (good enough to be confident on sky and road)."""
    from urbangen.segment.data import DataSource
    from urbangen.segment.train import TrainConfig, train

    cfg = TrainConfig(
        sources=[DataSource(root=toy_root, split="train")],
        crop_size=(64, 64),
        scale_range=(1.0, 1.0),
        iterations=40,
        batch_size=4,
        lr=2e-3,
        warmup_iters=0,
        num_workers=0,
        progress=False,
        threads=1,
    )
    return train(cfg, tmp_path_factory.mktemp("toy_run"))
