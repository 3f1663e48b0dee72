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
MAX_EXEMPLARS = 512  # per-image statistics kept for exemplar calibration


MODES = ("none", "pooled", "exemplar")


def calibration_mode(value: object) -> object:
    """A ``calibrate`` setting as a mode: ``true`` (its first form) is ``pooled``, ``false`` is ``none``."""
    return {True: "pooled", False: "none"}[value] if isinstance(value, bool) else value


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


def image_colour_stats(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], ignore: int = 255, limit: int = MAX_EXEMPLARS, seed: int = 0
) -> list[dict[str, list]]:
    """Per target image, ``{trainId: [[mean R, G, B], [std R, G, B]]}`` of its class regions of at least
    ``MIN_PIXELS`` pixels: the exemplars of :func:`calibrate` (at most ``limit`` images, drawn with ``seed``)."""
    pairs = list(pairs)
    if len(pairs) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), limit, replace=False))
        pairs = [pairs[i] for i in keep]
    exemplars = []
    for image, label in pairs:
        flat, ids = image.reshape(-1, 3).astype(np.float64), label.reshape(-1)
        entry = {}
        for c in np.unique(ids[ids != ignore]):
            values = flat[ids == c]
            if len(values) >= MIN_PIXELS:
                entry[str(int(c))] = [values.mean(0).round(1).tolist(), values.std(0).round(1).tolist()]
        if entry:
            exemplars.append(entry)
    return exemplars


def calibrate(
    image: np.ndarray,
    label: np.ndarray,
    stats: dict[str, list],
    ignore: int = 255,
    exemplars: list[dict[str, list]] | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """``image`` (HxWx3 uint8) with every class region of ``label`` moved to a target colour mean and
    spread (per channel); classes without statistics, ignore pixels and regions under ``MIN_PIXELS`` stay.

    Without ``exemplars`` every region takes its class's pooled statistics ``stats``. With them (and a
    ``seed``), the image draws one target image and takes its statistics class by class (a class that
    image lacks comes from another exemplar holding it, else from ``stats``): images keep the target's
    variety of lighting and of colours within a class instead of all sharing the pooled mean.
    """
    rng = np.random.default_rng(seed)
    first = exemplars[rng.integers(len(exemplars))] if exemplars else None
    out = image.astype(np.float32)
    for c in np.unique(label[label != ignore]):
        key, mask = str(int(c)), label == c
        if mask.sum() < MIN_PIXELS:
            continue
        target = stats.get(key)
        if first is not None and key in first:
            target = first[key]
        elif first is not None:  # the drawn image lacks this class: another exemplar that holds it
            holders = [e[key] for e in exemplars if key in e]
            target = holders[rng.integers(len(holders))] if holders else target
        if target is None:
            continue
        mean, std = (np.asarray(v, dtype=np.float32) for v in target)
        region = out[mask]
        out[mask] = (region - region.mean(0)) / (region.std(0) + 1.0) * (std + 1.0) + mean
    return np.clip(out.round(), 0, 255).astype(np.uint8)
