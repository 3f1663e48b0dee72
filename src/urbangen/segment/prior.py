"""Class spatial priors from labelled source maps, for pseudo-labelling (CBST-SP).

Street scenes share a layout: sky at the top, road at the bottom, buildings on either side. A segmenter
trained on one domain and applied to another confuses classes that look alike there (on a dark, hazy
target the demo's FDA segmenter called 83% of the sky "truck"), but the layout still holds. Following
class-balanced self-training with spatial priors (CBST-SP, Zou et al., ECCV 2018), :func:`spatial_prior`
counts how often each class occupies each position of the *source* label maps, q(c | pos), and
:func:`apply_prior` weighs the segmenter's softmax by it before the arg-max.

The weight is q(c | pos) / q(c), where q(c) is the class's share over all positions: by Bayes, with the
image and the position independent given the class, p(c | x, pos) is proportional to
p(c | x) * p(pos | c), and p(pos | c) is proportional to q(c | pos) / q(c). Multiplying by q(c | pos) alone
(as CBST-SP does) counts the class frequencies twice, since the softmax already holds those of the
training data: frequent classes then swallow rarer ones where they overlap (on the demo's seed 0 it cut
vegetation from 31 to 11 IoU; with the ratio it stays at 32 while road goes from 24 to 59).

Positions are normalised: every label map is resized (nearest) to the prior's grid and the prior is
resized (bilinear) to each image, so source and target sizes may differ. A count of one is added to
every class at every position (Laplace smoothing): the prior never rules a class out, it only tips
close calls. docs/BENCHMARKS.md ("Pseudo-labels with a spatial prior") has the measured effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from urbangen.errors import UrbangenError
from urbangen.io import atomic_path
from urbangen.segment.data import DataSource, open_source

if TYPE_CHECKING:
    import torch

GRID = (128, 256)  # (height, width) the prior is counted at


def spatial_prior(source: DataSource, grid: tuple[int, int] = GRID, progress: bool = True) -> np.ndarray:
    """C x H x W float32 (C: the source taxonomy's classes, H x W: ``grid``): the Laplace-smoothed share
    of the source label maps that hold class c at each normalised position; it sums to 1 at every position."""
    from tqdm import tqdm

    opened = open_source(source, need_images=False)
    if not len(opened):
        raise UrbangenError(f"spatial prior: {source.describe()} has no labelled samples")
    n = opened.taxonomy.num_classes
    size = grid[0] * grid[1]
    counts = np.ones(n * size, dtype=np.int64)  # Laplace smoothing; index: class * size + position
    for i in tqdm(range(len(opened)), desc="spatial prior", unit="map", disable=not progress):
        label = opened.load_label(i)
        if label.shape != grid:
            label = np.asarray(Image.fromarray(label).resize(grid[::-1], Image.NEAREST))
        flat = label.astype(np.int64).ravel()
        valid = flat < n
        counts += np.bincount(flat[valid] * size + np.flatnonzero(valid), minlength=n * size)
    counts = counts.reshape(n, *grid)
    return (counts / counts.sum(axis=0, keepdims=True)).astype(np.float32)


def load_or_compute(path: Path, source: DataSource, grid: tuple[int, int] = GRID) -> np.ndarray:
    """The prior cached at ``path`` (``.npy``), computed from ``source`` and written atomically if absent."""
    if path.is_file():
        return np.load(path)
    prior = spatial_prior(source, grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, prior)
    return prior


def apply_prior(probs: torch.Tensor, prior: np.ndarray, weight: float = 1.0) -> torch.Tensor:
    """Softmax ``probs`` (B x C x H x W) times (q(c | pos) / q(c)) ** ``weight``, renormalised over classes;
    ``prior``: q(c | pos) as C x h x w (:func:`spatial_prior`), resized to H x W. A class whose share is the
    same at every position is left as the softmax has it."""
    import torch
    import torch.nn.functional as F

    if prior.shape[0] != probs.shape[1]:
        raise UrbangenError(f"spatial prior has {prior.shape[0]} classes but the segmenter predicts {probs.shape[1]}")
    share = prior.mean(axis=(1, 2), keepdims=True)
    ratio = torch.from_numpy(prior / np.maximum(share, np.finfo(np.float32).tiny)).to(probs.device, probs.dtype)
    q = F.interpolate(ratio[None], size=probs.shape[-2:], mode="bilinear", align_corners=False)
    out = probs * q.pow(weight)
    return out / out.sum(dim=1, keepdim=True).clamp_min(torch.finfo(out.dtype).tiny)
