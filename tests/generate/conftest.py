"""Fixtures for the generation tests: a tiny real stage-2 generator folder and small label sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from urbangen.io import write_png


def build_tiny_generator(folder: Path, seed: int = 0, guidance: float = 2.0, control: str = "controlnet") -> Path:
    """A real diffusers generator folder (tiny pixel-space UNet + a ControlNet or concat control, random weights).

    A fresh control branch ignores its condition (a ControlNet's output convolutions and the concat model's
    new input weights start at zero): they are given small random weights so that images depend on the
    label map, as after training.
    """
    import torch

    from urbangen.diffusion.artefacts import save_generator
    from urbangen.diffusion.build import make_control, scratch_modules
    from urbangen.diffusion.conditioning import ConditionSpec
    from urbangen.labels import cityscapes19

    modules = scratch_modules("tiny", ("target",), seed)
    spec = ConditionSpec(num_classes=19)
    modules.control = make_control(modules, control, spec.channels, seed + 1)
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for param in modules.control.parameters():
            zero = param == 0
            if zero.all() or (control == "concat" and zero.any()):
                param.copy_(torch.where(zero, torch.randn(param.shape, generator=gen) * 0.2, param))
    meta = {
        "stage": 2,
        "taxonomy": cityscapes19().to_dict(),
        "domains": ["target"],
        "conditioning": spec.to_dict(),
        "control": control,
        "resolution": [16, 32],
        "sampling": {"guidance": guidance},
    }
    save_generator(modules, folder, meta)
    return folder


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory) -> Path:
    return build_tiny_generator(tmp_path_factory.mktemp("generator") / "stage2")


def blocks_label(seed: int, shape: tuple[int, int] = (32, 64)) -> np.ndarray:
    """A label map of a few rectangles of different classes on a road background, with an ignore strip."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, dtype=np.uint8)  # road
    label[: shape[0] // 3] = 10  # sky
    for _ in range(3):
        y, x = rng.integers(0, shape[0] - 10), rng.integers(0, shape[1] - 14)
        label[y : y + 10, x : x + 14] = rng.choice([2, 8, 13])  # building, vegetation, car
    label[-2:, :] = 255
    return label


def write_label_folder(folder: Path, n: int, shape: tuple[int, int] = (32, 64)) -> Path:
    """``n`` label maps as ``<id>.png`` trainIds (source format ``labels``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_png(folder / f"map{i:03d}.png", blocks_label(i, shape))
    return folder


class PainterGenerator:
    """Test double for orchestration tests only (never shipped): paints each class in its taxonomy colour
    plus seeded noise; with probability ``miss`` (drawn from the candidate's own seed) it paints ``missed``
    pixels as road, i.e. "forgets" that class. Image i depends only on labels[i] and seeds[i]."""

    digest = "painter-test-double"

    def __init__(self, miss: float = 0.5, missed: int = 13) -> None:
        from urbangen.labels import cityscapes19

        self.palette = cityscapes19().palette().astype(np.int16)
        self.miss, self.missed, self.calls = miss, missed, 0

    def forgets(self, seed: int) -> bool:
        return bool(np.random.default_rng(seed).random() < self.miss)

    def generate(self, labels, seeds, depth=None, steps=20, guidance=None, scheduler="ddim", batch_size=8):
        self.calls += 1
        out = []
        for label, seed in zip(labels, seeds, strict=True):
            painted = np.where((label == self.missed) & self.forgets(seed), 0, label)
            noise = np.random.default_rng(seed + 1).integers(-8, 9, (*label.shape, 3))
            out.append(np.clip(self.palette[painted] + noise, 0, 255).astype(np.uint8))
        return np.stack(out)


class ColourSegmenter:
    """Test double for orchestration tests only: the class whose colour is nearest, confidence 0.99."""

    def __init__(self) -> None:
        from urbangen.labels import cityscapes19

        self.colors = np.asarray(cityscapes19().colors, dtype=np.float32)

    def predict(self, images):
        images = images.astype(np.float32)
        best = np.full(images.shape[:-1], np.inf, dtype=np.float32)
        ids = np.zeros(images.shape[:-1], dtype=np.uint8)
        for index, color in enumerate(self.colors):
            dist = ((images - color) ** 2).sum(-1)
            ids[dist < best] = index
            best = np.minimum(best, dist)
        return ids, np.full(ids.shape, 0.99, dtype=np.float32)
