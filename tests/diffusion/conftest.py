"""Fixtures for the diffusion tests: a tiny Cityscapes-layout target set with pseudo-labels and depth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from urbangen.io import write_png

CITY = "town"


def scene(i: int, shape: tuple[int, int] = (48, 96)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A toy street: sky, buildings, road, one car; (rgb, trainIds with an ignore strip, depth in cm)."""
    rng = np.random.default_rng(i)
    h, w = shape
    label = np.full(shape, 0, np.uint8)  # road
    label[: h // 3] = 10  # sky
    label[h // 3 : h // 2] = 2  # building
    x = int(rng.integers(0, w - 24))
    label[h // 2 - 4 : h // 2 + 10, x : x + 24] = 13  # car
    colours = {0: (128, 64, 128), 10: (70, 130, 180), 2: (150, 100, 70), 13: (200, 30, 30)}
    image = np.zeros((h, w, 3), np.uint8)
    for cls, colour in colours.items():
        image[label == cls] = colour
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    label[-2:] = 255
    rows = np.linspace(50, 3000, h)[::-1, None].repeat(w, 1)
    depth = np.where(label == 10, 65535, rows).astype(np.uint16)
    return image, label, depth


def make_target(root: Path, n: int = 6, depth: bool = True) -> tuple[Path, Path]:
    """A Cityscapes-layout ``root`` (train split) and a pseudo-label folder beside it."""
    labels = root.parent / f"{root.name}_labels"
    for i in range(n):
        image, label, dmap = scene(i)
        sample_id = f"{CITY}_{i:06d}_000019"
        write_png(root / "leftImg8bit" / "train" / CITY / f"{sample_id}_leftImg8bit.png", image)
        write_png(labels / f"{sample_id}.png", label)
        if depth:
            write_png(root / "depth" / "train" / CITY / f"{sample_id}_depth.png", dmap)
    return root, labels


def tiny_config(root: Path, labels: Path, out: Path, **overrides):
    from urbangen.diffusion.config import AdaptConfig

    data = {
        "base": "tiny",
        "target": {"format": "cityscapes", "root": str(root), "split": "train"},
        "labels_dir": str(labels),
        "out": str(out),
        "stage1": {"steps": 2, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 1},
        "stage2": {"steps": 2, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 1},
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    return AdaptConfig.model_validate(data)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two spinning threads are ~5x slower than one."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def target(tmp_path_factory) -> tuple[Path, Path]:
    return make_target(tmp_path_factory.mktemp("target") / "ds")


@pytest.fixture(scope="session")
def adapted(tmp_path_factory, target) -> Path:
    """OUT of a tiny two-stage run (2 + 2 steps, EMA on in stage 1)."""
    from urbangen.diffusion.adapt import adapt

    out = tmp_path_factory.mktemp("adapted")
    adapt(tiny_config(*target, out, stage1={"ema": 0.9}))
    return out
