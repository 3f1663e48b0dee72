"""Mean Class-wise Object Consistency (MCOC): how faithfully a generated image draws its label map.

Objects of a conditioning map are instances where an instance map exists (Cityscapes ``instanceIds``:
values >= 1000 are ``labelId * 1000 + k``) and otherwise the connected components (4-connectivity) of one
class. Each object is eroded by ``erosion`` pixels (a disk; the image border does not erode), so that a
boundary drawn a few pixels off is not held against the generator; objects left with fewer than
``min_size`` pixels are not scored. For a segmentation ``prediction`` of the generated image:

- object consistency = fraction of the object's eroded pixels predicted as its class;
- class consistency = mean of the consistencies of the class's objects;
- MCOC = mean of the class consistencies over the classes that have a scored object.

:func:`relative_line` / :func:`relative_consistency` judge each class against its reference, the median
consistency the segmenter reaches on that class over all candidates of a run (``mcoc.relative_to: class``).

Everything is vectorised with ``np.bincount`` over an object-id map, so scoring K candidates costs K
passes over the pixels whatever the number of objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from urbangen.errors import UrbangenError
from urbangen.labels import IGNORE

INSTANCE_OFFSET = 1000  # Cityscapes instanceIds: labelId * 1000 + k for instances, labelId below


def disk(radius: int) -> np.ndarray:
    """A boolean disk footprint of the given radius ((2r+1) x (2r+1))."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx) <= radius * radius


@dataclass(frozen=True)
class Objects:
    """Objects of one label map. Arrays indexed by object id; id 0 is 'no object' (ignore pixels)."""

    ids: np.ndarray  # HxW int32: object id of every pixel (full, uneroded extent)
    core: np.ndarray  # HxW int32: object id of the eroded pixels of scored objects, 0 elsewhere
    classes: np.ndarray  # (n+1,) int64: class of each object (-1 for id 0)
    scored: np.ndarray  # (n+1,) bool: object kept for scoring (eroded size >= min_size)

    @property
    def count(self) -> int:
        return len(self.classes) - 1

    def scored_classes(self) -> list[int]:
        return sorted({int(c) for c in self.classes[self.scored]})


def extract_objects(
    label: np.ndarray,
    instance: np.ndarray | None = None,
    erosion: int = 3,
    min_size: int = 50,
    ignore: int = IGNORE,
) -> Objects:
    """Split ``label`` (HxW trainIds) into objects, erode them and mark those big enough to score."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise UrbangenError(f"label map must be HxW, got shape {label.shape}")
    if instance is not None and instance.shape != label.shape:
        raise UrbangenError(f"instance map is {instance.shape} but its label map is {label.shape}")
    ids = np.zeros(label.shape, dtype=np.int32)
    classes = [-1]
    for cls in np.unique(label):
        if cls == ignore:
            continue
        mask = label == cls
        if instance is not None:
            things = mask & (instance >= INSTANCE_OFFSET)
            if things.any():
                _, inverse = np.unique(instance[things], return_inverse=True)
                ids[things] = len(classes) + inverse.reshape(-1)
                classes += [int(cls)] * (int(inverse.max()) + 1)
                mask &= ~things
        components, n = ndimage.label(mask)
        if n:
            ids[mask] = components[mask] + (len(classes) - 1)
            classes += [int(cls)] * n
    core = erode_objects(ids, erosion)
    sizes = np.bincount(core.ravel(), minlength=len(classes))
    scored = sizes >= min_size
    scored[0] = False
    core = np.where(scored[core], core, 0).astype(np.int32)
    return Objects(ids, core, np.asarray(classes, dtype=np.int64), scored)


def erode_objects(ids: np.ndarray, radius: int) -> np.ndarray:
    """Keep a pixel's object id only where every pixel within ``radius`` has the same id (else 0)."""
    if radius <= 0:
        return ids.copy()
    footprint = disk(radius)
    low = ndimage.minimum_filter(ids, footprint=footprint, mode="nearest")
    high = ndimage.maximum_filter(ids, footprint=footprint, mode="nearest")
    return np.where(low == high, ids, 0).astype(np.int32)


def object_consistency(objects: Objects, prediction: np.ndarray) -> np.ndarray:
    """(n+1,) fraction of each scored object's eroded pixels predicted as its class (NaN if not scored)."""
    if prediction.shape != objects.core.shape:
        raise UrbangenError(
            f"segmenter prediction is {prediction.shape} but the label map is {objects.core.shape}: "
            "the segmenter must return one trainId per label pixel"
        )
    core = objects.core.ravel()
    n = len(objects.classes)
    hits = np.bincount(core, weights=(prediction.ravel() == objects.classes[core]), minlength=n)
    sizes = np.bincount(core, minlength=n)
    out = np.full(n, np.nan)
    out[objects.scored] = hits[objects.scored] / sizes[objects.scored]
    return out


def class_consistency(objects: Objects, consistency: np.ndarray) -> dict[int, float]:
    """Mean object consistency per class (only classes with a scored object)."""
    out = {}
    for cls in objects.scored_classes():
        members = objects.scored & (objects.classes == cls)
        out[cls] = float(consistency[members].mean())
    return out


def mean_class_consistency(per_class: dict[int, float]) -> float | None:
    """MCOC: the mean of the class consistencies; None when nothing could be scored."""
    return float(np.mean(list(per_class.values()))) if per_class else None


@dataclass(frozen=True)
class Score:
    """The MCOC of one candidate, its per-class and per-object consistencies."""

    mcoc: float | None
    per_class: dict[int, float]
    per_object: np.ndarray


def score(objects: Objects, prediction: np.ndarray) -> Score:
    """Score one prediction of a generated image against the objects of its conditioning map."""
    per_object = object_consistency(objects, prediction)
    per_class = class_consistency(objects, per_object)
    return Score(mean_class_consistency(per_class), per_class, per_object)


def best_candidate(scores: list[Score]) -> int:
    """Index of the candidate with the highest MCOC (the first on ties; unscorable counts as -inf)."""
    values = [s.mcoc if s.mcoc is not None else -np.inf for s in scores]
    return int(np.argmax(values))


def class_references(lines: list[dict]) -> dict[str, float]:
    """Per class name, the median class consistency over every candidate of the score ``lines`` (the
    ``filter/manifest.jsonl`` records): what the scoring segmenter typically recognises of that class."""
    values: dict[str, list[float]] = {}
    for line in lines:
        for candidate in line["candidates"]:
            for name, value in candidate["per_class"].items():
                values.setdefault(name, []).append(value)
    return {name: float(np.median(v)) for name, v in sorted(values.items())}


def relative_line(line: dict, references: dict[str, float], min_reference: float) -> dict:
    """A score line with every class consistency divided by its class reference (capped at 1) and MCOC
    recomputed over the classes whose reference reaches ``min_reference`` (the others the segmenter does
    not recognise, so they say nothing about the image); the raw MCOC stays as ``raw_mcoc``.

    The best candidate stays the one chosen by raw MCOC: its prediction is the one stored for rectification.
    """
    candidates = []
    for candidate in line["candidates"]:
        per_class = {
            name: min(1.0, value / references[name])
            for name, value in candidate["per_class"].items()
            if references.get(name, 0.0) >= min_reference and references[name] > 0
        }
        mcoc = float(np.mean(list(per_class.values()))) if per_class else None
        candidates.append({**candidate, "mcoc": mcoc, "raw_mcoc": candidate["mcoc"], "per_class": per_class})
    best = candidates[line["best"]]["mcoc"]
    # scorable objects, none of a judged class: nothing says the image is bad (kept as "not_judged")
    unjudged = best is None and line["best_mcoc"] is not None
    return {
        **line,
        "candidates": candidates,
        "best_mcoc": best,
        "raw_best_mcoc": line["best_mcoc"],
        "unjudged": unjudged,
    }


def relative_consistency(
    objects: Objects, consistency: np.ndarray, references: dict[int, float], min_reference: float
) -> np.ndarray:
    """Object consistencies divided by their class reference; NaN (not judged) for objects of classes
    whose reference is under ``min_reference`` or unknown."""
    ref = np.array([references.get(int(c), 0.0) for c in objects.classes])
    usable = (ref >= min_reference) & (ref > 0)
    out = np.full(consistency.shape, np.nan)
    out[usable] = consistency[usable] / ref[usable]
    return out
