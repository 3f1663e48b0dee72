"""A grid for a person to look at: per sample one row of image | colourised label | overlay."""

from __future__ import annotations

import numpy as np
from PIL import Image

from urbangen.datasets.base import DatasetIndex, DatasetReader, load_image
from urbangen.errors import UrbangenError
from urbangen.io import check_same_size

GAP = 4  # white pixels between panels and rows


def pick(n_total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``0..n_total-1`` (first and last included)."""
    if n < 1:
        raise UrbangenError(f"--n must be at least 1, got {n}")
    return sorted({round(float(i)) for i in np.linspace(0, n_total - 1, min(n, n_total))})


def _resize(array: np.ndarray, width: int, nearest: bool) -> np.ndarray:
    height = max(1, round(array.shape[0] * width / array.shape[1]))
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


def preview_row(reader: DatasetReader, index: DatasetIndex, i: int, width: int, unknown: str) -> np.ndarray:
    """image | colourised trainIds | 50% overlay on labelled pixels, each ``width`` wide."""
    sample = index.samples[i]
    taxonomy = reader.mapping().target
    label = reader.load_train_ids(sample, unknown) if sample.label is not None else None
    image = load_image(sample) if sample.image is not None else None
    if image is not None and label is not None:
        check_same_size(image, label, sample.image, sample.label)
    if label is None:
        label = np.full(image.shape[:2], taxonomy.ignore, np.uint8)
    if image is None:
        image = np.full((*label.shape, 3), 128, np.uint8)
    color = taxonomy.colorize(label)
    labelled = (label != taxonomy.ignore)[..., None]
    overlay = np.where(labelled, (image.astype(np.uint16) + color) // 2, image).astype(np.uint8)
    panels = [_resize(image, width, False), _resize(color, width, True), _resize(overlay, width, False)]
    gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def preview_grid(
    reader: DatasetReader, index: DatasetIndex, n: int = 4, width: int = 512, unknown: str = "error"
) -> np.ndarray:
    """Rows for ``n`` samples spread over the index, stacked with white gaps (uint8 HxWx3)."""
    if not len(index):
        raise UrbangenError(f"{index.format} index of {index.root} (split {index.split}) has no samples to show")
    if width < 8:
        raise UrbangenError(f"--width must be at least 8 pixels, got {width}")
    rows = [preview_row(reader, index, i, width, unknown) for i in pick(len(index), n)]
    gap = np.full((GAP, rows[0].shape[1], 3), 255, np.uint8)
    stacked = [part for row in rows for part in (row, gap)][:-1]
    return np.concatenate(stacked, axis=0)
