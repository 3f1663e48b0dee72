"""The preview grid of a generated dataset: one row per sample,
``source label | generated image | rectified label | segmenter prediction`` (labels in taxonomy colours,
ignore in black; a missing prediction is a grey tile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from urbangen.io import write_png
from urbangen.labels import Taxonomy

COLUMNS = ("source label", "generated", "rectified label", "prediction")


def preview_row(
    taxonomy: Taxonomy,
    label: np.ndarray,
    image: np.ndarray,
    rectified: np.ndarray,
    prediction: np.ndarray | None,
    gap: int = 2,
) -> np.ndarray:
    """One HxW(4+gaps)x3 row of the grid."""
    pred = taxonomy.colorize(prediction) if prediction is not None else np.full_like(image, 96)
    tiles = [taxonomy.colorize(label), image, taxonomy.colorize(rectified), pred]
    spacer = np.full((image.shape[0], gap, 3), 255, dtype=np.uint8)
    parts = []
    for tile in tiles:
        parts += [tile.astype(np.uint8), spacer]
    return np.concatenate(parts[:-1], axis=1)


def write_grid(path: str | Path, rows: list[np.ndarray], gap: int = 2) -> None:
    """Stack rows (padded to the widest) with white gaps and write a PNG atomically."""
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    padded = []
    for row in rows:
        pad = np.full((row.shape[0], width - row.shape[1], 3), 255, dtype=np.uint8)
        padded += [np.concatenate([row, pad], axis=1), np.full((gap, width, 3), 255, dtype=np.uint8)]
    write_png(path, np.concatenate(padded[:-1], axis=0))
