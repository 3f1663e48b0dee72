"""Class-wise colour statistics of the target domain, and the calibration of rendered images to them.

Stage 2 records, for every class, the mean and spread of the RGB values of the target training images
under their (pseudo-)labels (``urbangen.json`` ``appearance``). :func:`calibrate` gives every class region of
a rendered image that mean and spread: a generator that has learnt where things are but not quite what
colour the target paints them (a short, CPU-scale adaptation over-saturates) then renders the target's
palette. Measured on the demo: docs/BENCHMARKS.md, "What limits urbangen at CPU scale".
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MIN_PIXELS = 20  # smaller regions keep their colours: too few pixels for a spread
SUBSAMPLE = 7  # every 7th pixel of a class per image is enough for its mean and spread


def class_colour_stats(pairs: Iterable[tuple[np.ndarray, np.ndarray]], ignore: int = 255) -> dict[str, list]:
    """``{trainId: [[mean R, G, B], [std R, G, B]]}`` (str keys, JSON-ready) over (image, label) pairs."""
    pixels: dict[int, list[np.ndarray]] = {}
    for image, label in pairs:
        flat, ids = image.reshape(-1, 3), label.reshape(-1)
        for c in np.unique(ids[ids != ignore]):
            pixels.setdefault(int(c), []).append(flat[ids == c][::SUBSAMPLE].astype(np.float64))
    stats = {}
    for c, chunks in sorted(pixels.items()):
        values = np.concatenate(chunks)
        stats[str(c)] = [values.mean(0).round(3).tolist(), values.std(0).round(3).tolist()]
    return stats


def calibrate(image: np.ndarray, label: np.ndarray, stats: dict[str, list], ignore: int = 255) -> np.ndarray:
    """``image`` (HxWx3 uint8) with every class region of ``label`` moved to the class's target mean and
    spread (per channel); classes without statistics, ignore pixels and regions under ``MIN_PIXELS`` stay."""
    out = image.astype(np.float32)
    for c in np.unique(label[label != ignore]):
        mask = label == c
        if str(int(c)) not in stats or mask.sum() < MIN_PIXELS:
            continue
        mean, std = (np.asarray(v, dtype=np.float32) for v in stats[str(int(c))])
        region = out[mask]
        out[mask] = (region - region.mean(0)) / (region.std(0) + 1.0) * (std + 1.0) + mean
    return np.clip(out.round(), 0, 255).astype(np.uint8)
