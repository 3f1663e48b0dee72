"""A picture of the world for people: rows of scenes, columns sim | real (per style seed) | labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from urbangen.labels import cityscapes19, cityscapes_label_ids
from urbangen.world.layout import make_scene
from urbangen.world.renderer import render


def preview_grid(seeds: Sequence[int], size: tuple[int, int], style_seeds: Sequence[int] = (1, 2)) -> np.ndarray:
    """One row per scene seed: the ``sim`` render, a ``real`` render per style seed, the colourised labels
    (Cityscapes palette). Returns a uint8 image with a 2-pixel white gutter between tiles."""
    rows = []
    for seed in seeds:
        scene = make_scene(seed, size)
        labels = cityscapes19().colorize(cityscapes_label_ids().apply(scene.label_ids))
        tiles = [render(scene, "sim"), *(render(scene, "real", s) for s in style_seeds), labels]
        gutter = np.full((size[0], 2, 3), 255, np.uint8)
        rows.append(np.concatenate([x for tile in tiles for x in (tile, gutter)][:-1], axis=1))
    gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([x for row in rows for x in (row, gap)][:-1], axis=0)
