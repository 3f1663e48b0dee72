"""Label rectification: set to ignore (255) the parts of a label map its generated image did not draw.

Two rules, applied to the kept candidate only (thresholds in :class:`~urbangen.generate.config.RectifyConfig`):

1. ``objects``: an object whose consistency (see :mod:`urbangen.generate.mcoc`) is below
   ``object_threshold`` was not drawn by the generator; its whole (uneroded) extent becomes ignore.
   Objects too small to be scored are left as they are.
2. ``boundary``: within ``boundary_band`` pixels of a label boundary, a pixel where the segmenter predicts
   another class with confidence above ``boundary_confidence`` becomes ignore (the generated edge sits
   elsewhere than the label's edge; the label is not moved, only withdrawn from training).

The number of pixels each rule withdrew, per class, goes to the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from urbangen.generate.mcoc import Objects, disk
from urbangen.labels import IGNORE


@dataclass(frozen=True)
class Rectified:
    """The rectified label and the pixels each rule set to ignore, per class id."""

    label: np.ndarray
    objects: dict[int, int]
    boundary: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.objects.values()) + sum(self.boundary.values())


def boundary_band(label: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of a change of label value (ignore counts as a value; not the image border)."""
    if radius <= 0:
        return np.zeros(label.shape, dtype=bool)
    footprint = disk(radius)
    high = ndimage.maximum_filter(label, footprint=footprint, mode="nearest")
    low = ndimage.minimum_filter(label, footprint=footprint, mode="nearest")
    return high != low


def _counts(label: np.ndarray, mask: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(label[mask], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def rectify(
    label: np.ndarray,
    objects: Objects,
    consistency: np.ndarray,
    prediction: np.ndarray,
    confidence: np.ndarray,
    object_threshold: float = 0.3,
    band: int = 3,
    band_confidence: float = 0.9,
    ignore: int = IGNORE,
    keep: np.ndarray | None = None,
) -> Rectified:
    """Apply both rules to ``label`` (HxW trainIds) given the objects' ``consistency`` for this image
    (NaN: not judged); pixels of the boolean mask ``keep`` are never withdrawn."""
    undrawn = objects.scored & (np.nan_to_num(consistency, nan=1.0) < object_threshold)
    object_mask = undrawn[objects.ids] & (label != ignore)
    disagree = (prediction != label) & (confidence > band_confidence) & (label != ignore)
    boundary_mask = boundary_band(label, band) & disagree & ~object_mask
    if keep is not None:
        object_mask &= ~keep
        boundary_mask &= ~keep
    out = label.copy()
    out[object_mask | boundary_mask] = ignore
    return Rectified(out, _counts(label, object_mask), _counts(label, boundary_mask))
