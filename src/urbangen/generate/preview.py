"""The preview grid of a generated dataset: one row per sample,
``source label | generated image | rectified label | segmenter prediction`` (labels in taxonomy colours,
ignore in black; a missing prediction is a grey tile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from urbangen.io import write_png
from urbangen.labels import Taxonomy

COLUMNS = ("source label", "generated", "rectified label", "prediction")
MAX_TILE_WIDTH = 512  # tiles of larger maps are downscaled so a grid of Cityscapes-size maps stays small


def _fit(tile: np.ndarray, width: int, smooth: bool) -> np.ndarray:
    if tile.shape[1] <= width:
        return tile
    from PIL import Image

    height = max(1, round(tile.shape[0] * width / tile.shape[1]))
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(tile).resize((width, height), resample))


def preview_row(
    taxonomy: Taxonomy,
    label: np.ndarray,
    image: np.ndarray,
    rectified: np.ndarray,
    prediction: np.ndarray | None,
    gap: int = 2,
) -> np.ndarray:
    """One row of the grid: four tiles side by side, each at most ``MAX_TILE_WIDTH`` wide."""
    pred = taxonomy.colorize(prediction) if prediction is not None else np.full_like(image, 96)
    tiles = [taxonomy.colorize(label), image, taxonomy.colorize(rectified), pred]
    tiles = [_fit(t.astype(np.uint8), MAX_TILE_WIDTH, smooth=i == 1) for i, t in enumerate(tiles)]
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, dtype=np.uint8)
    parts = []
    for tile in tiles:
        parts += [tile, spacer]
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
